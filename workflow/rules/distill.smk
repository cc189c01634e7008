# Each method's student trained with the task loss plus layer-wise distillation from the teacher (METHOD §5;
# with distill_scope none, the task loss alone).


rule distill:
    input:
        data="resources/data/{task}",
        teacher="results/teacher/{task}/seed{seed}",
        student="results/moe/{task}/{method}/seed{seed}",
    output:
        # Checkpoints in the undeclared sibling <output>.checkpoints/ let a killed job resume. Protected, as
        # the teacher.
        protected(directory("results/student/{task}/{method}/seed{seed}")),
    params:
        training=distill_args,
        device=model_device,
        launcher=launcher,
        tracking=tracking("distill"),
    log:
        "logs/distill/{task}/{method}/seed{seed}.log",
    threads: config["resources"]["threads"]
    retries: config["resources"]["retries"]
    resources:
        **job_resources("distill"),
    conda:
        CONDA_ENV
    shell:
        "{params.launcher} distill --task {wildcards.task} --data {input.data:q} --teacher {input.teacher:q}"
        " --student {input.student:q} --output {output:q} --seed {wildcards.seed}"
        " --method {wildcards.method} {params.training} {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

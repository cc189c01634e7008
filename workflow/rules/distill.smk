# Each method's student trained with the task loss plus layer-wise distillation from the teacher (docs/method.md §5;
# with distill_scope none, the task loss alone).


rule distill:
    input:
        data="resources/data/{task}",
        teacher=teacher_dir,
        student="results/moe/{task}/{method}/seed{seed}",
    output:
        # Checkpoints in the undeclared sibling <output>.checkpoints/ let a killed job resume. Not
        # protected, as the teacher.
        directory("results/student/{task}/{method}/seed{seed}"),
    log:
        "logs/distill/{task}/{method}/seed{seed}.log",
    retries: RETRIES
    group:
        chain_group("distill")
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        **job_resources("distill"),
    params:
        training=stage_flags(
            lambda w: [
                SETTINGS.train_options("distill", w.task),
                SETTINGS.distill_options(w.method, w.task),
            ]
        ),
        device=model_device,
        checkpoints=checkpoints,
        experts=lambda wildcards, output: SETTINGS.experts_flag(wildcards.method),
        launcher=launcher,
        tracking=tracking("distill"),
    shell:
        "{params.launcher} distill --task {wildcards.task} --data {input.data:q} --teacher {input.teacher:q}"
        " --student {input.student:q} --output {output:q} --seed {wildcards.seed}"
        " --method {wildcards.method} {params.training} {params.checkpoints} {params.device} {params.experts}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

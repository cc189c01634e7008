# The teacher: the dense model fine-tuned on each task, one per seed.


rule finetune:
    input:
        data="resources/data/{task}",
    output:
        # Trainer checkpoints go to the undeclared sibling <output>.checkpoints/, which survives a
        # killed job (Snakemake deletes only declared outputs), so the rerun resumes from it.
        directory("results/teacher/{task}/seed{seed}"),
    params:
        model=config["teacher"]["model"],
        training=training_args("teacher"),
        device=model_device,
        launcher=launcher,
        tracking=tracking("finetune", TEACHER),
    log:
        "logs/finetune/{task}/seed{seed}.log",
    threads: config["resources"]["threads"]
    resources:
        **model_resources("finetune"),
    conda:
        CONDA_ENV
    shell:
        "{params.launcher} finetune --task {wildcards.task} --data {input.data:q} --model {params.model:q}"
        " --output {output:q} --seed {wildcards.seed} --method teacher {params.training} {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

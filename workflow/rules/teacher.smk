# The teacher: the dense model fine-tuned on each task, one per seed.

from moebert.config import TEACHER


rule finetune:
    input:
        data="resources/data/{task}",
        pretrained=pretrained_input,
    output:
        # Trainer checkpoints go to the undeclared sibling <output>.checkpoints/, which survives a
        # killed job (Snakemake deletes only declared outputs), so the rerun resumes from it. Not
        # protected(): Snakemake deletes a failed job's outputs, and a read-only one it cannot delete
        # stops the controller; a finished model is kept by ending its chain here (workflow/lib/jobs.py).
        directory("results/teacher/{task}/seed{seed}"),
    log:
        "logs/finetune/{task}/seed{seed}.log",
    retries: RETRIES
    group:
        chain_group("finetune")
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        **job_resources("finetune"),
    params:
        model=pretrained_model(),
        training=stage_flags(lambda w: [SETTINGS.train_options("teacher", w.task)]),
        device=model_device,
        checkpoints=checkpoints,
        launcher=launcher,
        tracking=tracking("finetune", TEACHER),
    shell:
        "{params.launcher} finetune --task {wildcards.task} --data {input.data:q} --model {params.model:q}"
        " --output {output:q} --seed {wildcards.seed} --method teacher {params.training} {params.checkpoints} {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

# GLUE metrics and parameter counts of every row the tables report: the teacher, each method's student,
# and the majority baseline (no model: its input is the data alone).


rule evaluate:
    input:
        data="resources/data/{task}",
        model=model_dir,
    output:
        "results/metrics/{task}/{method}/seed{seed}.json",
    params:
        evaluation=stage_flags(
            lambda w: [SETTINGS.evaluate_options(w.task, model_dir(w) or None)]
        ),
        device=model_device,
        tracking=tracking("evaluate"),
    log:
        "logs/evaluate/{task}/{method}/seed{seed}.log",
    threads: SETTINGS.resources.threads
    retries: SETTINGS.resources.retries
    resources:
        **job_resources("evaluate"),
    conda:
        CONDA_ENV
    shell:
        "moebert evaluate --task {wildcards.task} --data {input.data:q}"
        " --output {output:q} --seed {wildcards.seed} --method {wildcards.method} {params.evaluation}"
        " {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

# GLUE metrics and parameter counts of every row the tables report: the teacher, each method's student,
# and the majority baseline (no model: its input is the data alone); beside them the per-example
# predictions the report's confidence intervals resample.


rule evaluate:
    input:
        data="resources/data/{task}",
        model=model_dir,
    output:
        metrics="results/metrics/{task}/{method}/seed{seed}.json",
        examples="results/metrics/{task}/{method}/seed{seed}.examples.csv",
    log:
        "logs/evaluate/{task}/{method}/seed{seed}.log",
    retries: RETRIES
    group:
        chain_group("evaluate")
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        **job_resources("evaluate"),
    params:
        evaluation=stage_flags(lambda w: [SETTINGS.evaluate_options(w.task, model_dir(w) or None)]),
        device=model_device,
        experts=lambda wildcards, output: SETTINGS.experts_flag(wildcards.method),
        tracking=tracking("evaluate"),
    shell:
        "moebert evaluate --task {wildcards.task} --data {input.data:q}"
        " --output {output.metrics:q} --examples {output.examples:q} --seed {wildcards.seed} --method {wildcards.method} {params.evaluation}"
        " {params.device} {params.experts}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

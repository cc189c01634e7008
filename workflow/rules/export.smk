# The rows under `exports:` as Hugging Face folders with their model cards (moebert export), for others to
# load without this package; with tracking on, each folder is logged to the run that trained its model.


rule export:
    input:
        model=lambda w: model_path(w.task, w.method, w.seed),
        metrics=lambda w: metrics_path(w.task, w.method, w.seed),
        teacher_metrics=lambda w: metrics_path(w.task, TEACHER, w.seed),
        config="results/config.json",
    output:
        directory("results/export/{task}/{method}/seed{seed}"),
    log:
        "logs/export/{task}/{method}/seed{seed}.log",
    retries: RETRIES
    group:
        chain_group("export")
    conda:
        CONDA_ENV
    resources:
        **job_resources("export"),
    params:
        tracking=tracking("export"),
    shell:
        "moebert export --model {input.model:q} --output {output:q} --metrics {input.metrics:q}"
        " --teacher-metrics {input.teacher_metrics:q} --config {input.config:q}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

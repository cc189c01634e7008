# The rows under `exports:` as Hugging Face folders with their model cards (moebert export), for others to
# load without this package; with tracking on, each folder is logged to the run that trained its model.

import os

from moebert.config import TEACHER


rule export:
    input:
        model=lambda w: model_path(w.task, w.method, w.seed),
        metrics=lambda w: metrics_path(w.task, w.method, w.seed),
        teacher_metrics=lambda w: metrics_path(w.task, TEACHER, w.seed),
        config="results/config.json",
    output:
        # The card stands for the folder: a directory output would get Snakemake's .snakemake_timestamp, which
        # is no part of the model and would be uploaded with it.
        "results/export/{task}/{method}/seed{seed}/README.md",
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
        folder=lambda wildcards, output: os.path.dirname(output[0]),
        register="--register" if SETTINGS.register_exports else "",
        tracking=tracking("export"),
    shell:
        "moebert export --model {input.model:q} --output {params.folder:q} --metrics {input.metrics:q}"
        " --teacher-metrics {input.teacher_metrics:q} --config {input.config:q}"
        " {params.register} {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

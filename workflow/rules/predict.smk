# The benchmarks' prediction files of the rows under `predictions:` (moebert predict): every task's test
# split as the GLUE server takes it (MNLI with the diagnostic set AX), or SQuAD's answers; then one GLUE
# upload per row and seed.


# Zipping a few files: on a cluster the submit host does it instead of a queued job.
localrules:
    submission,


rule predict:
    input:
        data="resources/data/{task}",
        model=lambda w: model_path(w.task, w.method, w.seed),
    output:
        directory("results/predictions/{method}/seed{seed}/{task}"),
    log:
        "logs/predict/{method}/seed{seed}/{task}.log",
    retries: RETRIES
    group:
        chain_group("predict")
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        **job_resources("predict"),
    params:
        options=stage_flags(lambda w: [SETTINGS.predict_options(w.task)]),
        device=model_device,
        experts=lambda wildcards, output: SETTINGS.experts_flag(wildcards.method),
    shell:
        "moebert predict --task {wildcards.task} --data {input.data:q} --model {input.model:q}"
        " --output {output:q} {params.options} {params.device} {params.experts} > {log:q} 2>&1"


rule submission:
    input:
        glue_predictions,
    output:
        "results/predictions/{method}/seed{seed}/glue-submission.zip",
    log:
        "logs/submission/{method}/seed{seed}.log",
    conda:
        CONDA_ENV
    resources:
        **job_resources("submission"),
    shell:
        "moebert submission --predictions {input:q} --output {output:q} > {log:q} 2>&1"

# Fetched inputs: each task's files, validated and rewritten under resources/ (GLUE in the classic tsv
# layout, SQuAD in the official JSON format, offline optionally split by article), from the configured
# directory (`data`, `squad_data`) or the Hugging Face hub; and the teacher's pretrained model from the hub.


# On a cluster the submit host runs them: compute nodes often cannot reach the hub. They are the only jobs
# that may (every other job runs with HF_HUB_OFFLINE=1, see the Snakefile).
localrules:
    prepare_data,
    fetch_model,


rule prepare_data:
    input:
        data_source,
    output:
        directory("resources/data/{task}"),
    log:
        "logs/prepare_data/{task}.log",
    retries: RETRIES
    conda:
        CONDA_ENV
    resources:
        **job_resources("prepare_data"),
    params:
        source=stage_flags(lambda w: [SETTINGS.prepare_options(w.task)]),
        hub=HUB_ON,
    shell:
        "{params.hub} moebert prepare-data --task {wildcards.task} {params.source} --output {output:q}"
        " > {log:q} 2>&1"


rule fetch_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/fetch_model/{model}.log",
    retries: RETRIES
    conda:
        CONDA_ENV
    resources:
        **job_resources("fetch_model"),
    params:
        repo=hub_model,
        revision=hub_revision,
        students=teacher_students,
        hub=HUB_ON,
    shell:
        "{params.hub} moebert fetch-model --model {params.repo:q} {params.revision} --output {output:q}"
        " --students {params.students} > {log:q} 2>&1"

# Fetched inputs: each task's files, validated and rewritten under resources/ (GLUE in the classic tsv
# layout, SQuAD in the official JSON format, offline optionally split by article), from the configured
# directory (`data`, `squad_data`) or the Hugging Face hub.

# On a cluster the submit host runs it: compute nodes often cannot reach the hub.
localrules:
    prepare_data,


rule prepare_data:
    input:
        data_source,
    output:
        directory("resources/data/{task}"),
    params:
        source=prepare_args,
    log:
        "logs/prepare_data/{task}.log",
    conda:
        CONDA_ENV
    shell:
        "moebert prepare-data --task {wildcards.task} {params.source} --output {output:q}"
        " > {log:q} 2>&1"

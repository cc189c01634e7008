# Fetched inputs: each task's GLUE files, validated and rewritten in the classic layout under
# resources/, from the configured directory or (data: hub) the Hugging Face hub.

# On a cluster the submit host runs it: compute nodes often cannot reach the hub.
localrules:
    prepare_data,


rule prepare_data:
    input:
        data_source,
    output:
        directory("resources/glue/{task}"),
    params:
        source=config["data"],
    log:
        "logs/prepare_data/{task}.log",
    conda:
        CONDA_ENV
    shell:
        "moebert prepare-data --task {wildcards.task} --source {params.source:q} --output {output:q}"
        " > {log:q} 2>&1"

# Importance of every FFN neuron of the teacher (METHOD §2), which decides what the experts keep.


rule importance:
    input:
        data="resources/data/{task}",
        teacher="results/teacher/{task}/seed{seed}",
    output:
        "results/importance/{task}/seed{seed}.safetensors",
    params:
        importance=importance_args,
        device=model_device,
        tracking=tracking("importance", TEACHER),
    log:
        "logs/importance/{task}/seed{seed}.log",
    threads: config["resources"]["threads"]
    retries: config["resources"]["retries"]
    resources:
        **job_resources("importance"),
    conda:
        CONDA_ENV
    shell:
        "moebert importance --task {wildcards.task} --data {input.data:q} --model {input.teacher:q}"
        " --output {output:q} --seed {wildcards.seed} {params.importance} {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

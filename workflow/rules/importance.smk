# Importance of every FFN neuron of the teacher (docs/method.md §2), which decides what the experts keep.

from moebert.config import TEACHER


rule importance:
    input:
        data="resources/data/{task}",
        teacher="results/teacher/{task}/seed{seed}",
    output:
        "results/importance/{task}/seed{seed}.safetensors",
    log:
        "logs/importance/{task}/seed{seed}.log",
    retries: RETRIES
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        **job_resources("importance"),
    params:
        importance=stage_flags(lambda w: [SETTINGS.importance_options(w.task)]),
        device=model_device,
        tracking=tracking("importance", TEACHER),
    shell:
        "moebert importance --task {wildcards.task} --data {input.data:q} --model {input.teacher:q}"
        " --output {output:q} --seed {wildcards.seed} {params.importance} {params.device}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

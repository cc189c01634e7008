# Each method's untrained student, built from the teacher: FFNs cut into experts (docs/method.md §3, and the
# construction ablations), MPO experts sharing a central tensor (docs/method.md §9), or a dense control
# (dense-narrow, distil-half).


rule adapt:
    input:
        data="resources/data/{task}",
        teacher=teacher_dir,
        importance=adapt_importance,
    output:
        # Temporary: distill's input only, removed once its student is trained (~440 MB per BERT-base MoE;
        # rebuilt in seconds if a later change retrains the student).
        temp(directory("results/moe/{task}/{method}/seed{seed}")),
    log:
        "logs/adapt/{task}/{method}/seed{seed}.log",
    retries: RETRIES
    group:
        chain_group("adapt")
    conda:
        CONDA_ENV
    threads: SETTINGS.resources.threads
    resources:
        # Slicing or decomposing weights needs no GPU.
        **job_resources("adapt"),
    params:
        student=stage_flags(
            lambda w: [SETTINGS.adapt_options(w.method, w.task, importance_path(w), data_dir(w))]
        ),
        tracking=tracking("adapt"),
    shell:
        "moebert adapt --model {input.teacher:q}"
        " --output {output:q} --seed {wildcards.seed} {params.student}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

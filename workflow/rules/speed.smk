# Inference speed (docs/method.md §7-8): latency and throughput of the teacher and every trained student (with a
# random-weight dense-narrow control where no trained one exists), one job per device of `speed.devices`. Timings want the cores to themselves, so a speed job
# claims `speed.threads` cores and runs with that many torch threads; the grid is kept small enough
# for a laptop.

import shlex


wildcard_constraints:
    device="cpu|cuda",


rule speed_random:
    output:
        csv="results/speed/{device}/random-{dims}.csv",
        json="results/speed/{device}/random-{dims}.json",
    log:
        "logs/speed/{device}/random-{dims}.log",
    retries: RETRIES
    conda:
        CONDA_ENV
    threads: SETTINGS.speed.threads
    resources:
        **job_resources("speed_random"),
    params:
        grid=stage_flags(lambda w: [SETTINGS.speed_grid(w.device)]),
        experts=experts_implementation,
    shell:
        "moebert speed --random {wildcards.dims:q} --reference {params.grid} {params.experts}"
        " --output {output.csv:q} > {log:q} 2>&1"


rule speed_trained:
    input:
        unpack(speed_models),
    output:
        csv="results/speed/{device}/trained/{task}/seed{seed}.csv",
        json="results/speed/{device}/trained/{task}/seed{seed}.json",
    log:
        "logs/speed/{device}/trained/{task}/seed{seed}.log",
    retries: RETRIES
    conda:
        CONDA_ENV
    threads: SETTINGS.speed.threads
    resources:
        **job_resources("speed_trained"),
    params:
        models=lambda wildcards, input: " ".join(
            f"--model {shlex.quote(f'{label}={path}')}" for label, path in input.items()
        ),
        grid=stage_flags(lambda w: [SETTINGS.speed_grid(w.device)]),
        experts=experts_implementation,
        control=speed_control,
        tracking=tracking("speed", "all"),
    shell:
        "moebert speed {params.models} {params.control}"
        " {params.grid} {params.experts} --output {output.csv:q} {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

# Inference speed (METHOD §7-8): latency and throughput of the teacher, MoEBERT and the dense-narrow
# control. Timings want the cores to themselves, so a speed job claims `speed.threads` cores and runs
# with that many torch threads; the grid is kept small enough for a laptop.

SPEED = {
    "random": ["bert-base"],  # dimensions timed with random weights (presets of `moebert speed --random`)
    "batch_sizes": [1, 8, 32],
    "seq_lengths": [128],
    "repeats": 5,
    "threads": 2,
    "device": "auto",
    **config.get("speed", {}),
}


def speed_grid(wildcards) -> str:
    return _options(repeats=SPEED["repeats"], threads=SPEED["threads"], device=SPEED["device"]) + "".join(
        f" --{key.replace('_', '-')} " + " ".join(map(str, SPEED[key])) for key in ("batch_sizes", "seq_lengths")
    )


def speed_models(wildcards) -> dict:
    """The trained models of one task and seed: the teacher and every method's student, by method name."""
    models = {TEACHER: f"results/teacher/{wildcards.task}/seed{wildcards.seed}"}
    for method in config["methods"]:
        models[method] = f"results/student/{wildcards.task}/{method}/seed{wildcards.seed}"
    return models


def speed_results() -> list[str]:
    """What the report plots: random-weight runs, and the trained models of the first task and seed
    (speed does not depend on the task)."""
    return [f"results/speed/random-{dims}.csv" for dims in SPEED["random"]] + [
        f"results/speed/trained/{config['tasks'][0]}/seed{config['seeds'][0]}.csv"
    ]


rule speed_random:
    output:
        csv="results/speed/random-{dims}.csv",
        json="results/speed/random-{dims}.json",
    params:
        grid=speed_grid,
    log:
        "logs/speed/random-{dims}.log",
    threads: SPEED["threads"]
    resources:
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "moebert speed --random {wildcards.dims:q} --reference {params.grid}"
        " --output {output.csv:q} > {log:q} 2>&1"


rule speed_trained:
    input:
        unpack(speed_models),
    output:
        csv="results/speed/trained/{task}/seed{seed}.csv",
        json="results/speed/trained/{task}/seed{seed}.json",
    params:
        models=lambda wildcards, input: " ".join(
            f"--model {shlex.quote(f'{label}={path}')}" for label, path in input.items()
        ),
        grid=speed_grid,
        # The control's FFN has the expert width of the first method.
        width=lambda wildcards: _options(expert_dim=next(iter(config["methods"].values()))["expert_dim"]),
        tracking=tracking("speed", "all"),
    log:
        "logs/speed/trained/{task}/seed{seed}.log",
    threads: SPEED["threads"]
    resources:
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        # The dense-narrow control has the teacher's dimensions and the expert width, random weights.
        "moebert speed {params.models} --random {input.teacher:q} --random-models dense-narrow {params.width}"
        " {params.grid} --output {output.csv:q} {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

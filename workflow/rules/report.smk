# Tables, plots and the run manifest from every metrics file; no model is loaded, so the report
# regenerates from results/ without retraining.

import json
from pathlib import Path


# Cheap: on a cluster they run on the submit host instead of waiting in the queue.
localrules:
    resolved_config,
    report,


rule resolved_config:
    output:
        "results/config.json",
    log:
        "logs/resolved_config.log",
    resources:
        **job_resources("resolved_config"),
    params:
        # The whole validated config: any change rewrites it and so refreshes the manifest.
        config=SETTINGS.resolved,
    run:
        Path(output[0]).write_text(json.dumps(params.config, indent=2) + "\n")


rule report:
    input:
        metrics=all_metrics(),
        # Read through the metrics files: the per-example predictions behind the confidence intervals.
        examples=[path.replace(".json", ".examples.csv") for path in all_metrics()],
        config="results/config.json",
        # Hashed into the manifest: the exact data the numbers came from.
        data=expand("resources/data/{task}", task=SETTINGS.tasks),
        speed=speed_results(),
        # Not read: the exports link themselves on the parent run, which the report describes after them.
        exports=all_exports(),
    output:
        **(
            {f"ablations_{ext}": f"results/tables/ablations.{ext}" for ext in ("md", "csv", "tex")}
            if SETTINGS.sweep_points
            else {}
        ),
        **(
            {
                "claims": "results/tables/claims.md",
                "claims_csv": "results/tables/claims.csv",
            }
            if SETTINGS.claims
            else {}
        ),
        tables=result_tables(),
        # Every table as a page of its own, shown in the report's Results (a CSV would be a download link).
        pages=[
            report(
                path,
                caption=f"../report/{Path(path).stem}.rst",
                category="Results",
                subcategory="Tables",
                labels={"result": TABLE_TITLES[Path(path).stem]},
            )
            for path in result_pages()
        ],
        params="results/tables/params.md",
        params_csv="results/tables/params.csv",
        # One caption for all plots, which says what each one shows by its name.
        plots=report(
            directory("results/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Results",
            subcategory="Plots",
            labels={"result": "{name}"},
        ),
        # Included by the report's first page (workflow/report/workflow.rst).
        description="results/report/description.rst",
        manifest="results/manifest.json",
    log:
        "logs/report.log",
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        # Read by the captions of the report's results (the device and the models a plot shows).
        facts=report_facts,
        sweeps=json.dumps(SETTINGS.sweep_points),
        claims=json.dumps(SETTINGS.claims),
        tracking=report_tracking,
    shell:
        "moebert report --metrics {input.metrics:q} --config-file {input.config:q}"
        " --data-files {input.data:q} --speed {input.speed:q}"
        " --tables-dir $(dirname {output.params:q}) --plots-dir {output.plots:q}"
        " --manifest {output.manifest:q} --description {output.description:q}"
        " --sweeps {params.sweeps:q} --claims {params.claims:q}"
        " {params.tracking} --log-artifact {log:q} > {log:q} 2>&1"

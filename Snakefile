# MoEBERT reproduction: GLUE and SQuAD data -> fine-tuned teacher -> importance -> experts -> distilled MoE
# student -> evaluation -> tables and plots. Rules are thin calls of the `moebert` CLI.
#
#   snakemake --cores all                                      laptop default (config/config.yaml)
#   snakemake --cores all --configfile config/paper.yaml       the paper's setup
#   snakemake --cores all --profile slurm                      on a SLURM cluster (profile: slurm/)

import os

from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the laptop default instead of being deep-merged into it,
# so laptop-only settings (row caps, small experts) never leak into e.g. the paper run.
# Found beside this Snakefile, also when --directory runs the workflow elsewhere.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Every job reads what the fetching rules (prepare_data, fetch_model) put under resources/, so none needs
# the hub: compute nodes are often offline, and a silent download there would bypass resources/.
# Nor does a job phone home: telemetry off.
shell.prefix(
    "set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1"
    " MLFLOW_DISABLE_TELEMETRY=true; "
)
# The hub's and datasets' caches under resources/, not in a home directory (small, and shared by every job
# of a user on a cluster), unless the user has chosen where they go.
if "HF_HOME" not in os.environ:
    for variable, folder in (
        ("HF_HUB_CACHE", "hub"),
        ("HF_DATASETS_CACHE", "datasets"),
    ):
        os.environ.setdefault(variable, os.path.abspath(os.path.join("resources", "cache", folder)))


include: "workflow/rules/common.smk"


# The first page of `snakemake --report`: what ran, the config, the commit (written by the report rule).
report: "workflow/report/workflow.rst"


SETTINGS = load_config(config)
# Retries belong to the controlling Snakemake, which resubmits a failed job with the next attempt's memory and
# time; the Snakemake inside a cluster job would restart it at once in the same allocation, about to end.
RETRIES = 0 if workflow.remote_exec else SETTINGS.resources.retries
TRACKING = runs.Tracking.of(SETTINGS, workflow.basedir)


# A chain of jobs submitted as one cluster job (workflow/lib/jobs.py) runs its GPU jobs one after another
# on the GPUs of its largest: the GPU count is limited within each submitted job, not across them.
resource_scopes:
    gpu="local",


if "gpu" not in workflow.global_resources:  # --resources gpu=N on the command line wins
    workflow.register_resource("gpu", max(1, SETTINGS.resources.gpus))


wildcard_constraints:
    task="[a-z0-9_]+",
    method="[a-z][a-z0-9-]*",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/importance.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/speed.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


onstart:
    refuse_shared_sqlite(workflow.non_local_exec, workflow.executor_plugin.name)
    refuse_capped_threads(workflow.non_local_exec, workflow.global_resources.get("_cores"))
    refuse_second_controller(workflow.executor_plugin.name, workflow.workdir_init)
    warn_memory_capped(workflow.non_local_exec)


rule all:
    default_target: True
    input:
        result_tables(),
        "results/plots",
        "results/manifest.json",
        all_predictions(),
        all_exports(),

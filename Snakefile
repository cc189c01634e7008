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
shell.prefix("set -euo pipefail; export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; ")


include: "workflow/rules/common.smk"


SETTINGS = load_config(config)
CONFIG_HASH = config_hash(SETTINGS)
GIT_COMMIT = git_commit()
TRACKING_URI = (
    SETTINGS.tracking_uri
    or os.environ.get("MLFLOW_TRACKING_URI")
    or DEFAULT_TRACKING_URI
)


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


rule all:
    default_target: True
    input:
        result_tables(),
        "results/plots",
        "results/manifest.json",
        all_predictions(),
        all_exports(),

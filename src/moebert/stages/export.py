"""`moebert export`: a trained model as a folder in the Hugging Face layout with its model card, loadable without
this package (moebert.export.folder), optionally pushed to the hub; with tracking on, the folder is logged to the run
that trained the model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from moebert import tracking
from moebert.errors import MoebertError
from moebert.files import read_json

log = logging.getLogger(__name__)

HELP = "a trained model as a Hugging Face folder with its model card, loadable without moebert; or pushed"
# The rule whose run trained a model, by method: the teacher is fine-tuned, every student distilled.
TRAINED_BY = {"teacher": "finetune"}
TRAINING_RULE = "distill"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="a trained model directory (results/student/... or results/teacher/...)",
    )
    parser.add_argument("--output", required=True, help="the folder to write (replaced if it exists)")
    parser.add_argument(
        "--metrics",
        help="the model's metrics.json (moebert evaluate): its dev results and parameters go in the card",
    )
    parser.add_argument("--teacher-metrics", help="the teacher's metrics.json, for the card's comparison")
    parser.add_argument(
        "--config",
        help="the resolved workflow config (results/config.json): its part for this model goes in the card",
    )
    parser.add_argument(
        "--name",
        help="what the card calls the model (its title and model-index name; default: the --push-to-hub "
        "repository, else <task>-<method>-seed<seed> of --metrics, else the folder's name)",
    )
    parser.add_argument(
        "--base-model",
        help="hub id of the teacher's base model (default: the config's teacher.model)",
    )
    parser.add_argument(
        "--license",
        help="the card's license (default: the base model's where known, else a placeholder that --push-to-hub "
        "refuses)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the folder to this hub repository (created if missing), with the token of $HF_TOKEN or "
        "`hf auth login`",
    )
    parser.add_argument("--private", action="store_true", help="--push-to-hub: create the repository private")
    parser.add_argument(
        "--register",
        action="store_true",
        help="with tracking on: register the model in MLflow's model registry as <task>-<method>, its version "
        "aliased seed<seed>, and best where its main metric is the highest (needs --metrics)",
    )
    tracking.add_tracking_arguments(parser)


def run(args: argparse.Namespace) -> None:
    from moebert.export.folder import export
    from moebert.export.hub import push_to_hub

    if args.private and not args.push_to_hub:
        raise MoebertError("--private: only --push-to-hub creates a repository; leave it out")
    if args.register and not (tracking.is_on(args) and args.metrics):
        raise MoebertError(
            "--register: the model registry is MLflow's and its versions are ranked by their metrics: give "
            "--tracking-uri (or set MLFLOW_TRACKING_URI) and --metrics"
        )
    tags = dict(args.tag)
    folder = export(
        args.model,
        args.output,
        metrics=args.metrics,
        teacher_metrics=args.teacher_metrics,
        config=args.config,
        name=args.name,
        repo=args.push_to_hub,
        commit=tags.get("git_commit"),
        base_model=args.base_model,
        license=args.license,
    )
    print(f"exported {args.model} -> {folder}")
    if args.push_to_hub:
        print(f"pushed -> {push_to_hub(folder, args.push_to_hub, private=args.private)}")
    log_to_training_run(args, tags, [folder, *args.log_artifact])


def log_to_training_run(args: argparse.Namespace, tags: dict, paths) -> None:
    """The exported folder as a logged model of the run that trained the model (the run of the experiment
    tagged rule=distill, finetune for the teacher, and this job's task, method and seed), registered with
    --register, and this job's log under export/ of that run. Without those tags nothing is logged (a
    warning)."""
    if not tracking.is_on(args):
        return
    missing = [key for key in ("task", "method", "seed") if key not in tags]
    if missing:
        log.warning(
            "MLflow: --tag %s missing: cannot tell which run trained the model; the export is not logged",
            ", ".join(f"{key}=..." for key in missing),
        )
        return
    from moebert.export.metadata import card_metadata, card_name

    folder = Path(paths[0])
    rule = TRAINED_BY.get(tags["method"], TRAINING_RULE)
    wanted = {"rule": rule, **{key: tags[key] for key in ("task", "method", "seed")}}
    params = {
        "folder": str(folder),
        **{key: tags[key] for key in ("config_hash", "git_commit") if key in tags},
    }
    for index in card_metadata(folder).get("model-index", []):  # none without metrics
        params.update(_card_results(index))
    register = None
    if args.register:
        from moebert.reporting.report import main_result

        score = main_result(read_json(args.metrics)["results"])[1]
        register = (f"{tags['task']}-{tags['method']}", f"seed{tags['seed']}", score)
    model_id = tracking.log_exported_model(args, wanted, folder, card_name(folder), params, register)
    tracking.log_to_run(args, wanted, paths[1:], under="export")
    if model_id is not None:
        tracking.link_export(args, f"{tags['task']}/{tags['method']}/seed{tags['seed']}", model_id)


def _card_results(index: dict) -> dict:
    """The card's dev results as params of the logged model ("<split> <metric>": value)."""
    return {
        metric["name"]: metric["value"] for result in index.get("results", []) for metric in result["metrics"]
    }

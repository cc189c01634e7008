"""`moebert evaluate`: the metrics of a model on its task's dev split(s) as the paper defines them
(docs/method.md §8), its parameter counts and what its routers did; or those of the majority predictor. With
--examples also the per-example predictions the report's confidence intervals resample."""

from __future__ import annotations

import os
from pathlib import Path

from moebert import tracking
from moebert.config import from_args
from moebert.config.options import EvaluateOptions
from moebert.device import resolve_device
from moebert.errors import MoebertError
from moebert.files import atomic_file, write_json
from moebert.routing_diagnostics import flat_metrics
from moebert.stages.common import (
    add_answer_arguments,
    add_declared,
    add_device_argument,
    add_task_arguments,
    answer_settings,
    check_max_length,
    place,
    resolve_task,
    run_params,
)

HELP = "GLUE or SQuAD metrics and parameter counts of a model"
MAIN_METRIC = "main"  # the run's metric that every task has


def add_arguments(parser) -> None:
    add_task_arguments(parser)
    parser.add_argument("--model", help="the model to score")
    parser.add_argument(
        "--majority",
        action="store_true",
        help="score the trivial predictor instead: the most frequent train label (regression: the mean)",
    )
    parser.add_argument("--max-train-samples", type=int, help="--majority: the seeded train rows it counts")
    parser.add_argument("--output", required=True, help="metrics.json")
    parser.add_argument(
        "--examples",
        help="also write the per-example predictions here (CSV, one row per dev example: what the metrics are "
        "recomputed from); metrics.json records where",
    )
    parser.add_argument("--method", help="method label recorded in metrics.json")
    add_declared(parser, "task.max_eval_samples")
    add_answer_arguments(parser)
    add_device_argument(parser, experts=True)


def summary(record: dict) -> str:
    parts = [
        f"{key} " + ", ".join(f"{m} {v:.2f}" for m, v in res.items())
        for key, res in record["results"].items()
    ]
    return f"{record['task']}: " + "; ".join(parts) + f" (effective params {record['params']['effective']:,})"


def log_results(run, record: dict, path: Path) -> None:
    if run is None:
        return
    run.log_metrics(
        {f"{key}/{name}": value for key, res in record["results"].items() for name, value in res.items()}
    )
    # One column for every task in the runs table: the first result's main metric, as the tables rank it.
    from moebert.reporting.report import main_result

    run.log_metrics({MAIN_METRIC: main_result(record["results"])[1]})
    run.log_metrics({f"params_{k}": v for k, v in record["params"].items()})
    run.log_metrics(flat_metrics(record.get("routing", {})))
    run.log_artifact(path)
    if "examples" in record:
        run.log_artifact(path.parent / record["examples"])


def write_examples(examples, output: str, metrics_path: str) -> str:
    """The per-example table as CSV; returns its path relative to the metrics file's directory."""
    with atomic_file(output) as tmp:
        examples.to_csv(tmp, index=False)
    return os.path.relpath(output, Path(metrics_path).parent)


def run(args) -> None:
    from moebert.evaluation import NO_PARAMS, evaluate, evaluate_majority, metrics_record
    from moebert.models.loading import load_tokenizer, load_trained, parameter_counts
    from moebert.tasks import QaTask

    task = resolve_task(args)
    options = from_args(EvaluateOptions, args)
    if (options.model is None) == (not options.majority):
        raise MoebertError("give either --model or --majority")
    if options.majority and isinstance(task, QaTask):
        raise MoebertError(
            f"--majority: {task.name} has no label to count (extractive QA); leave the majority "
            f"row out for QA tasks"
        )
    if options.max_train_samples is not None and not options.majority:
        raise MoebertError("--max-train-samples: only --majority counts train rows; leave it out")
    if options.majority and args.experts_implementation is not None:
        raise MoebertError("--experts-implementation: --majority scores no model; leave it out")
    if not options.majority:
        device = resolve_device(args.device)
        tokenizer = load_tokenizer(options.model)
        model = place(load_trained(options.model, task), device, args)
        check_max_length(model, options.max_length)
    with tracking.tracked_run(args, run_params(args)) as run_:
        if options.majority:
            results, counts, prediction, examples = evaluate_majority(
                task, args.data, options.max_train_samples, options.max_eval_samples, args.seed
            )
            extra = {"prediction": prediction}
            params, model_path = NO_PARAMS, None
        else:
            qa = answer_settings(task, options) if isinstance(task, QaTask) else None
            results, counts, extra = evaluate(
                model,
                tokenizer,
                task,
                args.data,
                options.max_length or task.max_length,
                options.max_eval_samples,
                args.seed,
                qa=qa,
            )
            examples = extra.pop("examples", None)
            params, model_path = parameter_counts(model), options.model
        if args.examples is not None:
            extra["examples"] = write_examples(examples, args.examples, args.output)
        record = metrics_record(task, params, model_path, results, counts, args.method, args.seed, **extra)
        write_json(args.output, record)
        log_results(run_, record, Path(args.output))
    print(summary(record))

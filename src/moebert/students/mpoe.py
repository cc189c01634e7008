"""The MPOE student (Gao et al.; docs/method.md §9): every FFN matrix of the teacher as an MPO whose central
tensor all N experts share, each expert starting as the dense FFN; a Switch-style token gate routes."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

from torch import nn

from moebert.backbones import backbone_of
from moebert.cost import Dims
from moebert.models import mpo
from moebert.models.mpo import DEFAULT_FORWARD
from moebert.students.base import ROUTER_NOTES, StudentKind, StudentOptionError, init_gates, moe_student

MPOE_CITATION = """@inproceedings{gao-etal-2022-mpoe,
  title = {Parameter-Efficient Mixture-of-Experts Architecture for Pre-trained Language Models},
  author = {Gao, Ze-Feng and Liu, Peiyu and Zhao, Wayne Xin and Lu, Zhong-Yi and Wen, Ji-Rong},
  booktitle = {Proceedings of the 29th International Conference on Computational Linguistics (COLING)},
  year = {2022},
  eprint = {2203.01104},
  archivePrefix = {arXiv},
}"""


def adapt_mpo(
    teacher: nn.Module,
    num_experts: int,
    max_bond: int | None = None,
    forward: str = DEFAULT_FORWARD,
    in_factors: list[int] | None = None,
    out_factors: list[int] | None = None,
    seed: int = 0,
) -> nn.Module:
    """The MPOE student of `teacher`: full bonds (max_bond None) make every expert exactly the dense FFN."""
    backbone_of(teacher.config).check_student(MPOE.name)
    student = moe_student(
        teacher,
        ffn="mpoe",
        num_experts=num_experts,
        router="gate-token",
        mpo_max_bond=max_bond,
        mpo_forward=forward,
        mpo_in_factors=in_factors,
        mpo_out_factors=out_factors,
    )
    backbone = student.backbone
    contract = backbone.contract
    for layer_s, layer_t in zip(backbone.layer_list(student), backbone.layer_list(teacher), strict=True):
        contract.moe_module(layer_s).load_dense(contract.read(layer_t), contract.norm(layer_t))
    init_gates(student, seed)
    return student


class MPOE(StudentKind):
    name = "mpoe"
    sweep_keys = ("num_experts",)
    defaults: ClassVar[dict[str, Any]] = {"router": "gate-token"}

    def check(self, options: dict) -> None:
        if options["router"] != "gate-token":
            raise StudentOptionError(
                "router",
                f"student mpoe is routed by a learned token gate; set router: "
                f"gate-token (not {options['router']})",
            )
        if (options["mpo_in_factors"] is None) != (options["mpo_out_factors"] is None):
            raise StudentOptionError(
                "mpo_in_factors", "set both mpo_in_factors and mpo_out_factors, or neither (for the defaults)"
            )

    def dims(self, teacher: Dims, options: dict) -> Dims:
        """Full-width experts; stored: per matrix the central tensor once and every expert's auxiliaries."""
        factors = (options["mpo_in_factors"], options["mpo_out_factors"])
        if factors[0] is None:
            factors = mpo.factors_for((teacher.hidden, teacher.ffn))
        stored = 0
        for in_factors, out_factors in (factors, factors[::-1]):  # the output matrix: the factors swapped
            shapes = mpo.tensor_shapes(in_factors, out_factors, options["mpo_max_bond"])
            sizes = [math.prod(shape) for shape in shapes]
            central = sizes.pop(mpo.central_index(len(shapes)))
            stored += central + options["num_experts"] * sum(sizes)
        rebuilt = (
            options["num_experts"] * 2 * teacher.hidden * teacher.ffn
            if options["mpo_forward"] == "rebuild"
            else 0
        )
        return replace(teacher, moe=True, stored_ffn=stored, rebuilt_ffn=rebuilt)

    def build(self, teacher, options, *, seed, orders, token_counts):
        student = adapt_mpo(
            teacher,
            options["num_experts"],
            max_bond=options["mpo_max_bond"],
            forward=options["mpo_forward"],
            in_factors=options["mpo_in_factors"],
            out_factors=options["mpo_out_factors"],
            seed=seed,
        )
        layer = student.moe_layers()[0]
        matrices = {
            name: {
                "in_factors": m.in_factors,
                "out_factors": m.out_factors,
                "shapes": [list(t.shape) for t in m.tensors(0)],
            }
            for name, m in (("intermediate", layer.w_in), ("output", layer.w_out))
        }
        return student, {
            "num_experts": options["num_experts"],
            "max_bond": options["mpo_max_bond"],
            "matrices": matrices,
        }

    card_title = "an MPOE student"
    card_text = (
        "MPOE (Gao et al., COLING 2022, [arXiv:2203.01104](https://arxiv.org/abs/2203.01104)) builds "
        "the experts of each FFN by matrix product operator (MPO) decomposition: every FFN matrix "
        "becomes a chain of small tensors whose central tensor, which holds most of the parameters, "
        "is shared by all experts, while each expert owns its small auxiliary tensors. A learned top-1 "
        "gate routes every token (Switch style). Here the student starts from the fine-tuned teacher "
        "(every expert exactly its FFN at full bond) and is trained with MoEBERT's layer-wise "
        "distillation (Zuo et al., NAACL 2022, [arXiv:2204.07675](https://arxiv.org/abs/2204.07675))."
    )
    card_tags = ("mixture-of-experts", "mpoe", "mpo")
    card_citations = (MPOE_CITATION,)

    def card_notes(self, settings: dict) -> list[str]:
        if "gradient_mask" not in settings:
            return []
        mask = settings["gradient_mask"]
        return [
            "no gradient mask on the central tensors"
            if mask is None
            else f"MPOE's gradient mask: the central tensors' gradient dropped with probability {mask} at each step"
        ]

    def card_rows(self, model) -> list[list[str]]:
        from moebert.models.mpoe_layer import mpo_factors

        c = model.config
        in_factors, out_factors = mpo_factors(c)
        layer = model.moe_layers()[0]
        central = layer.w_in.central.numel() + layer.w_out.central.numel()
        return [
            ["experts per layer", str(c.num_experts)],
            ["FFN width", str(c.intermediate_size)],
            [
                "MPO factors (hidden -> FFN)",
                f"in {in_factors}, out {out_factors} (the FFN -> hidden matrix swaps them)",
            ],
            [
                "MPO bonds",
                f"{mpo.bond_dims(in_factors, out_factors, c.mpo_max_bond)} "
                + ("(full: exact)" if c.mpo_max_bond is None else f"(at most {c.mpo_max_bond})"),
            ],
            [
                "central tensor (shared)",
                (
                    f"{list(layer.w_in.central.shape)} and {list(layer.w_out.central.shape)}, "
                    f"{central:,} parameters per layer"
                ),
            ],
            ["router", f"{c.router}" + ROUTER_NOTES.get(c.router, "")],
            ["MPO forward", str(c.mpo_forward)],
        ]

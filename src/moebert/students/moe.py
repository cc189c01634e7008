"""The MoE student (MoEBERT §3; docs/method.md §3): each fine-tuned FFN split into experts that share its most
important neurons and deal the rest round-robin by importance rank, or by an ablation's construction."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from moebert.backbones import backbone_of
from moebert.cost import Dims
from moebert.errors import MoebertError
from moebert.models.routing import GATE_ROUTERS, HASH_ROUTERS, hash_balance_table, hash_random_table
from moebert.students.base import (
    MOEBERT_METHOD,
    ROUTER_NOTES,
    StudentKind,
    StudentOptionError,
    init_gates,
    moe_student,
)

# What a card says of a gate router's gate_scale (models/moe_layer.py); a pre-norm layer's experts have no
# LayerNorm or residual of their own, so there both values scale the branch (models/glu_layer.py).
GATE_SCALE_NOTES = {
    "output": "the gate probability scales the expert's output after its residual and LayerNorm (the reference's)",
    "branch": "the gate probability scales the FFN branch before the residual and LayerNorm (the Switch Transformer's)",
}
PRE_NORM_GATE_SCALE = (
    "the gate probability scales the FFN branch (a pre-norm layer: the residual is outside the experts)"
)


def check_expert_shape(ffn_dim: int, num_experts: int, expert_dim: int, shared_dim: int) -> None:
    """Fail loudly where the reference silently builds narrower experts."""
    if num_experts < 1 or expert_dim < 1 or shared_dim < 0:
        raise MoebertError(
            f"need num_experts >= 1, expert_dim >= 1, shared_dim >= 0 "
            f"(got {num_experts}, {expert_dim}, {shared_dim})"
        )
    if expert_dim > ffn_dim:
        raise MoebertError(
            f"expert_dim={expert_dim} exceeds the FFN width {ffn_dim}; use expert_dim <= {ffn_dim}"
        )
    if shared_dim > expert_dim:
        raise MoebertError(
            f"shared_dim={shared_dim} exceeds expert_dim={expert_dim}; use shared_dim <= {expert_dim}"
        )
    available = shared_dim + (ffn_dim - shared_dim) // num_experts
    if available < expert_dim:
        # s + (d - s) // N >= E  <=>  s >= (N E - d) / (N - 1), up to rounding.
        min_shared = next(
            s for s in range(shared_dim, expert_dim + 1) if s + (ffn_dim - s) // num_experts >= expert_dim
        )
        raise MoebertError(
            f"cannot build {num_experts} experts of width {expert_dim} from an FFN of width {ffn_dim} sharing "
            f"{shared_dim} neurons: each expert gets only {shared_dim} shared + {(ffn_dim - shared_dim) // num_experts}"
            f" private = {available} neurons. Use expert_dim <= {available}, or shared_dim >= {min_shared}, "
            f"or fewer experts"
        )


def expert_indices(
    order: torch.Tensor, num_experts: int, expert_dim: int, shared_dim: int
) -> list[torch.Tensor]:
    """Neuron indices of each expert: the first `shared_dim` of `order`, then rest[e::N] by rank."""
    shared, rest = order[:shared_dim], order[shared_dim:]
    return [torch.cat([shared, rest[e::num_experts]])[:expert_dim] for e in range(num_experts)]


def balanced_kmeans(points: torch.Tensor, k: int, seed: int, iterations: int = 25) -> torch.Tensor:
    """Cluster id of each row of `points`, k clusters of equal size (MoEfication's construction).

    Written here because sklearn's KMeans has no size constraint. The assignment step is greedy: pairs
    (point, centroid) are taken closest first while the centroid has room, so every cluster ends with
    exactly len(points) / k members; the centroids are then the means, until the assignment settles."""
    n = len(points)
    if n % k:
        raise MoebertError(f"balanced k-means needs the FFN width {n} to be a multiple of num_experts={k}")
    capacity = n // k
    points = points.double()
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(n, generator=generator)[:k]]
    assignment = None
    for _ in range(iterations):
        distances = torch.cdist(points, centroids)
        new, room = [-1] * n, [capacity] * k
        for flat in torch.argsort(distances.reshape(-1)).tolist():
            point, cluster = divmod(flat, k)
            if new[point] < 0 and room[cluster]:
                new[point] = cluster
                room[cluster] -= 1
        if new == assignment:
            break
        assignment = new
        labels = torch.tensor(assignment)
        centroids = torch.stack([points[labels == c].mean(0) for c in range(k)])
    return torch.tensor(assignment)


def construct(
    construction: str,
    order: torch.Tensor,
    w_in: torch.Tensor,
    num_experts: int,
    expert_dim: int,
    shared_dim: int,
    seed: int,
) -> list[torch.Tensor]:
    """Neuron indices of each expert of one layer under a construction (the paper's ablations):

    importance  the `shared_dim` most important neurons shared, the rest dealt by rank (MoEBERT, §3)
    inverse     the same with the ranking reversed: the least important shared (the paper's Figure 2)
    random      the same on a seeded permutation: no importance at all
    kmeans      balanced k-means of the W1 rows, one cluster per expert, nothing shared (MoEfication);
                an expert narrower than its cluster keeps the cluster's most important neurons
    """
    if construction == "importance":
        return expert_indices(order, num_experts, expert_dim, shared_dim)
    if construction == "inverse":
        return expert_indices(order.flip(0), num_experts, expert_dim, shared_dim)
    if construction == "random":
        permutation = torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))
        return expert_indices(permutation, num_experts, expert_dim, shared_dim)
    if construction == "kmeans":
        if shared_dim:
            raise MoebertError(f"construction 'kmeans' shares no neurons: use shared_dim 0, not {shared_dim}")
        clusters = balanced_kmeans(w_in, num_experts, seed)
        ranked = clusters[order]  # cluster of each neuron, most important first
        return [order[ranked == e][:expert_dim] for e in range(num_experts)]
    raise MoebertError(f"unknown construction {construction!r}; choose one of {', '.join(CONSTRUCTIONS)}")


CONSTRUCTIONS = ("importance", "inverse", "random", "kmeans")
# What an ablation's experts are cut from, as a model card says it (importance is MoEBERT's own).
ABLATION_NOTES = {
    "inverse": "the neurons ranked in reverse, so that the least important are shared (the paper's Figure 2)",
    "random": "a seeded random permutation of the neurons in place of their importance ranking",
    "kmeans": (
        "balanced k-means clusters of each FFN's neurons, one per expert, nothing shared (MoEfication's "
        "construction)"
    ),
}
# The Switch-style baseline of MPOE's comparison: every expert a whole copy of the dense FFN.
SWITCH_TITLE = "a Switch-style MoE student (copies of the dense FFN)"
SWITCH_TEXT = (
    "A Switch-style mixture of experts, the baseline of MPOE's comparison (Gao et al., COLING 2022, "
    "[arXiv:2203.01104](https://arxiv.org/abs/2203.01104)): every expert starts as an exact copy of the "
    "teacher's fine-tuned FFN (sparse upcycling: every neuron shared, `shared_dim` = `expert_dim` = the FFN "
    "width), and the router sends each token to one of them. The experts come apart in training, which uses "
    "MoEBERT's layer-wise distillation from the dense teacher (Zuo et al., NAACL 2022, "
    "[arXiv:2204.07675](https://arxiv.org/abs/2204.07675)): a token costs what it costs in the teacher, while "
    "the model holds one FFN per expert."
)


def adapt(
    teacher: nn.Module,
    orders: list[torch.Tensor],
    num_experts: int,
    expert_dim: int,
    shared_dim: int,
    router: str = "hash-random",
    seed: int = 0,
    token_counts: torch.Tensor | None = None,
    expert_dropout: float = 0.1,
    construction: str = "importance",
    shared: str = "copied",
    gate_sentence_batch1: str = "scale",
    hash_balance: str = "reference",
    gate_scale: str = "output",
) -> tuple[nn.Module, list[list[list[int]]]]:
    """Build the MoE student from a fine-tuned dense task model (classifier or QA), its experts cut from each
    FFN by `construction` (see `construct`), each with a copy of the FFN's output bias and LayerNorm. With
    `shared="tied"` the shared neurons (the first `shared_dim` of every expert) are stored once.

    Returns the model and the chosen neuron indices [layer][expert][neuron]."""
    base = teacher.config
    check_expert_shape(base.intermediate_size, num_experts, expert_dim, shared_dim)
    if len(orders) != base.num_hidden_layers:
        raise MoebertError(f"importance has {len(orders)} layers but the model has {base.num_hidden_layers}")
    if router == "hash-balance" and token_counts is None:
        raise MoebertError("router 'hash-balance' needs training-split token counts (give --task and --data)")
    student = moe_student(
        teacher,
        num_experts=num_experts,
        expert_dim=expert_dim,
        shared_dim=shared_dim,
        router=router,
        expert_dropout=expert_dropout,
        shared=shared,
        gate_sentence_batch1=gate_sentence_batch1,
        gate_scale=gate_scale,
    )
    config = student.config
    indices = []
    with torch.no_grad():
        backbone = student.backbone
        contract = backbone.contract
        for layer_s, layer_t, order in zip(
            backbone.layer_list(student), backbone.layer_list(teacher), orders
        ):
            dense = contract.read(layer_t)
            chosen = construct(construction, order, dense.inputs, num_experts, expert_dim, shared_dim, seed)
            contract.moe_module(layer_s).load_experts(dense, chosen, contract.norm(layer_t))
            indices.append([idx.tolist() for idx in chosen])
        if router in HASH_ROUTERS:
            layers, vocab = config.num_hidden_layers, config.vocab_size
            table = (
                hash_random_table(layers, vocab, num_experts, seed)
                if router == "hash-random"
                else hash_balance_table(token_counts, layers, num_experts, seed, hash_balance)
            )
            student.hash_table.copy_(table)
        else:
            init_gates(student, seed)
    return student, indices


def token_counts(input_ids: list[list[int]], vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in a tokenised split (for hash-balance)."""
    flat = torch.tensor([t for ids in input_ids for t in ids], dtype=torch.long)
    return torch.bincount(flat, minlength=vocab_size)


class MoE(StudentKind):
    """Experts cut from each FFN by a construction (MoEBERT; with every neuron shared behind a token gate, N
    copies of the dense FFN: the Switch-style baseline)."""

    name = "moe"
    sweep_keys = ("router", "num_experts", "expert_dim", "shared_dim", "construction", "shared")
    needs_importance = True
    computes_experts = True

    def unused(self, key: str, options: dict) -> str | None:
        router = options["router"]
        if key == "load_balance" and router not in GATE_ROUTERS:
            return (
                f"router {router} is a fixed table with no gate to balance; leave it out or use a gate router"
            )
        if key == "gate_sentence_batch1" and router != "gate-sentence":
            return f"only router gate-sentence routes whole sentences (this one is {router}); leave it out"
        if key == "gate_scale" and router not in GATE_ROUTERS:
            return f"router {router} is a fixed table with no gate probability to scale by; leave it out"
        if key == "hash_balance" and router != "hash-balance":
            return f"only router hash-balance builds a balanced table (this one is {router}); leave it out"
        return super().unused(key, options)

    def check(self, options: dict) -> None:
        shared, width = options["shared_dim"], options["expert_dim"]
        if shared > width:
            raise StudentOptionError(
                "shared_dim",
                f"{shared} is larger than expert_dim {width} (the shared neurons are part of every expert)",
            )
        if options["construction"] == "kmeans" and shared:
            raise StudentOptionError(
                "shared_dim", f"construction kmeans shares no neurons; set shared_dim: 0 (not {shared})"
            )
        if options["shared"] == "tied" and shared == width:
            raise StudentOptionError(
                "shared",
                f"every neuron of an expert is shared (shared_dim = expert_dim = "
                f"{width}): tied experts would have no neuron of their own; use "
                f"shared copied",
            )

    def dims(self, teacher: Dims, options: dict) -> Dims:
        h, n, width, shared = (
            teacher.hidden,
            options["num_experts"],
            options["expert_dim"],
            options["shared_dim"],
        )
        own = width - shared if options["shared"] == "tied" else width  # the neurons each expert stores
        stored = teacher.ffn_matrices * h * (n * own + (width - own))
        return replace(teacher, ffn=width, moe=True, stored_ffn=stored)

    def needs_train_tokens(self, options: dict) -> bool:
        return options["router"] == "hash-balance"

    def build(self, teacher, options, *, seed, orders, token_counts):
        built = {
            key: options[key] for key in ("num_experts", "expert_dim", "shared_dim", "construction", "shared")
        }
        student, indices = adapt(
            teacher,
            orders,
            seed=seed,
            token_counts=token_counts,
            **{key: options[key] for key in self.keys if key in options and key not in self.distill_keys},
        )
        return student, {**built, "indices": indices}

    card_title = "a MoEBERT student"
    card_text = MOEBERT_METHOD
    card_tags = ("mixture-of-experts",)

    def describe(self, config, settings: dict) -> tuple[str, str]:
        if config.shared_dim == config.expert_dim == config.intermediate_size:
            return SWITCH_TITLE, SWITCH_TEXT
        construction = settings.get("construction", "importance")
        if construction in ABLATION_NOTES:
            return self.card_title, (
                f"{self.card_text} This model is an ablation of that construction (`construction: "
                f"{construction}`): its experts are cut from {ABLATION_NOTES[construction]}."
            )
        return self.card_title, self.card_text

    @staticmethod
    def _gate_scale_note(config) -> str:
        if backbone_of(config).contract.name == "glu":
            return PRE_NORM_GATE_SCALE
        return GATE_SCALE_NOTES[config.gate_scale]

    def card_rows(self, model) -> list[list[str]]:
        c = model.config
        tied = c.shared == "tied" and c.shared_dim > 0
        layout = "stored once (tied): one dense FFN every token runs" if tied else "a copy in every expert"
        return [
            ["experts per layer", str(c.num_experts)],
            ["expert width (neurons)", f"{c.expert_dim} (of the teacher's FFN width {c.intermediate_size})"],
            ["shared neurons", f"{c.shared_dim}, {layout}; {c.expert_dim - c.shared_dim} private per expert"],
            ["router", f"{c.router}" + ROUTER_NOTES.get(c.router, "")],
            *([["gate scale", self._gate_scale_note(c)]] if c.router in GATE_ROUTERS else []),
            ["expert dropout", str(c.expert_dropout)],
        ]

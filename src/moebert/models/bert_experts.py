"""The routed experts of a MoE layer: N BERT FFNs (fc1 -> activation -> fc2, with biases, no gate), run
through transformers' experts interface (`transformers.integrations.moe`); the kernels added here to that
interface (eager's loop, padded_bmm, auto_cpu) also serve the GLU experts of models/glu_layer.py.

`forward(hidden_states [tokens, hidden], top_k_index [tokens, k], top_k_weights [tokens, k])` returns the
weighted sum of each token's experts. Which kernel computes it is the model's experts implementation:
"eager" (one matmul pair per expert that has tokens), "batched_mm" (every token multiplies its own copy of
its expert's weights: cheap for a handful of tokens, gigabytes for a batch), "grouped_mm" (tokens sorted by
expert, one grouped GEMM per weight: torch's grouped kernel on a recent GPU and on CPU; no host
synchronisation) or this module's "padded_bmm" (every expert's tokens padded to the largest group, one
batched GEMM per weight over the stacked experts; one host read, the largest group's size). "auto" on a CPU
is "auto_cpu": padded_bmm or eager, chosen per forward by the size of the groups.
`model.set_experts_implementation(name)` switches it for every layer of a MoEBERT model.

The interface reads the choice from the experts module's `config._experts_implementation`. Here that
"config" is an `ExpertsImplementation` the model's layers share, not the model's config: transformers checks
a model config's choice against every PreTrainedModel it builds, and the plain BertModel inside a BERT head
refuses any experts implementation.

Weights are stored as the interface's transposed layout [experts, in, out], so a token's product is x @ w.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.integrations.moe import ExpertsInterface, use_experts_implementation

from moebert.backbones import backbone_of


def eager_experts_forward(
    self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The "eager" implementation: each expert's tokens gathered, one matmul pair, added back weighted.
    The group sizes are read on the host once (a device sync on a GPU, which grouped_mm avoids)."""
    out = torch.zeros_like(hidden_states)
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    start = 0
    for e, count in enumerate(torch.bincount(flat, minlength=self.num_experts).tolist()):
        if count:
            slots = order[start : start + count]
            tokens = torch.div(slots, top_k_index.shape[-1], rounding_mode="floor")
            y = self.expert(e, hidden_states.index_select(0, tokens))
            out.index_add_(0, tokens, y * top_k_weights.reshape(-1, 1).index_select(0, slots))
        start += count
    return out


def _slot_ranks(flat: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(each slot's row within its expert's group, in slot order; each expert's number of slots). Ranks from
    a running count per expert: a stable grouping without sorting the slots. `flat` holds int64 expert ids
    (gather's index type)."""
    running = torch.cumsum(flat.unsqueeze(1) == torch.arange(num_experts, device=flat.device), 0)
    counts = running[-1] if len(flat) else running.new_zeros(num_experts)
    return running.gather(1, flat.unsqueeze(1)).squeeze(1) - 1, counts


def padded_bmm_experts_forward(
    self: nn.Module,
    hidden_states: torch.Tensor,
    top_k_index: torch.Tensor,
    top_k_weights: torch.Tensor,
    groups: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The "padded_bmm" implementation: the slots (token, its j-th expert) placed into [experts, largest group,
    hidden] (zero rows pad the smaller groups; within a group the slots keep their order), fc1 -> act -> fc2
    as two batched GEMMs over the stacked experts with the biases fused in, and each slot's row read back,
    weighted and summed over its token's experts. A few GEMMs of a quarter of the rows run below a CPU's GEMM
    efficiency; one batched call over all experts recovers part of it. The padded rows cost their
    multiply-adds and receive no gradient (their outputs are never read). `groups`: _slot_ranks's result,
    where the caller has it."""
    num_top_k, hidden = top_k_index.shape[-1], hidden_states.shape[-1]
    flat = top_k_index.reshape(-1)
    if not len(flat):
        return torch.zeros_like(hidden_states)
    rank, counts = groups if groups is not None else _slot_ranks(flat, self.num_experts)
    rows = int(counts.max())  # the padded groups' shape: a host read
    position = flat * rows + rank  # each slot's row in the padded groups, flattened
    slots = hidden_states if num_top_k == 1 else hidden_states.repeat_interleave(num_top_k, 0)
    padded = slots.new_zeros(self.num_experts * rows, hidden).index_copy_(0, position, slots)
    padded = padded.view(self.num_experts, rows, hidden)
    # BERT's experts (fc1 -> act -> fc2) and a GLU's (gate_up -> act(first half) * second half -> down), as
    # the interface's has_gate / has_bias say.
    up_proj = self.gate_up_proj if self.has_gate else self.up_proj
    if self.has_bias:
        up_bias = self.gate_up_proj_bias if self.has_gate else self.up_proj_bias
        up = torch.baddbmm(up_bias.unsqueeze(1), padded, up_proj)
    else:
        up = torch.bmm(padded, up_proj)
    up = self._apply_gate(up) if self.has_gate else self.act_fn(up)
    if self.has_bias:
        down = torch.baddbmm(self.down_proj_bias.unsqueeze(1), up, self.down_proj)
    else:
        down = torch.bmm(up, self.down_proj)
    y = down.view(-1, hidden).index_select(0, position) * top_k_weights.reshape(-1, 1)
    return y if num_top_k == 1 else y.view(-1, num_top_k, hidden).sum(1)


# transformers' experts interface with this module's kernels added: an instance's own mapping, so the
# library-wide registry that other models dispatch through is left as it is.
EXPERTS_FUNCTIONS = ExpertsInterface()
EXPERTS_FUNCTIONS["padded_bmm"] = padded_bmm_experts_forward

# "auto" on a CPU, per forward: padded_bmm while the experts' groups are small (the largest at most this many
# rows: a gate that sends most tokens to one expert would pad every other group to its size), the eager loop
# above. benchmarks/auto_threshold.py (12 MoE FFN layers of BERT-base dims, 4 experts of 768, hash routes, 2
# threads of an AMD EPYC, quiet), padded_bmm / eager: 0.81 at 128 tokens (about 32 rows an expert), 1.02 at
# 1024 (256 rows), 1.13 at 2048, 1.06 at 4096; benchmarks/moe_speed.py's layers at 1024 tokens read the other
# way (1.09 against 1.22 of dense-narrow): near 256 rows the two are within noise (README, Benchmarks).
PADDED_BMM_MAX_ROWS = 256


def auto_cpu_experts_forward(
    self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The "auto_cpu" implementation: padded_bmm or eager by the forward's largest group (above)."""
    groups = _slot_ranks(top_k_index.reshape(-1), self.num_experts)
    if int(groups[1].max()) > PADDED_BMM_MAX_ROWS:
        return eager_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    return padded_bmm_experts_forward(self, hidden_states, top_k_index, top_k_weights, groups)


EXPERTS_FUNCTIONS["auto_cpu"] = auto_cpu_experts_forward

IMPLEMENTATIONS = ("eager", "batched_mm", "grouped_mm", "padded_bmm")
# What "auto" picks per device type. CPU: auto_cpu, by the size of the groups (above; torch's grouped GEMM
# is no faster there, README, Benchmarks). CUDA: grouped_mm, not yet measured, for the host synchronisation
# it avoids; run benchmarks/gpu_check.py on one.
EXPERTS_DEFAULT = {"cpu": "auto_cpu", "cuda": "grouped_mm"}


def resolve_implementation(name: str, device_type: str, dims: list[int], dtype: torch.dtype) -> str:
    """`name`, or for "auto" the default of the device type; eager where the grouped kernel cannot take the
    experts' dimensions (torch's grouped GEMM needs rows of a multiple of 16 bytes)."""
    if name != "auto":
        return name
    chosen = EXPERTS_DEFAULT.get(device_type, "eager")
    if chosen == "grouped_mm" and any(dim * dtype.itemsize % 16 for dim in dims):
        return "eager"
    return chosen


class ExpertsImplementation:
    """Which kernel the experts of one model run (see the module docstring)."""

    def __init__(self, name: str = "eager"):
        self._experts_implementation = name


@use_experts_implementation(
    experts_interface=EXPERTS_FUNCTIONS, is_transposed=True, has_bias=True, has_gate=False
)
class BertExperts(nn.Module):
    def __init__(self, implementation: ExpertsImplementation, config, width: int):
        super().__init__()
        n, h = config.num_experts, config.hidden_size
        self.num_experts = n
        self.up_proj = nn.Parameter(
            torch.empty(n, h, width)
        )  # rows of BertIntermediate.dense.weight, transposed
        self.up_proj_bias = nn.Parameter(torch.zeros(n, width))
        self.down_proj = nn.Parameter(
            torch.empty(n, width, h)
        )  # columns of BertOutput.dense.weight, transposed
        self.down_proj_bias = nn.Parameter(torch.zeros(n, h))
        for w in (self.up_proj, self.down_proj):
            nn.init.normal_(w, std=config.initializer_range)
        self.act_fn = ACT2FN[backbone_of(config.model_type).activation(config)]

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `e` on the rows x [rows, hidden]: the FFN of a BERT whose intermediate width is the expert's."""
        hidden = self.act_fn(torch.addmm(self.up_proj_bias[e], x, self.up_proj[e]))
        return torch.addmm(self.down_proj_bias[e], hidden, self.down_proj[e])

    forward = eager_experts_forward  # the "eager" implementation; the interface dispatches the others

    def expert_parameters(self) -> int:
        """Parameters one more expert adds."""
        return sum(
            p[0].numel() for p in (self.up_proj, self.up_proj_bias, self.down_proj, self.down_proj_bias)
        )

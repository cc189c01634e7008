"""The MPOE feed-forward layer (docs/method.md §9): N experts per FFN matrix that share one MPO central tensor.

It replaces the pair `BertIntermediate` + `BertOutput` of a `BertLayer` and keeps BertOutput's contract,
`forward(hidden_states, input_tensor)`, with dropout, residual and LayerNorm after the expert, as MoEFFN
does. Each of the two FFN matrices is an MPO chain (moebert.models.mpo) whose central tensor is a single
Parameter used by every expert, while each expert owns its auxiliary tensors and biases. The auxiliaries
of all experts are stacked [experts, ...] so the layer saves as a few safetensors entries. Matrices are
(in, out), a token's product being x @ W, as in moebert.models.mpo.

A learned top-1 gate (Switch style: the chosen probability scales the expert output) routes the tokens
and returns a load-balancing loss. Two ways to run an expert, which give the same outputs:
- "rebuild": form the expert's dense matrix from its chain, then one matmul on its tokens (the released
  code). The rebuild costs about as much as a few hundred tokens' matmuls, once per expert and forward;
- "contract": pass the tokens through the chain one tensor at a time. At full bond the central tensor is
  as large as the matrix and meets every combination of the other indices, so each token costs hundreds
  of dense matmuls; it only pays at small bonds and a handful of tokens.
Measured at MiniLM size (hidden 384, ffn 1536, 4 experts, full bond, length 128, 2 CPU threads): batch 1
rebuild 0.13-0.34 s, contract 1.5-2.4 s; batch 32 rebuild 0.4-0.8 s, contract 47-53 s (the dense FFN:
0.02 s and 0.35 s). Hence the default. With bonds cut to 16, contract wins at batch 1 only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from transformers.activations import ACT2FN

from moebert.backbones import backbone_of
from moebert.errors import MoebertError
from moebert.models import mpo
from moebert.models.routing import GateRouter


class MPOExperts(nn.Module):
    """One (in, out) matrix with its bias as N experts: a shared central tensor, per-expert auxiliaries.

    `auxiliary[m]` stacks, for every expert, the m-th tensor of the chain with the centre left out."""

    def __init__(
        self,
        num_experts: int,
        in_factors: Sequence[int],
        out_factors: Sequence[int],
        max_bond: int | Sequence[int] | None,
        std: float,
    ):
        super().__init__()
        self.in_factors, self.out_factors, self.max_bond = list(in_factors), list(out_factors), max_bond
        shapes = mpo.tensor_shapes(in_factors, out_factors, max_bond)
        self.center = mpo.central_index(len(shapes))
        self.num_experts = num_experts
        self.central = nn.Parameter(torch.empty(shapes[self.center]))
        self.auxiliary = nn.ParameterList(
            nn.Parameter(torch.empty(num_experts, *shape))
            for k, shape in enumerate(shapes)
            if k != self.center
        )
        self.bias = nn.Parameter(torch.zeros(num_experts, math.prod(out_factors)))
        self.reset_parameters(std)
        self._rebuilt: tuple[tuple, dict[int, torch.Tensor]] | None = None

    def reset_parameters(self, std: float) -> None:
        """Random experts in the canonical form a teacher's chain has: orthonormal auxiliaries (left of the
        centre by columns, right of it by rows) and a Gaussian centre. The matrix then has exactly the
        centre's norm, which is set to that of a dense init of standard deviation `std`."""
        with torch.no_grad():
            for m, stacked in enumerate(self.auxiliary):
                rank, i, j, next_rank = stacked.shape[1:]
                for e in range(self.num_experts):
                    t = stacked[e]
                    nn.init.orthogonal_(
                        t.view(rank * i * j, next_rank) if m < self.center else t.view(rank, -1)
                    )
        cells = math.prod(self.in_factors) * math.prod(self.out_factors)
        nn.init.normal_(self.central, std=std * math.sqrt(cells / self.central.numel()))

    def tensors(self, e: int) -> list[torch.Tensor]:
        """Expert e's chain."""
        own = [t[e] for t in self.auxiliary]
        return [*own[: self.center], self.central, *own[self.center :]]

    def load_dense(self, W: torch.Tensor, bias: torch.Tensor) -> None:
        """Every expert becomes the (in, out) matrix W with `bias`: the canonical chain around the centre,
        decomposed in float64 so that a full-bond chain reproduces a float32 matrix to its last digits."""
        chain = mpo.decompose(W.detach().double(), self.in_factors, self.out_factors, self.max_bond).tensors
        chain = mpo.canonicalize(chain, self.center)
        with torch.no_grad():
            self.central.copy_(chain.pop(self.center))
            for stacked, t in zip(self.auxiliary, chain):
                stacked.copy_(t.expand_as(stacked))
            self.bias.copy_(bias.expand_as(self.bias))

    def forward(self, e: int, x: torch.Tensor, mode: str) -> torch.Tensor:
        """x [rows, in] through expert e: x @ W_e + b_e."""
        if mode == "rebuild":
            return torch.addmm(self.bias[e], x, self.matrix(e))
        return mpo.contract(x, self.tensors(e)) + self.bias[e]

    def matrix(self, e: int) -> torch.Tensor:
        """Expert e's dense matrix. In inference (eval mode, no autograd) it is rebuilt once and kept until a
        tensor of the chain changes, so evaluation and serving pay no rebuild per forward (at the memory
        of N dense matrices, a Switch layer's); in training it is rebuilt each time, through autograd."""
        if self.training or torch.is_grad_enabled():
            self._rebuilt = None
            return mpo.reconstruct(self.tensors(e))
        # In-place updates (optimiser steps, load_state_dict) bump _version and .to() gives new storage:
        # either invalidates the cache. Edits through .data bump nothing and are not seen.
        key = tuple((p.data_ptr(), p._version) for p in (self.central, *self.auxiliary))
        if self._rebuilt is None or self._rebuilt[0] != key:
            self._rebuilt = (key, {})
        matrices = self._rebuilt[1]
        if e not in matrices:
            matrices[e] = mpo.reconstruct(self.tensors(e))
        return matrices[e]

    def expert_parameters(self) -> int:
        """Parameters one more expert adds: its auxiliaries and bias."""
        return sum(t[0].numel() for t in (*self.auxiliary, self.bias))


class MPOEFFN(nn.Module):
    """Needs from `config`: hidden_size, intermediate_size, num_experts, initializer_range, and the activation,
    dropout and norm epsilon under its backbone's names. Optional MPO settings: mpo_in_factors / mpo_out_factors (the
    intermediate matrix's factorisation, hidden -> ffn; the output matrix uses them swapped; None: the
    defaults of moebert.models.mpo.factors_for), mpo_max_bond (an int or one per bond; None: full bond, so
    experts start exactly equal to the dense FFN) and mpo_forward ("rebuild" or "contract")."""

    def __init__(self, config, implementation=None):
        # `implementation` is the experts-interface kernel the sliced experts share (models/bert_experts.py);
        # MPO experts contract their own tensors (mpo_forward), so it does not apply to them.
        super().__init__()
        h, n = config.hidden_size, config.num_experts
        in_factors, out_factors = mpo_factors(config)
        max_bond = getattr(config, "mpo_max_bond", None)
        self.forward_mode = getattr(config, "mpo_forward", mpo.DEFAULT_FORWARD)
        if self.forward_mode not in mpo.FORWARD_MODES:
            raise MoebertError(
                f"unknown mpo_forward '{self.forward_mode}'; choose one of {', '.join(mpo.FORWARD_MODES)}"
            )
        self.num_experts = n
        self.w_in = MPOExperts(
            n, in_factors, out_factors, max_bond, config.initializer_range
        )  # hidden -> ffn
        self.w_out = MPOExperts(
            n, out_factors, in_factors, max_bond, config.initializer_range
        )  # ffn -> hidden
        backbone = backbone_of(config.model_type)
        self.act = ACT2FN[backbone.activation(config)]
        self.dropout = nn.Dropout(backbone.dropout(config))
        self.LayerNorm = nn.LayerNorm(h, eps=backbone.norm_eps(config))
        self.router = GateRouter(h, n, per_sentence=False)
        # Set by the model before a forward, read after it.
        self.attention_mask: torch.Tensor | None = None
        self.balance_loss: torch.Tensor | None = None

    def load_dense(self, dense, layer_norm: nn.LayerNorm) -> None:
        """Make every expert the dense FFN (`dense`: backbones.FFNWeights) with its LayerNorm: exact up to
        float error at full bond, the best chain of the allowed bonds otherwise. The router keeps its init."""
        self.w_in.load_dense(dense.up.T, dense.up_bias)
        self.w_out.load_dense(dense.down.T, dense.down_bias)
        self.LayerNorm.load_state_dict(layer_norm.state_dict())

    def central_parameters(self) -> list[nn.Parameter]:
        """The shared central tensors, whose gradient the MPOE gradient mask drops."""
        return [self.w_in.central, self.w_out.central]

    def expert_parameters(self) -> int:
        """Parameters one more expert adds: its auxiliaries and biases."""
        return self.w_in.expert_parameters() + self.w_out.expert_parameters()

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert e on the rows x [rows, hidden], without residual: a BERT FFN with expert e's matrices."""
        hidden = self.act(self.w_in(e, x, self.forward_mode))
        return self.w_out(e, hidden, self.forward_mode)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        """LayerNorm(residual + dropout(every token through its expert, scaled by its gate probability)). The
        tokens are grouped by expert for the experts and put back in token order once."""
        expert, scale, self.balance_loss = self.router(hidden_states, self.attention_mask)
        width = hidden_states.shape[-1]
        x = hidden_states.reshape(-1, width)
        order = torch.argsort(expert, stable=True)
        grouped = x.index_select(0, order)
        counts = torch.bincount(expert, minlength=self.num_experts).tolist()
        y = torch.cat([self.expert(e, rows) for e, rows in enumerate(grouped.split(counts)) if len(rows)])
        y = torch.empty_like(y).index_copy_(0, order, y) * scale.unsqueeze(-1)
        return self.LayerNorm(input_tensor.reshape(-1, width) + self.dropout(y)).view_as(input_tensor)


def mpo_factors(config) -> tuple[list[int], list[int]]:
    """(in, out) factors of the intermediate matrix from the config, defaults where it names none."""
    in_factors, out_factors = (
        getattr(config, "mpo_in_factors", None),
        getattr(config, "mpo_out_factors", None),
    )
    if in_factors is None and out_factors is None:
        return mpo.factors_for((config.hidden_size, config.intermediate_size))
    if in_factors is None or out_factors is None:
        raise MoebertError("set both mpo_in_factors and mpo_out_factors, or neither (for the defaults)")
    mpo.check_factors((config.hidden_size, config.intermediate_size), in_factors, out_factors)
    return list(in_factors), list(out_factors)

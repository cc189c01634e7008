"""Matrix product operators (docs/method.md §9): a matrix W (I x J) as a chain of n small 4-way tensors.

With I = i_1 * ... * i_n and J = j_1 * ... * j_n, entry W[(i_1..i_n), (j_1..j_n)] (row-major
multi-indices, i_1 the most significant) is the product of the matrices T_k[:, i_k, j_k, :] along the
chain. Tensors are shaped [r_left, i_k, j_k, r_right] with end bonds 1. The matrix decomposed is the one
a token multiplies from the left, y = x @ W, so W is (in, out): an nn.Linear's weight transposed.

The middle tensor is the central tensor that MPOE experts share; the others are auxiliary tensors. At
full bond the central tensor alone has I * J parameters for BERT's FFN shapes: the chain is exact, not a
compression, and only the small auxiliaries are copied per expert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from moebert.errors import MoebertError

# How a token meets an MPO matrix: the matrix rebuilt from its chain, then one matmul (the faster at full
# bond, measured in moebert.models.mpoe_layer), or the token contracted through the chain.
FORWARD_MODES = ("rebuild", "contract")
DEFAULT_FORWARD = FORWARD_MODES[0]

# (in, out) matrix -> (in_factors, out_factors). BERT-base as published (docs/method.md §9). MiniLM halves the
# last factor of both, which keeps the auxiliaries at the same share of the matrix as BERT-base (7.8%).
DEFAULT_FACTORS: dict[tuple[int, int], tuple[list[int], list[int]]] = {
    (768, 3072): ([3, 4, 4, 4, 4], [4, 4, 8, 6, 4]),
    (3072, 768): ([4, 4, 8, 6, 4], [3, 4, 4, 4, 4]),
    (384, 1536): ([3, 4, 4, 4, 2], [4, 4, 8, 6, 2]),
    (1536, 384): ([4, 4, 8, 6, 2], [3, 4, 4, 4, 2]),
}


@dataclass
class MPO:
    """A decomposition with what truncation threw away: `discarded[k]` is the root of the summed squared
    singular values dropped at bond k, so ||W - reconstruct(tensors)||_F <= error_bound."""

    tensors: list[torch.Tensor]
    in_factors: list[int]
    out_factors: list[int]
    discarded: list[float]

    @property
    def error_bound(self) -> float:
        return math.sqrt(sum(eps**2 for eps in self.discarded))


def factors_for(shape: tuple[int, int]) -> tuple[list[int], list[int]]:
    """The default factorisation of an (in, out) matrix."""
    shape = tuple(shape)
    if shape not in DEFAULT_FACTORS:
        known = ", ".join(f"{i}x{j}" for i, j in DEFAULT_FACTORS)
        raise MoebertError(
            f"no default MPO factorisation for a {shape[0]}x{shape[1]} matrix (defaults exist for {known}); "
            f"pass in_factors and out_factors (mpo_in_factors / mpo_out_factors), n factors each, whose "
            f"products are {shape[0]} and {shape[1]}"
        )
    return DEFAULT_FACTORS[shape]


def central_index(n: int) -> int:
    """The middle tensor of a chain of n (the (n+1)/2-th, counting from 1, for odd n)."""
    return n // 2


def check_factors(shape: tuple[int, int], in_factors: Sequence[int], out_factors: Sequence[int]) -> None:
    if len(in_factors) != len(out_factors) or not in_factors:
        raise MoebertError(
            f"MPO needs as many in factors as out factors, at least one each (got {list(in_factors)} and "
            f"{list(out_factors)})"
        )
    for name, factors, dim in (("in", in_factors, shape[0]), ("out", out_factors, shape[1])):
        if math.prod(factors) != dim or min(factors) < 1:
            raise MoebertError(
                f"MPO {name} factors {list(factors)} multiply to {math.prod(factors)}, but the matrix "
                f"{name} dimension is {dim}; choose positive factors whose product is {dim}"
            )


def full_bonds(in_factors: Sequence[int], out_factors: Sequence[int]) -> list[int]:
    """The n-1 inner bond dimensions at which the chain is exact: the rank bound of each cut."""
    sizes = [i * j for i, j in zip(in_factors, out_factors)]
    return [min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)]


def _bond_limits(max_bond: int | Sequence[int] | None, n: int) -> list[float]:
    if max_bond is None:
        return [math.inf] * (n - 1)
    limits = [max_bond] * (n - 1) if isinstance(max_bond, int) else list(max_bond)
    if len(limits) != n - 1 or min(limits, default=1) < 1:
        raise MoebertError(
            f"max_bond must be a positive int or {n - 1} positive ints, one per bond (got {max_bond})"
        )
    return limits


def bond_dims(
    in_factors: Sequence[int], out_factors: Sequence[int], max_bond: int | Sequence[int] | None = None
) -> list[int]:
    """The inner bonds of `canonicalize(decompose(...), central_index(n))`, so that a layer can be built
    before it is filled.

    Truncating a bond also caps its neighbours: the left-to-right SVD keeps at most r_left * i * j values,
    and the sweep back to the centre leaves a tensor at most i * j * r_right rows."""
    sizes = [i * j for i, j in zip(in_factors, out_factors)]
    dims = [1]
    for size, full, limit in zip(
        sizes, full_bonds(in_factors, out_factors), _bond_limits(max_bond, len(sizes))
    ):
        dims.append(int(min(dims[-1] * size, full, limit)))
    dims.append(1)
    for k in range(len(sizes) - 1, central_index(len(sizes)), -1):
        dims[k] = min(dims[k], sizes[k] * dims[k + 1])
    return dims[1:-1]


def tensor_shapes(
    in_factors: Sequence[int], out_factors: Sequence[int], max_bond: int | Sequence[int] | None = None
) -> list[tuple[int, int, int, int]]:
    dims = [1, *bond_dims(in_factors, out_factors, max_bond), 1]
    return [(dims[k], i, j, dims[k + 1]) for k, (i, j) in enumerate(zip(in_factors, out_factors))]


def decompose(
    W: torch.Tensor,
    in_factors: Sequence[int],
    out_factors: Sequence[int],
    max_bond: int | Sequence[int] | None = None,
) -> MPO:
    """Sequential SVD, left to right, keeping at most `max_bond` singular values per bond (None: all, an
    exact decomposition). Every tensor but the last is left-orthonormal; the last carries the norm."""
    if W.ndim != 2:
        raise MoebertError(f"MPO decomposes a matrix, got a tensor of shape {list(W.shape)}")
    check_factors(tuple(W.shape), in_factors, out_factors)
    n = len(in_factors)
    limits = _bond_limits(max_bond, n)
    # [i1..in, j1..jn] -> [i1, j1, i2, j2, ...]: each tensor's two physical indices side by side.
    rest = W.reshape(*in_factors, *out_factors).permute(*(p for k in range(n) for p in (k, n + k)))
    tensors, discarded, rank = [], [], 1
    for k in range(n - 1):
        U, S, Vh = thin_svd(rest.reshape(rank * in_factors[k] * out_factors[k], -1))
        keep = int(min(len(S), limits[k]))
        discarded.append(S[keep:].square().sum().sqrt().item())
        tensors.append(U[:, :keep].reshape(rank, in_factors[k], out_factors[k], keep))
        rest, rank = S[:keep, None] * Vh[:keep], keep
    tensors.append(rest.reshape(rank, in_factors[-1], out_factors[-1], 1))
    return MPO(tensors, list(in_factors), list(out_factors), discarded)


def thin_svd(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reduced SVD through a QR of M first. The chain's matrices are far from square (192 x 12288 for
    BERT-base), where the SVD of the small square factor R is several times faster on CPU than LAPACK's
    SVD of M itself."""
    if M.shape[0] < M.shape[1]:
        U, S, Vh = thin_svd(M.T)
        return Vh.T, S, U.T
    Q, R = torch.linalg.qr(M)
    U, S, Vh = torch.linalg.svd(R)
    return Q @ U, S, Vh


def reconstruct(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The (I, J) matrix of a chain."""
    acc = tensors[0]
    for t in tensors[1:]:
        rows, cols = acc.shape[1] * t.shape[1], acc.shape[2] * t.shape[2]
        # [1, I', J', r] x [r, i, j, r'] -> [1, I', i, J', j, r']: new indices the least significant.
        acc = torch.einsum("aIJr,rijs->aIiJjs", acc, t).reshape(1, rows, cols, t.shape[3])
    return acc.reshape(acc.shape[1], acc.shape[2])


def contract(x: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """x @ reconstruct(tensors) for rows x [tokens, I], one tensor at a time, without the dense matrix.

    The running state is [tokens * J_done, r, I_rest]: the out indices produced so far, the bond, and
    the in indices still to consume (the next one the most significant)."""
    state = x.reshape(x.shape[0], 1, -1)
    for t in tensors:
        rank, i, j, next_rank = t.shape
        rows, rest = state.shape[0], state.shape[2] // i
        # Bring (bond, i_k) last to meet the tensor as one matrix product, then j_k next to the outputs.
        state = state.reshape(rows, rank, i, rest).permute(0, 3, 1, 2).reshape(rows * rest, rank * i)
        state = (state @ t.reshape(rank * i, j * next_rank)).reshape(rows, rest, j, next_rank)
        state = state.permute(0, 2, 3, 1).reshape(rows * j, next_rank, rest)
    return state.reshape(x.shape[0], -1)


def canonicalize(tensors: Sequence[torch.Tensor], center: int) -> list[torch.Tensor]:
    """Mixed-canonical form: tensors left of `center` left-orthonormal, right of it right-orthonormal.

    The chain and its matrix are unchanged, and since the orthonormal parts preserve norms, the centre
    alone carries ||W||_F: the central tensor holds the singular values (the "core information")."""
    tensors = list(tensors)
    for k in range(center):
        rank, i, j, _ = tensors[k].shape
        Q, R = torch.linalg.qr(tensors[k].reshape(rank * i * j, -1))
        tensors[k] = Q.reshape(rank, i, j, -1)
        tensors[k + 1] = torch.einsum("ab,bijs->aijs", R, tensors[k + 1])
    for k in range(len(tensors) - 1, center, -1):
        _, i, j, next_rank = tensors[k].shape
        # LQ of the [r, i*j*r'] matrix, as the QR of its transpose.
        Q, R = torch.linalg.qr(tensors[k].reshape(tensors[k].shape[0], -1).T)
        tensors[k] = Q.T.reshape(-1, i, j, next_rank)
        tensors[k - 1] = torch.einsum("rijs,as->rija", tensors[k - 1], R)
    return tensors


def parameter_count(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)

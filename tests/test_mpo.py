"""MPO decomposition (docs/method.md §9): exactness at full bond, the truncation bound, the canonical form, and the
shapes METHOD states for BERT-base, each against a computation written out here."""

import itertools
import math

import pytest
import torch

from moebert.errors import MoebertError
from moebert.models import mpo


def random_matrix(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def chain_entry(tensors, rows: tuple[int, ...], cols: tuple[int, ...]) -> torch.Tensor:
    """W[(i_1..i_n), (j_1..j_n)] as the product of the matrices T_k[:, i_k, j_k, :] along the chain."""
    product = torch.ones(1, 1, dtype=tensors[0].dtype)
    for t, i, j in zip(tensors, rows, cols):
        product = product @ t[:, i, j, :]
    return product[0, 0]


def test_reconstruct_is_the_product_of_the_chain_entry_by_entry():
    in_factors, out_factors, bonds = [2, 3, 2], [3, 1, 2], [1, 4, 5, 1]
    gen = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(bonds[k], i, j, bonds[k + 1], generator=gen, dtype=torch.float64)
        for k, (i, j) in enumerate(zip(in_factors, out_factors))
    ]
    W = mpo.reconstruct(tensors)
    assert W.shape == (12, 6)
    for rows in itertools.product(*map(range, in_factors)):
        for cols in itertools.product(*map(range, out_factors)):
            # Row-major multi-indices: the first factor is the most significant.
            r = (rows[0] * 3 + rows[1]) * 2 + rows[2]
            c = (cols[0] * 1 + cols[1]) * 2 + cols[2]
            torch.testing.assert_close(W[r, c], chain_entry(tensors, rows, cols))


@pytest.mark.parametrize("shape", [(768, 3072), (3072, 768)])
def test_bert_base_default_factors_are_exact_with_the_published_bonds(shape):
    W = random_matrix(*shape)
    decomposition = mpo.decompose(W, *mpo.factors_for(shape))
    assert relative_error(mpo.reconstruct(decomposition.tensors), W) < 1e-5
    assert decomposition.discarded == [0.0] * 4
    dims = [1, 12, 192, 384, 16, 1]
    assert mpo.full_bonds(*mpo.factors_for(shape)) == dims[1:-1]
    assert [(t.shape[0], t.shape[3]) for t in decomposition.tensors] == list(itertools.pairwise(dims))
    sizes = [mpo.parameter_count([t]) for t in decomposition.tensors]
    assert mpo.central_index(5) == 2 and sizes[2] == 2_359_296  # as many as the dense matrix
    assert sum(sizes) - sizes[2] == 184_720  # "about 185k"


@pytest.mark.parametrize("shape", [(384, 1536), (1536, 384)])
def test_minilm_default_factors_are_exact(shape):
    in_factors, out_factors = mpo.factors_for(shape)
    assert len(in_factors) == 5 and (math.prod(in_factors), math.prod(out_factors)) == shape
    W = random_matrix(*shape)
    assert relative_error(mpo.reconstruct(mpo.decompose(W, in_factors, out_factors).tensors), W) < 1e-5


@pytest.mark.parametrize(
    "in_factors, out_factors",
    [([2, 3, 5], [7, 1, 2]), ([6], [4]), ([1], [1]), ([4, 3], [2, 5]), ([2, 1, 3, 2], [3, 2, 2, 1])],
)
def test_any_factorisation_is_exact_at_full_bond(in_factors, out_factors):
    W = random_matrix(math.prod(in_factors), math.prod(out_factors))
    decomposition = mpo.decompose(W, in_factors, out_factors)
    assert relative_error(mpo.reconstruct(decomposition.tensors), W) < 1e-12
    assert [t.shape[3] for t in decomposition.tensors[:-1]] == mpo.full_bonds(in_factors, out_factors)
    assert [tuple(t.shape) for t in decomposition.tensors] == mpo.tensor_shapes(in_factors, out_factors)


def test_full_bonds_are_the_smaller_side_of_each_cut():
    # Sizes i_k * j_k: 14, 3, 10 -> cuts 14 | 30 and 42 | 10.
    assert mpo.full_bonds([2, 3, 5], [7, 1, 2]) == [14, 10]
    assert mpo.full_bonds([6], [4]) == []


@pytest.mark.parametrize("max_bond", [1, 3, [5, 50, 20, 3], [12, 192, 2, 16]])
def test_truncation_error_is_within_the_discarded_mass(max_bond):
    in_factors, out_factors = [3, 2, 2, 2, 2], [2, 2, 4, 3, 2]
    W = random_matrix(48, 96, seed=1)
    decomposition = mpo.decompose(W, in_factors, out_factors, max_bond=max_bond)
    error = (W - mpo.reconstruct(decomposition.tensors)).norm().item()
    bound = math.sqrt(sum(eps**2 for eps in decomposition.discarded))
    assert decomposition.error_bound == pytest.approx(bound)
    assert 0 < error <= bound * (1 + 1e-9)
    assert mpo.parameter_count(decomposition.tensors) < mpo.parameter_count(
        mpo.decompose(W, in_factors, out_factors).tensors
    )
    # The first bond's discarded mass is that of the SVD of W with (i1, j1) as rows.
    first = W.reshape(3, 16, 2, 48).permute(0, 2, 1, 3).reshape(6, -1)
    kept = max_bond if isinstance(max_bond, int) else max_bond[0]
    singular = torch.linalg.svdvals(first)
    assert decomposition.discarded[0] == pytest.approx(singular[kept:].square().sum().sqrt().item(), abs=1e-9)


def test_a_bond_truncated_to_one_keeps_the_best_rank_one_split():
    # n = 2: one bond, so the chain is the truncated SVD of W reshaped [(i1 j1), (i2 j2)] (Eckart-Young).
    W = random_matrix(6, 4, seed=2)
    decomposition = mpo.decompose(W, [3, 2], [2, 2], max_bond=1)
    singular = torch.linalg.svdvals(W.reshape(3, 2, 2, 2).permute(0, 2, 1, 3).reshape(6, 4))
    error = (W - mpo.reconstruct(decomposition.tensors)).norm().item()
    assert error == pytest.approx(singular[1:].square().sum().sqrt().item())
    assert decomposition.discarded[0] == pytest.approx(error)


def assert_left_orthonormal(t: torch.Tensor) -> None:
    m = t.reshape(-1, t.shape[3])
    torch.testing.assert_close(m.T @ m, torch.eye(m.shape[1], dtype=m.dtype))


def assert_right_orthonormal(t: torch.Tensor) -> None:
    m = t.reshape(t.shape[0], -1)
    torch.testing.assert_close(m @ m.T, torch.eye(m.shape[0], dtype=m.dtype))


@pytest.mark.parametrize("center", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("max_bond", [None, [3, 40, 2, 5]])
def test_canonical_form_keeps_the_matrix_and_puts_the_norm_in_the_centre(center, max_bond):
    in_factors, out_factors = [3, 2, 2, 2, 2], [2, 2, 4, 3, 2]
    W = random_matrix(48, 96, seed=3)
    tensors = mpo.decompose(W, in_factors, out_factors, max_bond=max_bond).tensors
    canonical = mpo.canonicalize(tensors, center)
    torch.testing.assert_close(mpo.reconstruct(canonical), mpo.reconstruct(tensors))
    assert canonical[center].norm().item() == pytest.approx(mpo.reconstruct(tensors).norm().item())
    for t in canonical[:center]:
        assert_left_orthonormal(t)
    for t in canonical[center + 1 :]:
        assert_right_orthonormal(t)


@pytest.mark.parametrize(
    "max_bond", [None, 4, [3, 40, 2, 5], [12, 192, 1, 16], [1, 1, 50, 50], [50, 50, 50, 1]]
)
def test_bond_dims_predict_the_canonical_chain_around_the_centre(max_bond):
    # A layer is built from these shapes before a teacher's chain is copied into it.
    in_factors, out_factors = [3, 2, 2, 2, 2], [2, 2, 4, 3, 2]
    tensors = mpo.decompose(random_matrix(48, 96, seed=4), in_factors, out_factors, max_bond=max_bond).tensors
    canonical = mpo.canonicalize(tensors, mpo.central_index(5))
    assert [tuple(t.shape) for t in canonical] == mpo.tensor_shapes(in_factors, out_factors, max_bond)


@pytest.mark.parametrize("max_bond", [None, 2])
def test_contract_equals_the_product_with_the_dense_matrix(max_bond):
    W = random_matrix(30, 14, seed=5)
    tensors = mpo.decompose(W, [2, 3, 5], [7, 1, 2], max_bond=max_bond).tensors
    x = random_matrix(9, 30, seed=6)
    torch.testing.assert_close(mpo.contract(x, tensors), x @ mpo.reconstruct(tensors))


def test_wrong_factor_products_name_the_factors_product_and_dimension():
    W = random_matrix(12, 10)
    with pytest.raises(
        MoebertError, match=r"in factors \[2, 5\] multiply to 10, but the matrix in dimension is 12"
    ):
        mpo.decompose(W, [2, 5], [2, 5])
    with pytest.raises(MoebertError, match=r"out factors \[3, 3\] multiply to 9, .* dimension is 10"):
        mpo.decompose(W, [3, 4], [3, 3])
    with pytest.raises(MoebertError, match="as many in factors as out factors"):
        mpo.decompose(W, [3, 4], [10])
    with pytest.raises(MoebertError, match="max_bond"):
        mpo.decompose(W, [3, 4], [2, 5], max_bond=[2, 2])


def test_unknown_shape_without_factors_says_how_to_pass_them():
    with pytest.raises(MoebertError, match=r"no default MPO factorisation for a 100x400 .*mpo_in_factors"):
        mpo.factors_for((100, 400))

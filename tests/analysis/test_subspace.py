"""φ and Table 7's projections on matrices whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from lora_repro.analysis.subspace import amplification, subspace_similarity


def orthonormal(d: int, k: int, seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0]


def with_rows(basis: np.ndarray, singular_values: list[float], seed: int = 1) -> np.ndarray:
    """An r x d matrix whose right-singular vectors are `basis`' columns, in order (any left rotation)."""
    left = orthonormal(len(singular_values), len(singular_values), seed)
    return left @ np.diag(singular_values) @ basis.T


def test_identical_subspaces_give_one_everywhere() -> None:
    basis = orthonormal(32, 4)
    phi = subspace_similarity(with_rows(basis, [4, 3, 2, 1]), with_rows(basis, [8, 6, 4, 2], seed=2))
    np.testing.assert_allclose(phi, np.ones((4, 4)), atol=1e-12)


def test_orthogonal_subspaces_give_zero() -> None:
    basis = orthonormal(32, 6)
    phi = subspace_similarity(with_rows(basis[:, :2], [2, 1]), with_rows(basis[:, 2:], [4, 3, 2, 1]))
    assert phi.shape == (2, 4)
    np.testing.assert_allclose(phi, 0, atol=1e-12)


def test_nested_subspaces_share_exactly_their_common_directions() -> None:
    # A1's top direction is A2's second; A1's second is orthogonal to all of A2.
    basis = orthonormal(16, 4)
    a1 = with_rows(basis[:, [0, 3]], [2, 1])
    a2 = with_rows(basis[:, [1, 0, 2]], [3, 2, 1])
    phi = subspace_similarity(a1, a2)
    np.testing.assert_allclose(phi[0], [0, 1, 1], atol=1e-12)          # i = 1: found once j reaches 2
    np.testing.assert_allclose(phi[1], [0, 1 / 2, 1 / 2], atol=1e-12)  # i = 2: 1 shared of min(2, j)


def test_random_subspaces_overlap_about_max_over_d() -> None:
    d = 400
    phi = subspace_similarity(orthonormal(d, 8, 1).T, orthonormal(d, 64, 2).T)
    assert phi[7, 63] == pytest.approx(64 / d, rel=0.25)


def test_planted_update_has_its_amplification_factor() -> None:
    # W = Σ s_k u_k v_kᵀ; ΔW = 30 · u_3 v_3ᵀ lies along W's third direction (s_3 = 1.5): factor 30 / 1.5 = 20.
    d_out, d_in, s = 24, 20, np.array([9.0, 4.0, 1.5, 1.0, 0.5])
    u, v = orthonormal(d_out, 5, 3), orthonormal(d_in, 5, 4)
    weight = u @ np.diag(s) @ v.T
    delta = 30.0 * np.outer(u[:, 2], v[:, 2])
    result = amplification(delta, weight, r=1)
    assert result.delta_norm == pytest.approx(30.0)
    assert result.weight_norm == pytest.approx(float(np.sqrt((s ** 2).sum())))
    assert result.in_delta_dirs == pytest.approx(1.5)
    assert result.in_weight_dirs == pytest.approx(9.0)    # W's own top direction: its top singular value
    assert result.factor == pytest.approx(20.0)
    two = amplification(delta + 1e-3 * np.outer(u[:, 0], v[:, 0]), weight, r=2)
    assert two.in_weight_dirs == pytest.approx(float(np.hypot(9.0, 4.0)))


def test_random_directions_see_little_of_a_low_rank_weight() -> None:
    u, v = orthonormal(300, 1, 5), orthonormal(300, 1, 6)
    weight = 10.0 * u @ v.T
    result = amplification(weight, weight, r=2, seed=0)
    assert result.in_delta_dirs == pytest.approx(10.0)
    assert result.in_random_dirs < 0.5  # E ≈ 10 · 2 / 300

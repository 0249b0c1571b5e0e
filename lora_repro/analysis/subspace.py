"""The measures of the paper's Section 7, on plain matrices.

* Subspace similarity (Figures 3 and 4): for LoRA down-projections A1 (r1 x d) and A2 (r2 x d), with U1, U2
  their right-singular vectors (columns, in R^d, by decreasing singular value),
  φ(A1, A2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j), in [0, 1]: 1 when one top subspace contains the
  other, 0 when they are orthogonal. Random subspaces of R^d give about max(i, j) / d.
* Amplification (Table 7): ΔW's top-r directions U, V (left, right singular vectors) and ‖Uᵀ W V‖_F, the part
  of W in ΔW's subspace; beside it W's own top-r directions and random ones, ‖ΔW‖_F, ‖W‖_F, and the factor
  ‖ΔW‖_F / ‖Uᵀ W V‖_F (the paper's "amplification factor", 21.5 for GPT-3's W_q at r = 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Amplification", "amplification", "right_singular_vectors", "subspace_similarity"]


def right_singular_vectors(a: np.ndarray) -> np.ndarray:
    """The right-singular vectors of `a` (r x d) as the columns of a d x r matrix, largest singular value first."""
    _, _, vh = np.linalg.svd(np.asarray(a, dtype=np.float64), full_matrices=False)
    return vh.T


def subspace_similarity(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """φ(A1, A2, i, j) for every i <= r1 and j <= r2, as an r1 x r2 array (entry [i-1, j-1]).

    One SVD per matrix: ‖U1[:, :i]ᵀ U2[:, :j]‖²_F is a 2-D prefix sum of the squared entries of U1ᵀ U2.
    """
    overlap = np.square(right_singular_vectors(a1).T @ right_singular_vectors(a2))
    prefix = overlap.cumsum(axis=0).cumsum(axis=1)
    i, j = np.meshgrid(np.arange(1, overlap.shape[0] + 1), np.arange(1, overlap.shape[1] + 1), indexing="ij")
    return prefix / np.minimum(i, j)


@dataclass(frozen=True)
class Amplification:
    """Table 7's numbers for one ΔW against its W (Frobenius norms; r is ΔW's rank)."""

    r: int
    delta_norm: float      # ‖ΔW‖_F
    weight_norm: float     # ‖W‖_F
    in_delta_dirs: float   # ‖Uᵀ W V‖_F, U, V: ΔW's top-r singular vectors
    in_weight_dirs: float  # the same with W's own top-r singular vectors
    in_random_dirs: float  # the same with random orthonormal r-frames

    @property
    def factor(self) -> float:
        """‖ΔW‖_F / ‖Uᵀ W V‖_F: how much ΔW amplifies the directions of W it lies along."""
        return self.delta_norm / self.in_delta_dirs


def amplification(delta: np.ndarray, weight: np.ndarray, r: int, seed: int = 0,
                  weight_svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Amplification:
    """Table 7's projections of `weight` (d_out x d_in) onto `r` directions of `delta`, of itself and random ones.

    Args:
        delta: ΔW = s·B A, the learned update, same shape as `weight`.
        weight: the frozen pretrained W.
        r: how many singular directions (ΔW's rank, the LoRA rank).
        seed: seed of the random frames.
        weight_svd: `np.linalg.svd(weight, full_matrices=False)`, if known (one W serves many runs).
    """
    delta, weight = np.asarray(delta, dtype=np.float64), np.asarray(weight, dtype=np.float64)

    def projected(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.linalg.norm(u.T @ weight @ v))

    du, _, dvh = np.linalg.svd(delta, full_matrices=False)
    wu, _, wvh = weight_svd if weight_svd is not None else np.linalg.svd(weight, full_matrices=False)
    rng = np.random.default_rng(seed)
    ru = np.linalg.qr(rng.standard_normal((weight.shape[0], r)))[0]
    rv = np.linalg.qr(rng.standard_normal((weight.shape[1], r)))[0]
    return Amplification(r=r, delta_norm=float(np.linalg.norm(delta)), weight_norm=float(np.linalg.norm(weight)),
                         in_delta_dirs=projected(du[:, :r], dvh[:r].T),
                         in_weight_dirs=projected(wu[:, :r], wvh[:r].T), in_random_dirs=projected(ru, rv))

"""Similarity of factors: the one measure every step that matches components uses.

Tracking across k (:mod:`hyperspy_nmfdecide.phases`), restart agreement
(:mod:`hyperspy_nmfdecide.decide`) and component roles (:mod:`hyperspy_nmfdecide.components`)
all compare factors by the cosine of their angle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_similarity"]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b) cosine similarity of the rows of ``a`` and ``b`` (0 for an all-zero row).

    For non-negative factors this is the normalised cross-correlation without mean
    subtraction.  pyxem's ``LearningSegment.get_ncc_matrix`` is the prior art, but it compares
    the factors of *one* decomposition with each other, subtracts the means and needs signals,
    so it is written out here for two plain factor matrices.

    Examples
    --------
    >>> a = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> np.round(cosine_similarity(a, a[:1]), 3).tolist()
    [[1.0], [0.707]]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return np.clip(a @ b.T, -1.0, 1.0)

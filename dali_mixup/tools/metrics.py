"""Diagnostics of mixing results, from the two papers (pure NumPy, host side).

* :func:`xi`: the root mean squared perturbation distance of a mixing result (k-mixup paper,
  section 2 and Algorithm 1: the parameter compared across k).
* :func:`cross_cluster_fraction`: the fraction of matches that join different clusters
  (k-mixup paper, Lemma 3.3 and Theorem 3.4), with :func:`lemma_3_3_count` and
  :func:`theorem_3_4_rate` for the expected values.
* :func:`local_intrinsic_dimension`: local ID by local PCA, the Fukunaga-Olsen rule (zeta-mixup
  paper, section "Preserving the intrinsic dimensionality": an eigenvalue counts when it is
  larger than 5% of the largest).
* :func:`label_error`: soft labels against an oracle classifier (zeta-mixup paper, Fig. 3f-g:
  the oracle's entropy as a proxy of realism, the cross entropy between the oracle's
  prediction and the assigned soft label as label (in)correctness), plus the hard disagreement
  rate ("label error" of Fig. 2a).

Every function accepts NumPy arrays or anything :func:`dali_mixup.core._backend.to_numpy` can bring
to the host (CuPy, torch); results are NumPy floats / arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core._backend import to_numpy

__all__ = [
    "sources_of", "perturbation_distances", "xi", "cross_cluster_fraction", "lemma_3_3_count",
    "theorem_3_4_rate", "local_intrinsic_dimension", "LabelError", "label_error", "knn_oracle",
]


def _host(x, dtype=None) -> np.ndarray:
    a = to_numpy(x) if hasattr(x, "__dlpack__") or hasattr(x, "detach") else x
    return np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a)


def _flat(x) -> np.ndarray:
    a = _host(x, np.float64)
    if a.ndim < 1:
        raise ValueError("metrics: expected a batch [B, ...], got a 0-d array")
    return a.reshape(a.shape[0], -1)


def sources_of(result) -> np.ndarray:
    """``[B, S]`` indices of the samples each output of ``result`` was mixed from.

    Column 0 is the sample itself. A k-mixup / mixup result (``.partner``) gives
    ``S = 2``; a zeta-mixup result (``.index``) gives its ``T`` columns.
    """
    if hasattr(result, "partner"):
        p = _host(result.partner, np.int64).reshape(-1)
        return np.stack([np.arange(p.shape[0], dtype=np.int64), p], axis=1)
    if hasattr(result, "index"):
        return _host(result.index, np.int64)
    raise TypeError("metrics: expected a k-mixup/mixup result (.partner) or a zeta-mixup "
                    f"result (.index), got {type(result).__name__}")


def perturbation_distances(original, mixed, sources, *, reference: str = "nearest") -> np.ndarray:
    """Euclidean distance of each mixed output from the sample it perturbs, ``[B]``.

    Args:
        original: the batch before mixing ``[B, ...]``.
        mixed: the mixed batch ``[B, ...]``.
        sources: ``[B, S]`` the samples output ``i`` was mixed from (column 0: ``i`` itself),
            e.g. :func:`sources_of`.
        reference: ``"nearest"``: the distance to the nearest of its sources. For a two-point
            mix ``lam x_i + (1 - lam) x_j`` this is ``min(lam, 1 - lam) |x_i - x_j|``, the
            perturbation whose square Algorithm 1 of the k-mixup paper averages
            (lines 3-4: ``xi = E|x_i - x_j|^2 * E min(lam, 1 - lam)^2``). ``"self"``: the
            distance to sample ``i`` itself, ``(1 - lam) |x_i - x_j|``.
    """
    x = _flat(original)
    m = _flat(mixed)
    src = np.asarray(sources, dtype=np.int64)
    if m.shape != x.shape:
        raise ValueError(f"metrics: 'mixed' has shape {m.shape[0]}x{m.shape[1]}, the original "
                         f"batch {x.shape[0]}x{x.shape[1]}")
    if src.ndim != 2 or src.shape[0] != x.shape[0]:
        raise ValueError(f"metrics: 'sources' must be [B, S] with B = {x.shape[0]}, got shape {src.shape}")
    if reference == "self":
        return np.sqrt(np.sum((m - x) ** 2, axis=1))
    if reference != "nearest":
        raise ValueError(f"metrics: reference must be 'nearest' or 'self', got {reference!r}")
    best = np.full(x.shape[0], np.inf)
    step = max(1, int(2**25 // max(1, x.shape[0] * x.shape[1])))  # ~256 MB per chunk of sources
    for s0 in range(0, src.shape[1], step):
        cols = src[:, s0:s0 + step]
        d = np.sum((m[:, None, :] - x[cols]) ** 2, axis=2) if cols.shape[1] > 1 \
            else np.sum((m - x[cols[:, 0]]) ** 2, axis=1)[:, None]
        best = np.minimum(best, d.min(axis=1))
    return np.sqrt(best)


def xi(original, result, *, reference: str = "nearest") -> float:
    """Root mean squared perturbation distance ``xi`` of one mixing result.

    ``xi = sqrt(mean_i d_i^2)`` with ``d_i`` from :func:`perturbation_distances`: the quantity
    the k-mixup paper holds fixed across k ("k, alpha, and Root Mean Squared Perturbation
    Distance", section 2; Algorithm 1; the xi column heads of Tables 2-9).

    Args:
        original: the batch before mixing (what was passed to the operator).
        result: a :class:`~dali_mixup.PairResult` or :class:`~dali_mixup.ZetaResult`.
        reference: ``"nearest"`` (the paper's min(lam, 1 - lam)) or ``"self"``.
    """
    d = perturbation_distances(original, result.images, sources_of(result), reference=reference)
    return float(np.sqrt(np.mean(d ** 2))) if d.size else 0.0


def cross_cluster_fraction(clusters, partner, *, exclude_self: bool = True) -> float:
    """Fraction of samples matched to a partner in another cluster.

    The "fraction of cross-cluster identifications" of Theorem 3.4 of the k-mixup paper.
    ``partner`` is the ``.partner`` of a k-mixup result (or any ``[B]`` matching).

    Args:
        clusters: ``[B]`` cluster (or class) id of each sample.
        partner: ``[B]`` index of each sample's partner.
        exclude_self: leave out samples matched to themselves (not mixed at all; the
            reference code's permutation pairing produces them), so that they do not count
            as intra-cluster matches.
    """
    c = _host(clusters).reshape(-1)
    p = _host(partner, np.int64).reshape(-1)
    if c.shape != p.shape:
        raise ValueError(f"metrics: {c.shape[0]} cluster ids for {p.shape[0]} partners")
    keep = p != np.arange(p.shape[0]) if exclude_self else np.ones(p.shape[0], bool)
    if not keep.any():
        return 0.0
    return float(np.mean(c[keep] != c[p[keep]]))


def lemma_3_3_count(clusters_a, clusters_b) -> int:
    """Cross-cluster matches of an optimal transport matching between two equal batches.

    Lemma 3.3 of the k-mixup paper: for well separated clusters (covering balls of radius
    Delta at least 2 Delta apart) the optimal matching of batch ``a`` to batch ``b`` has
    exactly ``1/2 sum_i |r_i - s_i|`` cross-cluster matches, ``r_i``/``s_i`` being the
    number of samples of cluster ``i`` in each batch.

    Under the squared cost (the paper's W2, the operator's default) this count is a lower bound
    that is attained when the clusters are (about) equidistant; where one cross match is as
    long as two shorter ones squared (clusters at the corners of a square: 100^2 + 100^2 =
    141^2) the matching may take two. Under the Euclidean cost (``cost="euclidean"``) the
    triangle inequality makes it exact for separated clusters.
    """
    a = _host(clusters_a).reshape(-1)
    b = _host(clusters_b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError("metrics: the two batches must have the same size")
    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    r = np.bincount(inv[:a.size], minlength=ids.size)
    s = np.bincount(inv[a.size:], minlength=ids.size)
    return int(np.abs(r - s).sum() // 2)


def theorem_3_4_rate(p, k: int) -> float:
    """The rate of Theorem 3.4: ``(2k)^-1/2 * sum_i sqrt(p_i (1 - p_i))``.

    The expected fraction of cross-cluster identifications of two size-k batches matched by
    optimal transport is O(this) for clusters with probability masses ``p``. (The expected
    value of :func:`lemma_3_3_count` / k is bounded by ``sqrt(2/pi)`` times it for large k,
    as the normal approximation of ``|r_i - s_i|`` shows.)
    """
    p = np.asarray(p, dtype=np.float64)
    if k < 1:
        raise ValueError(f"metrics: k must be >= 1, got {k}")
    return float(np.sum(np.sqrt(p * (1.0 - p))) / np.sqrt(2.0 * k))


def _knn(query: np.ndarray, ref: np.ndarray, n: int) -> np.ndarray:
    """Indices ``[Q, n]`` of the n nearest rows of ``ref`` for each query row (brute force)."""
    out = np.empty((query.shape[0], n), dtype=np.int64)
    rr = np.sum(ref * ref, axis=1)
    step = max(1, int(2**24 // max(1, ref.shape[0])))
    for q0 in range(0, query.shape[0], step):
        q = query[q0:q0 + step]
        d = rr[None, :] - 2.0 * (q @ ref.T)  # + |q|^2, constant per row
        out[q0:q0 + step] = np.argpartition(d, n - 1, axis=1)[:, :n]
    return out


def local_intrinsic_dimension(points, *, n_neighbors: int = 32, threshold: float = 0.05,
                              reference=None) -> np.ndarray:
    """Local intrinsic dimension of each point by local PCA (Fukunaga and Olsen, 1971).

    For every point, the ``n_neighbors`` nearest points of ``reference`` (default: the
    point set itself, the point included) are centred, and the eigenvalues of their
    covariance are counted that exceed ``threshold`` times the largest one. The zeta-mixup
    paper ("Preserving the intrinsic dimensionality of the original data", Fig. 6) uses this
    estimator (scikit-dimension ``lPCA``, version "FO", pointwise) with ``threshold = 0.05``.

    Returns:
        ``[N]`` int64, each in ``1 .. min(n_neighbors, D)`` (0 for a neighbourhood of
        identical points).
    """
    x = _flat(points)
    ref = x if reference is None else _flat(reference)
    if ref.shape[1] != x.shape[1]:
        raise ValueError("metrics: 'reference' must have the dimension of 'points'")
    n = int(n_neighbors)
    if not 2 <= n <= ref.shape[0]:
        raise ValueError(f"metrics: n_neighbors must be in [2, {ref.shape[0]}], got {n_neighbors}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"metrics: threshold must be in (0, 1), got {threshold}")
    nn = _knn(x, ref, n)
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, int(2**23 // (n * ref.shape[1])))
    for i0 in range(0, x.shape[0], step):
        nb = ref[nn[i0:i0 + step]]                       # [q, n, D]
        nb = nb - nb.mean(axis=1, keepdims=True)
        s = np.linalg.svd(nb, compute_uv=False)          # singular values, descending
        ev = s ** 2                                      # proportional to the eigenvalues
        top = ev[:, :1]
        out[i0:i0 + step] = np.where(top[:, 0] > 0, np.sum(ev > threshold * top, axis=1), 0)
    return out


@dataclass(frozen=True)
class LabelError:
    """Soft labels scored by an oracle (zeta-mixup paper, Fig. 3f-g).

    Attributes:
        cross_entropy: ``[N]`` ``-sum_c y_c log p_c``: the assigned soft label ``y`` against the
            oracle's prediction ``p`` (low: the label says what the oracle sees).
        entropy: ``[N]`` ``-sum_c p_c log p_c`` of the oracle (low: a realistic sample).
        disagree: ``[N]`` bool, the oracle's class differs from the soft label's largest class.
        rate: mean of ``disagree`` (the "label error" rate).
    """

    cross_entropy: np.ndarray
    entropy: np.ndarray
    disagree: np.ndarray

    @property
    def rate(self) -> float:
        return float(np.mean(self.disagree)) if self.disagree.size else 0.0

    @property
    def mean_cross_entropy(self) -> float:
        return float(np.mean(self.cross_entropy)) if self.cross_entropy.size else 0.0

    @property
    def mean_entropy(self) -> float:
        return float(np.mean(self.entropy)) if self.entropy.size else 0.0


def label_error(soft_labels, oracle, points=None, *, eps: float = 1e-12) -> LabelError:
    """Score soft labels against an oracle classifier.

    Args:
        soft_labels: ``[N, C]`` the labels a mixing method assigned.
        oracle: ``[N, C]`` oracle class probabilities, or a callable ``f(points) -> [N, C]``.
        points: the (mixed) samples, when ``oracle`` is a callable.
        eps: probabilities are clipped at ``eps`` before the logarithm.
    """
    y = _host(soft_labels, np.float64)
    p = _host(oracle(points) if callable(oracle) else oracle, np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"metrics: soft labels {y.shape} and oracle probabilities {p.shape} "
                         "must both be [N, C]")
    logp = np.log(np.clip(p, eps, 1.0))
    ce = -np.sum(y * logp, axis=1)
    ent = -np.sum(p * logp, axis=1)
    disagree = np.argmax(p, axis=1) != np.argmax(y, axis=1)
    return LabelError(cross_entropy=ce, entropy=ent, disagree=disagree)


def knn_oracle(points, labels, num_classes: int, *, n_neighbors: int = 15,
               smoothing: float = 1.0) -> Callable:
    """A k-nearest-neighbour oracle fitted on clean samples of the true class regions.

    Returns ``f(query) -> [Q, C]``: ``(votes_c + smoothing) / (n_neighbors + C * smoothing)``
    from the ``n_neighbors`` nearest clean points (for the toy datasets, drawn densely, the
    vote is the Bayes classifier up to sampling error; the additive smoothing keeps the
    cross entropy of :func:`label_error` finite).
    """
    ref = _flat(points)
    lab = _host(labels, np.int64).reshape(-1)
    n = min(int(n_neighbors), ref.shape[0])

    def oracle(query) -> np.ndarray:
        q = _flat(query)
        nn = _knn(q, ref, n)
        votes = np.zeros((q.shape[0], num_classes))
        np.add.at(votes, (np.repeat(np.arange(q.shape[0]), n), lab[nn].reshape(-1)), 1.0)
        return (votes + smoothing) / (n + num_classes * smoothing)

    return oracle

"""Config + draws (+ block costs) -> one plan: who is mixed with whom, and how.

Every operator goes through here, in the array layer and in the DALI layer alike:

* pair methods (k-mixup, mixup, CutMix, mix): :func:`plan_blocks` says which samples meet,
  the caller computes the blocks' cost matrices where the data lives
  (:func:`dali_mixup.core.cost.block_costs`), and :func:`pair_plan` solves the assignments and
  applies lambdas, coins and boxes, giving a :class:`PairPlan`;
* zeta-mixup: :func:`zeta_plan` gives a :class:`ZetaPlan` (partner index and weights).

Plans are host NumPy arrays of B numbers (never images), so the same draws give the same
plan on every backend.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import nonfinite_cost_data
from .assign import solve_blocks


# ------------------------------------------------------------------------------ blocks


@dataclass(frozen=True)
class BlockPlan:
    """Which samples are matched with which.

    Attributes:
        left, right: ``[n_blocks, k]`` sample indices; row ``r`` of ``left[b]`` is assigned a
            column of ``right[b]``. A short last block is padded by repeating its first index.
        sizes: ``[n_blocks]`` true block sizes.
        k: the block size actually used (0 when nothing can be mixed).
        symmetric: True for disjoint pairing: both sides of every matched pair are mixed.
        leftover, leftover_partner: the odd sample of a disjoint split and its random partner
            (-1 when B is even).
    """

    left: np.ndarray
    right: np.ndarray
    sizes: np.ndarray
    k: int
    symmetric: bool
    leftover: int = -1
    leftover_partner: int = -1

    def order(self, batch_size: int) -> np.ndarray:
        """A sample order in which each side's blocks are consecutive rows (when unpadded):
        stacking the batch in this order makes every block a view."""
        valid = np.arange(self.left.shape[1])[None, :] < self.sizes[:, None]
        seq = np.concatenate([self.left[valid], self.right[valid], np.arange(batch_size)])
        _, first = np.unique(seq, return_index=True)
        return seq[np.sort(first)]


def _cut(idx_a: np.ndarray, idx_b: np.ndarray, k: int):
    n = idx_a.shape[0]
    nb = -(-n // k)
    pad = nb * k - n
    sizes = np.full(nb, k, dtype=np.int64)
    if pad:
        sizes[-1] = k - pad
        first = nb * k - k
        idx_a = np.concatenate([idx_a, np.full(pad, idx_a[first])])
        idx_b = np.concatenate([idx_b, np.full(pad, idx_b[first])])
    return idx_a.reshape(nb, k), idx_b.reshape(nb, k), sizes


def plan_blocks(u: np.ndarray, batch_size: int, k: int, pairing: str) -> BlockPlan:
    """Blocks for a batch of ``batch_size`` from the uniform draws ``u [B, 2]``.

    ``"disjoint"``: the batch, in the random order ``argsort(u[:, 0])``, is split into two
    halves of ``h = B // 2``; block ``b`` of one half meets block ``b`` of the other. With odd B
    the last sample is mixed with a random other sample. ``k`` is clamped to ``h``.

    ``"permutation"`` (the authors' reference code): consecutive k-blocks of the batch meet the
    same blocks of the random permutation; self-matches are possible. ``k`` is clamped to B.
    """
    b = batch_size
    empty = np.zeros((0, 1), dtype=np.int64)
    order = np.argsort(u[:b, 0], kind="stable").astype(np.int64)
    if pairing == "permutation":
        if b == 0:
            return BlockPlan(empty, empty, np.zeros(0, np.int64), 0, False)
        kk = min(k, b)
        left, right, sizes = _cut(np.arange(b, dtype=np.int64), order, kk)
        return BlockPlan(left, right, sizes, kk, False)
    h = b // 2
    if h == 0:
        return BlockPlan(empty, empty, np.zeros(0, np.int64), 0, True)
    kk = min(k, h)
    left, right, sizes = _cut(order[:h], order[h:2 * h], kk)
    if b % 2:
        odd = int(order[2 * h])
        mate = int(order[min(int(u[odd, 1] * 2 * h), 2 * h - 1)])
        return BlockPlan(left, right, sizes, kk, True, odd, mate)
    return BlockPlan(left, right, sizes, kk, True)


def block_shape(batch_size: int, k: int, pairing: str) -> tuple[int, int]:
    """``(n_blocks, k)`` of :func:`plan_blocks`' ``left``/``right`` for a batch of ``batch_size``:
    known without the draws, so a GPU operator can shape indices it receives flattened."""
    n = batch_size if pairing == "permutation" else batch_size // 2
    if n == 0:
        return 0, 1
    kk = min(k, n)
    return -(-n // kk), kk


def assemble(plan: BlockPlan, cols: np.ndarray | None, batch_size: int) -> np.ndarray:
    """``partner [B]`` from the plan and the solved columns (``cols`` None: identity match)."""
    partner = np.arange(batch_size, dtype=np.int64)
    if plan.left.shape[0]:
        nb, k = plan.left.shape
        if cols is None:
            cols = np.broadcast_to(np.arange(k), (nb, k))
        valid = np.arange(k)[None, :] < plan.sizes[:, None]
        src = plan.left[valid]
        dst = np.take_along_axis(plan.right, np.where(valid, cols, 0), axis=1)[valid]
        partner[src] = dst
        if plan.symmetric:
            partner[dst] = src
    if plan.leftover >= 0:
        partner[plan.leftover] = plan.leftover_partner
    return partner


def representatives(plan: BlockPlan, lam_mode: str, batch_size: int) -> np.ndarray:
    """``rep [B]``: the sample whose draws (lam, coins, box) govern sample i.

    ``"batch"``: sample 0 for everyone; ``"block"``: the first left sample of i's matched block
    (both sides of the block); ``"sample"``: i itself.
    """
    rep = np.arange(batch_size, dtype=np.int64)
    if lam_mode == "batch":
        rep[:] = 0
    elif lam_mode == "block" and plan.left.shape[0]:
        valid = np.arange(plan.left.shape[1])[None, :] < plan.sizes[:, None]
        blk = np.broadcast_to(plan.left[:, :1], plan.left.shape)
        rep[plan.left[valid]] = blk[valid]
        if plan.symmetric:
            rep[plan.right[valid]] = blk[valid]
    return rep


def check_costs(costs: np.ndarray, op: str, arg: str, *, device: bool = False) -> None:
    """The assignment needs finite costs; NaN or Inf in the data (or features) make them not
    (``device``: costs made on the GPU, see :func:`dali_mixup.core._checks.nonfinite_cost_data`)."""
    if not np.isfinite(costs).all():
        raise nonfinite_cost_data(op, arg, device=device)


# ------------------------------------------------------------------------------ pairs


@dataclass(frozen=True)
class PairPlan:
    """Host-side plan of a pair operator for one batch.

    Attributes:
        partner: ``[B]`` int64, the sample each output is mixed with (itself: not mixed).
        lam: ``[B]`` float64, the label weight of the sample itself (the uncovered area for
            CutMix rows).
        cut: ``[B]`` bool, CutMix (True) or a blend (False).
        boxes: ``[B, 4]`` int64 (y1, y2, x1, x2) of the pasted partner region (zero if none).
        share: ``[B]`` float64, the partner's pixel share of blended rows (``1 - lam``), 0 for
            CutMix rows.
        k: block size used for the matching.
    """

    partner: np.ndarray
    lam: np.ndarray
    cut: np.ndarray
    boxes: np.ndarray
    share: np.ndarray
    k: int

    def pixel_share(self, h: int, w: int) -> np.ndarray:
        """``M [B, h, w]``: the partner's share of each pixel (float64)."""
        b = self.partner.shape[0]
        m = np.broadcast_to(self.share[:, None, None], (b, h, w)).copy()
        for i in np.flatnonzero(self.cut):
            y1, y2, x1, x2 = self.boxes[i]
            m[i, y1:y2, x1:x2] = 1.0
        return m

    def dominant(self) -> np.ndarray:
        """The sample contributing the larger weight to each blended output (itself on a tie)."""
        return np.where(self.lam >= 0.5, np.arange(self.partner.shape[0]), self.partner)


def boxes(h: int, w: int, lam: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """CutMix boxes ``[B, 4]`` (y1, y2, x1, x2), clipped to the image (Yun et al., Alg. A1)."""
    cut = np.sqrt(1.0 - np.asarray(lam, np.float64))
    ch, cw = (h * cut).astype(np.int64), (w * cut).astype(np.int64)
    cy = np.minimum((np.asarray(centre[:, 0]) * h).astype(np.int64), h - 1)
    cx = np.minimum((np.asarray(centre[:, 1]) * w).astype(np.int64), w - 1)
    return np.stack([np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h),
                     np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)], axis=1)


def box_area(bx: np.ndarray) -> np.ndarray:
    return (bx[:, 1] - bx[:, 0]) * (bx[:, 3] - bx[:, 2])


def pair_plan(cfg, draws, blocks: BlockPlan, costs: np.ndarray | None, batch_size: int,
              hw: tuple[int, int] = (1, 1)) -> PairPlan:
    """Solve the blocks' assignments and apply lambdas, coins and CutMix boxes.

    Args:
        cfg: a :class:`dali_mixup.core.config.PairConfig`.
        draws: :class:`dali_mixup.core.draws.KMixupDraws` or :class:`~dali_mixup.core.draws.MixDraws`.
        blocks: :func:`plan_blocks` of ``draws.u``.
        costs: ``[n_blocks, k, k]`` host cost matrices of the blocks (None when k <= 1).
        batch_size: B.
        hw: image height and width (CutMix boxes).

    A lam group (batch, block or sample, by ``cfg.lam_mode``) is left unmixed (partner = self,
    lam = 1) when its coin is ``>= cfg.prob``; samples matched with themselves get lam = 1.
    """
    b = batch_size
    cols = solve_blocks(costs, blocks.sizes) if costs is not None and blocks.k > 1 else None
    partner = assemble(blocks, cols, b)
    rep = representatives(blocks, cfg.lam_mode, b)
    lam = np.asarray(draws.lam, np.float64)[:b][rep]
    coin = getattr(draws, "coin", None)
    if coin is not None:
        coin = np.asarray(coin, np.float64).reshape(b, -1) if b else np.zeros((0, 2))
    skip = partner == np.arange(b)
    if coin is not None and cfg.prob < 1.0:
        skip = skip | (coin[rep, 0] >= cfg.prob)
    if not cfg.uses_cutmix:
        cut = np.zeros(b, bool)
        bx = np.zeros((b, 4), np.int64)
    else:
        cut = coin[rep, 1] < cfg.switch_prob if cfg.mixup_alpha > 0 else np.ones(b, bool)
        h, w = hw
        lam_cut = np.asarray(draws.lam_cut, np.float64)[:b][rep]
        bx = boxes(h, w, lam_cut, np.asarray(draws.box, np.float64).reshape(b, 2)[rep]) \
            if b else np.zeros((0, 4), np.int64)
        cut_lam = 1.0 - box_area(bx) / float(h * w) if cfg.correct_lam else lam_cut
        lam = np.where(cut, cut_lam, lam)
        cut = cut & ~skip
        bx = np.where(cut[:, None], bx, 0)
    partner = np.where(skip, np.arange(b), partner)
    lam = np.where(skip, 1.0, lam)
    share = np.where(cut, 0.0, 1.0 - lam)
    return PairPlan(partner=partner, lam=lam, cut=cut, boxes=bx, share=share, k=blocks.k)


# ------------------------------------------------------------------------------ zeta


@dataclass(frozen=True)
class ZetaPlan:
    """Host-side plan of zeta-mixup for one batch.

    Attributes:
        index: ``[B, T]`` int64; column 0 is the sample itself, columns 1.. its partners.
        weights: ``[T]`` float64, ``w_t = t^-gamma / C``; the same row for every sample.
        gamma: the gamma used.
    """

    index: np.ndarray
    weights: np.ndarray
    gamma: float


def zeta_weights(T: int, gamma: float) -> np.ndarray:
    """``w_t = t^-gamma / sum_{j<=T} j^-gamma`` for t = 1..T (float64, sums to 1)."""
    w = np.arange(1, T + 1, dtype=np.float64) ** (-float(gamma))
    return w / w.sum()


def zeta_partners(u: np.ndarray, batch_size: int, T: int) -> np.ndarray:
    """``index [B, T]``: column 0 is the sample itself, columns 1.. its partners in key order."""
    b = batch_size
    index = np.empty((b, T), dtype=np.int64)
    index[:, 0] = np.arange(b)
    if T > 1:
        keys = np.array(u[:b, :b], dtype=np.float64)
        keys[np.arange(b), np.arange(b)] = np.inf  # never pick yourself
        m = T - 1
        if m < b // 4:
            cand = np.argpartition(keys, m - 1, axis=1)[:, :m]
            order = np.argsort(np.take_along_axis(keys, cand, axis=1), axis=1, kind="stable")
            index[:, 1:] = np.take_along_axis(cand, order, axis=1)
        else:
            # From B = 64 the default (SIMD) sort is 3-6x faster than the stable one; it gives
            # the same order unless a row has equal keys, and such rows are re-sorted stably.
            if b < 64:
                order = np.argsort(keys, axis=1, kind="stable")
            else:
                order = np.argsort(keys, axis=1)
                s = np.take_along_axis(keys, order, axis=1)
                tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
                if tied.any():
                    order[tied] = np.argsort(keys[tied], axis=1, kind="stable")
            index[:, 1:] = order[:, :m]
    return index


def resolve_T(T: int | None, batch_size: int) -> int:
    """T = None means the whole batch; a T larger than the batch is clamped to it."""
    return max(1, batch_size if T is None else min(T, batch_size))


def zeta_plan(cfg, draws, batch_size: int) -> ZetaPlan:
    """Index and weights from a :class:`dali_mixup.core.config.ZetaConfig` and its draws.

    A batch left unmixed by ``prob`` gets T = 1 (weights ``[1.0]``, index = the sample itself).
    """
    t_eff = resolve_T(cfg.T, batch_size)
    if cfg.prob < 1.0 and draws.coin is not None and batch_size and float(draws.coin[0]) >= cfg.prob:
        t_eff = 1
    low, high = cfg.gamma
    g = low + float(draws.g[0]) * (high - low) if batch_size and high > low else low
    return ZetaPlan(zeta_partners(draws.u, batch_size, t_eff), zeta_weights(t_eff, g), g)


def choose_zeta_method(T: int, batch_size: int) -> str:
    """``"gather"`` while T-1 passes over the batch cost less than one B x B x D product.

    A gather pass moves about 12 bytes per element; the product costs 2B flops per element.
    At ~200 GFLOP/s and ~25 GB/s (2-core x86 VMs) the break-even is near T - 1 = B / 48; the
    benchmark suite's zeta rows show the crossover.
    """
    return "gather" if T - 1 <= max(2, batch_size // 48) else "matmul"


def mixing_matrix(index: np.ndarray, weights: np.ndarray, *, include_self: bool) -> np.ndarray:
    """Dense ``W [B, B]`` with ``W[i, index[i, t]] = weights[t]`` (float64, host)."""
    b, T = index.shape
    start = 0 if include_self else 1
    # bincount sums repeated entries like np.add.at, at a fraction of its cost
    flat = (np.arange(b, dtype=np.int64)[:, None] * b + index[:, start:]).reshape(-1)
    vals = np.tile(np.asarray(weights[start:], dtype=np.float64), b)
    return np.bincount(flat, weights=vals, minlength=b * b).reshape(b, b)

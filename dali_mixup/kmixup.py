"""k-mixup: optimal-transport pairing of k-blocks, then a mixup blend.

Greenewald et al., "k-Mixup Regularization for Deep Learning via Optimal Transport"
(TMLR 2023), section 2: two k-subsets are matched by the optimal assignment on their
k x k cost matrix and the matched pairs are blended with lam ~ Beta(alpha, alpha)::

    x~_i = lam_i * x_i + (1 - lam_i) * x_partner(i)        y~ likewise

k = 1 is standard mixup. The steps are kept apart, as torchvision keeps ``make_params``
apart from ``transform``:

1. :func:`draw` takes every random number the operator needs (a ``KMixupDraws``), from a
   NumPy ``Generator`` here or from DALI random operators in :mod:`dali_mixup.fn`;
2. :func:`plan_blocks` turns the draws into blocks (which samples meet which);
3. :func:`dali_mixup.cost.block_costs` and :func:`dali_mixup.assign.solve_blocks` match them;
4. :func:`assemble` and :func:`lambdas` give ``partner [B]`` and ``lam [B]``;
5. :func:`blend` applies them.

Steps 2, 4 are host NumPy on B numbers, so the same draws give the same mixing on every
backend; steps 3 and 5 run in the images' own namespace (NumPy, CuPy, torch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks
from .assign import solve_blocks
from ._threads import PARALLEL_BYTES, parallel_parts, run_parallel, scratch, split_points
from .cost import block_costs
from .images import as_batch, check_extra, finalize, flat_features, work_dtype
from .labels import soft_labels

OP = "k_mixup"


@dataclass(frozen=True)
class KMixupDraws:
    """All randomness of one k-mixup batch.

    Attributes:
        u: ``[B, 2]`` uniform in [0, 1): column 0 orders the batch (its argsort is the random
            split / permutation), column 1 picks the odd sample's partner.
        lam: ``[B]`` draws of Beta(alpha, alpha).
        coin: ``[B]`` uniform in [0, 1) deciding whether a lam group is mixed at all
            (``coin < prob``); None means always mixed.
    """

    u: np.ndarray
    lam: np.ndarray
    coin: np.ndarray | None = None


def beta_quantile(alpha: float, u) -> np.ndarray:
    """Beta(alpha, alpha) draws from uniforms ``u`` by inversion (``scipy.special.betaincinv``).

    The DALI operators draw only uniforms (one DALI random operator per mixing operator, so one
    python-operator input) and turn them into lambdas here.
    """
    u = np.asarray(u, dtype=np.float64)
    if alpha == 1.0:
        return u  # Beta(1, 1) is uniform
    from scipy.special import betaincinv

    return betaincinv(alpha, alpha, u)


def beta_at(alpha: float, u: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[B]`` array holding :func:`beta_quantile` of ``u`` at the positions ``idx`` (else 0):
    the lambdas of the lam groups' representatives, without inverting the other draws."""
    out = np.zeros(u.shape[0])
    need = np.unique(idx)
    out[need] = beta_quantile(alpha, u[need])
    return out


def draw(rng: np.random.Generator, batch_size: int, alpha: float) -> KMixupDraws:
    """Draw the random numbers for a batch of ``batch_size`` from a NumPy Generator."""
    return KMixupDraws(u=rng.random((batch_size, 2)), lam=rng.beta(alpha, alpha, size=batch_size),
                       coin=rng.random(batch_size))


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


def lambdas(plan: BlockPlan, lam_draws: np.ndarray, lam_mode: str, partner: np.ndarray) -> np.ndarray:
    """``lam [B]``: one per batch, per matched block (DI_lambda) or per sample.

    Samples whose partner is themselves get lam = 1, so they pass through exactly.
    """
    b = partner.shape[0]
    lam = np.asarray(lam_draws[:b], dtype=np.float64)[representatives(plan, lam_mode, b)]
    lam[partner == np.arange(b)] = 1.0
    return lam


def apply_prob(partner: np.ndarray, lam: np.ndarray, coin: np.ndarray | None, rep: np.ndarray,
               prob: float):
    """Leave unmixed (partner = self, lam = 1) the groups whose coin ``coin[rep] >= prob``.

    The coin is drawn once per lam group (batch, block or sample), so p is applied exactly once.
    """
    if coin is None or prob >= 1.0:
        return partner, lam
    skip = np.asarray(coin[rep], dtype=np.float64) >= prob
    partner, lam = partner.copy(), lam.copy()
    partner[skip] = np.arange(partner.shape[0])[skip]
    lam[skip] = 1.0
    return partner, lam


#: Bytes of partner rows gathered per step of the NumPy blend (stays in cache).
_BLEND_CHUNK_BYTES = 1 << 19


def _blend_numpy(x: np.ndarray, partner: np.ndarray, lam: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
    """The same arithmetic as :func:`blend`, in row chunks without batch-sized temporaries.

    Per element it computes ``lam * x + (1 - lam) * x[partner]`` with the same float ops in
    the same order (bitwise equal), but reads ``x`` twice and writes the output once, instead
    of making three batch-sized temporaries.
    """
    b = x.shape[0]
    x2 = x.reshape(b, -1)
    lam = lam.astype(x.dtype, copy=False).reshape(b, 1)
    oml = 1.0 - lam
    uniform = bool(b) and bool((lam == lam[0, 0]).all())  # lam_mode "batch": one scalar
    partner = np.asarray(partner, dtype=np.intp)
    ok = out is not None and out.shape == x.shape and out.dtype == x.dtype and out.flags.c_contiguous
    if not ok and x2.nbytes <= _BLEND_CHUNK_BYTES:  # small (labels): one chunk, no machinery
        mixed = np.multiply(x2, lam[0, 0] if uniform else lam)
        mixed += np.multiply(np.take(x2, partner, axis=0), oml[0, 0] if uniform else oml)
        return mixed.reshape(x.shape)
    out = out.reshape(x2.shape) if ok else np.empty_like(x2)
    parts = min(parallel_parts(), b) if 2 * x2.nbytes >= PARALLEL_BYTES else 1
    if parts < 2:
        _blend_rows(x2, partner, lam, oml, uniform, out, 0, b)
    else:
        cuts = split_points(b, parts)
        run_parallel([lambda r0=r0, r1=r1: _blend_rows(x2, partner, lam, oml, uniform, out, r0, r1)
                      for r0, r1 in zip(cuts[:-1], cuts[1:])])
    return out.reshape(x.shape)


def _blend_rows(x2, partner, lam, oml, uniform, out, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`_blend_numpy`, in chunks that stay in cache."""
    n = x2.shape[1]
    rows = max(1, min(r1 - r0, _BLEND_CHUNK_BYTES // max(1, n * x2.itemsize)))
    buf = scratch(rows * n, x2.dtype).reshape(rows, n)
    for i0 in range(r0, r1, rows):
        i1 = min(r1, i0 + rows)
        t = buf[: i1 - i0]
        o = out[i0:i1]
        np.take(x2, partner[i0:i1], axis=0, out=t, mode="clip")
        np.multiply(t, oml[0, 0] if uniform else oml[i0:i1], out=t)
        np.multiply(x2[i0:i1], lam[0, 0] if uniform else lam[i0:i1], out=o)
        np.add(o, t, out=o)


def blend(x, partner, lam, xp, out=None):
    """``lam_i * x_i + (1 - lam_i) * x_partner(i)`` for a float batch ``x [B, ...]``.

    ``partner`` and ``lam`` are arrays of ``xp`` on ``x``'s device. ``out``: an optional NumPy
    buffer shaped and typed like ``x`` (not ``x`` itself) that the NumPy path writes into; use
    the returned array, which is a new one on other backends.
    """
    if (isinstance(x, np.ndarray) and isinstance(partner, np.ndarray) and isinstance(lam, np.ndarray)
            and x.ndim >= 1 and x.dtype.kind == "f" and x.flags.c_contiguous and x.size
            and partner.shape == (x.shape[0],) and lam.shape == (x.shape[0],)
            and partner.dtype.kind in "iu" and 0 <= partner.min() and partner.max() < x.shape[0]):
        return _blend_numpy(x, partner, lam, out=out if out is not x else None)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    lam = xp.reshape(xp.astype(lam, x.dtype), shape)
    return lam * x + (1.0 - lam) * xp.take(x, partner, axis=0)


def match(draws: KMixupDraws, batch_size: int, *, k: int, pairing: str, lam_mode: str,
          cost: str, feats=None, xp=None, op: str = OP, arg: str = "images", prob: float = 1.0):
    """Steps 2-4: the plan, the optimal matching and the lambdas (host NumPy results).

    ``feats`` is the ``[B, D]`` float array the cost is computed on (None for k = 1, where
    there is nothing to match).
    """
    plan = plan_blocks(draws.u, batch_size, k, pairing)
    cols = None
    if plan.k > 1:
        costs = block_costs(feats, plan.left, plan.right, metric=cost, xp=xp, op=op, arg=arg,
                            match_only=True)
        from ._backend import to_numpy

        cols = solve_blocks(to_numpy(costs), plan.sizes)
    partner, lam = partners_and_lambdas(plan, cols, draws, batch_size, lam_mode, prob)
    return plan, partner, lam


def partners_and_lambdas(plan: BlockPlan, cols: np.ndarray | None, draws: KMixupDraws, b: int,
                         lam_mode: str, prob: float):
    """Step 4: ``partner [B]`` and ``lam [B]`` from the solved blocks, the draws and ``prob``."""
    partner = assemble(plan, cols, b)
    lam = lambdas(plan, draws.lam, lam_mode, partner)
    return apply_prob(partner, lam, draws.coin, representatives(plan, lam_mode, b), prob)


def dominant(partner: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The sample contributing the larger weight to each output (itself on a tie)."""
    return np.where(lam >= 0.5, np.arange(partner.shape[0]), partner)


@dataclass(frozen=True)
class MixupResult:
    """What k-mixup / mixup returns.

    Attributes:
        images: mixed batch ``[B, ...]``.
        labels: soft labels ``[B, num_classes]``, float32.
        partner: ``[B]`` int64, the sample each output was mixed with (itself: not mixed).
        lam: ``[B]`` the weight of the sample itself.
        k: the block size actually used.
        extra: the ``extra`` arrays, blended with the same partners and weights.
        masks: the integer ``masks``, each output taking its dominant sample's mask.
    """

    images: Any
    labels: Any
    partner: Any
    lam: Any
    k: int
    extra: tuple = ()
    masks: tuple = ()


def validate(*, k, alpha, num_classes, cost, pairing, lam_mode, label_smoothing, dtype, prob=1.0,
             op=OP):
    """Argument checks shared by the array layer and the DALI layer."""
    return dict(
        prob=_checks.check_prob(op, "prob", prob),
        k=_checks.check_int(op, "k", k, minimum=1),
        alpha=_checks.check_positive(op, "alpha", alpha),
        num_classes=_checks.check_num_classes(op, num_classes),
        cost=_checks.check_choice(op, "cost", cost, _checks.COSTS),
        pairing=_checks.check_choice(op, "pairing", pairing, _checks.PAIRINGS),
        lam_mode=_checks.check_choice(op, "lam_mode", lam_mode, _checks.LAM_MODES),
        label_smoothing=_checks.check_smoothing(op, label_smoothing),
        dtype=_checks.check_dtype(op, dtype),
    )


def k_mixup(images, labels, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
            cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
            label_smoothing: float = 0.0, features=None, dtype: str | None = None,
            prob: float = 1.0, extra: Sequence = (), masks: Sequence = (),
            rng: np.random.Generator | None = None, draws: KMixupDraws | None = None,
            _op: str = OP) -> MixupResult:
    """k-mixup of a whole batch (array layer; NumPy, CuPy or torch in, the same kind out).

    Args:
        images: ``[B, ...]`` uint8, float16, float32 or float64, any layout.
        labels: class ids ``[B]`` / ``[B, 1]`` with ``num_classes``, or float ``[B, C]``.
        k: block size; clamped to what the batch allows (see ``.k`` of the result).
        alpha: lam ~ Beta(alpha, alpha).
        num_classes: number of classes for integer labels.
        cost: ``"sqeuclidean"`` (the paper's W2) or ``"euclidean"`` (the reference code).
        pairing: ``"disjoint"`` (two random halves, everyone mixed) or ``"permutation"``
            (the reference code: blocks meet a random permutation of the batch).
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``.
        label_smoothing: applied to one-hot labels built from class ids, before mixing.
        features: optional ``[B, ...]`` array the cost is computed on instead of the images.
        dtype: output image dtype: None (float32; float64 for float64 input), ``"float16"``,
            ``"float32"``, ``"float64"`` or ``"uint8"`` (uint8 input only).
        prob: probability that a lam group (the batch, a block or a sample, per ``lam_mode``)
            is mixed at all; unmixed samples keep partner = self and lam = 1.
        extra: more per-sample arrays ``[B, ...]`` (a second view, a depth map) blended with
            the same partners and weights (float results, like the images).
        masks: integer per-sample maps (segmentation masks): each output takes the mask of its
            dominant sample (the one with weight >= 0.5).
        rng: NumPy ``Generator`` for the draws (a fresh one if None).
        draws: precomputed draws (overrides ``rng``), e.g. to replay a batch.
    """
    opts = validate(k=k, alpha=alpha, num_classes=num_classes, cost=cost, pairing=pairing,
                    lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, prob=prob,
                    op=_op)
    xp, images, in_name = as_batch(images, _op)
    b = images.shape[0]
    wd = work_dtype(xp, in_name)
    y = soft_labels(labels, b, num_classes=opts["num_classes"], label_smoothing=opts["label_smoothing"],
                    dtype=xp.float32, xp=xp, op=_op, device=getattr(images, "device", None))
    if draws is None:
        draws = draw(rng if rng is not None else np.random.default_rng(), b, opts["alpha"])
    arg = "features" if features is not None else "images"
    feats = None
    if opts["k"] > 1:
        feats = flat_features(features if features is not None else images, b, xp, _op, arg)
    plan, partner, lam = match(draws, b, k=opts["k"], pairing=opts["pairing"], lam_mode=opts["lam_mode"],
                               cost=opts["cost"], feats=feats, xp=xp, op=_op, arg=arg, prob=opts["prob"])
    device = getattr(images, "device", None)
    p = xp.asarray(partner, device=device)
    lam_x = xp.asarray(lam, dtype=wd, device=device)
    mixed = blend(xp.astype(images, wd, copy=False), p, lam_x, xp)  # blend never writes its input
    mixed_y = blend(y, p, lam_x, xp)
    out = finalize(mixed, in_name, opts["dtype"], xp, _op)
    extras = tuple(blend(xp.astype(e, wd), p, lam_x, xp)
                   for e in check_extra(extra, b, xp, _op, "extra"))
    dom = xp.asarray(dominant(partner, lam), device=device)
    mask_out = tuple(xp.take(m, dom, axis=0) for m in check_extra(masks, b, xp, _op, "masks"))
    return MixupResult(images=out, labels=mixed_y, partner=p, lam=lam_x, k=plan.k, extra=extras,
                       masks=mask_out)


def mixup(images, labels, *, alpha: float = 1.0, num_classes: int | None = None,
          lam_mode: str = "batch", label_smoothing: float = 0.0, dtype: str | None = None,
          prob: float = 1.0, extra: Sequence = (), masks: Sequence = (),
          rng: np.random.Generator | None = None, draws: KMixupDraws | None = None) -> MixupResult:
    """Standard mixup (Zhang et al. 2018): k-mixup with k = 1, random disjoint pairs.

    Every sample is mixed with a random other sample (never with itself).
    Arguments as for :func:`k_mixup`.
    """
    return k_mixup(images, labels, k=1, alpha=alpha, num_classes=num_classes, lam_mode=lam_mode,
                   label_smoothing=label_smoothing, dtype=dtype, prob=prob, extra=extra, masks=masks,
                   rng=rng, draws=draws, _op="mixup")

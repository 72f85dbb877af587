"""Choose alpha_k so that k-mixup keeps the perturbation size of 1-mixup (k-mixup paper, Alg. 1).

Greenewald et al. compare k-mixup across k at a fixed root mean squared perturbation distance
``xi`` rather than at a fixed alpha: with alpha fixed, larger k matches closer points and the
perturbations shrink. Algorithm 1 ("Choosing alpha_k to maintain constant xi")::

    1: xi1_bar = E |x - x'|^2 over N random pairs of the dataset
    2: xik_bar = E (squared W2 between two random k-samples) / k, over N/k pairs of k-samples
    3: lam1_bar = E min(lam, 1 - lam)^2,  lam ~ Beta(alpha, alpha)
    4: xi^2 = xi1_bar * lam1_bar
    5-9: alpha_k = alpha; while lamk_bar * xik_bar < xi^2 and alpha_k < gamma: alpha_k *= c
    10: output alpha_k

Here ``E min(lam, 1 - lam)^2`` is evaluated exactly (:func:`lam_factor`, a regularised
incomplete beta function) instead of by N Monte Carlo draws, so the loop is deterministic,
and once the loop has bracketed the target, a bisection between ``alpha_k / c`` and
``alpha_k`` hits ``xi`` to ``tol`` (``refine=False`` gives the paper's loop as written).

The authors' reference code (``get_k_alpha`` in AnmingGu/kmixup-cifar10, train.py) differs:
one loader batch of 1280 with the permutation pairing (self-matches included), Euclidean
cost, the loop condition ``exp_k < exp_1 * sqrt(cost1 / cost)`` (a square root that
Algorithm 1 does not have, so xi is only partly restored), c = 1.025, gamma = 100, 1000 Monte
Carlo draws per step; and the alpha_k it computes is only logged: training runs with the
unadjusted alpha. :func:`reference_alpha_k` reproduces it for comparison.

Command line: ``dali-mixup calibrate --data digits --k 1,2,4,8,16,32 --alpha 1``.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.special import betainc

from ..core.assign import solve_blocks
from ..core.cost import COSTS, block_costs
from .datasets import load_data
from ..kmixup import plan_blocks

__all__ = ["lam_factor", "mean_sq_distance", "mean_sq_w2", "alpha_for_k", "reference_alpha_k",
           "Calibration", "calibrate", "load_data", "main"]


def lam_factor(alpha: float) -> float:
    """``E[min(lam, 1 - lam)^2]`` for ``lam ~ Beta(alpha, alpha)``, exactly.

    ``2 * int_0^1/2 l^2 f(l) dl = (alpha + 1) / (2 alpha + 1) * I_1/2(alpha + 2, alpha)``
    (lines 3 and 8 of Algorithm 1). It rises from 0 (alpha -> 0) through 1/12 (alpha = 1) to
    1/4 (alpha -> inf).
    """
    a = float(alpha)
    if not a > 0:
        raise ValueError(f"calibrate: alpha must be > 0, got {alpha!r}")
    return float((a + 1.0) / (2.0 * a + 1.0) * betainc(a + 2.0, a, 0.5))


def _lam_factor_mc(alpha: float, n: int, rng: np.random.Generator) -> float:
    v = rng.beta(alpha, alpha, n)
    return float(np.mean(np.minimum(v, 1.0 - v) ** 2))


def _as_features(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def _random_blocks(n_points: int, k: int, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_blocks, 2k]`` indices; each row holds 2k distinct points (disjoint within a row)."""
    per = n_points // (2 * k)
    rows = []
    while sum(r.shape[0] for r in rows) < n_blocks:
        perm = rng.permutation(n_points)[: per * 2 * k]
        rows.append(perm.reshape(per, 2 * k))
    return np.concatenate(rows)[:n_blocks]


def mean_sq_w2(x, k: int, n_pairs: int, rng: np.random.Generator, *, cost: str = "sqeuclidean") -> float:
    """``E W2^2(A, C) / k`` for two disjoint random k-subsets A, C of ``x`` (line 2 of Alg. 1).

    ``ceil(n_pairs / k)`` pairs of k-subsets are matched exactly as the k-mixup operator
    matches them (:func:`~dali_mixup.core.cost.block_costs` then
    :func:`~dali_mixup.core.assign.solve_blocks`); the result is the mean squared distance of the
    matched pairs. ``cost="euclidean"`` matches on plain distances (the reference code) but
    still averages squared distances. k = 1 gives ``E|x - x'|^2`` of random pairs (line 1).
    """
    x = _as_features(x)
    n = x.shape[0]
    if k < 1 or 2 * k > n:
        raise ValueError(f"calibrate: k={k} needs 2k <= the {n} samples of the dataset")
    nb = max(1, math.ceil(n_pairs / k))
    blocks = _random_blocks(n, k, nb, rng)
    left, right = blocks[:, :k], blocks[:, k:]
    if k > 1:
        costs = block_costs(x, left, right, cost=cost, xp=np)
        cols = solve_blocks(np.asarray(costs), np.full(nb, k, dtype=np.int64))
        right = np.take_along_axis(right, cols, axis=1)
    d = x[left.reshape(-1)] - x[right.reshape(-1)]
    return float(np.mean(np.sum(d * d, axis=1)))


def mean_sq_distance(x, n_pairs: int, rng: np.random.Generator) -> float:
    """``E|x - x'|^2`` over ``n_pairs`` random pairs of distinct samples (line 1 of Alg. 1)."""
    return mean_sq_w2(x, 1, n_pairs, rng)


def alpha_for_k(alpha: float, xi1_sq: float, xik_sq: float, *, c: float = 1.025,
                gamma: float = 1000.0, refine: bool = True, tol: float = 1e-6):
    """Lines 4-10 of Algorithm 1: the smallest alpha_k with ``lam(alpha_k) * xik >= xi^2``.

    Args:
        alpha: the alpha of 1-mixup.
        xi1_sq: ``E|x - x'|^2`` of random pairs (line 1).
        xik_sq: mean squared matched distance of k-samples (line 2).
        c: growth factor of the loop (> 1).
        gamma: the loop stops at alpha_k >= gamma (the target may be unreachable: the
            perturbation of any two-point mix is at most half the pair's distance).
        refine: bisect between ``alpha_k / c`` and ``alpha_k`` once the loop has passed the
            target, so that ``xi`` is hit to ``tol`` (relative, in xi^2).

    Returns:
        ``(alpha_k, reachable)``.
    """
    if not c > 1:
        raise ValueError(f"calibrate: c must be > 1, got {c}")
    target = xi1_sq * lam_factor(alpha)
    a = float(alpha)
    val = lam_factor(a) * xik_sq
    while val < target and a < gamma:
        a *= c
        val = lam_factor(a) * xik_sq
    reachable = val >= target
    if refine and reachable and a > alpha:
        lo, hi = max(alpha, a / c), a
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if lam_factor(mid) * xik_sq >= target:
                hi = mid
            else:
                lo = mid
            if hi / lo - 1.0 < 1e-12 or abs(lam_factor(hi) * xik_sq / target - 1.0) < tol:
                break
        a = hi
    return a, bool(reachable)


def reference_alpha_k(x, alpha: float, k: int, rng: np.random.Generator, *, batch_size: int = 1280):
    """alpha_k as the reference code's ``get_k_alpha`` computes it (never used to train there).

    One batch of ``batch_size`` samples (64*20 in the code); a random permutation ``index``;
    consecutive k-blocks of the batch matched against the same blocks of ``index`` on the
    Euclidean cost; ``cost1 = |x - x[index]|^2 / 4`` and ``cost = |x - x[matched]|^2 / 4``
    summed over the batch; ``alpha_k *= 1.025`` while
    ``E_mc min(lam,1-lam)^2 (alpha_k) < E_mc(alpha) * sqrt(cost1 / cost)`` and
    ``alpha_k <= 100``, each expectation from 1000 fresh Beta draws.

    Returns:
        ``(alpha_k, cost1 / cost)``.
    """
    x = _as_features(x)
    b = min(batch_size, x.shape[0])
    x = x[rng.permutation(x.shape[0])[:b]]
    u = rng.random((b, 2))
    plan = plan_blocks(u, b, k, "permutation")
    order = np.argsort(u[:, 0], kind="stable")
    sq = lambda p: float(np.sum((x - x[p]) ** 2)) / 4.0  # noqa: E731  (lam2 = 0.5)
    cost1 = sq(order)
    if k <= 1:
        return float(alpha), 1.0
    costs = block_costs(x, plan.left, plan.right, cost="euclidean", xp=np)
    cols = solve_blocks(np.asarray(costs), plan.sizes)
    partner = np.arange(b)
    valid = np.arange(plan.k)[None, :] < plan.sizes[:, None]
    partner[plan.left[valid]] = np.take_along_axis(plan.right, np.where(valid, cols, 0), axis=1)[valid]
    cost = sq(partner)
    exp_1 = _lam_factor_mc(alpha, 1000, rng)
    a, exp_k = float(alpha), exp_1
    ratio = cost1 / cost if cost > 0 else math.inf
    while exp_k < exp_1 * math.sqrt(ratio) and a <= 100:
        a *= 1.025
        exp_k = _lam_factor_mc(a, 1000, rng)
    return a, ratio


@dataclass(frozen=True)
class Calibration:
    """One row of the calibration table.

    Attributes:
        k: block size.
        alpha: the alpha of 1-mixup.
        alpha_k: Algorithm 1's alpha for this k.
        xi_target: root mean squared perturbation of 1-mixup at ``alpha``.
        xi_k: the same at ``alpha_k`` with k-matching (equals ``xi_target`` when reachable).
        xi_k_at_alpha: what k-mixup would give without the adjustment (alpha_k = alpha).
        mean_sq_dist: ``E W2^2 / k`` of matched k-samples (``E|x-x'|^2`` at k = 1).
        reachable: False when alpha_k hit the cap before reaching ``xi_target``.
        ref_alpha_k: the reference code's alpha_k (computed there but never used).
        xi_k_at_ref: xi that alpha_k of the reference code would give.
    """

    k: int
    alpha: float
    alpha_k: float
    xi_target: float
    xi_k: float
    xi_k_at_alpha: float
    mean_sq_dist: float
    reachable: bool
    ref_alpha_k: float
    xi_k_at_ref: float


def calibrate(x, ks, alpha: float = 1.0, *, n_pairs: int = 4000, cost: str = "sqeuclidean",
              c: float = 1.025, gamma: float = 1000.0, refine: bool = True, seed: int = 0,
              reference: bool = True) -> list[Calibration]:
    """Algorithm 1 for every k in ``ks`` on the samples ``x [N, ...]``.

    ``n_pairs`` is the N of Algorithm 1 (random pairs for line 1, N/k pairs of k-samples for
    line 2). Deterministic for a given ``seed``.
    """
    x = _as_features(x)
    rng = np.random.default_rng(seed)
    xi1_sq = mean_sq_distance(x, n_pairs, rng)
    lam1 = lam_factor(alpha)
    xi_target = math.sqrt(xi1_sq * lam1)
    rows = []
    for k in ks:
        k = int(k)
        xik_sq = xi1_sq if k == 1 else mean_sq_w2(x, k, n_pairs, rng, cost=cost)
        a_k, ok = alpha_for_k(alpha, xi1_sq, xik_sq, c=c, gamma=gamma, refine=refine)
        if reference:
            ref_a, _ = reference_alpha_k(x, alpha, k, np.random.default_rng([seed, k]))
        else:
            ref_a = float("nan")
        rows.append(Calibration(
            k=k, alpha=float(alpha), alpha_k=float(a_k), xi_target=xi_target,
            xi_k=math.sqrt(lam_factor(a_k) * xik_sq), xi_k_at_alpha=math.sqrt(lam1 * xik_sq),
            mean_sq_dist=xik_sq, reachable=ok, ref_alpha_k=float(ref_a),
            xi_k_at_ref=math.sqrt(lam_factor(ref_a) * xik_sq) if reference else float("nan")))
    return rows


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes integers like 1,2,4,16; got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k takes integers >= 1; got {text!r}")
    return ks


def format_table(rows: list[Calibration], desc: str, n: int, d: int, n_pairs: int) -> str:
    r0 = rows[0]
    lines = [
        f"data: {desc}: N={n}, D={d}",
        f"alpha={r0.alpha:g}: target xi = {r0.xi_target:.4f} (root mean squared perturbation of "
        f"1-mixup; E min(lam,1-lam)^2 = {lam_factor(r0.alpha):.5f}), trials N={n_pairs}",
        f"{'k':>5} {'E W2^2/k':>10} {'xi@alpha':>9} {'alpha_k':>9} {'xi@alpha_k':>10} "
        f"{'ref alpha_k':>11} {'xi@ref':>8}",
    ]
    for r in rows:
        flag = "" if r.reachable else "  (unreachable: capped)"
        lines.append(f"{r.k:>5} {r.mean_sq_dist:>10.4f} {r.xi_k_at_alpha:>9.4f} {r.alpha_k:>9.3f} "
                     f"{r.xi_k:>10.4f} {r.ref_alpha_k:>11.3f} {r.xi_k_at_ref:>8.4f}{flag}")
    lines.append("Algorithm 1 of the k-mixup paper (exact E min(lam,1-lam)^2, bisection after the "
                 "x1.025 loop). 'ref alpha_k': the reference code's variant (one batch of 1280, "
                 "permutation pairing with self-matches, Euclidean cost, sqrt of the cost ratio); "
                 "it computes alpha_k but trains with the unadjusted alpha.")
    return "\n".join(lines)


def build_parser():
    """The command line of ``dali-mixup calibrate``."""
    from .usage import ArgumentParser, add_dataset_arguments, float_range, int_range

    ap = ArgumentParser(prog="dali-mixup calibrate", description=main.__doc__)
    add_dataset_arguments(ap, default="digits", metavar=None,
                          data_help="'digits', a toy dataset name, a .npy/.npz file or a dataset folder "
                          "(DIR/<class>/<image>, or DIR/train + DIR/val: the training images) "
                          "(default: digits)")
    ap.add_argument("--k", type=_parse_ks, default=None, help="comma-separated k values (default 1,2,4,8,16,32)")
    ap.add_argument("--alpha", type=float_range(0, lo_open=True), default=1.0, help="alpha of 1-mixup (default 1.0)")
    ap.add_argument("--trials", type=int_range(2), default=None, help="N of Algorithm 1 (default 4000; 1000 with --quick)")
    ap.add_argument("--cost", choices=tuple(COSTS), default="sqeuclidean",
                    help="matching cost (default: the paper's squared distance)")
    ap.add_argument("--c", type=float_range(1, lo_open=True), default=1.025, help="growth factor of the loop (default 1.025)")
    ap.add_argument("--gamma", type=float_range(0, lo_open=True), default=1000.0, help="cap on alpha_k (default 1000)")
    ap.add_argument("--no-refine", action="store_true", help="stop at the loop's alpha_k (the paper as written)")
    ap.add_argument("--size", type=int_range(1), default=32, help="image side for an image folder (default 32)")
    ap.add_argument("--max-samples", type=int_range(2), default=5000, help="use at most this many samples (default 5000)")
    ap.add_argument("--seed", type=int_range(0), default=0, help="seed of the sampling")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    ap.add_argument("--quick", action="store_true", help="fewer trials and k <= 16 (seconds)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``dali-mixup calibrate``: print alpha_k for each k (Algorithm 1 of the k-mixup paper)."""
    from .usage import report

    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.alpha > 0:
        ap.error(f"--alpha must be > 0, got {args.alpha}")
    ks = args.k or ([1, 2, 4, 8, 16] if args.quick else [1, 2, 4, 8, 16, 32])
    n_pairs = args.trials or (1000 if args.quick else 4000)
    try:
        x, desc = load_data(args.data, size=args.size, max_samples=args.max_samples, seed=args.seed,
                            val_split=args.val_split, check_images=args.check_images,
                            skip_bad_images=args.skip_bad_images, log=print)
        too_big = [k for k in ks if 2 * k > x.shape[0]]
        if too_big:
            raise ValueError(f"calibrate: k={too_big[0]} needs at least {2 * too_big[0]} samples, "
                             f"the data has {x.shape[0]}")
        rows = calibrate(x, ks, args.alpha, n_pairs=n_pairs, cost=args.cost, c=args.c,
                         gamma=args.gamma, refine=not args.no_refine, seed=args.seed)
    except ValueError as e:  # UsageError / DataError, and the range checks of calibrate()
        return report(ap.prog, e, args.debug)
    print(format_table(rows, desc, x.shape[0], x.shape[1], n_pairs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": desc, "n": x.shape[0], "d": x.shape[1],
                                         "trials": n_pairs, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

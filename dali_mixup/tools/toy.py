"""Pictures of the vicinal distributions of mixup, k-mixup and zeta-mixup on the papers' toy datasets.

The datasets (the k-mixup paper's ``one_ring``, ``four_bars``, ``swiss_roll``; the zeta-mixup
paper's ``crescents``, ``spirals``, ``helix3``, ``helix12``) are defined in
:mod:`dali_mixup.tools.datasets`, whose names are re-exported here.

``dali-mixup toy`` draws, for each dataset, the data and the vicinal distributions of mixup,
k-mixup and zeta-mixup side by side into a PNG (like Figure 2 of both papers), coloured by
the soft label, and prints the diagnostics of :mod:`dali_mixup.tools.metrics` for each.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .datasets import (DATASETS, TABLE9_XI, crescents, four_bars, helix, make, one_ring,  # noqa: F401
                       oracle_for, spirals, swiss_roll)

__all__ = ["DATASETS", "TABLE9_XI", "make", "one_ring", "four_bars", "swiss_roll", "crescents",
           "spirals", "helix", "vicinal", "oracle_for", "main"]

def vicinal(method: str, x: np.ndarray, y: np.ndarray, *, n_out: int, batch: int = 512, k: int = 32,
            alpha: float = 1.0, gamma: float = 2.8, T: int | None = None, seed: int = 0) -> dict:
    """Draw ``n_out`` vicinal samples of ``method`` ("mixup", "k-mixup" or "zeta-mixup").

    Batches of ``batch`` samples of the dataset go through the array operators with one lam
    per sample (``lam_mode="sample"``), as a vicinal distribution is drawn. Returns the
    originals, outputs, soft labels, sources ``[n_out, S]`` (into ``x``) and per-output xi
    contributions.
    """
    import dali_mixup as dm
    from .metrics import perturbation_distances, sources_of

    rng = np.random.default_rng(seed)
    b = min(batch, x.shape[0])
    outs, labs, srcs, dists = [], [], [], []
    got = 0
    while got < n_out:
        idx = rng.permutation(x.shape[0])[:b]
        xb, yb = x[idx], y[idx]
        if method == "mixup":
            r = dm.mixup(xb, yb, alpha=alpha, num_classes=2, lam_mode="sample", rng=rng)
        elif method == "k-mixup":
            r = dm.k_mixup(xb, yb, k=k, alpha=alpha, num_classes=2, lam_mode="sample", rng=rng)
        elif method == "zeta-mixup":
            r = dm.zeta_mixup(xb, yb, gamma=gamma, T=T, num_classes=2, rng=rng)
        else:
            raise ValueError(f"toy: unknown method {method!r}")
        s = sources_of(r)
        dists.append(perturbation_distances(xb, r.images, s))
        outs.append(np.asarray(r.images))
        labs.append(np.asarray(r.labels))
        srcs.append(idx[s])
        got += b
    cat = lambda a: np.concatenate(a)[:n_out]  # noqa: E731
    return {"images": cat(outs), "labels": cat(labs), "sources": cat(srcs), "dist": cat(dists)}


@dataclass(frozen=True)
class Summary:
    dataset: str
    method: str
    xi: float
    cross_class: float
    local_id: float
    label_error: float
    cross_entropy: float


def _summarise(name, method, x, y, v, oracle, n_neighbors) -> Summary:
    from .metrics import label_error, local_intrinsic_dimension

    src = v["sources"]
    cross = float(np.mean(y[src[:, 0]] != y[src[:, 1]])) if src.shape[1] == 2 else float("nan")
    nn = min(n_neighbors, v["images"].shape[0])
    lid = float(np.mean(local_intrinsic_dimension(v["images"], n_neighbors=nn)))
    le = label_error(v["labels"], oracle, v["images"])
    return Summary(name, method, float(np.sqrt(np.mean(v["dist"] ** 2))), cross, lid, le.rate,
                   le.mean_cross_entropy)


def _project(x: np.ndarray, d: int) -> np.ndarray:
    if x.shape[1] <= d:
        return x
    c = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(c[:4096], full_matrices=False)
    return c @ vt[:d].T


def _draw(ax, pts, colours, three_d, size, alpha=0.8, cmap="coolwarm"):
    if three_d:
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=colours, s=size, cmap=cmap, vmin=0, vmax=1,
                   alpha=alpha, linewidths=0)
    else:
        ax.scatter(pts[:, 0], pts[:, 1], c=colours, s=size, cmap=cmap, vmin=0, vmax=1, alpha=alpha,
                   linewidths=0)


def main(argv: list[str] | None = None) -> int:
    """``dali-mixup toy``: draw mixup, k-mixup and zeta-mixup vicinal distributions to a PNG."""
    ap = argparse.ArgumentParser(prog="dali-mixup toy", description=main.__doc__)
    ap.add_argument("--dataset", default="one_ring,four_bars,swiss_roll",
                    help=f"comma-separated names or 'all' ({', '.join(DATASETS)}); "
                         "default: the k-mixup paper's three")
    ap.add_argument("--out", type=Path, default=Path("runs/toy.png"), help="PNG path (default runs/toy.png)")
    ap.add_argument("--n", type=int, default=None, help="samples per dataset (default: the paper's)")
    ap.add_argument("--n-vicinal", type=int, default=512, help="vicinal samples per panel (default 512)")
    ap.add_argument("--batch", type=int, default=512, help="batch size fed to the operators (default 512)")
    ap.add_argument("--k", type=int, default=32, help="k of k-mixup (default 32, as in Figure 2)")
    ap.add_argument("--alpha", type=float, default=1.0, help="alpha of mixup and k-mixup (default 1)")
    ap.add_argument("--match-xi", action="store_true",
                    help="raise k-mixup's alpha to alpha_k (Algorithm 1) so that its xi equals mixup's")
    ap.add_argument("--gamma", type=float, default=2.8, help="gamma of zeta-mixup (default 2.8)")
    ap.add_argument("--T", type=int, default=None, help="T of zeta-mixup (default: the whole batch)")
    ap.add_argument("--neighbors", type=int, default=32, help="neighbourhood size of the local ID (default 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the diagnostics as JSON here")
    ap.add_argument("--quick", action="store_true", help="256 samples per dataset and panel (seconds)")
    args = ap.parse_args(argv)
    names = list(DATASETS) if args.dataset == "all" else [s for s in args.dataset.split(",") if s]
    bad = [s for s in names if s not in DATASETS]
    if bad or not names:
        ap.error(f"unknown dataset {bad[0] if bad else args.dataset!r}; choose from {', '.join(DATASETS)} or 'all'")
    if args.k < 1 or args.n_vicinal < 1 or args.batch < 2 or not args.alpha > 0:
        ap.error("--k >= 1, --n-vicinal >= 1, --batch >= 2 and --alpha > 0 are required")
    n_vic = min(args.n_vicinal, 256) if args.quick else args.n_vicinal

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .calibrate import alpha_for_k, mean_sq_distance, mean_sq_w2

    methods = ["mixup", "k-mixup", "zeta-mixup"]
    fig = plt.figure(figsize=(4 * (1 + len(methods)), 3.6 * len(names)))
    rows: list[Summary] = []
    for r_i, name in enumerate(names):
        n = args.n or (256 if args.quick else None)
        x, y = make(name, n=n, seed=args.seed)
        oracle = oracle_for(name, n=4000 if args.quick else 20000)
        k_alpha = args.alpha
        if args.match_xi and args.k > 1 and 2 * args.k <= x.shape[0]:
            rng = np.random.default_rng(args.seed)
            k_alpha, _ = alpha_for_k(args.alpha, mean_sq_distance(x, 2000, rng),
                                     mean_sq_w2(x, args.k, 2000, rng))
        three_d = x.shape[1] >= 3
        show = _project(x, 3 if three_d else 2)
        kw = {"projection": "3d"} if three_d else {}
        ax = fig.add_subplot(len(names), 1 + len(methods), r_i * (1 + len(methods)) + 1, **kw)
        sub = np.random.default_rng(0).permutation(x.shape[0])[:2048]
        _draw(ax, show[sub], y[sub].astype(float), three_d, 4)
        ax.set_title(f"{name}: data (n={x.shape[0]})", fontsize=9)
        for m_i, method in enumerate(methods):
            v = vicinal(method, x, y, n_out=n_vic, batch=args.batch, k=args.k,
                        alpha=k_alpha if method == "k-mixup" else args.alpha, gamma=args.gamma, T=args.T,
                        seed=args.seed + 1 + m_i)
            s = _summarise(name, method, x, y, v, oracle, args.neighbors)
            rows.append(s)
            pv = _project(np.concatenate([x, v["images"]]), 3 if three_d else 2)[x.shape[0]:]
            ax = fig.add_subplot(len(names), 1 + len(methods), r_i * (1 + len(methods)) + 2 + m_i, **kw)
            _draw(ax, show[sub], np.full(sub.size, 0.5), three_d, 2, alpha=0.15, cmap="Greys")
            if method != "zeta-mixup" and not three_d:  # the couplings, as in Figure 2 (top row)
                src = v["sources"][:128]
                for a_, b_ in src:
                    ax.plot(*zip(show[a_], show[b_]), color="0.6", lw=0.3, alpha=0.5)
            _draw(ax, pv, v["labels"][:, 1], three_d, 4)
            label = {"mixup": f"mixup a={args.alpha:g}",
                     "k-mixup": f"{args.k}-mixup a={k_alpha:.3g}",
                     "zeta-mixup": f"zeta-mixup g={args.gamma:g}"}[method]
            ax.set_title(f"{label}\nxi={s.xi:.3f} label err={s.label_error:.1%} ID={s.local_id:.2f}",
                         fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80 if args.quick else 110)
    plt.close(fig)
    print(f"{'dataset':<11} {'method':<11} {'xi':>7} {'cross-class':>11} {'local ID':>8} "
          f"{'label err':>9} {'CE':>7}")
    for s in rows:
        cc = "n/a" if math.isnan(s.cross_class) else f"{s.cross_class:.3f}"
        print(f"{s.dataset:<11} {s.method:<11} {s.xi:>7.3f} {cc:>11} {s.local_id:>8.2f} "
              f"{s.label_error:>9.3f} {s.cross_entropy:>7.3f}")
    print(f"wrote {args.out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(s).items()}
                 for s in rows]
        args.json.write_text(json.dumps(clean, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The main job: ERM vs mixup vs k-mixup vs zeta-mixup on real images, CPU, a few minutes.

::

    dali-mixup demo                 # scikit-learn's 8x8 digits, written once as PNGs
    dali-mixup demo --quick         # the same in well under a minute (fewer epochs)
    dali-mixup demo --data DIR      # your ImageFolder (DIR/train + DIR/val, or DIR/<class>/..)

The digits (1797 images, 10 classes, shipped inside scikit-learn) are written once to an
image-folder cache of PNG files (``train/<digit>/*.png``, ``val/<digit>/*.png``, a fixed
stratified 80/20 split), then read back with DALI's file reader and image decoder, exactly as a
user's folder would be. Each method trains the same small CNN from the same seed; the demo
prints a table of validation accuracy, writes every run's JSON, one learning-curve plot of all
methods and picture grids of one k-mixup and one zeta-mixup batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .common import DeviceError
from .train import TrainConfig, plot_history, run

METHODS = {  # name shown -> mixing and its parameters
    "ERM": dict(mixing="none"),
    "mixup": dict(mixing="mixup", alpha=1.0),
    "k-mixup": dict(mixing="kmixup", alpha=1.0, k=16),
    "zeta-mixup": dict(mixing="zeta", gamma=2.8),
}


def default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dali-mixup", "digits")


def write_digits_cache(root: str, val_fraction: float = 0.2, seed: int = 0) -> str:
    """Write the digits as ``root/{train,val}/<digit>/<n>.png`` (8x8 grayscale) once."""
    from PIL import Image

    from .arrays import digits_split

    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    xt, yt, xv, yv = digits_split(val_fraction, seed)
    tmp = root + f".tmp{os.getpid()}"
    for part, x, y in (("train", xt, yt), ("val", xv, yv)):
        for c in range(10):
            os.makedirs(os.path.join(tmp, part, str(c)), exist_ok=True)
        for i, (img, lab) in enumerate(zip(x, y)):
            Image.fromarray(img[..., 0], mode="L").save(
                os.path.join(tmp, part, str(int(lab)), f"{i:04d}.png"))
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write(f"{len(yt)} train, {len(yv)} val\n")
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    try:
        os.rename(tmp, root)
    except OSError:  # another process won the race; use its copy
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _mean_history(hists: list[list[dict]]) -> list[dict]:
    keys = ("train_loss", "val_loss", "val_acc")
    return [dict(epoch=hs[0]["epoch"], **{k: float(np.mean([h[k] for h in hs])) for k in keys})
            for hs in zip(*hists)]


def format_table(rows: list[dict]) -> str:
    """Final accuracy (mean +- std over seeds), best epoch, val loss, speed, time."""
    head = (f"{'method':<12} {'val acc (final)':>17} {'best epoch':>10} {'val loss':>9} "
            f"{'train img/s':>11} {'time (s)':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{100 * r['final_val_acc']:.2f}%"
        if len(r.get("final_val_accs", [])) > 1:
            acc += f" +- {100 * r['final_val_acc_std']:.2f}"
        lines.append(f"{r['method']:<12} {acc:>17} {100 * r['best_val_acc']:>9.2f}% "
                     f"{r['final_val_loss']:>9.4f} {r['train_img_s']:>11.0f} "
                     f"{r['time_s']:>8.1f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dali-mixup demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", metavar="DIR", default=None,
                   help="your ImageFolder instead of the digits (DIR/train + DIR/val, or "
                   "DIR/<class>/<image> split 80/20)")
    p.add_argument("--quick", action="store_true",
                   help="a short run (a few epochs) that finishes in well under a minute")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default: 20, --quick: 4)")
    p.add_argument("--seeds", type=int, default=None,
                   help="runs per method with seeds seed, seed+1, ... (default: 3, --quick: 1)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--model", choices=("small_cnn", "resnet18"), default="small_cnn")
    p.add_argument("--width", type=int, default=None,
                   help="small_cnn channels (default: 16 for the digits, 32 for --data)")
    p.add_argument("--size", type=int, default=None,
                   help="training image size (default: 16 for the digits, 64 for --data)")
    p.add_argument("--gray", action="store_true", help="decode --data images to one channel")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--k", type=int, default=16, help="k-mixup block size")
    p.add_argument("--alpha", type=float, default=1.0, help="mixup / k-mixup Beta(alpha, alpha)")
    p.add_argument("--gamma", type=float, default=2.8, help="zeta-mixup exponent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--cache", default=None, help="digits image cache (default: "
                   "$XDG_CACHE_HOME/dali-mixup/digits)")
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    epochs = a.epochs or (4 if a.quick else 20)
    a.seeds = a.seeds or (1 if a.quick else 3)
    try:
        from .common import resolve_device
        resolve_device(a.device)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.data is None:
        data = write_digits_cache(a.cache or default_cache())
        dataset, gray, size = "scikit-learn digits (8x8, 10 classes)", True, a.size or 16
        crop_scale, flip = (0.6, 1.0), False  # digits are not mirror-symmetric
    else:
        data, dataset, gray, size = a.data, a.data, a.gray, a.size or 64
        crop_scale, flip = (0.35, 1.0), True
    width = a.width or (16 if a.data is None else 32)
    os.makedirs(a.out, exist_ok=True)
    print(f"dataset: {dataset} from {data}\nmodel: {a.model} (width {width}), {epochs} epochs x "
          f"{a.seeds} seed(s), batch {a.batch_size}, size {size}, device {a.device}")
    rows, histories, results = [], {}, {}
    for label in a.methods:
        params = dict(METHODS[label])
        if params["mixing"] in ("mixup", "kmixup"):
            params["alpha"] = a.alpha
        if params["mixing"] == "kmixup":
            params["k"] = a.k
        if params["mixing"] == "zeta":
            params["gamma"] = a.gamma
        runs = []
        for s in range(a.seeds):
            name = params["mixing"] if a.seeds == 1 else f"{params['mixing']}_seed{a.seed + s}"
            cfg = TrainConfig(data=data, model=a.model, width=width, size=size, gray=gray,
                              crop_scale=crop_scale, flip=flip, epochs=epochs,
                              batch_size=a.batch_size, lr=a.lr,
                              warmup_epochs=min(1.0, epochs / 3), seed=a.seed + s,
                              device=a.device, out=a.out, name=name, progress=a.progress,
                              plot=False, extra={"method": label}, **params)
            runs.append(run(cfg))
        results[label] = runs
        histories[label] = _mean_history([r["history"] for r in runs])
        acc = np.array([r["final_val_acc"] for r in runs])
        rows.append(dict(method=label, final_val_acc=float(acc.mean()),
                         final_val_acc_std=float(acc.std()),
                         final_val_accs=acc.tolist(),
                         best_val_acc=float(np.mean([r["best_val_acc"] for r in runs])),
                         final_val_loss=float(np.mean([r["history"][-1]["val_loss"]
                                                       for r in runs])),
                         train_img_s=float(np.mean([r["mean_train_samples_per_s"]
                                                    for r in runs])),
                         time_s=float(sum(r["total_time_s"] for r in runs))))
        print(f"  {label:<11} val acc {100 * acc.mean():.2f}%"
              + (f" +- {100 * acc.std():.2f}" if a.seeds > 1 else "")
              + f"  ({rows[-1]['time_s']:.1f} s)", flush=True)
    curves = plot_history(histories, os.path.join(a.out, "learning_curves.png"))
    from .preview import mixed_batch, plot_batch
    grids = {}
    for mixing, label in (("kmixup", "k-mixup"), ("zeta", "zeta-mixup")):
        batch = mixed_batch(_train_dir(data), mixing=mixing,
                            batch_size=16, size=size, gray=gray, k=8, alpha=a.alpha,
                            gamma=a.gamma, seed=a.seed, crop_scale=crop_scale, flip=flip,
                            device=a.device)
        grids[mixing] = plot_batch(batch, os.path.join(a.out, f"{mixing}_batch.png"),
                                   title=f"one {label} batch (k=8 of 16 for the picture): mixed "
                                   "images and their top-3 soft-label weights"
                                   if mixing == "kmixup" else None)
    table = format_table(rows)
    summary = dict(dataset=dataset, data=data, epochs=epochs, model=a.model, size=size,
                   batch_size=a.batch_size, device=a.device, quick=a.quick, table=rows,
                   learning_curves=curves, grids=grids,
                   seeds=a.seeds, num_train=next(iter(results.values()))[0]["num_train"],
                   num_val=next(iter(results.values()))[0]["num_val"],
                   cpu_count=os.cpu_count(), total_time_s=time.perf_counter() - t0)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nvalidation accuracy ({summary['num_val']} images, {summary['num_train']} "
          f"training images, {epochs} epochs, {a.seeds} seed(s) per method"
          f"{', mean +- std' if a.seeds > 1 else ''}):\n{table}")
    print(f"\nlearning curves: {curves}\nmixed batches: {', '.join(grids.values())}\n"
          f"results: {os.path.join(a.out, 'summary.json')}  (total {summary['total_time_s']:.1f} s)")
    return 0


def _train_dir(data: str) -> str:
    tr = os.path.join(data, "train")
    return tr if os.path.isdir(tr) else data


if __name__ == "__main__":
    sys.exit(main())

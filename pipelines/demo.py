"""The main job: what mixing buys, measured: ERM vs mixup vs k-mixup vs zeta-mixup on real images.

::

    dali-mixup demo                 # scikit-learn's 8x8 digits, written once as PNGs (~4 min)
    dali-mixup demo --quick         # the same protocol, shortened, in well under a minute
    dali-mixup demo --full          # 5 seeds and a third training-set size
    dali-mixup demo --data DIR      # your ImageFolder (DIR/train + DIR/val, or DIR/<class>/..)

The digits (1797 images, 10 classes, shipped inside scikit-learn) are written once to an
image-folder cache of PNG files (``train/<digit>/*.png``, ``val/<digit>/*.png``, a fixed
stratified 80/20 split), then read back with DALI's file reader and image decoder, exactly as a
user's folder would be.

Every method trains the same small CNN with the same hyper-parameters from the same seeds
(only k-mixup's alpha_k differs, by the k-mixup paper's own rule). The methods:

* ``ERM``: no mixing;
* ``mixup``: alpha = 1;
* ``k-mixup``: k = 16, alpha = 1;
* ``k-mixup-xi``: k = 16 at alpha_k, chosen by Algorithm 1 of the k-mixup paper
  (:mod:`dali_mixup.tools.calibrate`) so that its mean perturbation xi equals mixup's at alpha = 1;
* ``zeta-mixup``: gamma = 2.8; ``zeta-mixup-U``: gamma ~ U[1.72865, 4.0] per batch (the paper's
  range).

Each runs on the whole training set and on stratified random subsets (scarce data; the
subset depends on the seed, and is the same for every method at a seed). A subset run takes as
many SGD steps as the full run (more epochs), so every run gets the same compute. After
training, :mod:`dali_mixup.pipelines.evaluate` measures on the validation set: clean accuracy, NLL, ECE (15
bins), accuracy under additive Gaussian noise and under white-box FGSM (both on the 0..255
pixel scale). The demo prints mean +- std over seeds and paired differences against ERM and
against mixup (the same seed: same initial weights, subset and reader order), and writes
``summary.json``, ``results.md`` (the tables), ``noise.png``, ``fgsm.png``,
``reliability.png``, ``learning_curves.png``, one run folder per run (``NAME/results.json``,
``NAME/best.pt``, ...) and picture grids of one
k-mixup and one zeta-mixup batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .common import DeviceError
from .evaluate import FGSM_EPS, NOISE_SIGMAS, mean_std, paired_difference
from .plots import finish, pyplot
from .train import TrainConfig, run, stratified_subset

ZETA_RANGE = (1.72865, 4.0)

#: name shown -> (file name, mixing and its parameters); "alpha_k" is filled in by calibration.
#: The file names start with the mixing's name (the operator's: ``k_mixup``, ``zeta_mixup``).
METHODS = {
    "ERM": ("none", dict(mixing="none")),
    "mixup": ("mixup", dict(mixing="mixup")),
    "k-mixup": ("k_mixup", dict(mixing="k_mixup")),
    "k-mixup-xi": ("k_mixup_xi", dict(mixing="k_mixup", alpha="alpha_k")),
    "zeta-mixup": ("zeta_mixup", dict(mixing="zeta_mixup")),
    "zeta-mixup-U": ("zeta_mixup_U", dict(mixing="zeta_mixup", gamma=ZETA_RANGE)),
}

#: the per-seed scalars compared across methods: key -> (column title, scale, lower is better)
METRICS = {
    "acc": ("acc %", 100.0, False),
    "nll": ("NLL", 1.0, True),
    "ece": ("ECE %", 100.0, True),
    "noise_acc_mean": ("noise acc %", 100.0, False),
    "fgsm_acc_mean": ("FGSM acc %", 100.0, False),
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


# ----------------------------------------------------------------------------- protocol


def schedule(n_full: int, n_subset: int, batch_size: int, epochs: int) -> tuple[int, int]:
    """``(epochs, val_every)`` for a subset of ``n_subset`` of ``n_full`` training images:
    as many SGD steps as ``epochs`` on the full set, validated about ``epochs`` times."""
    full, sub = n_full // batch_size, n_subset // batch_size
    if sub < 1:
        raise ValueError(f"a training subset of {n_subset} images holds no full batch of "
                         f"{batch_size}; use a larger --fractions value or --batch-size")
    ep = max(1, int(round(epochs * full / sub)))
    return ep, max(1, int(round(ep / epochs)))


def method_params(label: str, a, alpha_k: float | None) -> dict:
    """Mixing parameters of a method under the command-line settings ``a``."""
    params = dict(METHODS[label][1])
    if params["mixing"] in ("mixup", "k_mixup"):
        params["alpha"] = alpha_k if params.get("alpha") == "alpha_k" else a.alpha
    if params["mixing"] == "k_mixup":
        params["k"] = a.k
    if params["mixing"] == "zeta_mixup":
        params.setdefault("gamma", a.gamma)
    return params


def calibrate_alpha_k(data: str, k: int, alpha: float, size: int, **options) -> dict:
    """Algorithm 1 of the k-mixup paper on the training images of the dataset folder ``data``
    at the training size (``options``: ``val_split``, ``check_images``, ``skip_bad_images`` of
    :func:`dali_mixup.tools.datasets.load_data`)."""
    from dali_mixup.tools.calibrate import calibrate
    from dali_mixup.tools.datasets import load_data

    x, desc = load_data(data, size=size, **options)
    row = calibrate(x, [k], alpha, seed=0, reference=False)[0]
    return dict(k=k, alpha=alpha, alpha_k=row.alpha_k, xi_target=row.xi_target,
                xi_k_at_alpha=row.xi_k_at_alpha, xi_k=row.xi_k, reachable=row.reachable,
                data=desc)


def aggregate(runs: list[dict]) -> dict:
    """Per-seed values, mean and std of every metric of one method in one setting, plus the
    noise / FGSM curves (mean, std per level) and the reliability bins pooled over seeds."""
    rob = [r["robustness"] for r in runs]
    out = dict(seeds=[r["config"]["seed"] for r in runs])
    for key in METRICS:
        vals = [float(x[key]) for x in rob]
        m, s = mean_std(vals)
        out[key] = dict(values=vals, mean=m, std=s)
    for key in ("noise_acc", "fgsm_acc"):
        a = np.array([x[key] for x in rob], dtype=np.float64)
        out[key] = dict(mean=a.mean(0).tolist(),
                        std=(a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])).tolist())
    cnt = np.sum([x["bins"]["count"] for x in rob], axis=0)
    conf = np.sum([np.nan_to_num(np.array(x["bins"]["confidence"], dtype=np.float64))
                   * np.array(x["bins"]["count"]) for x in rob], axis=0)
    corr = np.sum([np.nan_to_num(np.array(x["bins"]["accuracy"], dtype=np.float64))
                   * np.array(x["bins"]["count"]) for x in rob], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bins"] = dict(count=cnt.tolist(),
                           confidence=[None if c == 0 else float(v / c) for v, c in zip(conf, cnt)],
                           accuracy=[None if c == 0 else float(v / c) for v, c in zip(corr, cnt)])
    out["time_s"] = float(sum(r["total_time_s"] for r in runs))
    out["train_img_s"] = float(np.mean([r["mean_train_samples_per_s"] for r in runs]))
    hs = [r["history"] for r in runs]
    out["history"] = [dict(epoch=col[0]["epoch"], step=col[0]["step"],
                           **{k: float(np.mean([x[k] for x in col]))
                              for k in ("train_loss", "val_loss", "val_acc")})
                      for col in zip(*hs)]
    return out


def differences(by_method: dict, reference: str) -> dict:
    """Paired differences (method - reference, same seeds) of every metric, per method."""
    ref = by_method.get(reference)
    if ref is None:
        return {}
    out = {}
    for label, agg in by_method.items():
        if label == reference:
            continue
        out[label] = {key: paired_difference(agg[key]["values"], ref[key]["values"])
                      for key in METRICS}
    return out


# ----------------------------------------------------------------------------- tables


def _pm(mean: float, std: float, scale: float, n: int, digits: int) -> str:
    s = f"{scale * mean:.{digits}f}"
    return s + (f" +- {scale * std:.{digits}f}" if n > 1 else "")


def _digits(key: str) -> int:
    return 3 if key == "nll" else 2


def table_rows(setting: dict) -> list[list[str]]:
    """Rows (method, one cell per metric) of one setting: mean +- std over seeds."""
    rows = []
    for label, agg in setting["methods"].items():
        n = len(agg["seeds"])
        rows.append([label] + [_pm(agg[k]["mean"], agg[k]["std"], sc, n, _digits(k))
                               for k, (_, sc, _) in METRICS.items()])
    return rows


def diff_rows(diffs: dict) -> list[list[str]]:
    """Rows of paired differences: mean +- std, ``*`` when the 95% t-interval excludes 0."""
    rows = []
    for label, d in diffs.items():
        cells = [label]
        for k, (_, sc, _) in METRICS.items():
            x = d[k]
            cell = f"{round(sc * x['mean'], _digits(k)) + 0.0:+.{_digits(k)}f}"  # no "-0.00"
            if x["n"] > 1:
                cell += f" +- {sc * x['std']:.{_digits(k)}f}" + ("*" if x["beyond_noise"] else "")
            cells.append(cell)
        rows.append(cells)
    return rows


def curve_rows(setting: dict, key: str) -> list[list[str]]:
    rows = []
    for label, agg in setting["methods"].items():
        rows.append([label] + [f"{100 * m:.1f}" for m in agg[key]["mean"]])
    return rows


def text_table(head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]

    def fmt(r):
        return "  ".join(str(c).ljust(w[0]) if i == 0 else str(c).rjust(w[i])
                         for i, c in enumerate(r))
    return "\n".join([fmt(head), "-" * (sum(w) + 2 * (len(w) - 1))] + [fmt(r) for r in rows])


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def setting_title(s: dict) -> str:
    return (f"{s['name']}: {s['num_train']} training images, {s['epochs']} epochs "
            f"({s['steps']} SGD steps), {s['seeds']} seed(s)")


def report(summary: dict, table=text_table) -> str:
    """The whole printed report (``table=md_table`` for Markdown)."""
    heads = ["method"] + [t for t, _, _ in METRICS.values()]
    out = []
    for s in summary["settings"]:
        out += [f"\n{setting_title(s)}  (mean +- std over seeds)", table(heads, table_rows(s))]
        for ref in ("ERM", "mixup"):
            if s["diffs"].get(ref):
                out += [f"paired difference vs {ref} (method - {ref}, same seeds; "
                        "* = 95% t-interval excludes 0)", table(heads, diff_rows(s["diffs"][ref]))]
        out += ["accuracy % under Gaussian noise, by sigma (0..255 scale)",
                table(["method"] + [f"{v:g}" for v in summary["noise_sigmas"]],
                      curve_rows(s, "noise_acc")),
                "accuracy % under FGSM, by eps (0..255 scale)",
                table(["method"] + [f"{v:g}" for v in summary["fgsm_eps"]],
                      curve_rows(s, "fgsm_acc"))]
    return "\n".join(out)


# ----------------------------------------------------------------------------- figures


def _panels(n: int, w: float = 4.6, h: float = 3.6):
    fig, axes = pyplot().subplots(1, n, figsize=(w * n, h), squeeze=False)
    return fig, axes[0]


def plot_curves(summary: dict, key: str, path: str) -> str:
    """Accuracy against the noise sigma (``key="noise_acc"``) or the FGSM eps
    (``"fgsm_acc"``), one panel per setting, mean +- std over seeds."""
    grid = summary["noise_sigmas" if key == "noise_acc" else "fgsm_eps"]
    fig, axes = _panels(len(summary["settings"]))
    for ax, s in zip(axes, summary["settings"]):
        for i, (label, agg) in enumerate(s["methods"].items()):
            m = 100 * np.array(agg[key]["mean"])
            sd = 100 * np.array(agg[key]["std"])
            x = np.arange(len(grid)) + (i - 2.5) * 0.04
            ax.errorbar(x, m, yerr=sd, marker="o", ms=3, capsize=2, color=f"C{i}", label=label)
        ax.set_xticks(range(len(grid)), [f"{v:g}" for v in grid])
        ax.set(xlabel=("Gaussian noise sigma" if key == "noise_acc" else "FGSM eps")
               + " (0..255 scale)", ylabel="validation accuracy (%)",
               title=f"{s['name']} ({s['num_train']} images)")
    axes[0].legend(fontsize=7)
    return finish(fig, path, axes)


def plot_reliability(summary: dict, path: str) -> str:
    """Reliability diagram (accuracy against mean confidence per bin, bins pooled over the
    seeds), one panel per setting; the diagonal is perfect calibration."""
    fig, axes = _panels(len(summary["settings"]))
    for ax, s in zip(axes, summary["settings"]):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        for i, (label, agg) in enumerate(s["methods"].items()):
            b = agg["bins"]
            pts = [(c, a) for c, a in zip(b["confidence"], b["accuracy"]) if c is not None]
            if pts:
                c, a = zip(*pts)
                ece = 100 * agg["ece"]["mean"]
                ax.plot(c, a, marker="o", ms=3, color=f"C{i}", label=f"{label} (ECE {ece:.1f}%)")
        ax.set(xlabel="confidence (bin mean)", ylabel="accuracy in the bin",
               title=f"{s['name']}: {summary['ece_bins']} bins", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.legend(fontsize=6)
    return finish(fig, path, axes)


def plot_learning(summary: dict, path: str) -> str:
    """Training loss (on mixed batches), validation loss and accuracy against SGD steps; one
    row per setting, mean over seeds."""
    n = len(summary["settings"])
    fig, axes = pyplot().subplots(n, 2, figsize=(10, 3.4 * n), squeeze=False)
    for (a1, a2), s in zip(axes, summary["settings"]):
        for i, (label, agg) in enumerate(s["methods"].items()):
            h = agg["history"]
            st = [x["step"] for x in h]
            a1.plot(st, [x["train_loss"] for x in h], f"C{i}", ls="--", lw=1)
            a1.plot(st, [x["val_loss"] for x in h], f"C{i}", label=label)
            a2.plot(st, [100 * x["val_acc"] for x in h], f"C{i}", marker="o", ms=2, label=label)
        a1.set(xlabel="SGD step", ylabel="cross-entropy", yscale="log",
               title=f"{s['name']}: loss (dashed: training, on mixed batches)")
        a2.set(xlabel="SGD step", ylabel="accuracy (%)", title=f"{s['name']}: validation accuracy")
        a2.set_ylim(max(0, min(100 * x["val_acc"] for agg in s["methods"].values()
                               for x in agg["history"][len(agg["history"]) // 2:]) - 5), 100.5)
        a2.legend(fontsize=7)
    return finish(fig, path, axes.ravel())


# ----------------------------------------------------------------------------- running


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_all(cfgs: list[TrainConfig], jobs: int = 1):
    """Results of ``run(cfg)`` for every config, in order; ``jobs > 1`` runs them in that many
    fresh processes (``spawn``: DALI and torch are started in each), every run still
    deterministic given its config."""
    if jobs <= 1:
        for cfg in cfgs:
            yield run(cfg, log=None)  # the dataset line is printed once, by main
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run, cfg, log=None) for cfg in cfgs]
        for f in futures:
            yield f.result()


# ----------------------------------------------------------------------------- CLI


def _fraction_name(f: float) -> str:
    return "full training set" if f == 1.0 else f"{100 * f:g}% of the training set"


def build_parser() -> argparse.ArgumentParser:
    from dali_mixup.tools.usage import ArgumentParser, add_dataset_arguments, float_range, int_range

    from .train import MIN_SIZE

    p = ArgumentParser(prog="dali-mixup demo", description=__doc__.split("\n\n")[0])
    pos_int, positive, nonneg = int_range(1), float_range(0, lo_open=True), float_range(0)
    add_dataset_arguments(p, data_help="your dataset folder instead of the digits (as for 'dali-mixup train "
                          "--data': DIR/train + DIR/val, or DIR/<class>/<image> split 80/20) "
                          "(default: the digits)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="4 epochs, 1 seed, full set and 25%%: well under a minute")
    mode.add_argument("--full", action="store_true",
                      help="5 seeds; full set, 25%% and 10%% of it")
    p.add_argument("--epochs", type=pos_int, default=None,
                   help="epochs on the full training set (default: 20, --quick: 4); subsets "
                   "train for as many SGD steps")
    p.add_argument("--seeds", type=pos_int, default=None,
                   help="runs per method and setting, seeds seed, seed+1, ... (default: 3, "
                   "--quick: 1, --full: 5)")
    p.add_argument("--fractions", type=float_range(0, 1, lo_open=True), nargs="+", default=None,
                   help="training-set fractions (default: 1 0.1; --quick: 1 0.25; --full: "
                   "1 0.25 0.1)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="the methods compared")
    p.add_argument("--model", choices=("small_cnn", "resnet18"), default="small_cnn",
                   help="the classifier")
    p.add_argument("--width", type=pos_int, default=None,
                   help="small_cnn channels (default: 16 for the digits, 32 for --data)")
    p.add_argument("--size", type=int_range(MIN_SIZE), default=None,
                   help="training image size (default: 16 for the digits, 64 for --data)")
    p.add_argument("--gray", action="store_true", help="decode --data images to one channel")
    p.add_argument("--batch-size", type=pos_int, default=64, help="training batch size")
    p.add_argument("--lr", type=positive, default=0.05, help="SGD peak learning rate")
    p.add_argument("--k", type=pos_int, default=16, help="k-mixup block size")
    p.add_argument("--alpha", type=positive, default=1.0, help="mixup / k-mixup Beta(alpha, alpha)")
    p.add_argument("--gamma", type=positive, default=2.8, help="zeta-mixup exponent")
    p.add_argument("--noise-sigmas", type=nonneg, nargs="+", default=list(NOISE_SIGMAS),
                   metavar="S", help="Gaussian noise std, 0..255 pixel scale")
    p.add_argument("--fgsm-eps", type=nonneg, nargs="+", default=list(FGSM_EPS), metavar="E",
                   help="FGSM step, 0..255 pixel scale")
    p.add_argument("--seed", type=int_range(0), default=0, help="the first seed")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where DALI and torch run")
    p.add_argument("--cache", default=None, help="digits image cache (default: "
                   "$XDG_CACHE_HOME/dali-mixup/digits)")
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    p.add_argument("--jobs", type=pos_int, default=1,
                   help="training runs at a time, each in its own process with CPUs / jobs - 1 "
                   "torch threads (for many-core machines: on 2 cores, 2 jobs were no faster "
                   "than 1); progress bars only with 1")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars or per-epoch lines")
    return p


def protocol(a: argparse.Namespace) -> tuple[int, int, list[float]]:
    """``(epochs, seeds, fractions)`` of the parsed command line (``--quick`` / ``--full`` /
    the default, each overridable)."""
    epochs = a.epochs or (4 if a.quick else 20)
    seeds = a.seeds or (1 if a.quick else 5 if a.full else 3)
    fractions = a.fractions or ([1.0, 0.25] if a.quick else [1.0, 0.25, 0.1] if a.full
                                else [1.0, 0.1])
    return epochs, seeds, [float(f) for f in fractions]


def main(argv: list[str] | None = None) -> int:
    from dali_mixup.tools.usage import UsageError, report

    p = build_parser()
    a = p.parse_args(argv)
    try:
        return _main(a)
    except (UsageError, DeviceError) as e:
        return report(p.prog, e, a.debug)


def _main(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    epochs, seeds, fractions = protocol(a)
    if any(not 0 < f <= 1 for f in fractions):
        print(f"error: --fractions must lie in (0, 1], got {fractions}", file=sys.stderr)
        return 2
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

    from .imagefolder import load_imagefolders
    data_options = dict(val_split=a.val_split, check_images=a.check_images,
                        skip_bad_images=a.skip_bad_images)
    if a.data is None:  # the cache this command wrote
        data_options = dict(check_images=False)
    train_folder, val_folder = load_imagefolders(data, **data_options,
                                                 log=None if a.data is None else print)
    n_full = len(train_folder)
    alpha_k = None
    if any(METHODS[m][1].get("alpha") == "alpha_k" for m in a.methods):
        cal = calibrate_alpha_k(data, a.k, a.alpha, size, **data_options)
        alpha_k = cal["alpha_k"]
    else:
        cal = None
    print(f"dataset: {dataset} from {data}: {n_full} training, {len(val_folder)} validation "
          f"images\nmodel: {a.model} (width {width}), batch {a.batch_size}, size {size}, SGD lr "
          f"{a.lr}, {epochs} epochs on the full set, {seeds} seed(s), device {a.device}")
    if cal:
        print(f"alpha_k for k={a.k} (k-mixup Algorithm 1 on the training images): "
              f"{alpha_k:.3f} (xi at alpha={a.alpha:g}: {cal['xi_k_at_alpha']:.3f}, "
              f"at alpha_k: {cal['xi_k']:.3f} = mixup's {cal['xi_target']:.3f})")

    jobs = max(1, a.jobs)
    if a.device == "gpu":
        jobs = 1  # one process owns the GPU
    plan, settings = [], []
    for frac in fractions:
        n_sub = len(stratified_subset(train_folder.labels, frac, a.seed))
        try:
            ep, val_every = schedule(n_full, n_sub, a.batch_size, epochs)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        s = dict(name=_fraction_name(frac), fraction=frac, num_train=n_sub, epochs=ep,
                 val_every=val_every, steps=ep * (n_sub // a.batch_size), seeds=seeds,
                 methods={})
        settings.append(s)
        tag = "" if frac == 1.0 else f"_{100 * frac:g}pct"
        for label in a.methods:
            slug, _ = METHODS[label]
            params = method_params(label, a, alpha_k)
            s["methods"][label] = dict(params={k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in params.items()})
            for i in range(seeds):
                seed = a.seed + i
                cfg = TrainConfig(
                    data=data, model=a.model, width=width, size=size, gray=gray,
                    crop_scale=crop_scale, flip=flip, epochs=ep, val_every=val_every,
                    train_fraction=frac, batch_size=a.batch_size, lr=a.lr,
                    warmup_epochs=min(1.0, epochs / 3) * ep / epochs, seed=seed,
                    device=a.device, out=a.out, name=f"{slug}{tag}_seed{seed}", **data_options,
                    overwrite=True, checkpoints=False,  # the demo rewrites its own folder; short runs
                    progress=a.progress and jobs == 1, plot=False, eval_robustness=True,
                    noise_sigmas=tuple(a.noise_sigmas), fgsm_eps=tuple(a.fgsm_eps),
                    torch_threads=max(1, _cpus() // jobs - 1) if jobs > 1 else None,
                    extra={"method": label, "setting": s["name"]}, **params)
                plan.append((s, label, cfg))
    print(f"{len(plan)} training runs, {jobs} at a time", flush=True)
    results = iter(run_all([cfg for _, _, cfg in plan], jobs))
    current = None
    for i in range(0, len(plan), seeds):
        s, label, _ = plan[i]
        if s is not current:
            print(f"\n{setting_title(s)}", flush=True)
            current = s
        agg = aggregate([next(results) for _ in range(seeds)])
        s["methods"][label].update(agg)
        acc, ece = agg["acc"], agg["ece"]
        print(f"  {label:<13} acc {_pm(acc['mean'], acc['std'], 100, seeds, 2)}%  "
              f"ECE {_pm(ece['mean'], ece['std'], 100, seeds, 2)}%  "
              f"noise {100 * agg['noise_acc_mean']['mean']:.2f}%  "
              f"FGSM {100 * agg['fgsm_acc_mean']['mean']:.2f}%  "
              f"(train {agg['time_s']:.1f} s)", flush=True)
    for s in settings:
        s["diffs"] = {ref: differences(s["methods"], ref) for ref in ("ERM", "mixup")}

    summary = dict(dataset=dataset, data=data, model=a.model, width=width, size=size, jobs=jobs,
                   batch_size=a.batch_size, lr=a.lr, epochs=epochs, seeds=seeds,
                   device=a.device, quick=a.quick, full=a.full, num_val=len(val_folder),
                   num_train=n_full, alpha=a.alpha, k=a.k, gamma=a.gamma,
                   zeta_range=list(ZETA_RANGE), calibration=cal,
                   noise_sigmas=list(a.noise_sigmas), fgsm_eps=list(a.fgsm_eps),
                   noise_draws=TrainConfig.noise_draws, ece_bins=TrainConfig.ece_bins,
                   settings=settings)
    figures = dict(noise=plot_curves(summary, "noise_acc", os.path.join(a.out, "noise.png")),
                   fgsm=plot_curves(summary, "fgsm_acc", os.path.join(a.out, "fgsm.png")),
                   reliability=plot_reliability(summary, os.path.join(a.out, "reliability.png")),
                   learning_curves=plot_learning(summary,
                                                 os.path.join(a.out, "learning_curves.png")))
    from .preview import mixed_batch, plot_batch
    grids = {}
    for mixing, label in (("k_mixup", "k-mixup"), ("zeta_mixup", "zeta-mixup")):
        batch = mixed_batch(train_folder, mixing=mixing,
                            batch_size=16, size=size, gray=gray, k=8, alpha=a.alpha,
                            gamma=a.gamma, seed=a.seed, crop_scale=crop_scale, flip=flip,
                            device=a.device)
        grids[mixing] = plot_batch(batch, os.path.join(a.out, f"{mixing}_batch.png"),
                                   title=f"one {label} batch (k=8 of 16 for the picture): mixed "
                                   "images and their top-3 soft-label weights"
                                   if mixing == "k_mixup" else None)
    summary.update(figures=figures, grids=grids, cpu_count=os.cpu_count(),
                   total_time_s=time.perf_counter() - t0)
    legend = (f"methods: k-mixup k={a.k} alpha={a.alpha:g}"
              + (f"; k-mixup-xi k={a.k} alpha_k={alpha_k:.3f}" if alpha_k else "")
              + f"; zeta-mixup gamma={a.gamma:g}; zeta-mixup-U gamma ~ U{list(ZETA_RANGE)}; "
              f"mixup alpha={a.alpha:g}. {len(val_folder)} validation images; noise acc / FGSM "
              f"acc: mean accuracy over the non-zero levels of the grids below; ECE with "
              f"{summary['ece_bins']} bins.")
    text = report(summary)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(f"{dataset}; {legend}\n{report(summary, md_table)}\n")
    print(f"\n{legend}\n{text}")
    print(f"\nfigures: {', '.join(figures.values())}\nmixed batches: {', '.join(grids.values())}"
          f"\nresults: {os.path.join(a.out, 'summary.json')}, {os.path.join(a.out, 'results.md')}"
          f"  (total {summary['total_time_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

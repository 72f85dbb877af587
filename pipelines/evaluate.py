"""What a trained classifier does beyond clean accuracy: calibration, noise and FGSM robustness.

The measurements the two papers and the mixup literature compare methods on:

* **calibration**: negative log-likelihood (:func:`nll`) and the expected calibration error
  with equal-width confidence bins (:func:`expected_calibration_error`, Guo et al. 2017: 15
  bins), with the per-bin statistics of a reliability diagram (:func:`reliability_bins`);
* **additive Gaussian noise** (k-mixup paper, Table 6 / Fig. 6): accuracy on validation images
  plus ``N(0, sigma^2)`` per pixel (:func:`gaussian_noise`);
* **white-box FGSM** (k-mixup paper, Table 7; Zhang et al. 2018): accuracy on
  ``x + eps * sign(grad_x CE(model(x), y))`` (:func:`fgsm`);
* **seed statistics**: mean +- std over seeds and paired differences between two methods
  trained from the same seeds (:func:`paired_difference`).

``sigma`` and ``eps`` are given on the 0..255 pixel scale, as in the paper (``eps / 255`` of
the range); :func:`pixel_scale` turns them into the units of the normalised model inputs
(``(pixel - mean) / std``: one pixel level is ``1 / std`` there), and perturbed images are
clipped to the valid pixel range. :func:`evaluate_robustness` runs everything over a
validation iterator and returns additive sums (so data-parallel ranks can all-reduce them)
turned into metrics by :func:`finalize`.

The NumPy functions are pure and import nothing beyond NumPy/SciPy; torch is imported inside
the functions that need it.

A model trained by ``dali-mixup train`` is loaded with :func:`load_trained` (its run folder's
``best.pt``, or ``last.pt``)::

    from dali_mixup.pipelines.evaluate import load_trained, evaluate_robustness, finalize
    model, info = load_trained("runs/k_mixup/best.pt")   # eval mode, on the CPU
    info["classes"], info["epoch"], info["val_acc"], info["config"]["size"]
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "NOISE_SIGMAS", "FGSM_EPS", "reliability_bins", "ece_from_bins",
    "expected_calibration_error", "nll", "mean_std", "paired_difference", "pixel_scale",
    "gaussian_noise", "fgsm", "evaluate_robustness", "finalize", "all_reduce_sums", "load_trained",
]

#: default grids on the 0..255 pixel scale: the paper's noise levels are 8..14 and its FGSM
#: levels 0.5..16; the grids extend both by doublings so that every method is hurt at the top
NOISE_SIGMAS = (0.0, 8.0, 16.0, 32.0, 64.0, 128.0)
FGSM_EPS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


# ----------------------------------------------------------------------------- NumPy metrics


def reliability_bins(confidences, correct, n_bins: int = 15):
    """Per-bin sums of a reliability diagram: ``(counts, confidence_sums, correct_sums)``.

    Bin ``m`` (0-based) holds the predictions whose confidence lies in ``(m / M, (m + 1) / M]``
    (a confidence of exactly 0 goes to bin 0). Returned as float64 arrays of length
    ``n_bins``; sums, not means, so that bins of several batches or ranks simply add up.
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != corr.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.size} vs {corr.size}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    return (counts, np.bincount(idx, weights=conf, minlength=n_bins),
            np.bincount(idx, weights=corr, minlength=n_bins))


def ece_from_bins(counts, confidence_sums, correct_sums) -> float:
    """``sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` from :func:`reliability_bins`' sums."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n <= 0:
        return float("nan")
    gap = np.abs(np.asarray(correct_sums, np.float64) - np.asarray(confidence_sums, np.float64))
    return float(gap.sum() / n)  # |B_m| * |acc - conf| = |sum correct - sum conf|


def expected_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins.

    ``confidences``: the predicted probability of the predicted class, per sample;
    ``correct``: whether that prediction was right (bool or 0/1). 0 for a perfectly calibrated
    predictor (in every bin the accuracy equals the mean confidence).
    """
    return ece_from_bins(*reliability_bins(confidences, correct, n_bins))


def nll(probs, labels, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-mean_i log p_i[y_i]`` of ``probs [N, C]``."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probs must be [N, C] with N = len(labels) = {y.size}, got {p.shape}")
    return float(-np.mean(np.log(np.maximum(p[np.arange(y.size), y], eps))))


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """Paired difference ``a - b`` of two methods measured on the same seeds.

    Returns ``mean``, ``std`` (sample std of the per-seed differences), ``n``, ``half_width``
    of the two-sided Student-t confidence interval of the mean, and ``beyond_noise``: the
    interval excludes 0 (False when ``n < 2``: one seed tells nothing about noise).
    """
    from scipy.stats import t

    d = np.asarray(a, dtype=np.float64).reshape(-1) - np.asarray(b, dtype=np.float64).reshape(-1)
    mean, std = mean_std(d)
    n = d.size
    hw = float(t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.inf
    return dict(mean=mean, std=std, n=n, half_width=hw,
                beyond_noise=bool(n > 1 and abs(mean) > hw))


# ----------------------------------------------------------------------------- torch parts


def pixel_scale(mean, std, *, pixel_range: tuple[float, float] = (0.0, 255.0)):
    """``(scale, lo, hi)`` per channel for inputs normalised as ``(pixel - mean) / std``.

    ``scale``: the size of one step of the 0..255 scale in input units (``(hi_px - lo_px) /
    255 / std``); ``lo``, ``hi``: the valid pixel range in input units, for clipping.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    lo_px, hi_px = pixel_range
    return ((hi_px - lo_px) / 255.0 / std, (lo_px - mean) / std, (hi_px - mean) / std)


def _channel(v, x):
    """Per-channel values as a tensor broadcasting over ``x [B, C, ...]`` (or a scalar)."""
    import torch

    if v is None:
        return None
    t = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=x.dtype, device=x.device)
    return t.reshape((1, -1) + (1,) * (x.ndim - 2)) if t.ndim == 1 and t.numel() > 1 else t.reshape(())


def _clip(x, lo, hi):
    import torch

    if lo is None:
        return x
    return torch.maximum(torch.minimum(x, _channel(hi, x)), _channel(lo, x))


def gaussian_noise(x, sigma: float, *, scale=1.0, lo=None, hi=None, generator=None):
    """``x + sigma * scale * N(0, 1)`` per element, clipped to ``[lo, hi]`` when given.

    ``sigma`` on the pixel scale, ``scale`` per channel (:func:`pixel_scale`). ``sigma = 0``
    returns ``x`` itself (no clipping, no draw).
    """
    import torch

    if sigma == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return _clip(x + float(sigma) * _channel(scale, x) * noise, lo, hi)


def fgsm(model, x, y, eps: float, *, scale=1.0, lo=None, hi=None):
    """Fast gradient sign attack: ``x + eps * scale * sign(grad_x CE(model(x), y))``, clipped.

    White-box and untargeted (Goodfellow et al. 2015), on the model as it is (call
    ``model.eval()`` first). ``eps = 0`` returns ``x`` itself. The model's parameter gradients
    are left untouched.
    """
    import torch
    import torch.nn.functional as F

    if eps == 0:
        return x
    xa = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xa)
    return _clip(x.detach() + float(eps) * _channel(scale, x) * grad.sign(), lo, hi).detach()


def evaluate_robustness(model, batches: Iterable, *, sigmas: Sequence[float] = NOISE_SIGMAS,
                        epsilons: Sequence[float] = FGSM_EPS, scale=1.0, lo=None, hi=None,
                        n_bins: int = 15, noise_draws: int = 1, seed: int = 0,
                        device=None) -> dict:
    """Sums over ``batches`` of ``(images, class_ids)`` for :func:`finalize`.

    Per batch: clean logits (correct count, NLL sum, reliability bins); for every ``sigma``,
    the correct count over ``noise_draws`` noisy copies (drawn from a generator seeded with
    ``seed``, so the same model gives the same numbers); for every ``eps``, the correct count
    on FGSM images. Returned as a dict of float64 NumPy arrays (all additive over batches and
    ranks): ``count``, ``correct``, ``nll_sum``, ``bin_count``, ``bin_conf``, ``bin_correct``,
    ``noise_correct`` (per sigma), ``fgsm_correct`` (per eps), plus the grids themselves.
    """
    import torch
    import torch.nn.functional as F

    if noise_draws < 1:
        raise ValueError(f"noise_draws must be >= 1, got {noise_draws}")
    was_training = model.training
    model.eval()
    gen = None
    acc = dict(count=np.zeros(1), correct=np.zeros(1), nll_sum=np.zeros(1),
               bin_count=np.zeros(n_bins), bin_conf=np.zeros(n_bins),
               bin_correct=np.zeros(n_bins), noise_correct=np.zeros(len(sigmas)),
               fgsm_correct=np.zeros(len(epsilons)))
    try:
        for x, y in batches:
            if device is not None:
                x, y = x.to(device), y.to(device)
            y = y.reshape(-1).long()
            if gen is None:
                gen = torch.Generator(device=x.device)
                gen.manual_seed(int(seed))
            with torch.no_grad():
                logits = model(x)
                prob = torch.softmax(logits.double(), dim=1)
                conf, pred = prob.max(1)
                ok = pred == y
                acc["count"] += y.numel()
                acc["correct"] += ok.sum().item()
                acc["nll_sum"] += F.cross_entropy(logits.double(), y, reduction="sum").item()
                c, s, k = reliability_bins(conf.cpu().numpy(), ok.cpu().numpy(), n_bins)
                acc["bin_count"] += c
                acc["bin_conf"] += s
                acc["bin_correct"] += k
                for i, sigma in enumerate(sigmas):
                    for _ in range(noise_draws if sigma else 1):
                        xn = gaussian_noise(x, sigma, scale=scale, lo=lo, hi=hi, generator=gen)
                        n_ok = (model(xn).argmax(1) == y).sum().item()
                        acc["noise_correct"][i] += n_ok / (noise_draws if sigma else 1)
            for i, eps in enumerate(epsilons):
                xa = fgsm(model, x, y, eps, scale=scale, lo=lo, hi=hi)
                with torch.no_grad():
                    acc["fgsm_correct"][i] += (model(xa).argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    acc["sigmas"] = np.asarray(sigmas, dtype=np.float64)
    acc["epsilons"] = np.asarray(epsilons, dtype=np.float64)
    return acc


def finalize(sums: dict) -> dict:
    """Metrics from :func:`evaluate_robustness`' sums (JSON-ready floats and lists).

    ``acc``, ``nll``, ``ece``; ``noise_acc`` / ``fgsm_acc`` (lists over the grids), their means
    over the non-zero levels ``noise_acc_mean`` / ``fgsm_acc_mean``; the reliability bins
    (``bins``: count, mean confidence and accuracy per bin, None where empty).
    """
    n = float(sums["count"][0])
    cnt = np.asarray(sums["bin_count"], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.where(cnt > 0, sums["bin_conf"] / cnt, np.nan)
        bin_acc = np.where(cnt > 0, sums["bin_correct"] / cnt, np.nan)
    sig, eps = np.asarray(sums["sigmas"]), np.asarray(sums["epsilons"])
    noise = (np.asarray(sums["noise_correct"]) / max(n, 1)).tolist()
    adv = (np.asarray(sums["fgsm_correct"]) / max(n, 1)).tolist()

    def mean_nonzero(vals, grid):
        v = [a for a, g in zip(vals, grid) if g > 0]
        return float(np.mean(v)) if v else float("nan")

    return dict(
        count=int(n), acc=float(sums["correct"][0] / max(n, 1)),
        nll=float(sums["nll_sum"][0] / max(n, 1)),
        ece=ece_from_bins(cnt, sums["bin_conf"], sums["bin_correct"]),
        sigmas=sig.tolist(), noise_acc=noise, noise_acc_mean=mean_nonzero(noise, sig),
        epsilons=eps.tolist(), fgsm_acc=adv, fgsm_acc_mean=mean_nonzero(adv, eps),
        bins=dict(count=cnt.tolist(), confidence=_none_for_nan(bin_conf),
                  accuracy=_none_for_nan(bin_acc)))


def _none_for_nan(a) -> list:
    return [None if np.isnan(v) else float(v) for v in np.asarray(a, np.float64)]


def all_reduce_sums(sums: dict, reduce: Callable | None) -> dict:
    """Apply ``reduce`` (e.g. a torch.distributed all-reduce of a float64 vector) to every
    additive entry of ``sums``; the grids are left as they are."""
    if reduce is None:
        return sums
    keys = [k for k in sums if k not in ("sigmas", "epsilons")]
    flat = np.concatenate([np.asarray(sums[k], np.float64).reshape(-1) for k in keys])
    flat = np.asarray(reduce(flat), dtype=np.float64)
    out, i = dict(sums), 0
    for k in keys:
        n = np.asarray(sums[k]).size
        out[k] = flat[i:i + n]
        i += n
    return out


def load_trained(path, device="cpu"):
    """Rebuild a model trained by ``dali-mixup train`` and load its weights.

    Args:
        path: ``best.pt`` (the best validation epoch's weights), ``last.pt`` (the latest
            training state) or a run folder (its ``best.pt``). Read with
            ``torch.load(weights_only=True)``: nothing in the file runs.
        device: where the model goes (``"cpu"``, ``"cuda"``, a ``torch.device``).

    Returns:
        ``(model, info)``: the model in eval mode, and a dict with ``classes`` (the class
        names, index = output), ``config`` (the run's ``TrainConfig`` as a dict: ``size``,
        ``gray``, ... what the inputs must look like), ``in_channels``, ``image_size``,
        ``epoch`` and, for ``best.pt``, ``val_acc``.

    Raises:
        dali_mixup.pipelines.checkpoint.CheckpointError: the file is truncated or not a
            checkpoint of dali-mixup (the message names it).
    """
    from .checkpoint import WEIGHTS_FORMAT, load_checkpoint
    from .models import build_model

    ck = load_checkpoint(path, expected=WEIGHTS_FORMAT)
    cfg = ck["config"]
    model = build_model(cfg["model"], ck["in_channels"], len(ck["classes"]), ck["image_size"],
                        cfg.get("width", 32))
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    info = {k: v for k, v in ck.items() if k not in ("model", "optimizer", "scheduler", "dali",
                                                     "torch_rng", "cuda_rng")}
    return model, info

"""The mixing users run today in the training loop, on the torch batches a DALI iterator hands over.

Each peer is a callable ``(x, y) -> (mixed images, target)`` on torch tensors (CPU or CUDA),
``x`` ``[B, C, H, W]`` float, ``y`` ``[B]`` class ids. ``source`` says what runs:

* ``"library"``: the library itself (it imported here);
* ``"re-implementation"``: the library's exact operations and random draws, written here because
  the library does not import beside this torch (timm's and torchvision's wheels are built for a
  CUDA torch). Tests check each one against the reference formula for fixed draws, and against
  the library wherever it imports;
* ``"reconstruction"``: the authors' k-mixup procedure as their paper and code describe it; not
  their code.

Targets are soft labels ``[B, C]`` except for kornia, which returns ``[B, 3]`` rows of
``(label, partner label, lam)`` for a two-term loss (:func:`soft_target_loss` takes both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

REF_FILL = 1000.0  # the authors' cost outside the diagonal blocks


@dataclass
class Peer:
    name: str                      # short key used in tables and JSON
    label: str                     # what the table says it is
    source: str                    # "library", "re-implementation" or "reconstruction"
    fn: Callable                   # (x, y) -> (x_mixed, target)

    def __call__(self, x, y):
        return self.fn(x, y)


def one_hot(y: torch.Tensor, num_classes: int, on: float = 1.0, off: float = 0.0) -> torch.Tensor:
    """timm's one-hot: ``full(off).scatter_(1, y, on)``."""
    y = y.long().view(-1, 1)
    return torch.full((y.shape[0], num_classes), off, device=y.device).scatter_(1, y, on)


# ----------------------------------------------------------------------------- timm


def timm_mixup_apply(x: torch.Tensor, y: torch.Tensor, lam: float, num_classes: int,
                     smoothing: float = 0.0):
    """timm ``Mixup`` batch mode, mixup branch, for a given ``lam``: the batch is mixed in place
    with its flip, ``x.mul_(lam).add_(x.flip(0).mul_(1 - lam))``; smoothed one-hot targets are
    mixed with their flip."""
    if lam != 1.0:
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
    off = smoothing / num_classes
    y1 = one_hot(y, num_classes, on=1.0 - smoothing + off, off=off)
    return x, y1 * lam + y1.flip(0) * (1.0 - lam)


def timm_draw_lam(alpha: float, prob: float) -> float:
    """timm's batch-mode draws from NumPy's global generator: ``rand() < prob``, then
    ``beta(alpha, alpha)``."""
    lam = 1.0
    if np.random.rand() < prob:
        lam = float(np.random.beta(alpha, alpha))
    return lam


def timm_mixup(num_classes: int, alpha: float = 1.0, smoothing: float = 0.0, prob: float = 1.0,
               prefer_library: bool = True) -> Peer:
    """``timm.data.Mixup(mixup_alpha=alpha, cutmix_alpha=0, mode='batch')`` where timm imports,
    else its re-implementation."""
    if prefer_library:
        try:
            from timm.data import Mixup

            m = Mixup(mixup_alpha=alpha, cutmix_alpha=0.0, prob=prob, mode="batch",
                      label_smoothing=smoothing, num_classes=num_classes)
            return Peer("timm", "timm.data.Mixup (batch mode)", "library", m)
        except Exception:  # not installed, or built for another torch
            pass

    def f(x, y):
        return timm_mixup_apply(x, y, timm_draw_lam(alpha, prob), num_classes, smoothing)
    return Peer("timm", "timm-style (re-implementation of timm.data.Mixup batch mode)",
                "re-implementation", f)


# ----------------------------------------------------------------------------- torchvision


def tv_mixup_apply(x: torch.Tensor, y: torch.Tensor, lam: float, num_classes: int):
    """torchvision ``v2.MixUp`` for a given ``lam``: each sample meets its predecessor,
    ``x.roll(1, 0).mul_(1 - lam).add_(x.mul(lam))``, the same for one-hot labels."""
    out = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))
    oh = torch.nn.functional.one_hot(y.long(), num_classes=num_classes).float()
    return out, oh.roll(1, 0).mul_(1.0 - lam).add_(oh.mul(lam))


def tv_cutmix_box(lam: float, r_x: int, r_y: int, h: int, w: int):
    """torchvision ``v2.CutMix``'s box for ``lam`` and centre ``(r_x, r_y)``; returns
    ``(x1, y1, x2, y2)`` and the label weight from the clipped area."""
    r = 0.5 * float(np.sqrt(1.0 - lam))
    rw, rh = int(r * w), int(r * h)
    x1, y1 = max(r_x - rw, 0), max(r_y - rh, 0)
    x2, y2 = min(r_x + rw, w), min(r_y + rh, h)
    return (x1, y1, x2, y2), float(1.0 - (x2 - x1) * (y2 - y1) / (w * h))


def tv_cutmix_apply(x: torch.Tensor, y: torch.Tensor, box, lam_adjusted: float, num_classes: int):
    """torchvision ``v2.CutMix`` for a given box: the box is pasted from the predecessor."""
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
    oh = torch.nn.functional.one_hot(y.long(), num_classes=num_classes).float()
    return out, oh.roll(1, 0).mul_(1.0 - lam_adjusted).add_(oh.mul(lam_adjusted))


class _TvDraws:
    """torchvision's draws from torch's global generator: lam from
    ``Beta(tensor([a]), tensor([a])).sample(())``, the CutMix centre from ``randint``."""

    def __init__(self, alpha: float):
        self.dist = torch.distributions.Beta(torch.tensor([float(alpha)]), torch.tensor([float(alpha)]))

    def lam(self) -> float:
        return float(self.dist.sample(()))

    def centre(self, h: int, w: int):
        r_x = int(torch.randint(w, size=(1,)))
        r_y = int(torch.randint(h, size=(1,)))
        return r_x, r_y


def torchvision_mixup(num_classes: int, alpha: float = 1.0, prefer_library: bool = True) -> Peer:
    """``torchvision.transforms.v2.MixUp`` where torchvision imports, else its re-implementation."""
    if prefer_library:
        try:
            from torchvision.transforms import v2

            return Peer("torchvision", "torchvision v2.MixUp", "library",
                        v2.MixUp(alpha=alpha, num_classes=num_classes))
        except Exception:
            pass
    d = _TvDraws(alpha)
    return Peer("torchvision", "torchvision-style (re-implementation of v2.MixUp)", "re-implementation",
                lambda x, y: tv_mixup_apply(x, y, d.lam(), num_classes))


def torchvision_cutmix(num_classes: int, alpha: float = 1.0, prefer_library: bool = True) -> Peer:
    """``torchvision.transforms.v2.CutMix`` where torchvision imports, else its re-implementation."""
    if prefer_library:
        try:
            from torchvision.transforms import v2

            return Peer("torchvision_cutmix", "torchvision v2.CutMix", "library",
                        v2.CutMix(alpha=alpha, num_classes=num_classes))
        except Exception:
            pass
    d = _TvDraws(alpha)

    def f(x, y):
        lam = d.lam()
        h, w = x.shape[-2:]
        box, lam_adj = tv_cutmix_box(lam, *d.centre(h, w), h, w)
        return tv_cutmix_apply(x, y, box, lam_adj, num_classes)
    return Peer("torchvision_cutmix", "torchvision-style (re-implementation of v2.CutMix)",
                "re-implementation", f)


# ----------------------------------------------------------------------------- kornia


def kornia_mixup() -> Peer | None:
    """``kornia.augmentation.RandomMixUpV2`` (None where kornia is not installed)."""
    try:
        from kornia.augmentation import RandomMixUpV2
    except Exception:
        return None
    aug = RandomMixUpV2(data_keys=["input", "class"])
    return Peer("kornia", "kornia RandomMixUpV2", "library", lambda x, y: tuple(aug(x, y)))


def kornia_cutmix() -> Peer | None:
    """``kornia.augmentation.RandomCutMixV2`` (None where kornia is not installed)."""
    try:
        from kornia.augmentation import RandomCutMixV2
    except Exception:
        return None
    try:  # the paper's lambda (kornia >= 0.8 warns that its default will change to it)
        aug = RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True)
    except TypeError:
        aug = RandomCutMixV2(data_keys=["input", "class"])

    def f(x, y):
        out, lab = aug(x, y)
        return out, lab
    return Peer("kornia_cutmix", "kornia RandomCutMixV2", "library", f)


# ----------------------------------------------------------------------------- the authors' k-mixup


def authors_kmixup_apply(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, lam: float, k: int,
                         num_classes: int):
    """The authors' k-mixup procedure for a given permutation and ``lam``: consecutive k-blocks
    of the batch meet the same blocks of the permuted batch; each block's Euclidean distances
    (``torch.cdist``) fill a B x B matrix whose other entries are a large constant; one
    ``linear_sum_assignment`` solves it; the partner of sample i is ``perm[col[i]]``.
    Returns the mixed images, soft labels and the partners."""
    from scipy.optimize import linear_sum_assignment

    b = x.shape[0]
    flat = x.reshape(b, -1)
    other = flat[perm]
    cost = torch.full((b, b), REF_FILL, dtype=flat.dtype, device=flat.device)
    for i in range(0, b, k):
        j = min(i + k, b)
        cost[i:j, i:j] = torch.cdist(flat[i:j], other[i:j])
    _, cols = linear_sum_assignment(cost.cpu().numpy())
    partner = perm[torch.as_tensor(cols, device=perm.device)]
    oh = torch.nn.functional.one_hot(y.long(), num_classes=num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[partner], lam * oh + (1 - lam) * oh[partner], partner


def authors_kmixup(num_classes: int, k: int = 16, alpha: float = 1.0) -> Peer:
    """The authors' k-mixup procedure in the loop (reconstruction): ``torch.randperm`` and
    ``np.random.beta`` draws, then :func:`authors_kmixup_apply`."""
    def f(x, y):
        perm = torch.randperm(x.shape[0], device=x.device)
        lam = float(np.random.beta(alpha, alpha))
        xm, ym, _ = authors_kmixup_apply(x, y, perm, lam, k, num_classes)
        return xm, ym
    return Peer("authors_kmixup", f"authors' k-mixup procedure, k={k} (reconstruction)", "reconstruction", f)


# ----------------------------------------------------------------------------- all of them


def in_loop_peers(num_classes: int, k: int = 16, alpha: float = 1.0) -> list[Peer]:
    """Every in-loop peer available here, in table order (kornia's only where it is installed)."""
    peers = [timm_mixup(num_classes, alpha), torchvision_mixup(num_classes, alpha)]
    km = kornia_mixup()
    if km is not None:
        peers.append(km)
    peers.append(authors_kmixup(num_classes, k, alpha))
    return peers


def soft_target_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy against soft labels ``[B, C]``, or kornia's ``[B, 3]`` rows
    ``(label, partner label, lam)``: ``(1 - lam) CE(label) + lam CE(partner)``."""
    if target.ndim == 2 and target.shape[1] == num_classes:
        return torch.nn.functional.cross_entropy(logits, target)
    if target.ndim == 2 and target.shape[1] == 3:  # kornia
        a, b, lam = target[:, 0].long(), target[:, 1].long(), target[:, 2]
        ce = torch.nn.functional.cross_entropy
        return ((1 - lam) * ce(logits, a, reduction="none") + lam * ce(logits, b, reduction="none")).mean()
    return torch.nn.functional.cross_entropy(logits, target.long().view(-1))

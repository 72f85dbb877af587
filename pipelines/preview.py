"""A picture grid of one mixed batch from an image folder.

::

    dali-mixup preview DIR --mixing k_mixup --k 8 --batch-size 16 --out k_mixup_batch.png

Every cell shows one mixed image and bars with its top soft-label classes and their weights.
For mixup and k-mixup the cell title names the partner (``#3 + #11``) and lam, cells of one
matched pair share a coloured frame and a line connects them; for zeta-mixup the title gives
the weight of the sample itself (the dominant one) and its strongest other contributor.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .common import MIXINGS, canonical_mixing, mixing_arg


def mixed_batch(source, *, mixing: str = "k_mixup", batch_size: int = 16, size: int = 32,
                gray: bool = False, k: int = 8, alpha: float = 1.0, gamma=2.8,
                T: int | None = None, seed: int = 0, crop_scale=(0.08, 1.0), flip: bool = True,
                device: str = "cpu"):
    """Run the training pipeline once with ``return_info=True``; returns a dict of NumPy
    arrays (``images``, ``labels``, ``originals``, ``index``, ``weight``) and ``classes``,
    ``mean``, ``std`` (for display)."""
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    from .imagefolder import (MEAN_RGB, STD_RGB, NamedDecodeErrors, imagefolder_pipeline,
                              load_imagefolders)

    mixing = canonical_mixing(mixing)
    folder = source
    if isinstance(source, (str, os.PathLike)):  # a dataset folder: its training split
        folder, _ = load_imagefolders(source, log=None)
    pipe, names = imagefolder_pipeline(folder, batch_size=batch_size, size=size, gray=gray,
                                       mixing=mixing, k=k, alpha=alpha, gamma=gamma, T=T,
                                       reader_seed=seed, seed=seed, crop_scale=crop_scale,
                                       flip=flip, device=device, return_info=True)
    it = NamedDecodeErrors(lambda: DALIGenericIterator(  # decoder errors name the file
        pipe, names, reader_name="Reader", last_batch_policy=LastBatchPolicy.PARTIAL), folder)
    batch = next(iter(it))[0]
    out = {name: batch[name].cpu().numpy() for name in names}
    out.update(classes=list(folder.classes), mixing=mixing,
               mean=np.array((127.5,) if gray else MEAN_RGB, np.float32),
               std=np.array((127.5,) if gray else STD_RGB, np.float32))
    del it
    return out


def _to_display(img, mean, std):
    x = img * std[:, None, None] + mean[:, None, None]
    x = np.clip(x / 255.0, 0.0, 1.0).transpose(1, 2, 0)
    return x[..., 0] if x.shape[-1] == 1 else x


def plot_batch(batch: dict, path: str, *, top: int = 3, cols: int | None = None,
               title: str | None = None) -> str:
    """Draw a batch from :func:`mixed_batch` to ``path`` (PNG)."""
    from matplotlib.patches import ConnectionPatch

    from .plots import finish, pyplot

    plt = pyplot()

    images, labels = batch["images"], batch["labels"]
    classes, mixing = batch["classes"], batch["mixing"]
    n = len(images)
    cols = cols or min(8, n)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(1.9 * cols, 2.6 * rows + 0.5))
    outer = fig.add_gridspec(rows, cols, hspace=0.35, wspace=0.35)
    pair_mode = mixing in ("mixup", "k_mixup")
    partner = batch["index"].reshape(n, -1)[:, 0].astype(int) if pair_mode else None
    lam = batch["weight"].reshape(n, -1) if mixing != "none" else None
    colors = plt.get_cmap("tab20")
    pair_color, img_axes = {}, []
    if pair_mode:
        seen = 0
        for i in range(n):
            key = tuple(sorted((i, int(partner[i]))))
            if key not in pair_color:
                pair_color[key] = colors(seen % 20)
                seen += 1
    top = min(top, labels.shape[1])
    for i in range(n):
        r, c = divmod(i, cols)
        cell = outer[r, c].subgridspec(2, 1, height_ratios=[3.0, 1.1], hspace=0.08)
        ax = fig.add_subplot(cell[0])
        img = _to_display(images[i], batch["mean"], batch["std"])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if pair_mode:
            j = int(partner[i])
            col = pair_color[tuple(sorted((i, j)))]
            for s in ax.spines.values():
                s.set_edgecolor(col)
                s.set_linewidth(3)
            ax.set_title(f"#{i} + #{j}  λ={float(lam[i, 0]):.2f}", fontsize=7)
        elif mixing == "zeta_mixup":
            idx = batch["index"][i]
            ax.set_title(f"#{i}: self {float(lam[i, 0]):.2f}, #{int(idx[1])} "
                         f"{float(lam[i, 1]):.2f}" if idx.size > 1 else f"#{i}", fontsize=7)
        else:
            ax.set_title(f"#{i}", fontsize=7)
        img_axes.append(ax)
        bx = fig.add_subplot(cell[1])
        order = np.argsort(-labels[i])[:top]
        w = labels[i][order]
        bx.barh(range(top), w, color=["C0", "C1", "C2", "C3", "C4"][:top])
        bx.set_xlim(0, 1)
        bx.set_yticks(range(top))
        bx.set_yticklabels([str(classes[o])[:10] for o in order], fontsize=6)
        bx.invert_yaxis()
        bx.tick_params(axis="x", labelsize=5)
        for y, v in enumerate(w):
            bx.text(min(v + 0.02, 0.75), y, f"{v:.2f}", va="center", fontsize=6)
    if pair_mode:  # lines between the matched pairs
        drawn = set()
        for i in range(n):
            j = int(partner[i])
            key = tuple(sorted((i, j)))
            if i == j or key in drawn or j >= n:
                continue
            drawn.add(key)
            con = ConnectionPatch(xyA=(0.5, 0.5), coordsA="axes fraction", axesA=img_axes[i],
                                  xyB=(0.5, 0.5), coordsB="axes fraction", axesB=img_axes[j],
                                  color=pair_color[key], lw=1.5, alpha=0.6,
                                  arrowstyle="-" if int(partner[j]) == i else "->")
            fig.add_artist(con)
    names = {"none": "no mixing (ERM)", "mixup": "mixup", "k_mixup": "k-mixup",
             "zeta_mixup": "zeta-mixup", "cutmix": "CutMix", "mix": "mixup or CutMix"}
    fig.suptitle(title or f"one {names.get(mixing, mixing)} batch: mixed images and their "
                 f"top-{top} soft-label weights", fontsize=10)
    return finish(fig, path, tight=False, bbox_inches="tight")


def build_parser():
    """The command line of ``dali-mixup preview``."""
    from dali_mixup.tools.usage import ArgumentParser, float_range, int_range

    from .train import MIN_SIZE

    p = ArgumentParser(prog="dali-mixup preview", description=__doc__.split("\n\n")[0])
    pos_int, positive = int_range(1), float_range(0, lo_open=True)
    p.add_argument("data", metavar="DIR", help="dataset folder, as for 'dali-mixup train --data': "
                   "DIR/<class>/<image>, or DIR/train + DIR/val (the batch comes from the "
                   "training split)")
    p.add_argument("--val-split", metavar="NAME", default=None,
                   help="the validation folder beside DIR/train (default: the first of val, "
                   "valid, validation, test that exists)")
    p.add_argument("--val-fraction", type=float_range(0, 1, lo_open=True, hi_open=True),
                   default=0.2, help="validation share held out of a DIR/<class> folder")
    p.add_argument("--no-check-images", dest="check_images", action="store_false",
                   help="skip the check of every image file (cached per folder)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out image files that fail the check (default: stop and list them)")
    p.add_argument("--mixing", type=mixing_arg, choices=MIXINGS, default="k_mixup",
                   help="the operator that mixes")
    p.add_argument("--batch-size", type=pos_int, default=16, help="images in the grid")
    p.add_argument("--k", type=pos_int, default=8, help="k-mixup block size")
    p.add_argument("--alpha", type=positive, default=1.0, help="Beta(alpha, alpha)")
    p.add_argument("--gamma", type=positive, default=2.8, help="zeta-mixup exponent")
    p.add_argument("--T", type=pos_int, default=None,
                   help="zeta-mixup samples per mix (default: the whole batch)")
    p.add_argument("--size", type=int_range(MIN_SIZE), default=64, help="image size")
    p.add_argument("--gray", action="store_true", help="decode to one channel")
    p.add_argument("--crop-scale", type=float_range(0, 1, lo_open=True), nargs=2,
                   default=[0.35, 1.0], metavar=("LO", "HI"), help="random resized crop area range")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no random flip")
    p.add_argument("--top", type=pos_int, default=3, help="soft-label classes shown per image")
    p.add_argument("--seed", type=int_range(0), default=0, help="reader and pipeline seed")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where DALI runs")
    p.add_argument("--out", default="mixed_batch.png", help="the PNG written")
    return p


def main(argv: list[str] | None = None) -> int:
    from dali_mixup.tools.usage import UsageError, report

    p = build_parser()
    a = p.parse_args(argv)
    if a.crop_scale[0] > a.crop_scale[1]:
        p.error(f"argument --crop-scale: expected LO <= HI, got {a.crop_scale[0]:g} "
                f"{a.crop_scale[1]:g}")
    from .common import DeviceError
    from .imagefolder import load_imagefolders
    try:
        folder, _ = load_imagefolders(a.data, a.val_fraction, 0, val_split=a.val_split,
                                      check_images=a.check_images,
                                      skip_bad_images=a.skip_bad_images, log=print)
        batch = mixed_batch(folder, mixing=a.mixing, batch_size=a.batch_size, size=a.size,
                            gray=a.gray, k=a.k, alpha=a.alpha, gamma=a.gamma, T=a.T,
                            seed=a.seed, crop_scale=tuple(a.crop_scale), flip=a.flip,
                            device=a.device)
    except (UsageError, DeviceError) as e:
        return report(p.prog, e, a.debug)
    print(plot_batch(batch, a.out, top=a.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

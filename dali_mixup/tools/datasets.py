"""Datasets: the papers' toy datasets, and loading data for calibration and the demo.

k-mixup paper (Greenewald et al.), Figures 1-3 and Table 9, binary classification in 2-D:

* ``one_ring``: a ring (class 1) around a central blob (class 0);
* ``four_bars``: four parallel bars of alternating classes;
* ``swiss_roll``: two interleaved spiral arms, one per class.

The paper gives no coordinates; each set is scaled so that 1-mixup at alpha = 1 has the root
mean squared perturbation xi of Table 9 (0.15, 0.78 and 1.9; :data:`TABLE9_XI`).

zeta-mixup paper (Abhishek et al.), section "Synthetic Data":

* ``crescents``, ``spirals``: two classes, 512 samples, Gaussian noise sigma = 0.1;
* ``helix3``: 8192 points of a 1-D helix in R^3; ``helix12``: the same helix embedded in R^12
  by a fixed isometry (a low-dimensional manifold in a high-dimensional ambient space).
  The two classes alternate every turn.

All generators are seeded NumPy: ``make(name, n=None, seed=0, noise=None) -> (x, y)`` with
``x [n, d]`` float64 and ``y [n]`` int64.

:func:`load_data` reads samples for ``dali-mixup calibrate`` and the demo: the digits, a toy
dataset, a ``.npy``/``.npz`` file or an image folder. Users: :mod:`dali_mixup.tools.toy` (the
pictures), :mod:`dali_mixup.tools.calibrate` (alpha_k); this module imports neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "TABLE9_XI", "make", "one_ring", "four_bars", "swiss_roll", "crescents",
           "spirals", "helix", "oracle_for", "load_data"]

#: Table 9 of the k-mixup paper: xi of 1-mixup at alpha = 1 for each toy dataset.
TABLE9_XI = {"one_ring": 0.15, "four_bars": 0.78, "swiss_roll": 1.9}

# Scale factors that give the xi of Table 9 at alpha = 1 (E|x - x'|^2 = 12 xi^2).
_SCALE = {"one_ring": 0.5076, "four_bars": 1.515, "swiss_roll": 7.368}


def _split(n: int, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    y[n // 2:] = 1
    return rng.permutation(y)


def one_ring(n: int = 512, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 on a ring of radius 1 (radial noise ``noise``), class 0 a blob of std 3*noise.

    Scaled by 0.5076 (ring radius ~0.51).
    """
    rng = np.random.default_rng(seed)
    y = _split(n, rng)
    th = rng.uniform(0.0, 2.0 * np.pi, n)
    r = 1.0 + noise * rng.standard_normal(n)
    ring = np.stack([r * np.cos(th), r * np.sin(th)], axis=1)
    blob = 3.0 * noise * rng.standard_normal((n, 2))
    x = np.where(y[:, None] == 1, ring, blob)
    return x * _SCALE["one_ring"], y


def four_bars(n: int = 512, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Four vertical bars at x = -1.5, -0.5, 0.5, 1.5 (half width ``noise``, height 2), classes
    0, 1, 0, 1. Scaled by 1.515."""
    rng = np.random.default_rng(seed)
    bar = rng.integers(0, 4, n)
    xs = (bar - 1.5) + rng.uniform(-noise, noise, n)
    ys = rng.uniform(-1.0, 1.0, n)
    return np.stack([xs, ys], axis=1) * _SCALE["four_bars"], (bar % 2).astype(np.int64)


def swiss_roll(n: int = 512, seed: int = 0, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved arms ``r = t, theta = t + c pi`` for t in [pi/2, 3 pi], class c, radius
    normalised to 1 and scaled by 7.368; ``noise`` is Gaussian (relative to the radius)."""
    rng = np.random.default_rng(seed)
    y = _split(n, rng)
    t = rng.uniform(0.5 * np.pi, 3.0 * np.pi, n)
    th = t + y * np.pi
    x = np.stack([t * np.cos(th), t * np.sin(th)], axis=1) / (3.0 * np.pi)
    x = x + noise * rng.standard_normal(x.shape)
    return x * _SCALE["swiss_roll"], y


def crescents(n: int = 512, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as scikit-learn's ``make_moons``), Gaussian noise."""
    rng = np.random.default_rng(seed)
    y = _split(n, rng)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower)
    return x + noise * rng.standard_normal(x.shape), y


def spirals(n: int = 512, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved Archimedean spirals of 1.5 turns, radius up to ~2, Gaussian noise."""
    rng = np.random.default_rng(seed)
    y = _split(n, rng)
    t = np.sqrt(rng.uniform(0.02, 1.0, n)) * 3.0 * np.pi
    th = t + y * np.pi
    x = np.stack([t * np.cos(th), t * np.sin(th)], axis=1) * (2.0 / (3.0 * np.pi))
    return x + noise * rng.standard_normal(x.shape), y


def _embedding(dim: int) -> np.ndarray:
    """A fixed isometry R^3 -> R^dim (orthonormal columns; part of the dataset's definition)."""
    if dim == 3:
        return np.eye(3)
    q, _ = np.linalg.qr(np.random.default_rng(20240412).standard_normal((dim, 3)))
    return q


def helix(n: int = 8192, seed: int = 0, noise: float = 0.0, dim: int = 3,
          turns: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D helix ``(cos t, sin t, t / pi)`` of ``turns`` turns in R^3, embedded isometrically
    in R^dim (dim >= 3); the class alternates every turn; optional Gaussian noise in R^dim."""
    if dim < 3:
        raise ValueError(f"toy: a helix needs dim >= 3, got {dim}")
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 2.0 * np.pi * turns, n)
    x3 = np.stack([np.cos(t), np.sin(t), t / np.pi], axis=1)
    x = x3 @ _embedding(dim).T
    y = (np.floor(t / (2.0 * np.pi)).astype(np.int64) % 2)
    return x + noise * rng.standard_normal(x.shape), y


@dataclass(frozen=True)
class _Spec:
    fn: object
    n: int
    noise: float
    kwargs: tuple = ()


DATASETS: dict[str, _Spec] = {
    "one_ring": _Spec(one_ring, 512, 0.05),
    "four_bars": _Spec(four_bars, 512, 0.1),
    "swiss_roll": _Spec(swiss_roll, 512, 0.0),
    "crescents": _Spec(crescents, 512, 0.1),
    "spirals": _Spec(spirals, 512, 0.1),
    "helix3": _Spec(helix, 8192, 0.0, (("dim", 3),)),
    "helix12": _Spec(helix, 8192, 0.0, (("dim", 12),)),
}


def make(name: str, n: int | None = None, seed: int = 0, noise: float | None = None):
    """Samples ``(x [n, d] float64, y [n] int64)`` of a toy dataset (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"toy: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    s = DATASETS[name]
    return s.fn(n=s.n if n is None else int(n), seed=seed,
                noise=s.noise if noise is None else float(noise), **dict(s.kwargs))


def oracle_for(name: str, n: int = 20000, seed: int = 12345, n_neighbors: int = 15):
    """An oracle classifier for a toy dataset: k-NN on a dense sample of its clean class regions.

    The noise of the 2-D sets is kept for the class regions that are themselves noisy bands
    (one_ring's blob width and four_bars' bar width are part of the shape); crescents and
    spirals use their noiseless curves; the helices are noiseless already.
    """
    from .metrics import knn_oracle

    clean = {"crescents": 0.0, "spirals": 0.0}
    x, y = make(name, n=n, seed=seed, noise=clean.get(name))
    return knn_oracle(x, y, 2, n_neighbors=n_neighbors)



def load_data(spec: str, *, size: int = 32, max_samples: int = 5000, seed: int = 0,
              val_split: str | None = None, check_images: bool = True,
              skip_bad_images: bool = False, log=None):
    """Samples ``[N, D]`` float64 (and a description) from ``spec``.

    ``digits`` (scikit-learn's 8x8 digits, scaled to [0, 1]); a toy dataset name of
    :data:`DATASETS`; a ``.npy`` / ``.npz`` file (the first array; rows are samples);
    or a dataset folder, read as every command reads it (:func:`dali_mixup.tools.layout.open_dataset`:
    ``DIR/<class>/<image>``, or ``DIR/train`` + a validation split, whose training images are
    used; ``val_split``, ``check_images``, ``skip_bad_images`` and ``log`` are passed on),
    resized to ``size x size`` RGB and scaled to [0, 1]. At most ``max_samples`` samples are used.
    """
    rng = np.random.default_rng(seed)
    path = Path(spec)
    if spec == "digits":
        from sklearn.datasets import load_digits

        x = load_digits().data / 16.0
        desc = "digits (scikit-learn 8x8, scaled to [0, 1])"
    elif path.is_dir():
        from PIL import Image

        from .layout import DataError, open_dataset

        layout = open_dataset(spec, val_split=val_split, check_images=check_images,
                              skip_bad_images=skip_bad_images, log=log)
        files = sorted(layout.pool)
        if len(files) > max_samples:
            files = [files[i] for i in sorted(rng.choice(len(files), max_samples, replace=False))]
        arrs = []
        for f in files:
            try:
                with Image.open(f) as im:
                    arrs.append(np.asarray(im.convert("RGB").resize((size, size)),
                                           dtype=np.float64) / 255.0)
            except (OSError, ValueError, SyntaxError) as e:  # what Pillow raises on bad data
                raise DataError(f"{f}: cannot be decoded ({e})") from None
        x = np.stack(arrs).reshape(len(arrs), -1)
        desc = f"{spec} ({len(files)} images, {size}x{size} RGB, scaled to [0, 1])"
    elif path.suffix in (".npy", ".npz") and path.is_file():
        a = np.load(path)
        x = a[a.files[0]] if hasattr(a, "files") else a
        desc = str(path)
    else:
        if spec not in DATASETS:
            raise ValueError(f"calibrate: --data must be 'digits', a toy dataset "
                             f"({', '.join(DATASETS)}), a .npy/.npz file or an image folder; "
                             f"got {spec!r}")
        x, _ = make(spec, seed=seed)
        desc = f"toy dataset {spec}"
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[0] > max_samples:
        x = x[rng.choice(x.shape[0], max_samples, replace=False)]
    return x, desc

"""Every random number an operator needs, drawn in one place per operator.

As torchvision keeps ``make_params`` apart from ``transform``, the draws are made first and
handed to pure functions (:mod:`dali_mixup.core.plan`, :mod:`dali_mixup.core.apply`), so the same draws
give the same mixing on NumPy, CuPy and torch, and a batch can be replayed.

Two sources:

* the array layer draws from a NumPy ``Generator`` (:func:`draw_pairs`, :func:`draw_mix`,
  :func:`draw_zeta`);
* the DALI layer draws uniforms with one DALI random operator per mixing operator (so the
  pipeline ``seed`` governs them and checkpointing restores them), one row per sample, and
  turns them into the same dataclasses (:func:`pair_draws_from_uniforms`,
  :func:`zeta_draws_from_uniforms`). Lambdas are Beta quantiles of uniforms
  (:func:`beta_quantile`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KMixupDraws:
    """All randomness of one k-mixup / mixup batch.

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


@dataclass(frozen=True)
class MixDraws:
    """All randomness of one :func:`dali_mixup.mix` batch.

    Attributes:
        u: ``[B, 2]`` pairing draws, as :class:`KMixupDraws`.
        lam: ``[B]`` Beta(mixup_alpha, mixup_alpha).
        lam_cut: ``[B]`` Beta(cutmix_alpha, cutmix_alpha).
        box: ``[B, 2]`` uniform box centres (row, column) as fractions of H and W.
        coin: ``[B, 2]`` uniform: column 0 against ``prob``, column 1 against ``switch_prob``.
    """

    u: np.ndarray
    lam: np.ndarray
    lam_cut: np.ndarray
    box: np.ndarray
    coin: np.ndarray


@dataclass(frozen=True)
class ZetaDraws:
    """All randomness of one zeta-mixup batch.

    Attributes:
        u: ``[B, W]`` uniform in [0, 1), W >= B: row i ranks the other samples (its T-1
            smallest keys, in key order, are i's partners).
        g: ``[B]`` uniform in [0, 1); ``g[0]`` picks gamma inside a ``(low, high)`` range.
        coin: ``[B]`` uniform in [0, 1); the batch is mixed when ``coin[0] < prob``
            (None: always).
    """

    u: np.ndarray
    g: np.ndarray
    coin: np.ndarray | None = None


def beta_quantile(alpha: float, u) -> np.ndarray:
    """Beta(alpha, alpha) draws from uniforms ``u`` by inversion (``scipy.special.betaincinv``)."""
    u = np.asarray(u, dtype=np.float64)
    if alpha == 1.0:
        return u  # Beta(1, 1) is uniform
    from scipy.special import betaincinv

    return betaincinv(alpha, alpha, u)


def beta_at(alpha: float, u: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[B]`` array holding :func:`beta_quantile` of ``u`` at the positions ``idx`` (else 0):
    the lambdas of the lam groups' representatives, without inverting the other draws."""
    out = np.zeros(u.shape[0])
    if alpha <= 0:
        return out
    need = np.unique(idx)
    out[need] = beta_quantile(alpha, u[need])
    return out


def draw_pairs(rng: np.random.Generator, batch_size: int, alpha: float) -> KMixupDraws:
    """k-mixup / mixup draws for a batch of ``batch_size`` from a NumPy Generator."""
    return KMixupDraws(u=rng.random((batch_size, 2)), lam=rng.beta(alpha, alpha, size=batch_size),
                       coin=rng.random(batch_size))


def draw_mix(rng: np.random.Generator, batch_size: int, mixup_alpha: float,
             cutmix_alpha: float) -> MixDraws:
    """mix / CutMix draws from a NumPy Generator (a disabled method's Beta is drawn at 1)."""
    b = batch_size
    return MixDraws(u=rng.random((b, 2)), lam=rng.beta(mixup_alpha or 1.0, mixup_alpha or 1.0, b),
                    lam_cut=rng.beta(cutmix_alpha or 1.0, cutmix_alpha or 1.0, b),
                    box=rng.random((b, 2)), coin=rng.random((b, 2)))


def draw_zeta(rng: np.random.Generator, batch_size: int) -> ZetaDraws:
    """zeta-mixup draws from a NumPy Generator."""
    return ZetaDraws(u=rng.random((batch_size, batch_size)), g=rng.random(batch_size),
                     coin=rng.random(batch_size))


# ----------------------------------------------------------------- the DALI layer's uniforms


def pair_uniform_width(cfg) -> int:
    """Uniforms per sample a pair operator draws in DALI: ``[u0, u1, u_lam(, coin)]`` for
    k-mixup / mixup, ``[u0, u1, u_lam, u_lam_cut, box_y, box_x, coin_prob, coin_switch]``
    when CutMix is possible."""
    if cfg.uses_cutmix:
        return 8
    return 4 if cfg.prob < 1.0 else 3


def pair_draws_from_uniforms(cfg, v: np.ndarray, rep: np.ndarray):
    """The draws of a pair operator from its ``[B, pair_uniform_width(cfg)]`` uniforms.

    Only the lam groups' representatives (``rep``, from :func:`dali_mixup.core.plan.representatives`)
    are turned into Beta quantiles.
    """
    if not cfg.uses_cutmix:
        return KMixupDraws(u=v[:, :2], lam=beta_at(cfg.mixup_alpha, v[:, 2], rep),
                           coin=v[:, 3] if v.shape[1] > 3 else None)
    return MixDraws(u=v[:, :2], lam=beta_at(cfg.mixup_alpha, v[:, 2], rep),
                    lam_cut=beta_at(cfg.cutmix_alpha, v[:, 3], rep), box=v[:, 4:6], coin=v[:, 6:8])


def zeta_uniform_width(cfg, max_batch_size: int) -> int:
    """Uniforms per sample zeta-mixup draws in DALI: ``[u (max batch size), g(, coin)]``."""
    return max_batch_size + (2 if cfg.prob < 1.0 else 1)


def zeta_draws_from_uniforms(cfg, v: np.ndarray) -> ZetaDraws:
    """The draws of zeta-mixup from its ``[B, zeta_uniform_width]`` uniforms."""
    width = v.shape[1] - (2 if cfg.prob < 1.0 else 1)
    return ZetaDraws(u=v[:, :width], g=v[:, width].astype(np.float64),
                     coin=v[:, width + 1].astype(np.float64) if cfg.prob < 1.0 else None)

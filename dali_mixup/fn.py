"""``import dali_mixup.fn as mfn``: the DALI operators (:mod:`dali_mixup.dali`) under the
``fn`` name DALI users expect, beside ``nvidia.dali.fn``."""
from .dali import cutmix, k_mixup, mix, mixup, zeta_mixup

__all__ = ["k_mixup", "mixup", "mix", "cutmix", "zeta_mixup"]

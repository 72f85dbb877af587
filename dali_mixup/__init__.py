"""dali-mixup: k-mixup and zeta-mixup for NVIDIA DALI pipelines, and as plain array functions.

Array layer (NumPy, CuPy or torch arrays in, the same kind out)::

    from dali_mixup import k_mixup, zeta_mixup, mixup
    res = k_mixup(images, labels, k=16, alpha=1.0, num_classes=10)
    res.images, res.labels, res.partner, res.lam, res.k

DALI layer (inside ``@pipeline_def``)::

    import dali_mixup.fn as mfn
    images, labels = mfn.k_mixup(images, labels, k=16, num_classes=10)
"""
from .core.config import PairConfig, ZetaConfig
from .core.draws import KMixupDraws, MixDraws, ZetaDraws
from .kmixup import MixupResult, k_mixup, mixup
from .cut import cutmix
from .switch import MixResult, mix
from .core.pairs import PairResult
from .core.plan import zeta_weights
from .zeta import ZetaResult, zeta_mixup
from .core._checks import GAMMA_MIN

__all__ = ["k_mixup", "mixup", "zeta_mixup", "cutmix", "mix", "zeta_weights", "PairResult",
           "MixupResult", "ZetaResult", "MixResult", "KMixupDraws", "ZetaDraws", "MixDraws",
           "PairConfig", "ZetaConfig", "GAMMA_MIN"]
__version__ = "0.1.0"

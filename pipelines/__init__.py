"""Ready-made DALI pipelines and a PyTorch training entry point for dali-mixup.

The repository keeps them in ``pipelines/``; they are installed as ``dali_mixup.pipelines``.

* :mod:`dali_mixup.pipelines.imagefolder`: ``root/<class>/<image>`` -> file reader -> decode ->
  random resized crop + flip -> CHW float -> one of the mixings in :data:`MIXINGS`:
  ``none``, ``mixup``, ``k_mixup``, ``zeta_mixup``, ``cutmix``, ``mix`` (the operators' names;
  ``kmixup``, ``zeta``, ``mixup_cutmix`` are accepted as aliases);
* :mod:`dali_mixup.pipelines.arrays`: in-memory NumPy arrays through ``external_source``;
* :mod:`dali_mixup.pipelines.models`: a small CNN and ResNet-18 in plain ``torch.nn``;
* :mod:`dali_mixup.pipelines.train`: the training loop (``DALIGenericIterator``, soft-target
  CE, torchrun);
* :mod:`dali_mixup.pipelines.evaluate`: calibration, noise and FGSM robustness of a trained model;
* :mod:`dali_mixup.pipelines.demo`: the main job (digits: ERM vs mixup vs k-mixup vs zeta-mixup);
* :mod:`dali_mixup.pipelines.preview`: a picture grid of one mixed batch.

* :func:`rank_seeds`: the per-rank pipeline seed and the shared reader seed of a
  data-parallel run.

Submodules import DALI and torch lazily; import the one you need.
"""
from .common import (MIXING_ALIASES, MIXINGS, DeviceError, MixConfig, RankSeeds, canonical_mixing,
                     rank_seeds, resolve_device)

__all__ = ["MIXINGS", "MIXING_ALIASES", "canonical_mixing", "DeviceError", "MixConfig", "RankSeeds",
           "rank_seeds", "resolve_device"]

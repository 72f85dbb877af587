"""Ready-made DALI pipelines and a PyTorch training entry point for dali-mixup.

* :mod:`pipelines.imagefolder`: ``root/<class>/<image>`` -> file reader -> decode -> random
  resized crop + flip -> CHW float -> ``none`` / ``mixup`` / ``kmixup`` / ``zeta`` mixing;
* :mod:`pipelines.arrays`: in-memory NumPy arrays through ``external_source``;
* :mod:`pipelines.models`: a small CNN and ResNet-18 in plain ``torch.nn``;
* :mod:`pipelines.train`: the training loop (``DALIGenericIterator``, soft-target CE, torchrun);
* :mod:`pipelines.demo`: the main job (digits: ERM vs mixup vs k-mixup vs zeta-mixup);
* :mod:`pipelines.preview`: a picture grid of one mixed batch.

Submodules import DALI and torch lazily; import the one you need.
"""
from .common import MIXINGS, DeviceError, MixConfig, resolve_device

__all__ = ["MIXINGS", "DeviceError", "MixConfig", "resolve_device"]

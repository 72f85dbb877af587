"""Benchmarks for dali-mixup: ``python -m benchmarks.run`` (or ``dali-mixup bench``)."""

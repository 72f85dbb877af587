"""The tools around the operators: the ``dali-mixup`` command, alpha_k calibration, metrics,
toy data sets, data loading and checks, the soak run."""

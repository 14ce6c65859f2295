"""Managed training: a config-described PyTorch run that reports metrics through a callback.

:func:`run_training` is the entry point; :mod:`autofix.harness.data` and
:mod:`autofix.harness.models` hold the offline builtin datasets and models a config can name.
"""

from autofix.harness.builders import normalize_config, resolve
from autofix.harness.data import DATASETS
from autofix.harness.loop import STATE_FILE, Report, run_training

__all__ = ["DATASETS", "STATE_FILE", "Report", "normalize_config", "resolve", "run_training"]

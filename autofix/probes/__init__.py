"""Cheap training instrumentation: gradients, updates, activations, inputs, sampled every N steps.

A :class:`Probe` attaches to any ``nn.Module`` (and optionally its optimizer). Only a few steps
per epoch are *sampled*: activation forward hooks exist for that one step, weights are copied
only then, and a sampled step stores a handful of raw norms on the parameters' device. The
reduction to per-layer floats (one device-to-host transfer) happens in
:meth:`Probe.epoch_metrics`. An unsampled step pays one counter increment::

    probe = Probe(model, optimizer, every_steps=20)
    for x, y in batches:
        with probe.step(x):                      # or before_step / after_backward / after_step
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    metrics.update(probe.epoch_metrics())        # plain floats; resets the epoch's accumulators

The probe keeps its own time within ``max_overhead`` (1%) of the training time it measures: where
a sample is dear next to a step (a tiny model), epochs take fewer samples or only one epoch in k
is sampled (:mod:`autofix.probes.budget`), and an epoch without a sample reports the last sampled
values with ``probe_age`` (:class:`Probe` says which values are not carried).

Limitation: only activation *modules* are seen; a functional ``F.relu`` inside ``forward`` has no
module to hook, so it yields no ``dead_frac`` key. Validation and epoch-0 statistics are in
:mod:`autofix.harness.evaluate` (``prediction_metrics``, ``initial_loss_metrics``).

Modules: :mod:`~autofix.probes.probe` (the probe), :mod:`~autofix.probes.budget` (the overhead
budget), :mod:`~autofix.probes.stats` (tensor kernels and float reductions).
"""

from __future__ import annotations

from autofix.probes.budget import DEFAULT_MAX_EPOCHS_BETWEEN, DEFAULT_MAX_OVERHEAD
from autofix.probes.probe import Probe
from autofix.probes.stats import DEFAULT_EVERY_STEPS, SATURATION_THRESHOLD, class_ids, label_metrics

__all__ = ["DEFAULT_EVERY_STEPS", "DEFAULT_MAX_EPOCHS_BETWEEN", "DEFAULT_MAX_OVERHEAD",
           "SATURATION_THRESHOLD", "Probe", "class_ids", "label_metrics"]

"""The probe's overhead budget: how many steps of the next epoch to sample, if any.

:class:`~autofix.probes.Probe` times its own work with a clock (``time.perf_counter``): the
sampled steps' calls and hooks, and each :meth:`~autofix.probes.Probe.epoch_metrics`. An epoch's
training time is the wall time from its first ``before_step`` to its ``epoch_metrics``, less the
probe's own time in it; evaluation between epochs is not counted. Per epoch the probe may spend
``HEADROOM * max_overhead`` of that training time on the work it times: the rest is left for the
costs its clock cannot see (below). A sampled epoch costs one report plus its samples, so

1. while one report and ``m`` samples fit, the epoch takes ``m`` samples (at most the
   ``max(1, n // every_steps)`` that ``every_steps`` asks for: the budget only ever thins);
2. when not even one sample fits, one epoch in ``k`` is sampled, ``k`` the smallest interval at
   which ``(sample + report + (k - 1) * stale report) / k`` fits, and at most
   ``max_epochs_between``; the epochs in between report the last sample (see ``probe_age``).

The costs are medians over the last ``WINDOW`` (5) epochs (a pre-emption or a GC pause in one
sample does not stretch sampling), and nothing is thinned before that window is full: the first
5 epochs with samples, also those of a run resumed from a checkpoint, take what ``every_steps``
asks. The plan is solved after each sampled epoch; an unsampled one only counts its age.
Untimed: an unsampled step's three calls (~0.2 us in all) and the probe's indirect costs: the
training code that runs after each of the probe's calls starts cold (the probe's kernels evicted
it from the caches), and a hooked module takes torch's slower call path. Measured by
``benchmarks/probe_overhead.py`` on the 0.4 ms-step MLP, a sampled step is ~60 us slower than
its neighbours beyond the probe's timed work, a sampled epoch costs up to 1.2x the timed work end
to end and an unsampled one ~0.15% of its time: hence ``HEADROOM``, which leaves a quarter of
the budget to them. ``max_overhead=None`` disables the budget.

Because the costs are measured, which epochs are sampled depends on the machine: two runs of
the same config (or a run and its resumption from a checkpoint, which measures afresh) report
the same values on the epochs both sampled, but may differ in which epochs are stale.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

DEFAULT_MAX_OVERHEAD = 0.01
"""The probe may spend 1% of the training time it measures."""
DEFAULT_MAX_EPOCHS_BETWEEN = 5
"""Sampled epochs are at most 5 apart: a report is never more than 4 epochs stale."""
HEADROOM = 0.75
"""The share of ``max_overhead`` the timed work may use; the rest covers the untimed costs."""
WINDOW = 5
"""Each cost is the median of its last 5 measurements."""
WARMUP = WINDOW
"""Epochs with samples measured before the budget may thin sampling: a full window, so that
one pre-empted sample cannot thin it; also, the first 5 training epochs of a run (and of a run
resumed from a checkpoint) report the same rows as without a budget."""


def _median(values: deque[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class Budget:
    """Books the probe's own time against the training time and plans the next epoch's samples.

    The probe adds its timed work to :attr:`spent` and counts :attr:`samples`, stamps
    :attr:`start` at an epoch's first step, and calls :meth:`close_epoch` then :meth:`plan` from
    ``epoch_metrics``.
    """

    def __init__(self, max_overhead: float | None = DEFAULT_MAX_OVERHEAD,
                 max_epochs_between: int = DEFAULT_MAX_EPOCHS_BETWEEN,
                 clock: Callable[[], float] | None = None, headroom: float = HEADROOM) -> None:
        if max_overhead is not None and not max_overhead > 0:
            raise ValueError(f"max_overhead must be > 0 or None, not {max_overhead!r}")
        if int(max_epochs_between) < 1:
            raise ValueError(f"max_epochs_between must be >= 1, not {max_epochs_between!r}")
        self.max_overhead = None if max_overhead is None else float(max_overhead)
        self.max_epochs_between = int(max_epochs_between)
        self.clock = clock or time.perf_counter
        self.headroom = float(headroom)
        self.start: float | None = None  # clock at this epoch's first (unforced) step
        self.spent = 0.0  # probe seconds in this epoch's sampled steps and hooks
        self.samples = 0  # sampled steps this epoch, forced ones included
        self.probe_seconds = 0.0  # totals over the run: all of the probe's timed work ...
        self.train_seconds = 0.0  # ... and the training time it measured
        self.epochs = self.sampled_epochs = self.total_samples = 0  # also totals
        self._step: deque[float] = deque(maxlen=WINDOW)  # training seconds per step, per epoch
        self._sample: deque[float] = deque(maxlen=WINDOW)  # probe seconds per sample, per epoch with samples
        self._report: deque[float] = deque(maxlen=WINDOW)  # epoch_metrics seconds with fresh samples
        self._stale: deque[float] = deque(maxlen=WINDOW)  # epoch_metrics seconds that carry the last sample
        self._solved = 0  # the epoch length the cached plan is for; 0: solve again
        self._fit: int | None = None  # cached plan: samples per epoch (0: one epoch in k) ...
        self._interval = 1  # ... and k

    @property
    def overhead(self) -> float | None:
        """The probe's timed work over the training time measured so far (None before any)."""
        return self.probe_seconds / self.train_seconds if self.train_seconds > 0 else None

    def close_epoch(self, end: float, steps: int, report_seconds: float) -> None:
        """Book the epoch whose ``epoch_metrics`` began at clock ``end``, after ``steps`` steps.

        An epoch without training steps (the harness's epoch 0, a forced sample alone) informs
        the totals but not the cost estimates.
        """
        if steps > 0 and self.start is not None:
            train = max(0.0, end - self.start - self.spent)
            self.train_seconds += train
            self._step.append(train / steps)
            if self.samples:
                self._sample.append(self.spent / self.samples)
                self._solved = 0  # new costs: solve the plan again
            (self._report if self.samples else self._stale).append(report_seconds)
        self.probe_seconds += self.spent + report_seconds
        self.epochs += 1
        self.sampled_epochs += self.samples > 0
        self.total_samples += self.samples
        self.start, self.spent, self.samples = None, 0.0, 0

    def plan(self, steps: int, most: int, age: int) -> int:
        """How many of the next epoch's ``steps`` to sample: ``most``, fewer, or 0 (skip it).

        ``most`` is what ``every_steps`` asks for; ``age`` is the number of epochs since the
        last one with samples, 0 when the epoch just closed had some. The plan is solved again
        only after an epoch with samples: an unsampled epoch costs a counter and a copy.
        """
        if self.max_overhead is None or steps <= 0:
            return most
        if self._solved != steps:
            self._fit, self._interval = self._solve(steps)
            self._solved = steps
        if self._fit is None:
            return most
        if self._fit >= 1:
            return min(most, self._fit)
        return 1 if age + 1 >= self._interval else 0

    def _solve(self, steps: int) -> tuple[int | None, int]:
        """(samples that fit in an epoch of ``steps``, or 0, or None before the window is
        full; the interval in epochs when none fits)."""
        if len(self._sample) < WARMUP or not self._report or not self._step or self.max_overhead is None:
            return None, 1
        # the probe seconds an epoch may cost
        allowed = self.headroom * self.max_overhead * steps * _median(self._step)
        sample, report = _median(self._sample), _median(self._report)
        stale = _median(self._stale) if self._stale else 0.0
        if sample <= 0:
            return steps, 1
        if report + sample <= allowed:
            return int((allowed - report) // sample), 1
        interval = self.max_epochs_between
        if allowed > stale:  # (sample + report + (k - 1) * stale) / k <= allowed
            needed = math.ceil((sample + report - stale) / (allowed - stale) - 1e-9)
            interval = min(interval, max(1, needed))
        return 0, interval

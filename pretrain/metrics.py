"""Metric logging: JSON lines in the run directory and TensorBoard event files."""

import json
import os
from collections.abc import Mapping

import jax
from tensorboardX import SummaryWriter


class MetricWriter:
    """Append metrics to `workdir/metrics.jsonl` and TensorBoard files in `workdir/tb`.

    Only process 0 writes, so a multi-process run logs each value once.
    """

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        # Where the lines of the phase now starting begin: the end of the
        # last finished phase, restored or run in this process.
        self.phase_start = 0
        self._tensorboard = None
        if self.enabled:
            self._tensorboard = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, phase: str, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"phase": phase, "step": step, **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in metrics.items():
            if key != "epoch":
                self._tensorboard.add_scalar(f"{phase}/{key}", value, step)

    def offset(self) -> int:
        """Size of `metrics.jsonl` in bytes, to truncate back to on resume."""
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def truncate(self, offset: int) -> None:
        """Drop the lines after byte `offset`; a shorter file stays as it is."""
        if self.enabled and os.path.exists(self.path) and offset < self.offset():
            with open(self.path, "r+") as f:
                f.truncate(offset)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

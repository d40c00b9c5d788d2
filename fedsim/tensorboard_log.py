"""``--tensorboard DIR``: each round's figures as TensorBoard scalars (optional extra).

Every numeric figure of the metrics row that is listed below is written twice: under
``round/<key>`` against the round, and under ``sim_time_ms/<key>`` against the simulated
time at the end of the round in milliseconds (TensorBoard steps are integers). The keys are
those of metrics.jsonl, so a curve in TensorBoard is a column of the run's logs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError

KEYS = (
    "test_accuracy",
    "test_loss",
    "train_loss",
    "bytes_up",
    "bytes_down",
    "bytes_up_total",
    "bytes_down_total",
    "energy_j",
    "energy_j_total",
    "aggregated",
    "dropped",
)


class TensorBoardLog:
    """A progress callback (one metrics row per call) writing to a TensorBoard log folder."""

    def __init__(self, logdir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FedsimError(
                '--tensorboard needs the tensorboard package (pip install "fedsim[tensorboard]")'
            ) from None
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def __call__(self, row: dict[str, Any]) -> None:
        rnd = int(row["round"])
        sim_ms = round(float(row.get("sim_time") or 0.0) * 1000)
        for key in KEYS:
            value = row.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"round/{key}", value, global_step=rnd)
                self.writer.add_scalar(f"sim_time_ms/{key}", value, global_step=sim_ms)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def chain(*callbacks: Callable[[dict[str, Any]], None] | None) -> Callable | None:
    """One progress callback calling each given one in turn (None when none is given)."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def each(row: dict[str, Any]) -> None:
        for c in given:
            c(row)

    return each

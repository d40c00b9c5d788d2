"""The progress bar of a run (CLI, and the Python API with ``progress=True``).

One line per run: round n/N, simulated time, test accuracy in percent (as the reports show
it), cumulative bytes up and down, elapsed and remaining wall time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def fmt_bytes(n: float) -> str:
    """Decimal units, as the reports use: 1 kB = 1000 B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


@contextlib.contextmanager
def progress_bar(total_rounds: int, label: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich progress bar; yields the callback the coordinator calls with each metrics row."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total_rounds, info="")
        state: dict[str, float | None] = {"acc": None}

        def update(row: dict[str, Any]) -> None:
            if row.get("test_accuracy") is not None:
                state["acc"] = row["test_accuracy"]
            acc = "-" if state["acc"] is None else f"{100 * state['acc']:.1f}%"
            info = (
                f"sim {row['sim_time']:.1f}s  acc {acc}  "
                f"up {fmt_bytes(row['bytes_up_total'])}  down {fmt_bytes(row['bytes_down_total'])}"
            )
            bar.update(task, completed=row["round"], info=info)

        yield update

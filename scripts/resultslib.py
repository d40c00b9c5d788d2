"""What the results scripts share: running variants side by side, and a few page formatters.

Each results_*.py script writes one page of docs/results/ from real runs. Those that run their
own experiments start every missing variant as a child process, `jobs` of them at a time with
one torch thread each, and keep what that cost (wall time per variant and in all, the
children's CPU time) in a JSON file beside the runs, each in its own format; `run_side_by_side`
does the running and the measuring. The formatters are the ones the pages spell the same way:
mean ± std over the seeds (population std, ddof = 0, as `fedsim compare`) and the three words
a claim gets ("holds", "holds partly", "does not hold here"); figures go through `pyplot`
(Agg, the image folder created) and `save_figure`.

The scripts import this module as `resultslib` (their own folder is on sys.path when they
run as `python scripts/results_x.py`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# A child process's thread budget: side by side, one thread each (torch reads these at start).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- running --------------------------------------------------------------------------------
def fedsim_run(
    scenario: str, variant: str, seeds: Sequence[int], out: Path | str, *extra: str
) -> list[str]:
    """The `fedsim run` command line for one variant of `scenario` over `seeds`, written to
    `out` (replacing what is there): its runs land in variant_seed_dirs(out, variant, seeds)."""
    return [
        *(sys.executable, "-m", "fedsim", "run", scenario, "--variant", variant),
        *("--seeds", ",".join(map(str, seeds)), "--out", str(out), "--force", "--quiet"),
        *extra,
    ]


def variant_seed_dirs(out: Path, variant: str, seeds: Iterable[int]) -> list[Path]:
    """The run directories `fedsim run --variant V --seeds ... --out OUT` makes: OUT/V/seed-N."""
    return [out / variant / f"seed-{s}" for s in seeds]


def finished(dirs: Iterable[Path]) -> bool:
    """Whether every run directory holds a summary.json (written at a run's end)."""
    return all((d / "summary.json").exists() for d in dirs)


@dataclass(frozen=True)
class Ran:
    """What run_side_by_side measured."""

    wall_s: dict[str, float]  # per job, in the order the jobs were given
    total_s: float  # first start to last end
    cpu_s: float  # user + system CPU time of the child processes, whatever else ran
    date: str  # when the last job ended, "YYYY-MM-DD HH:MM UTC"


def run_side_by_side(
    commands: dict[str, list[str]], jobs: int, cwd: Path, quiet: bool = False
) -> Ran:
    """Run every command in a process of its own, `jobs` at a time, in the order given, each
    with one OpenMP/MKL thread; print each command line and each job's wall time. `quiet`
    drops the children's standard output. The first command that fails ends the call with
    SystemExit naming its job (those already running finish; those not started never start).
    """
    env = {**os.environ, **ONE_THREAD}
    failed = threading.Event()
    printing = threading.Lock()  # one line at a time from the jobs' threads

    def say(line: str) -> None:
        with printing:
            print(line, flush=True)

    def one(name: str, cmd: list[str]) -> float | None:
        if failed.is_set():  # a job before this one failed: the call is ending
            return None
        say("+ " + " ".join(cmd[1:]))
        t0 = time.perf_counter()
        out = subprocess.DEVNULL if quiet else None
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out).returncode
        if code != 0:
            failed.set()
            raise SystemExit(f"{name}: `{' '.join(cmd[1:])}` exited with {code}")
        took = time.perf_counter() - t0
        say(f"  {name}: {took:.0f} s")
        return took

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = {name: pool.submit(one, name, cmd) for name, cmd in commands.items()}
        wall = {name: float(f.result()) for name, f in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Ran(wall, total, cpu, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def read_json(path: Path) -> Any:
    """The JSON document in `path` (a timing file the runner's caller wrote), None if none."""
    return json.loads(path.read_text()) if path.exists() else None


# ---- formatting -----------------------------------------------------------------------------
def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population std (numpy, ddof = 0, as `fedsim compare`) of the values."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), float(v.std())


def pm(values: Iterable[float], scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' of the values times `scale` (default: fractions shown in percent)."""
    m, s = mean_std(values)
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def verdict(holds: bool, partly: bool = False) -> str:
    """The word a claim gets on a results page: holds, holds partly or does not hold here."""
    return "holds" if holds else ("holds partly" if partly else "does not hold here")


def pyplot(folder: Path) -> ModuleType | None:
    """matplotlib.pyplot drawing to files only (the Agg backend), with `folder`, where the
    figures go, created; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency of fedsim
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return plt


def save_figure(fig: Any, path: Path, dpi: int) -> None:
    """Lay the figure out tightly, write it to `path` at `dpi` and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)

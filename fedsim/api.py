"""The Python API: run scenarios in process and get their results as Python objects.

    import fedsim
    result = fedsim.run("quickstart", {"rounds": 2})
    result.summary["best_accuracy"], result.metrics[-1], result.model_state
    fedsim.load_run("runs/quickstart").to_pandas()

Runs go through the same ``Coordinator`` as ``fedsim run``, so a scenario gives the same
model_sha256, metrics and traffic from Python as from the command line. See docs/api.md.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError, ScenarioError

MODEL_FILE = "model.safetensors"  # as fedsim.runtime.model_io (kept free of torch here)

Overrides = Mapping[str, Any] | Sequence[str] | None
Progress = bool | Callable[[dict[str, Any]], None]
_RUN_FILES = ("summary.json", "metrics.jsonl")


# ---- scenarios ---------------------------------------------------------------------------
def load_scenario(scenario: Any, overrides: Overrides = None, *, check: bool = True) -> Any:
    """A validated ``Scenario`` from a path, a shipped scenario's name, or a ``Scenario``.

    ``overrides`` are ``--set`` strings (``["rounds=3", 'codec.uplink="q8"']``) or a mapping
    of dotted keys to Python values (``{"rounds": 3, "codec.uplink": "q8"}``). With
    ``check`` the registry checks of ``fedsim validate`` run too (model, dataset, algorithm
    options, codecs). Bad input raises ``ScenarioError`` naming the file and the field.
    """
    from fedsim.scenario import Scenario
    from fedsim.scenario import load_scenario as load_file
    from fedsim.scenario.load import apply_overrides, validate_doc

    pairs = _override_pairs(overrides)
    if isinstance(scenario, Scenario):
        sc = scenario
        if pairs:
            sc = validate_doc(apply_overrides(scenario.model_dump(), pairs))
        file = None
    else:
        strings = [f"{k}={_toml_value(v)}" for k, v in pairs]
        sc = load_file(scenario, strings)
        file = str(scenario)
    if check:
        from fedsim.scenario.checks import check_scenario

        check_scenario(sc, file=file)
    return sc


def _override_pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    from fedsim.scenario.load import parse_override

    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise TypeError("overrides: a list of 'key=value' strings or a mapping, not one string")
    if isinstance(overrides, Mapping):
        from fedsim.scenario.load import flatten

        return list(flatten(dict(overrides)))
    return [parse_override(o) for o in overrides]


def _toml_value(value: Any) -> str:
    """A Python value as the TOML text that ``parse_override`` reads back to it."""
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


# ---- results -----------------------------------------------------------------------------
class RunResult:
    """One run directory read back: summary, metrics, traffic, events, the final model.

    The lists are read from disk on first use. A run made with ``out=None`` lives in a
    temporary folder that is removed when this object is garbage-collected.
    """

    def __init__(self, path: str | Path, *, _tmp: Any = None):
        self.path = Path(path)
        self._tmp = _tmp  # keeps a TemporaryDirectory alive as long as the result

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"RunResult({str(self.path)!r}, rounds={s.get('rounds')}, "
            f"best_accuracy={s.get('best_accuracy')}, model_sha256={s.get('model_sha256')!r})"
        )

    @cached_property
    def summary(self) -> dict[str, Any]:
        """summary.json (empty for a run that has not finished)."""
        import json

        p = self.path / "summary.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one dict per round."""
        return self._jsonl("metrics.jsonl")

    @cached_property
    def traffic(self) -> list[dict[str, Any]]:
        """traffic.jsonl: one dict per message."""
        return self._jsonl("traffic.jsonl")

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        """events.jsonl: machinery events (start, end, workers joining and lost ...)."""
        return self._jsonl("events.jsonl")

    @cached_property
    def scenario(self) -> Any:
        """The resolved scenario the run used (its scenario.toml)."""
        from fedsim.scenario import load_scenario as load_file

        return load_file(self.path / "scenario.toml")

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def model_state(self) -> dict[str, Any]:
        """The final global model's state_dict, read from model.safetensors."""
        from fedsim.runtime.model_io import load_model

        return load_model(self.model_file)

    def build_model(self) -> Any:
        """The scenario's model (torch.nn.Module) with the final global weights loaded."""
        from fedsim.runtime.build import load_data, make_model

        model = make_model(self.scenario, load_data(self.scenario))
        model.load_state_dict(self.model_state)
        return model

    def to_pandas(self, table: str = "metrics") -> Any:
        """A pandas DataFrame of ``table``: "metrics", "traffic" or "events" (needs pandas)."""
        if table not in ("metrics", "traffic", "events"):
            raise ValueError(f"table {table!r}: choose metrics, traffic or events")
        return _pandas().DataFrame(getattr(self, table))

    def _jsonl(self, name: str) -> list[dict[str, Any]]:
        from fedsim.runtime.jsonl import read_jsonl

        p = self.path / name
        return list(read_jsonl(p)) if p.exists() else []


class ExperimentResult:
    """Several runs of one experiment (variants, a sweep, repeats), by run name: the
    variant's name, ``VARIANT/seed-N`` for repeats, ``seed-N`` for repeats of one scenario."""

    def __init__(self, path: str | Path, runs: dict[str, RunResult], *, _tmp: Any = None):
        self.path = Path(path)
        self.runs = runs
        self._tmp = _tmp

    def __repr__(self) -> str:
        return f"ExperimentResult({str(self.path)!r}, runs={list(self.runs)})"

    def __getitem__(self, name: str) -> RunResult:
        return self.runs[name]

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def summaries(self) -> dict[str, dict[str, Any]]:
        return {name: r.summary for name, r in self.runs.items()}

    @property
    def comparison(self) -> dict[str, Any]:
        """comparison.json (written for repeats): per-run ``rows`` and, per group of
        repeats, ``groups`` with each figure as {mean, std, values}; {} if there is none."""
        import json

        p = self.path / "comparison.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    def to_pandas(self, table: str = "summary") -> Any:
        """One DataFrame for all runs, with a ``run`` column: "summary" (one row per run,
        the scalar figures of summary.json), "metrics", "traffic" or "events"."""
        pd = _pandas()
        if table == "summary":
            rows = [
                {"run": name, **{k: v for k, v in s.items() if not isinstance(v, dict | list)}}
                for name, s in self.summaries.items()
            ]
            return pd.DataFrame(rows)
        frames = [r.to_pandas(table).assign(run=name) for name, r in self.runs.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_run(path: str | Path) -> RunResult | ExperimentResult:
    """Read a run directory (``fedsim run --out DIR``) or an experiment's folder of runs
    (variants, and repeats in ``[VARIANT/]seed-N``)."""
    path = Path(path)
    if _is_run(path):
        return RunResult(path)
    runs = {name: RunResult(p) for name, p in _run_folders(path)}
    if runs:
        return ExperimentResult(path, runs)
    raise FedsimError(f"{path}: not a run directory (no summary.json or metrics.jsonl)")


def _is_run(path: Path) -> bool:
    return any((path / f).exists() for f in _RUN_FILES)


def _run_folders(path: Path) -> list[tuple[str, Path]]:
    """(name, folder) of the runs inside an experiment folder: its variants, and the seed-N
    repeats of a seeds folder (named ``VARIANT/seed-N``), seeds in numeric order."""

    def seeds(folder: Path) -> list[Path]:
        found = [p for p in folder.iterdir() if re.fullmatch(r"seed-\d+", p.name) and _is_run(p)]
        return sorted(found, key=lambda p: int(p.name[5:]))

    if not path.is_dir():
        return []
    if seeds(path):
        return [(p.name, p) for p in seeds(path)]
    out = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if _is_run(sub):
            out.append((sub.name, sub))
        else:
            out.extend((f"{sub.name}/{p.name}", p) for p in seeds(sub))
    return out


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise FedsimError('to_pandas() needs pandas (pip install "fedsim[pandas]")') from None
    return pandas


# ---- running -----------------------------------------------------------------------------
def run_coordinator(
    scenario: Any,
    out_dir: str | Path,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    tensorboard: str | Path | None = None,
) -> dict[str, Any]:
    """``Coordinator(...).run()`` (which saves the final global model as model.safetensors).

    The CLI and the API both run scenarios through here. ``tensorboard``: a folder for this
    run's TensorBoard scalars (fedsim/tensorboard_log.py). Returns the summary.
    """
    from fedsim.runtime.coordinator import Coordinator
    from fedsim.tensorboard_log import TensorBoardLog, chain

    tb = TensorBoardLog(tensorboard) if tensorboard is not None else None
    coord = Coordinator(scenario, out_dir, progress=chain(progress, tb), resume=resume)
    try:
        summary = coord.run()
    finally:
        if tb is not None:
            tb.close()
    return summary


def run(
    scenario: Any,
    overrides: Overrides = None,
    out: str | Path | None = None,
    *,
    progress: Progress = False,
    resume: bool = False,
    tensorboard: str | Path | None = None,
) -> RunResult:
    """Run one scenario in this process and return its results.

    ``scenario`` is a path, a shipped scenario's name (``"quickstart"``) or a ``Scenario``;
    ``overrides`` as for ``load_scenario``. ``out`` is the run directory (as ``fedsim run
    --out``; None: a temporary folder that lives as long as the result). ``progress``: True
    for the progress bar, or a callable given each metrics row as it is written.
    ``resume`` continues the run in ``out`` from its last checkpoint. ``tensorboard``: a
    folder to log each round's figures to for TensorBoard (needs the tensorboard extra).
    A scenario with ``[[variants]]`` or ``seeds``/``repeats`` is an experiment: use
    ``run_experiment``.
    """
    sc = load_scenario(scenario, overrides)
    if sc.variants or sc.seed_list() is not None:
        what = f"{len(sc.variants)} variants" if sc.variants else "seeds (repeats)"
        raise ScenarioError(
            f"has {what}; run it with fedsim.run_experiment",
            file=str(scenario) if not hasattr(scenario, "model_dump") else sc.name,
        )
    tmp, target = _out_dir(out, resume)
    _run_one(sc, target, progress, resume, label=sc.name, tensorboard=tensorboard)
    return RunResult(target, _tmp=tmp)


def run_experiment(
    scenario: Any,
    overrides: Overrides = None,
    out: str | Path | None = None,
    *,
    variants: Sequence[str] | None = None,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    progress: Progress = False,
    resume: bool = False,
    tensorboard: str | Path | None = None,
) -> ExperimentResult:
    """Run a scenario's ``[[variants]]``, a sweep and/or repeats; one run folder per run.

    ``variants`` picks some of the file's variants by name (default: all). ``sweep`` maps
    dotted keys to lists of values; every combination is added as a variant, named as
    ``fedsim run --sweep`` names them (``lr-0.1_local_epochs-2``). ``seeds`` (else the
    file's ``seeds``/``repeats``) repeats every run with each seed, as ``fedsim run
    --seeds``: into ``out/VARIANT/seed-N`` (``out/seed-N`` without variants), with
    ``out/comparison.md``/``.json`` giving mean ± std over the seeds (``.comparison``).
    With none of these and no variants in the file, the scenario runs once as the variant
    ``base``. ``out`` holds one folder per run (None: a temporary folder that lives as long
    as the result). ``tensorboard``: a folder that gets one TensorBoard run per run.
    """
    from fedsim.scenario import variant_scenarios, with_seeds
    from fedsim.scenario.load import apply_overrides, validate_doc

    sc = load_scenario(scenario, overrides)
    base = sc.model_dump(exclude={"variants"})
    found = [v.model_dump() for v in sc.variants]
    if variants is not None:
        names = {v["name"] for v in found}
        unknown = [v for v in variants if v not in names]
        if unknown:
            raise ScenarioError(
                f"variant {unknown[0]!r} not in the scenario (has: {', '.join(sorted(names))})",
                field="variants",
            )
        found = [v for v in found if v["name"] in variants]
    axes = [[(key, value) for value in values] for key, values in (sweep or {}).items() if values]
    grid = [
        {"name": _grid_name(combo), **apply_overrides({}, list(combo))}
        for combo in itertools.product(*axes)
    ]
    if sweep:
        found += grid
    if seeds is not None:
        seeds = _seed_values(seeds)
    repeated = seeds is not None or sc.seed_list() is not None
    if not found and not repeated:
        found = [{"name": "base"}]
    if found:
        named = variant_scenarios(validate_doc({**base, "variants": found}))
    else:
        named = [("", validate_doc(base))]  # repeats of the scenario itself: out/seed-N
    jobs = with_seeds(named, seeds)
    from fedsim.scenario.checks import check_scenario

    for name, vsc in jobs:
        check_scenario(vsc, file=f"[variants.{name}]")
    tmp, target = _out_dir(out, resume)
    runs = {}
    for name, vsc in jobs:
        tb = Path(tensorboard) / name if tensorboard is not None else None
        _run_one(vsc, target / name, progress, resume, label=name, tensorboard=tb)
        runs[name] = RunResult(target / name)
    if repeated and len(jobs) > 1:  # mean ± std over the seeds, as `fedsim run --seeds`
        from fedsim.report.compare import build_comparison, write_comparison

        comp = build_comparison([target / n for n, _ in jobs], sc.eval.target_accuracy)
        write_comparison(comp, target, stem="comparison")
    return ExperimentResult(target, runs, _tmp=tmp)


def _seed_values(seeds: Sequence[int]) -> list[int]:
    """Distinct non-negative integers, as `fedsim run --seeds` takes them."""
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Iterable):
        raise ScenarioError("a list of distinct integers >= 0, e.g. [0, 1, 2]", field="seeds")
    out = list(seeds)
    for s in out:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ScenarioError(f"{s!r} is not an integer >= 0", field="seeds")
    if not out or len(set(out)) != len(out):
        raise ScenarioError(f"{out}: give distinct seeds, at least one", field="seeds")
    return out


def _grid_name(combo: Sequence[tuple[str, Any]]) -> str:
    name = "_".join(f"{k.split('.')[-1]}-{v}" for k, v in combo)
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name)


def _out_dir(out: str | Path | None, resume: bool) -> tuple[Any, Path]:
    if out is None:
        if resume:
            raise FedsimError("resume=True needs out= (the run directory to continue)")
        tmp = tempfile.TemporaryDirectory(prefix="fedsim-run-")
        return tmp, Path(tmp.name)
    return None, Path(out)


def _run_one(
    sc: Any,
    target: Path,
    progress: Progress,
    resume: bool,
    label: str,
    tensorboard: str | Path | None = None,
) -> None:
    if resume and (target / "summary.json").exists():
        return  # finished already
    if not resume and target.exists() and any(target.iterdir()):
        raise FedsimError(f"{target}: directory is not empty (choose another out=)")
    if progress is True:
        from fedsim.progress import progress_bar

        with progress_bar(sc.rounds, label) as update:
            run_coordinator(sc, target, progress=update, resume=resume, tensorboard=tensorboard)
    else:
        callback = progress or None
        run_coordinator(sc, target, progress=callback, resume=resume, tensorboard=tensorboard)

"""Which torch device a process trains and evaluates on: `runtime.device` resolved against
the GPUs this process sees, and how worker processes get theirs.

"cpu" (the default) changes nothing. "auto" is "cuda" when CUDA is available, else "cpu".
"cuda" / "cuda:N" need CUDA; a worker process or Ray actor is pinned to one GPU through
`CUDA_VISIBLE_DEVICES` (round-robin over the coordinator's visible GPUs for "cuda", GPU N for
every worker for "cuda:N"), so inside it the device is always "cuda:0".

On CUDA, deterministic algorithms are switched on (`torch.use_deterministic_algorithms`,
with `CUBLAS_WORKSPACE_CONFIG=:4096:8` set before cuBLAS starts, as the PyTorch
reproducibility notes require) so repeated runs on the same GPU type give the same hash.
"""

from __future__ import annotations

import os
import re

import torch

PINNED_ENV = "FEDSIM_CUDA_PINNED"  # set in a worker that sees exactly its own GPU
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"  # PyTorch docs, "Reproducibility": deterministic cuBLAS workspace
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


def _index(spec: str) -> int | None:
    m = re.fullmatch(r"cuda:(\d+)", spec)
    return int(m.group(1)) if m else None


def _pinned() -> bool:
    return os.environ.get(PINNED_ENV) == "1"


def wants_cuda(spec: str) -> bool:
    """True when `spec` trains on a GPU in this process ("auto" only when CUDA is there)."""
    if spec == "auto":
        return torch.cuda.is_available()
    return spec.startswith("cuda")


def device_problem(spec: str) -> str | None:
    """Why this process cannot use `spec`, or None (`fedsim validate` says it in one line)."""
    if spec in ("cpu", "auto"):
        return None
    if not torch.cuda.is_available():
        return (
            f"{spec!r} needs CUDA, which this machine does not have (torch "
            f'{torch.__version__}); use "cpu" or "auto"'
        )
    n, count = _index(spec), torch.cuda.device_count()
    if n is not None and n >= count and not _pinned():
        return f"{spec!r} but only {count} GPU(s) are visible (cuda:0 .. cuda:{count - 1})"
    return None


def resolve_device(spec: str) -> torch.device:
    """The torch device of `spec` in this process (a pinned worker's GPU is always cuda:0)."""
    if not wants_cuda(spec):
        return torch.device("cpu")
    n = _index(spec)
    return torch.device("cuda", 0 if n is None or _pinned() else n)


def make_deterministic() -> None:
    """Deterministic CUDA kernels; call before the process's first CUDA operation."""
    os.environ.setdefault(CUBLAS_ENV, CUBLAS_VALUE)
    torch.use_deterministic_algorithms(True)


def visible_gpus() -> list[str]:
    """The GPU ids this process may hand to its workers (its own CUDA_VISIBLE_DEVICES)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(spec: str, index: int) -> dict[str, str]:
    """Environment for worker process `index`: its one GPU, pinned, deterministic cuBLAS;
    empty on the CPU."""
    if not wants_cuda(spec):
        return {}
    gpus = visible_gpus()
    if not gpus:
        return {}
    n = _index(spec)
    gpu = gpus[n] if n is not None and n < len(gpus) else gpus[index % len(gpus)]
    return {"CUDA_VISIBLE_DEVICES": gpu, PINNED_ENV: "1", CUBLAS_ENV: CUBLAS_VALUE}

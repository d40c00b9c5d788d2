"""The final global model on disk: ``model.safetensors`` (no pickle), hashing to model_sha256.

safetensors stores each tensor's raw little-endian bytes with its dtype and shape, so the
tensors read back are bit-identical to the ones saved and ``model_sha256`` (outputs.py) of
the loaded state_dict equals the summary's. The hash is also kept in the file's metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fedsim.errors import FedsimError
from fedsim.runtime.outputs import model_sha256

MODEL_FILE = "model.safetensors"


def save_model(path: str | Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write ``state_dict`` to ``path`` as safetensors (atomically); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    # safetensors refuses views that share storage (tied weights); fresh copies are exact
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": "pt", "model_sha256": model_sha256(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_model(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict saved by ``save_model``; load it with ``model.load_state_dict``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise FedsimError(f"{path}: no saved model (runs write {MODEL_FILE} when they finish)")
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise FedsimError(f"{path}: not a safetensors model file: {e}") from None


def saved_model_sha256(path: str | Path) -> str | None:
    """The model_sha256 recorded in a saved model's metadata (None if absent)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return (fh.metadata() or {}).get("model_sha256")

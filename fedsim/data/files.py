"""Datasets read from the user's files: ``npz``, ``csv`` and ``image-folder`` (``data.path``).

Each may carry a client id per sample (a csv column, an npz array, a level of folders),
which ``partition = "natural"`` turns into one client per id, as in LEAF/FEMNIST-style data.
Without a given test set, a stratified ``test_fraction`` of the samples is held out (its
seed is fixed, so the split never moves). Every problem with a file is one DataError line
naming the file and the field or option to change.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np

from fedsim.data.dataset import Dataset, stratified_split
from fedsim.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm"}


def load_npz(path: str | None = None, test_fraction: float = 0.2) -> Dataset:
    """Arrays from a .npz file: x, y [, client] or x_train, y_train, x_test, y_test [, client_train].

    Integer images (uint8) are scaled to [0, 1]; (N, H, W) images get a channel axis.
    Labels are integers; they are renumbered 0..K-1 in sorted order. No pickled objects.
    """
    file = _existing(path, "a .npz file")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{file}: not a readable .npz file without pickled objects ({e})") from None
    split = ("x_train", "y_train", "x_test", "y_test")
    if all(k in arrays for k in split):
        x_tr, y_tr, x_te, y_te = (arrays[k] for k in split)
        groups = arrays.get("client_train")
        _same_length(file, ("x_train", x_tr), ("y_train", y_tr), ("client_train", groups))
        _same_length(file, ("x_test", x_te), ("y_test", y_te))
    elif "x" in arrays and "y" in arrays:
        x, y, groups = arrays["x"], arrays["y"], arrays.get("client")
        _same_length(file, ("x", x), ("y", y), ("client", groups))
        tr, te = _split(file, _label_codes(file, "y", y)[0], test_fraction)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
        groups = None if groups is None else groups[tr]
    else:
        raise DataError(
            f"{file}: needs arrays x and y (or x_train, y_train, x_test, y_test); "
            f"it has {', '.join(sorted(arrays)) or 'none'}"
        )
    codes, classes = _label_codes(file, "y", np.concatenate([y_tr, y_te]))
    return Dataset(
        name=file.stem,
        x_train=_features(file, x_tr),
        y_train=codes[: len(y_tr)],
        x_test=_features(file, x_te),
        y_test=codes[len(y_tr) :],
        num_classes=len(classes),
        input_shape=_features(file, x_tr[:1]).shape[1:],
        groups=None if groups is None else np.asarray(groups),
    )


def load_csv(
    path: str | None = None,
    label: str = "label",
    client: str | None = None,
    test_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    """A CSV table with a header: numeric feature columns, a ``label`` column, optionally a client column.

    ``client`` names the client-id column (default: a column named "client", if any), for
    partition = "natural". Labels may be numbers or text. Features are standardized with
    the training rows' mean and standard deviation unless ``standardize = false``.
    """
    file = _existing(path, "a .csv file")
    header, rows = _read_csv(file)
    for option, column in (("label", label), ("client", client)):
        if column is not None and column not in header:
            raise DataError(
                f"{file}: no column {column!r} (data.options.{option}; columns: {', '.join(header)})"
            )
    if client is None and "client" in header and label != "client":
        client = "client"
    features = [c for c in header if c not in (label, client)]
    if not features:
        raise DataError(f"{file}: no feature columns besides {label!r}")
    col = {c: i for i, c in enumerate(header)}
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    for r, row in enumerate(rows):
        for j, name in enumerate(features):
            text = row[col[name]]
            try:
                x[r, j] = float(text)
            except ValueError:
                raise DataError(
                    f"{file}: line {r + 2}, column {name!r}: {text!r} is not a number"
                ) from None
    codes, classes = _label_codes(file, label, np.array([row[col[label]] for row in rows]))
    tr, te = _split(file, codes, test_fraction)
    if standardize:
        mean = x[tr].mean(axis=0)
        std = x[tr].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0).astype(np.float32)
    groups = None
    if client is not None:
        groups = np.array([row[col[client]] for row in rows])[tr]
    return Dataset(
        name=file.stem,
        x_train=np.ascontiguousarray(x[tr], dtype=np.float32),
        y_train=codes[tr],
        x_test=np.ascontiguousarray(x[te], dtype=np.float32),
        y_test=codes[te],
        num_classes=len(classes),
        input_shape=(len(features),),
        groups=groups,
    )


def load_image_folder(
    path: str | None = None,
    size: list[int] | None = None,
    grayscale: bool = False,
    clients: bool = False,
    test_fraction: float = 0.2,
) -> Dataset:
    """Images in class folders: path/CLASS/*.png (torchvision's ImageFolder layout).

    With ``clients = true`` one more level names the client: path/CLIENT/CLASS/*.png (for
    partition = "natural"). path/train and path/test, when both exist, are the two splits;
    otherwise a stratified ``test_fraction`` is held out. ``size = [H, W]`` resizes; without
    it all images must have the same size. Pixels are scaled to [0, 1], channels first.
    """
    root = _existing(path, "a folder of class folders", folder=True)
    splits = [root / "train", root / "test"]
    if all(p.is_dir() for p in splits):
        parts = [_image_files(p, clients) for p in splits]
    else:
        parts = [_image_files(root, clients)]
    classes = sorted({cls for part in parts for _, cls, _ in part})
    if not classes:
        layout = "CLIENT/CLASS/image" if clients else "CLASS/image"
        raise DataError(f"{root}: no images found in the layout {layout} (data.path)")
    index = {c: i for i, c in enumerate(classes)}
    mode = "L" if grayscale else "RGB"
    want = tuple(size) if size else None  # resize to this; else all must match the first
    shape = want
    loaded = []
    for part in parts:
        images = []
        for _, _, f in part:
            arr = _read_image(f, mode, want)
            if shape is None:
                shape = arr.shape[:2]
            elif arr.shape[:2] != shape:
                raise DataError(
                    f"{f}: {arr.shape[1]}x{arr.shape[0]} pixels, other images are "
                    f"{shape[1]}x{shape[0]} (set data.options.size = [H, W] to resize)"
                )
            images.append(arr)
        x = np.stack(images).astype(np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        y = np.array([index[cls] for _, cls, _ in part], dtype=np.int64)
        g = np.array([c for c, _, _ in part]) if clients else None
        loaded.append((np.ascontiguousarray(x), y, g))
    if len(loaded) == 2:
        (x_tr, y_tr, g_tr), (x_te, y_te, _) = loaded
    else:
        x, y, g = loaded[0]
        tr, te = _split(root, y, test_fraction)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
        g_tr = None if g is None else g[tr]
    return Dataset(
        name=root.name,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        num_classes=len(classes),
        input_shape=tuple(x_tr.shape[1:]),
        groups=g_tr,
    )


# ---- shared steps ------------------------------------------------------------------------
def _existing(path: str | None, what: str, *, folder: bool = False) -> Path:
    if not path:
        raise DataError(f"data.path: this dataset reads {what}; set data.path")
    p = Path(path)
    if not p.exists():
        raise DataError(f"data.path: {p} not found")
    if folder != p.is_dir():
        raise DataError(f"data.path: {p} is not {what}")
    return p


def _read_csv(file: Path) -> tuple[list[str], list[list[str]]]:
    try:
        raw = file.read_bytes()
        if file.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{file}: cannot read ({e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None
    table = [row for row in csv.reader(io.StringIO(text)) if row]
    if len(table) < 2:
        raise DataError(f"{file}: needs a header line and at least one row")
    header = [h.strip() for h in table[0]]
    for i, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{file}: line {i} has {len(row)} fields, the header {len(header)}")
    return header, table[1:]


def _label_codes(file: Path, field: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels -> int64 codes 0..K-1 in sorted order (numbers sort as numbers)."""
    y = np.asarray(y)
    if y.dtype.kind in "US":
        try:
            as_num = y.astype(np.float64)
            y = as_num.astype(np.int64) if np.all(as_num == np.round(as_num)) else as_num
        except ValueError:
            pass
    elif y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise DataError(f"{file}: {field} holds fractional values; labels must be classes")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise DataError(f"{file}: {field} has dtype {y.dtype}; labels must be integers or text")
    classes, codes = np.unique(y.ravel(), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{file}: {field} has {len(classes)} class; at least 2 are needed")
    return codes.astype(np.int64), classes


def _features(file: Path, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu":
        out = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    elif x.dtype.kind == "f":
        out = x.astype(np.float32)
    else:
        raise DataError(f"{file}: x has dtype {x.dtype}; features must be numbers")
    if out.ndim == 1:
        raise DataError(f"{file}: x is one-dimensional; it needs one row of features per sample")
    if out.ndim == 3:  # (N, H, W) images: one channel
        out = out[:, None]
    return np.ascontiguousarray(out)


def _same_length(file: Path, *arrays: tuple[str, np.ndarray | None]) -> None:
    named = [(k, a) for k, a in arrays if a is not None]
    n = len(named[0][1])
    for k, a in named[1:]:
        if len(a) != n:
            raise DataError(f"{file}: {k} has {len(a)} entries, {named[0][0]} has {n}")


def _split(file: Path, labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < test_fraction < 1:
        raise DataError(
            f"data.options.test_fraction: {test_fraction} must be between 0 and 1 ({file})"
        )
    tr, te = stratified_split(labels, test_fraction, seed=0)
    if len(te) == 0 or len(tr) == 0:
        raise DataError(
            f"{file}: {len(labels)} samples leave an empty split at test_fraction = {test_fraction}"
        )
    return tr, te


def _image_files(root: Path, clients: bool) -> list[tuple[str, str, Path]]:
    """(client, class, file) for every image under root, in sorted order."""
    out = []
    tops = [(c.name, c) for c in _dirs(root)] if clients else [("", root)]
    for client, folder in tops:
        for cls in _dirs(folder):
            for f in sorted(cls.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    out.append((client, cls.name, f))
    return out


def _dirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_image(file: Path, mode: str, shape: tuple[int, ...] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            img = img.convert(mode)
            if shape is not None:
                img = img.resize((int(shape[1]), int(shape[0])))
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{file}: not a readable image ({e})") from None

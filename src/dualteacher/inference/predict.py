"""``dualteacher predict``: class maps (and optional overlays and probabilities) for image files.

What is written under the output folder OUT, for an input whose output name is ``<name>``:

* ``<name>.png``: the class map, a palette ("P") PNG whose pixel values are the class indices
  (the palette only colours them for viewing); with more than 256 classes a 16-bit grayscale
  PNG instead;
* ``overlays/<name>.png`` (``overlay=True``): the image blended half-and-half with the class colours;
* ``probs/<name>.npy`` (``probs=True``): float16 ``[C, H, W]`` softmax probabilities;
* ``predictions.json``: the model, its classes and, per input, its path and output files.

``<name>`` is the input's file name without extension, reduced to letters, digits, ``_``, ``-``
and ``.`` (other characters become ``_``, leading dots are dropped); inputs that would share a
name (compared case-insensitively) get ``-2``, ``-3``, ... in input order. Files are written to
a temporary file inside their folder and renamed into place, and the sub-folders must be real
folders inside OUT, so neither crafted names nor symlinks planted in OUT redirect a write.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dualteacher.checkpoint import atomic_write_bytes
from dualteacher.data.core import DataError
from dualteacher.inference.colors import overlay as blend
from dualteacher.inference.metrics import size_groups
from dualteacher.inference.model import LoadedModel, image_array, to_batch
from dualteacher.inference.modes import EvalSettings

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_UNSAFE = re.compile(r"[^\w.-]")
_MAX_NAME = 200


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders' images, glob patterns' images.

    Folders are not searched recursively (use a glob such as ``data/**/*.jpg``). A path seen
    twice is kept once. Raises :class:`DataError` for a missing input or one matching no image.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            _warn_of_subfolders(path)
        elif any(c in str(item) for c in "*?["):
            matches = (Path(p) for p in glob.glob(str(item), recursive=True))
            found = sorted(p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise DataError(f"input not found: {item}")
        if not found:
            raise DataError(f"no images (.jpg, .png, ...) found for input {item}")
        files.extend(found)
    seen: set[Path] = set()
    unique = []
    for path in files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _holds_images(folder: Path, depth: int = 2) -> bool:
    """Whether ``folder`` or its sub-folders down to ``depth`` levels hold an image file; a folder
    that ``predict`` wrote (it holds ``predictions.json``) does not count."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    if any(e.name == "predictions.json" for e in entries):
        return False
    if any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES for e in entries):
        return True
    return depth > 1 and any(
        e.is_dir() and not e.name.startswith(".") and _holds_images(Path(e.path), depth - 1) for e in entries
    )


def _warn_of_subfolders(folder: Path) -> None:
    """Log a warning naming the sub-folders of ``folder`` that hold images (looked for two levels
    down): a folder input is not searched recursively, though ``dualteacher init`` does include
    sub-folders, so they are skipped."""
    nested = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _holds_images(d))
    if nested:
        pattern = shlex.quote(f"{folder.as_posix().rstrip('/')}/**/*.jpg")
        logger.warning(
            f"{folder}: skipped the images in its sub-folder(s) {', '.join(nested)} (a folder is not searched "
            f"recursively); to include them, give a quoted glob such as {pattern} (one per image extension)"
        )


def safe_name(stem: str) -> str:
    """A file name without separators, leading dots or odd characters (``image`` if nothing is left)."""
    return _UNSAFE.sub("_", stem).lstrip(".")[:_MAX_NAME] or "image"


def output_names(paths: Sequence[Path]) -> list[str]:
    """One distinct, safe output name per input (see the module docstring)."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        base = name = safe_name(path.stem)
        count = 1
        while name.lower() in taken:
            count += 1
            name = f"{base}-{count}"
        taken.add(name.lower())
        names.append(name)
    return names


def class_map_png(mask: np.ndarray, colours: np.ndarray, num_classes: int) -> bytes:
    """PNG bytes of a class map: palette PNG (indices = classes) up to 256 classes, else 16-bit."""
    if num_classes > 256:
        return _png(Image.fromarray(mask.astype(np.uint16)))
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette(colours[:256].reshape(-1).tolist())
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _folder(out_dir: Path, name: str) -> Path:
    """``out_dir/name`` created as a real folder directly inside ``out_dir``."""
    folder = out_dir / name
    folder.mkdir(exist_ok=True)
    if folder.is_symlink() or folder.resolve().parent != out_dir.resolve():
        raise DataError(f"{folder} must be a folder inside {out_dir}, not a link elsewhere")
    return folder


def predict_files(
    model: LoadedModel,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    batch_size: int = 4,
    settings: EvalSettings | None = None,
    overlay: bool = False,
    probs: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Predict every image of ``inputs`` and write the outputs under ``out_dir``.

    Up to ``batch_size`` images are read at a time; those of equal size run as one batch, each
    predicted as if it were alone. ``settings`` is the protocol (default: the run's,
    :meth:`LoadedModel.prediction_settings`). Returns one record per input (its path, output
    files relative to ``out_dir``, size), the same records that ``predictions.json`` lists.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    settings = settings or model.prediction_settings()
    predictor = model.predictor(settings)
    paths = collect_inputs(inputs)
    names = output_names(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = {kind: _folder(out, kind) for kind, wanted in (("overlays", overlay), ("probs", probs)) if wanted}
    num_classes = len(model.classes)
    records: list[dict[str, Any]] = []
    with tqdm(total=len(paths), disable=not progress, unit="image", desc="predict") as bar:
        for start in range(0, len(paths), batch_size):
            chunk = list(range(start, min(start + batch_size, len(paths))))
            images = {i: image_array(paths[i]) for i in chunk}
            chunk_records: dict[int, dict[str, Any]] = {}
            for positions in size_groups([images[i].shape for i in chunk]):
                group = [chunk[p] for p in positions]
                logits = predictor(to_batch([images[i] for i in group], model.device))
                masks = logits.argmax(1).cpu().numpy()
                probabilities = logits.float().softmax(1).cpu().numpy().astype(np.float16) if probs else None
                for j, i in enumerate(group):
                    record: dict[str, Any] = {
                        "input": str(paths[i]),
                        "height": int(masks[j].shape[0]),
                        "width": int(masks[j].shape[1]),
                    }
                    record["mask"] = f"{names[i]}.png"
                    atomic_write_bytes(out / record["mask"], class_map_png(masks[j], model.palette, num_classes))
                    if overlay:
                        record["overlay"] = f"overlays/{names[i]}.png"
                        picture = blend(images[i], masks[j], model.palette)
                        atomic_write_bytes(folders["overlays"] / f"{names[i]}.png", _png(Image.fromarray(picture)))
                    if probabilities is not None:
                        record["probs"] = f"probs/{names[i]}.npy"
                        atomic_write_bytes(folders["probs"] / f"{names[i]}.npy", _npy(probabilities[j]))
                    chunk_records[i] = record
            records.extend(chunk_records[i] for i in chunk)
            bar.update(len(chunk))
    manifest = {"model": model.role, "classes": model.classes, "mode": settings.mode, "images": records}
    atomic_write_bytes(out / "predictions.json", json.dumps(manifest, indent=1).encode())
    return records

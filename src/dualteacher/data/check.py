"""Find every problem of a dataset before training (``dualteacher check-data``), all in one run.

*Fast* mode (run automatically when training starts) reads the split lists (ids listed twice,
ids shared between splits, empty or missing lists), checks that every image and mask exists,
and reads only the *headers* of the files (size and mode, no decoding): unreadable files,
image/mask size mismatches, colour or 16/32-bit masks, and the image modes that are converted
or refused (see :mod:`dualteacher.data.folder`). *Full* mode also decodes every file (corrupt
or truncated data), checks every mask value against the classes (after the reader's label
mapping: ``[0, num_classes)`` or 255 = ignore), and counts the labelled masks each class
appears in (a class found in none is a warning).

Every problem is a :class:`Finding`; a :class:`Report` lists them and prints them grouped by
kind. Errors stop training; warnings and notes do not.

==================  ========  ===========================================================
kind                severity  meaning
==================  ========  ===========================================================
layout              error     the dataset root or its official layout is missing
classes             error     the class list cannot be read
split-missing       error     a split list is missing or unreadable
split-empty         error     a split lists no id
split-duplicate     error     an id is listed more than once in a split
split-overlap       error     an id is in the val split and in a training split;
                    warning   an id is both labelled and unlabelled
image-missing       error     no image file for an id
mask-missing        error     no mask file for a labelled (or val) id
image-unreadable    error     not an image PIL can read, or (full) corrupt/truncated data
mask-unreadable     error     the same, for a mask
image-mode          error     a mode that cannot become RGB (32-bit ``I``/``F``, ...)
image-rescaled      warning   16-bit grayscale, rescaled to 8 bits
image-converted     info      grayscale, palette, RGBA, CMYK, ... converted to RGB
mask-colour         error     an RGB(A) mask: a colour rendering, not class indices
mask-mode           error     a mask that is not 8-bit grayscale (``L``) or palette (``P``)
size-mismatch       error     the mask and the image differ in size
mask-values         error     (full) values that are neither classes nor 255
class-absent        warning   (full) a class that no labelled mask contains
==================  ========  ===========================================================
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from dualteacher.config import Config
from dualteacher.data.build import source_from_config
from dualteacher.data.folder import IGNORE_INDEX, DataError, extension_hint, find_missing, read_list_lines
from dualteacher.data.source import DataSource

SEVERITIES = ("error", "warning", "info")
ROLES = ("labeled", "unlabeled", "val")
_CONVERTED = {
    "1": "1-bit black and white",
    "L": "grayscale",
    "LA": "grayscale with alpha (alpha dropped)",
    "P": "palette",
    "PA": "palette with alpha (alpha dropped)",
    "RGBA": "RGBA (alpha dropped)",
    "RGBa": "RGBa (alpha dropped)",
    "RGBX": "RGBX",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "LAB",
    "HSV": "HSV",
}
_MASK_MODES = ("L", "P")


@dataclass(frozen=True)
class Finding:
    """One problem: how bad it is, what kind it is, the file (or split/id/class) it concerns."""

    severity: str
    kind: str
    path_or_id: str
    message: str


@dataclass
class Report:
    """Everything one check found, with what was checked.

    ``splits`` maps each role to its split name and ``sizes`` to its number of (distinct)
    ids; in full mode ``class_images``/``class_pixels`` count, per class name, the labelled
    masks containing the class and its pixels.
    """

    dataset: str
    root: str
    full: bool
    splits: dict[str, str]
    findings: list[Finding] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    class_images: dict[str, int] | None = None
    class_pixels: dict[str, int] | None = None
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    def summary(self) -> str:
        """``"2 errors, 1 warning, 0 notes"``."""
        counts = [len(self.errors), len(self.warnings), len(self.infos)]
        words = ("error", "warning", "note")
        return ", ".join(f"{n} {w}{'' if n == 1 else 's'}" for n, w in zip(counts, words, strict=True))

    def format(self, limit: int = 10, severities: Sequence[str] = SEVERITIES) -> str:
        """A readable report: what was checked, then the findings of ``severities`` grouped by
        kind (at most ``limit`` per kind, then how many more), then the totals."""
        splits = ", ".join(
            f"{role} {name!r} ({self.sizes[role]} ids)" if role in self.sizes else f"{role} {name!r}"
            for role, name in self.splits.items()
        )
        mode = "full" if self.full else "fast"
        lines = [f"{self.dataset} data at {self.root} ({mode} check, {self.seconds:.1f} s): {splits}"]
        for severity in severities:
            groups: dict[str, list[Finding]] = {}
            for finding in self.findings:
                if finding.severity == severity:
                    groups.setdefault(finding.kind, []).append(finding)
            for kind, found in groups.items():
                lines.append(f"{severity} {kind} ({len(found)}):")
                lines += [f"  {self._short(f.path_or_id)}: {f.message}" for f in found[:limit]]
                if len(found) > limit:
                    lines.append(f"  ... and {len(found) - limit} more")
        lines.append(self.summary())
        return "\n".join(lines)

    def _short(self, path_or_id: str) -> str:
        """A path under the root, relative to it (the header names the root)."""
        try:
            return str(Path(path_or_id).relative_to(self.root))
        except ValueError:
            return path_or_id

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (the ``--json`` output)."""
        return {
            "ok": not self.errors,
            "dataset": self.dataset,
            "root": self.root,
            "mode": "full" if self.full else "fast",
            "splits": {role: {"split": name, "ids": self.sizes.get(role)} for role, name in self.splits.items()},
            "counts": {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES},
            "findings": [asdict(f) for f in self.findings],
            "class_images": self.class_images,
            "class_pixels": self.class_pixels,
            "seconds": round(self.seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)


# ---------------------------------------------------------------- split lists
def _read_split(source: DataSource, split: str, findings: list[Finding]) -> list[str] | None:
    """The distinct ids of ``split`` in order; duplicates and unreadable lists become findings.

    Entries are read as :meth:`DataSource.split_ids` reads them (byte-order mark, CRLF and
    image file names accepted), so an id listed once bare and once as a file name is a duplicate.
    """
    if split in source.builtin_splits:
        try:
            return source.split_ids(split)
        except (DataError, OSError) as error:
            findings.append(Finding("error", "split-missing", split, str(error)))
            return None
    path = source.split_file(split)
    try:
        lines = read_list_lines(path)
    except FileNotFoundError:
        findings.append(Finding("error", "split-missing", str(path), f"split list {split!r} not found"))
        return None
    except (OSError, DataError) as error:
        findings.append(Finding("error", "split-missing", str(path), f"cannot read the split list: {error}"))
        return None
    ids = source.listed_ids([text for _, text in lines])
    lines_of: dict[str, list[int]] = {}
    for (number, _), sample_id in zip(lines, ids, strict=True):
        lines_of.setdefault(sample_id, []).append(number)
    for sample_id, numbers in lines_of.items():
        if len(numbers) > 1:
            where = ", ".join(map(str, numbers))
            message = f"id {sample_id!r} listed {len(numbers)} times (lines {where})"
            findings.append(Finding("error", "split-duplicate", str(path), message))
    return list(lines_of)


def _check_splits(source: DataSource, splits: dict[str, str], findings: list[Finding]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for role, split in splits.items():
        found = _read_split(source, split, findings)
        if found is None:
            continue
        if not found:
            label = split if split in source.builtin_splits else str(source.split_file(split))
            findings.append(Finding("error", "split-empty", label, f"the {role} split lists no id"))
        ids[role] = found
    pairs = (("labeled", "val", "error"), ("unlabeled", "val", "error"), ("labeled", "unlabeled", "warning"))
    for first, second, severity in pairs:
        if first not in ids or second not in ids:
            continue
        why = "validation would score training images" if severity == "error" else "also trained on as unlabelled"
        message = f"in both the {first} split {splits[first]!r} and the {second} split {splits[second]!r} ({why})"
        shared = set(ids[second])
        findings += [Finding(severity, "split-overlap", i, message) for i in ids[first] if i in shared]
    return ids


# ---------------------------------------------------------------- files
@dataclass(frozen=True, eq=False)
class _Task:
    """One image (and mask) to inspect."""

    sample_id: str
    image: str
    mask: str | None
    label_map: np.ndarray | None
    num_classes: int | None
    count: bool


_Result = tuple[list[Finding], np.ndarray | None]


def _failure(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not a readable image (corrupt, or a format PIL does not know)"
    return f"cannot decode ({type(error).__name__}: {error})"


def _image_mode(path: str, mode: str) -> Finding | None:
    if mode == "RGB":
        return None
    if mode.startswith("I;16"):
        return Finding("warning", "image-rescaled", path,
                       f"16-bit grayscale ({mode}): rescaled to 8 bits (x * 255 / 65535) and copied to 3 channels")
    if mode in _CONVERTED:
        return Finding("info", "image-converted", path, f"{_CONVERTED[mode]} ({mode}) image, converted to RGB")
    reason = "32-bit images are not supported" if mode in ("I", "F") else "it cannot be converted to RGB"
    return Finding("error", "image-mode", path, f"mode {mode!r}: {reason}; save it as 8-bit RGB")


def _inspect_image(task: _Task, full: bool, findings: list[Finding]) -> tuple[int, int] | None:
    """The image's size from its header (None if unreadable); in full mode also decode it."""
    try:
        with Image.open(task.image) as image:
            size, mode = image.size, image.mode
            if full:
                image.load()
    except Exception as error:  # noqa: BLE001 - any decoder failure is a finding about this file
        findings.append(Finding("error", "image-unreadable", task.image, _failure(error)))
        return None
    mode_finding = _image_mode(task.image, mode)
    if mode_finding is not None:
        findings.append(mode_finding)
    return size


def _inspect_mask(
    task: _Task, image_size: tuple[int, int] | None, full: bool, findings: list[Finding]
) -> np.ndarray | None:
    """Check the mask's header (and, in full mode, its values); the pixel count per value."""
    path = str(task.mask)
    try:
        with Image.open(path) as mask:
            size, mode = mask.size, mask.mode
            values = np.asarray(mask, dtype=np.uint8) if full and mode in _MASK_MODES else None
    except Exception as error:  # noqa: BLE001 - any decoder failure is a finding about this file
        findings.append(Finding("error", "mask-unreadable", path, _failure(error)))
        return None
    if mode in ("RGB", "RGBA"):
        message = f"{mode} mask: a colour rendering, not a class-index mask (save class indices as L or P)"
        findings.append(Finding("error", "mask-colour", path, message))
    elif mode not in _MASK_MODES:
        message = f"mode {mode!r}: masks must be 8-bit grayscale (L) or palette (P)"
        findings.append(Finding("error", "mask-mode", path, message))
    if image_size is not None and size != image_size:
        message = f"mask {size[0]}x{size[1]} but image {Path(task.image).name} {image_size[0]}x{image_size[1]}"
        findings.append(Finding("error", "size-mismatch", path, message))
    if values is None:
        return None
    if task.label_map is not None:
        values = task.label_map[values]
    counts = np.bincount(values.ravel(), minlength=256)
    if task.num_classes is not None:
        bad = [v for v in np.flatnonzero(counts).tolist() if v >= task.num_classes and v != IGNORE_INDEX]
        if bad:
            mapped = " after the dataset's label mapping" if task.label_map is not None else ""
            message = f"values {bad}{mapped} are not classes 0..{task.num_classes - 1} nor {IGNORE_INDEX} (ignore)"
            findings.append(Finding("error", "mask-values", path, message))
    return counts


def _inspect(task: _Task, *, full: bool) -> _Result:
    """The findings about one sample's files and, for a counted labelled mask, its pixels per value."""
    findings: list[Finding] = []
    image_size = _inspect_image(task, full, findings)
    counts = _inspect_mask(task, image_size, full, findings) if task.mask is not None else None
    return findings, counts if task.count else None


def _refuse_truncated() -> None:
    ImageFile.LOAD_TRUNCATED_IMAGES = False


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Truncated files are errors while checking, whatever another library has set."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    _refuse_truncated()
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _run_tasks(tasks: list[_Task], full: bool, workers: int, progress: bool) -> Iterator[_Result]:
    """Inspect every task, in order; in ``workers`` processes when > 0."""
    inspect = partial(_inspect, full=full)
    if workers > 0 and len(tasks) > 1:
        chunk = max(1, min(256, len(tasks) // (workers * 8)))
        with multiprocessing.get_context().Pool(workers, initializer=_refuse_truncated) as pool:
            yield from _with_progress(pool.imap(inspect, tasks, chunksize=chunk), len(tasks), progress)
    else:
        with _strict_decoding():
            yield from _with_progress(map(inspect, tasks), len(tasks), progress)


def _with_progress(results: Iterable, total: int, progress: bool) -> Iterable:
    if not progress:
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, desc="checking files", unit="file", leave=False)


def _file_tasks(
    source: DataSource, ids: dict[str, list[str]], num_classes: int | None, findings: list[Finding]
) -> list[_Task]:
    """One task per distinct image, with its mask when a role needs one; missing files become findings."""
    tasks: dict[str, _Task] = {}
    for role in ROLES:
        if role not in ids:
            continue
        files = source.files(ids[role], labeled=role != "unlabeled")
        masks = files.masks if files.masks is not None else [None] * len(ids[role])
        for sample_id, image, mask in zip(ids[role], files.images, masks, strict=True):
            mask_path = None if mask is None else str(mask)
            task = _Task(sample_id, str(image), mask_path, files.label_map, num_classes, role == "labeled")
            known = tasks.get(task.image)
            if known is not None and (task.mask is None or known.mask is not None):
                task = replace(known, count=known.count or task.count)
            tasks[task.image] = task
    paths = [Path(t.image) for t in tasks.values()] + [Path(t.mask) for t in tasks.values() if t.mask is not None]
    missing = set(find_missing(paths))
    present: list[_Task] = []
    for task in tasks.values():
        if task.mask in missing:
            findings.append(Finding("error", "mask-missing", task.mask, f"no mask for labelled id {task.sample_id!r}"))
            task = replace(task, mask=None)
        if task.image in missing:
            message = f"no image file for id {task.sample_id!r}{extension_hint(task.sample_id)}"
            findings.append(Finding("error", "image-missing", task.image, message))
        else:
            present.append(task)
    return present


def check_data(
    source: DataSource,
    splits: dict[str, str],
    *,
    full: bool,
    workers: int = 0,
    progress: bool = False,
) -> Report:
    """Check the splits ``splits`` (role ``labeled``/``unlabeled``/``val`` -> split name) of ``source``.

    Fast mode reads split lists and file headers only; ``full`` decodes every file, checks mask
    values and counts classes. ``workers`` > 0 inspects files in that many processes.
    """
    unknown = set(splits) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown split roles {sorted(unknown)} (expected {', '.join(ROLES)})")
    start = time.perf_counter()
    report = Report(source.name, str(source.root), full, dict(splits))
    findings = report.findings
    try:
        classes: list[str] | None = source.classes
    except DataError as error:
        findings.append(Finding("error", "classes", str(source.root), str(error)))
        classes = None
    ids = _check_splits(source, splits, findings)
    report.sizes = {role: len(found) for role, found in ids.items()}
    tasks = _file_tasks(source, ids, None if classes is None else len(classes), findings)
    images = np.zeros(256, dtype=np.int64)
    pixels = np.zeros(256, dtype=np.int64)
    counted = 0
    for found, counts in _run_tasks(tasks, full, workers, progress):
        findings.extend(found)
        if counts is not None:
            images += counts > 0
            pixels += counts
            counted += 1
    if full and classes is not None and "labeled" in ids:
        report.class_images = {name: int(images[c]) for c, name in enumerate(classes)}
        report.class_pixels = {name: int(pixels[c]) for c, name in enumerate(classes)}
        for c, name in enumerate(classes):
            if images[c] == 0:
                message = f"class {c} appears in none of the {counted} labelled masks"
                findings.append(Finding("warning", "class-absent", name, message))
    report.seconds = time.perf_counter() - start
    return report


# ---------------------------------------------------------------- from a config
def needs_unlabeled(cfg: Config) -> bool:
    """Whether training reads the unlabelled split (semi-supervised, or epochs over it)."""
    return cfg.method.name != "supervised" or cfg.train.epoch_over == "unlabeled"


def training_splits(cfg: Config, *, unlabeled: bool | None = None) -> dict[str, str]:
    """Role -> split name of the splits that training with ``cfg`` reads; ``unlabeled`` forces
    the unlabelled split in (True) or out (False)."""
    splits = {"labeled": cfg.data.labeled_split}
    if needs_unlabeled(cfg) if unlabeled is None else unlabeled:
        splits["unlabeled"] = cfg.data.unlabeled_split
    splits["val"] = cfg.data.val_split
    return splits


def check_config(
    cfg: Config,
    splits: dict[str, str] | None = None,
    *,
    full: bool,
    workers: int = 0,
    progress: bool = False,
) -> Report:
    """:func:`check_data` on ``cfg.data``'s dataset (``splits`` default: :func:`training_splits`);
    a dataset that cannot be opened is a ``layout`` error of the report."""
    splits = training_splits(cfg) if splits is None else splits
    try:
        source = source_from_config(cfg.data)
    except DataError as error:
        report = Report(cfg.data.dataset, cfg.data.root, full, dict(splits))
        report.findings.append(Finding("error", "layout", cfg.data.root or "data.root", str(error)))
        return report
    return check_data(source, splits, full=full, workers=workers, progress=progress)


def preflight(cfg: Config) -> Report:
    """The fast check run when training starts, on the splits training reads."""
    return check_config(cfg, full=False)

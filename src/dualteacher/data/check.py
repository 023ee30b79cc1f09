"""Find every problem of a dataset before training (``dualteacher check-data``), all in one run.

The *fast* check is the one ``dualteacher train`` runs before the first iteration. It reads the
split lists (ids listed twice, ids shared between splits, empty or missing lists), checks that
every image and mask exists, and *decodes every image and mask* that it has not decoded before:
corrupt or truncated files (an interrupted copy keeps its header), image/mask size mismatches,
the image modes that are converted or refused and the EXIF orientations that turn an image (see
:mod:`dualteacher.data.core`), colour, lossy (JPEG) or 16/32-bit masks, values that are neither
a class (after the reader's label mapping) nor ``ignore_index``, binary 0/255 masks of a 2-class
dataset that records no mask value map, labelled masks that are all ignore, and classes that no
labelled mask contains. The report says how the masks are read when the dataset records a map
(``ROOT/mask_values.json``, :mod:`dualteacher.data.mask_values`).

What was read of each file is cached (:class:`FileCache`, one JSON file per dataset root in
the project's cache folder, ``$DUALTEACHER_CACHE`` or ``~/.cache/dualteacher``) under its path,
size and modification time, so each file is decoded once and a later check reads only the files
that changed; files are read in ``workers`` processes. The *full* check decodes every file
again, whatever the cache holds (a file rewritten with the same size and time).

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
image-unreadable    error     not an image PIL can read, or corrupt/truncated pixel data
mask-unreadable     error     the same, for a mask
image-mode          error     a mode that cannot become RGB (32-bit ``I``/``F``, ...)
image-rescaled      warning   16-bit grayscale, rescaled to 8 bits
image-converted     info      grayscale, palette, RGBA, CMYK, ... converted to RGB
image-orientation   error     an EXIF orientation turns the image (it is read upright) and its
                              mask matches the stored pixels, not the upright image;
                    warning   it turns the image and the mask fits either view (same size);
                    info      it turns the image and the mask matches the upright view, or the
                              image has no mask
mask-colour         error     an RGB(A) mask: a colour rendering, not class indices
mask-lossy          error     a mask stored as JPEG data (whatever its name): artefacts
                              relabel pixels
mask-mode           error     a mask that is not 8-bit grayscale (``L``) or palette (``P``)
size-mismatch       error     the mask and the (upright) image differ in size
mask-values         error     values that are neither classes nor ``ignore_index``
mask-binary         error     2 classes, no mask value map, and the labelled (or val) masks
                              are binary masks storing the foreground as 255 (every mask 0/255,
                              or some 0/255 and the others 0/1, none with both 1 and 255): that
                              foreground would be ignored; ``dualteacher init`` records the map
mask-all-ignore     warning   a labelled mask whose every pixel is ``ignore_index``
class-absent        warning   a class that no labelled mask contains
==================  ========  ===========================================================

For the folder layout the check also lists ``ROOT/images`` and ``ROOT/masks`` for files that
training would not use (:mod:`dualteacher.data.unused`: ``extension-case``, ``mask-not-png``,
``mask-orphan``, ``mask-unused``, ``image-unlisted``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shlex
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

from dualteacher.config import Config
from dualteacher.data.build import source_from_config
from dualteacher.data.core import (
    LOSSY_MASK_FIX,
    MASK_MODES,
    ORIENTATION_FIX,
    ORIENTATION_WORDS,
    DataError,
    decode_failure,
    extension_hint,
    find_missing,
    image_conversion,
    image_orientation,
    lossy_format,
    read_list_lines,
    upright_size,
)
from dualteacher.data.digits import default_cache_dir
from dualteacher.data.mask_values import MASK_VALUES_FILE, binary_255, describe
from dualteacher.data.source import DataSource
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.data.unused import unused_files
from dualteacher.registry import METHODS

SEVERITIES = ("error", "warning", "info")
ROLES = ("labeled", "unlabeled", "val")
_ROLE_WORDS = {"labeled": "labelled", "unlabeled": "unlabelled", "val": "val"}
_MODE_FINDINGS = {
    "rescaled": ("warning", "image-rescaled"),
    "converted": ("info", "image-converted"),
    "refused": ("error", "image-mode"),
}
_CACHE_VERSION = 2
_UNREADABLE_FIX = "copy the file again from its source, or remove its id from the split lists"


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
    ids; ``class_images``/``class_pixels`` count, per class name, the labelled masks containing
    the class and its pixels. ``images`` and ``masks`` are the distinct files inspected (all
    decoded, now or by an earlier check), of which ``files_read`` were decoded by this check (in
    ``workers`` processes; 0: in this process) and ``files_cached`` known unchanged from the
    cache file ``cache``. ``mask_values`` is the dataset's recorded map (its file and stored
    value -> class), None when it has none.
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
    images: int = 0
    masks: int = 0
    files_read: int = 0
    files_cached: int = 0
    workers: int = 0
    cache: str | None = None
    cache_error: str | None = None
    mask_values: tuple[str, dict[int, int]] | None = None

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

    def checked(self) -> str:
        """What was inspected and how: ``"checked 12 images and 8 masks (decoded): ..."``."""
        how = f"in {self.workers} worker processes" if self.workers else "in this process"
        cache = f"cache {self.cache}" if self.cache else "no cache"
        if self.cache_error:
            cache += f", not written: {self.cache_error}"
        return (
            f"checked {self.images} images and {self.masks} masks (decoded): {self.files_read} files read "
            f"{how}, {self.files_cached} unchanged since the last check ({cache})"
        )

    def format(self, limit: int = 10, severities: Sequence[str] = SEVERITIES) -> str:
        """A readable report: what was checked, then the findings of ``severities`` grouped by
        kind (at most ``limit`` per kind, then how many more), then the totals."""
        splits = ", ".join(
            f"{role} {name!r} ({self.sizes[role]} ids)" if role in self.sizes else f"{role} {name!r}"
            for role, name in self.splits.items()
        )
        mode = "full" if self.full else "fast"
        lines = [f"{self.dataset} data at {self.root} ({mode} check, {self.seconds:.1f} s): {splits}", self.checked()]
        if self.mask_values is not None:
            path, mapping = self.mask_values
            lines.append(f"mask values read through {self._short(path)}: {describe(mapping, self.class_names)}")
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

    @property
    def class_names(self) -> list[str] | None:
        """The class names, when the class list could be read."""
        return None if self.class_images is None else list(self.class_images)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (the ``--json`` output)."""
        mask_values = (
            None
            if self.mask_values is None
            else {"file": self.mask_values[0], "map": {str(k): v for k, v in sorted(self.mask_values[1].items())}}
        )
        return {
            "ok": not self.errors,
            "dataset": self.dataset,
            "root": self.root,
            "mask_values": mask_values,
            "mode": "full" if self.full else "fast",
            "splits": {role: {"split": name, "ids": self.sizes.get(role)} for role, name in self.splits.items()},
            "counts": {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES},
            "findings": [asdict(f) for f in self.findings],
            "class_images": self.class_images,
            "class_pixels": self.class_pixels,
            "files": {
                "images": self.images,
                "masks": self.masks,
                "read": self.files_read,
                "cached": self.files_cached,
                "workers": self.workers,
                "cache": self.cache,
            },
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


# ---------------------------------------------------------------- which files
@dataclass(frozen=True, eq=False)
class _Task:
    """One image (and mask), and the roles (``labeled``, ``unlabeled``, ``val``) it has."""

    sample_id: str
    image: str
    mask: str | None
    label_map: np.ndarray | None
    roles: frozenset[str]


def _file_tasks(source: DataSource, ids: dict[str, list[str]], findings: list[Finding]) -> list[_Task]:
    """One task per distinct image, with its mask when a role needs one; missing files become findings."""
    tasks: dict[str, _Task] = {}
    for role in ROLES:
        if role not in ids:
            continue
        files = source.files(ids[role], labeled=role != "unlabeled")
        masks = files.masks if files.masks is not None else [None] * len(ids[role])
        for sample_id, image, mask in zip(ids[role], files.images, masks, strict=True):
            mask_path = None if mask is None else str(mask)
            task = _Task(sample_id, str(image), mask_path, files.label_map, frozenset({role}))
            known = tasks.get(task.image)
            if known is not None:
                keep = known if known.mask is not None or task.mask is None else task
                task = replace(keep, roles=known.roles | task.roles)
            tasks[task.image] = task
    missing = set(find_missing([t.image for t in tasks.values()] + [t.mask for t in tasks.values() if t.mask]))
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


# ---------------------------------------------------------------- reading files, with a cache
# What was read of one file: {"width", "height" (as stored), "mode", "format" (PIL's), "lossy"
# (how it stores pixels lossily, in words, or None), "orientation" (EXIF, 1-8), "values": [[value,
# pixels], ...] for an L/P file, else None}; plain JSON, the cache's entries.
_Facts = dict[str, Any]


def _read_file(path: str) -> tuple[str, _Facts | None, str | None]:
    """Decode one file entirely, so that a truncated or corrupt file fails here: an L/P file (a
    mask, or an image) is counted per value; a PNG's chunk checksums are verified first (a copy
    whose tail is zeros decodes without an error); a colour JPEG is decoded at 1/8 scale, which
    reads and entropy-decodes all its data (where libjpeg finds errors) but skips most of the
    inverse DCT (2.3x faster on a 12-megapixel photo). ``(path, facts, None)`` or ``(path, None,
    why unreadable)``; the finding made of it names the file."""
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()
        with Image.open(path) as image:
            facts: _Facts = {
                "width": image.width,
                "height": image.height,
                "mode": image.mode,
                "format": image.format,
                "lossy": lossy_format(image),
                "values": None,
            }
            if image.mode in MASK_MODES:
                facts["values"] = [[v, n] for v, n in enumerate(image.histogram()) if n]
            else:
                image.draft(None, (1, 1))  # JPEG only; other formats ignore it
                image.load()
            facts["orientation"] = image_orientation(image)
    except Exception as error:  # any decoder failure is a finding about this file
        return path, None, decode_failure(error)
    return path, facts, None


class FileCache:
    """What was read of each file of one dataset, valid while the file's size and modification
    time (ns) are unchanged. One JSON file per dataset root in ``directory``, replaced atomically
    (temporary file + rename); an unreadable or foreign cache file counts as empty. Only files
    that could be read are stored, so a broken file is read again by every check."""

    def __init__(self, directory: Path | None, root: Path) -> None:
        self.root = str(Path(root).resolve())
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        self.path = None if directory is None else Path(directory) / f"check-{digest}.json"
        self.entries: dict[str, list[Any]] = self._load()
        self.changed = False

    def _load(self) -> dict[str, list[Any]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        ok = isinstance(data, dict) and data.get("version") == _CACHE_VERSION and isinstance(data.get("files"), dict)
        return data["files"] if ok else {}

    def get(self, path: str, stamp: list[int]) -> _Facts | None:
        """The facts stored for ``path`` if its ``[size, mtime_ns]`` is ``stamp``."""
        try:
            old_stamp, facts = self.entries[path]
            return facts if old_stamp == stamp and isinstance(facts, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, path: str, stamp: list[int], facts: _Facts) -> None:
        self.entries[path] = [stamp, facts]
        self.changed = True

    def save(self) -> str | None:
        """Write the cache if it changed; None, or why it could not be written."""
        if self.path is None or not self.changed:
            return None
        data = {"version": _CACHE_VERSION, "root": self.root, "files": self.entries}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as error:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            return str(error)
        return None


def _stamp(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


@dataclass
class _Read:
    """The facts of every readable file, why each other file is unreadable, how many files
    were read (in how many processes) and how many were known from the cache."""

    facts: dict[str, _Facts] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    read: int = 0
    cached: int = 0
    workers: int = 0


def _read_files(tasks: list[_Task], full: bool, workers: int, progress: bool, cache: FileCache) -> _Read:
    """Decode every image and mask, except (unless ``full``) the files whose facts the cache
    holds; what was read goes into the cache."""
    jobs = list(dict.fromkeys(path for task in tasks for path in (task.image, task.mask) if path is not None))
    result = _Read()
    pending: list[str] = []
    stamps: dict[str, list[int] | None] = {}
    for path in jobs:
        stamp = stamps[path] = _stamp(path)
        known = None if full or stamp is None else cache.get(path, stamp)
        if known is None:
            pending.append(path)
        else:
            result.facts[path] = known
    result.read, result.cached = len(pending), len(jobs) - len(pending)
    result.workers = min(workers, len(pending)) if len(pending) > 1 else 0
    for path, facts, failure in _run_jobs(pending, result.workers, progress):
        if facts is None:
            result.failures[path] = str(failure)
            continue
        result.facts[path] = facts
        stamp = stamps[path]
        if stamp is not None:
            cache.put(path, stamp, facts)
    return result


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


def _run_jobs(jobs: list[str], workers: int, progress: bool) -> Iterator[tuple[str, _Facts | None, str | None]]:
    """:func:`_read_file` on every job, in ``workers`` processes when > 0 (in any order)."""
    if workers > 0:
        chunk = max(1, min(256, len(jobs) // (workers * 8)))
        with multiprocessing.get_context().Pool(workers, initializer=_refuse_truncated) as pool:
            yield from _with_progress(pool.imap_unordered(_read_file, jobs, chunksize=chunk), len(jobs), progress)
    else:
        with _strict_decoding():
            yield from _with_progress(map(_read_file, jobs), len(jobs), progress)


def _with_progress(results: Iterable, total: int, progress: bool) -> Iterable:
    if not progress:
        return results
    from tqdm.auto import tqdm

    return tqdm(results, total=total, desc="checking files", unit="file", leave=False)


# ---------------------------------------------------------------- findings of one sample
def _image_mode(path: str, mode: str) -> Finding | None:
    """What the decoder (:func:`~dualteacher.data.core.image_conversion`) will do with an image of
    ``mode``, as a finding; None for RGB."""
    kind, words = image_conversion(mode)
    if kind == "kept":
        return None
    severity, finding = _MODE_FINDINGS[kind]
    return Finding(severity, finding, path, words)


def _image_findings(task: _Task, read: _Read) -> list[Finding]:
    if task.image in read.failures:
        return [Finding("error", "image-unreadable", task.image, f"{read.failures[task.image]}: {_UNREADABLE_FIX}")]
    found = [_image_mode(task.image, read.facts[task.image]["mode"]), _orientation(task, read)]
    return [f for f in found if f is not None]


def _stored_size(facts: _Facts) -> tuple[int, int]:
    return facts["width"], facts["height"]


def _upright_size(facts: _Facts) -> tuple[int, int]:
    """(W, H) of an image as it is read: turned upright by its EXIF orientation."""
    return upright_size(_stored_size(facts), facts["orientation"])


def _orientation(task: _Task, read: _Read) -> Finding | None:
    """What the image's EXIF orientation means for training (images are read upright, masks as
    stored), as a finding; None for an image without one. An error when the mask matches the
    stored pixels but not the upright image, a warning when it fits both views (its size cannot
    tell which view it was drawn on), otherwise a note."""
    facts = read.facts[task.image]
    orientation = facts["orientation"]
    if orientation == 1:
        return None
    stored, upright = _stored_size(facts), _upright_size(facts)
    shown = f"EXIF orientation {orientation} ({ORIENTATION_WORDS[orientation]})"
    read_as = f"{shown}: read upright ({upright[0]}x{upright[1]}), as annotation tools and `predict` show it"
    mask = read.facts.get(task.mask) if task.mask is not None else None
    if task.mask is None or mask is None:
        return Finding("info", "image-orientation", task.image, read_as)
    name, size = Path(task.mask).name, _stored_size(mask)
    retag = ORIENTATION_FIX.format(path=task.image)
    fix = f"if the mask was drawn on the stored pixels, set the image's tag to 1 without re-encoding it: {retag}"
    if size == upright and upright != stored:
        return Finding("info", "image-orientation", task.image, f"{read_as}; its mask {name} matches that view")
    if size == upright:
        message = (
            f"{read_as}; its mask {name} has the same size either way, so only its content says which "
            f"view it was drawn on (compare the two); {fix}"
        )
        return Finding("warning", "image-orientation", task.image, message)
    if size == stored:
        message = (
            f"{read_as}, but its mask {name} ({size[0]}x{size[1]}) matches the stored pixels "
            f"({stored[0]}x{stored[1]}), not the upright image: {fix}; if it was drawn on the upright "
            f"photo, re-export it from the annotation tool"
        )
        return Finding("error", "image-orientation", task.image, message)
    return Finding("info", "image-orientation", task.image, read_as)


def _value_counts(values: list[list[int]], label_map: np.ndarray | None) -> np.ndarray:
    """Pixels per class value (int64 [256]) of a mask's stored values, after ``label_map``."""
    stored = np.array([v for v, _ in values], dtype=np.int64)
    pixels = np.array([n for _, n in values], dtype=np.int64)
    counts = np.zeros(256, dtype=np.int64)
    np.add.at(counts, stored if label_map is None else label_map[stored].astype(np.int64), pixels)
    return counts


def _mask_findings(
    task: _Task, read: _Read, num_classes: int | None, ignore_index: int, values_fix: str
) -> tuple[list[Finding], np.ndarray | None]:
    """Findings about a sample's mask and its pixels per class value (None if not decoded);
    ``values_fix`` ends the message of values that are not classes."""
    path = str(task.mask)
    if path in read.failures:
        return [Finding("error", "mask-unreadable", path, f"{read.failures[path]}: {_UNREADABLE_FIX}")], None
    facts = read.facts[path]
    findings: list[Finding] = []
    if facts["lossy"] is not None:
        message = f"stored as {facts['lossy']} (lossy): compression artefacts change class values; {LOSSY_MASK_FIX}"
        findings.append(Finding("error", "mask-lossy", path, message))
    if facts["mode"] in ("RGB", "RGBA"):
        message = f"{facts['mode']} mask: a colour rendering, not a class-index mask (save class indices as L or P)"
        findings.append(Finding("error", "mask-colour", path, message))
    elif facts["mode"] not in MASK_MODES:
        message = f"mode {facts['mode']!r}: masks must be 8-bit grayscale (L) or palette (P)"
        findings.append(Finding("error", "mask-mode", path, message))
    image = read.facts.get(task.image)
    size = _stored_size(facts)
    # a mask matching only the stored pixels of an image turned upright is an image-orientation error
    if image is not None and size != _upright_size(image) and size != _stored_size(image):
        width, height = _upright_size(image)
        turned = "" if image["orientation"] == 1 else f" (upright: EXIF orientation {image['orientation']})"
        message = (
            f"mask {size[0]}x{size[1]} but image {Path(task.image).name} {width}x{height}{turned}: save the mask "
            "at its image's size (export it again from the annotation tool, or resize it with nearest-neighbour "
            "sampling, which keeps class values)"
        )
        findings.append(Finding("error", "size-mismatch", path, message))
    if facts["values"] is None:
        return findings, None
    counts = _value_counts(facts["values"], task.label_map)
    if num_classes is not None:
        bad = [v for v in np.flatnonzero(counts).tolist() if v >= num_classes and v != ignore_index]
        if bad:
            mapped = " after the dataset's label mapping" if task.label_map is not None else ""
            message = (
                f"values {bad}{mapped} are not classes 0..{num_classes - 1} nor {ignore_index} (ignore): {values_fix}"
            )
            findings.append(Finding("error", "mask-values", path, message))
    if "labeled" in task.roles and counts.sum() > 0 and _ignored(counts, ignore_index) == counts.sum():
        message = f"every pixel is {ignore_index} (ignore): this labelled image teaches nothing"
        findings.append(Finding("warning", "mask-all-ignore", path, message))
    return findings, counts


def _ignored(counts: np.ndarray, ignore_index: int) -> int:
    """Pixels of ``counts`` (per value, [256]) equal to ``ignore_index``."""
    return int(counts[ignore_index]) if 0 <= ignore_index < len(counts) else 0


# ---------------------------------------------------------------- findings of a split
@dataclass
class _MaskStats:
    """The masks of one role: how many, how many contain each value, pixels per value, the
    first mask containing each value, and the values of each mask."""

    masks: int = 0
    images: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    first: dict[int, str] = field(default_factory=dict)
    value_sets: list[frozenset[int]] = field(default_factory=list)

    def add(self, path: str, counts: np.ndarray) -> None:
        self.masks += 1
        self.images += counts > 0
        self.pixels += counts
        found = np.flatnonzero(counts).tolist()
        self.value_sets.append(frozenset(found))
        for value in found:
            self.first.setdefault(value, path)


def _class_absent(stats: _MaskStats, classes: list[str], source: DataSource) -> list[Finding]:
    """A warning per class that no labelled mask contains, unless no stored value can mean it
    (e.g. the class that ``data.ignore_index`` names)."""
    message = f"appears in none of the {stats.masks} labelled masks: training never sees it"
    return [
        Finding("warning", "class-absent", name, f"class {c} {message}")
        for c, name in enumerate(classes)
        if (c >= 256 or stats.images[c] == 0) and _can_be_labelled(source, c)
    ]


def _binary_masks(stats: dict[str, _MaskStats], classes: list[str], source: DataSource) -> list[Finding]:
    """A 2-class dataset read as stored (no mask value map, no ``data.ignore_index``) whose masks
    are binary masks storing the foreground as 255 (:func:`~dualteacher.data.mask_values.binary_255`:
    what most annotation tools write): read as stored, that foreground is ignored. For the folder
    layout the message ends with the ``init`` command that records the map."""
    if len(classes) != 2 or source.label_map is not None or source.mask_values is not None:
        return []
    root = shlex.quote(str(source.root))
    if source.name == "folder":
        fix = (
            f"leave your files as they are and record that 255 is class 1 in {MASK_VALUES_FILE} (every command "
            f"then reads the masks so), run: dualteacher init --data {root}"
        )
    else:
        fix = "save the foreground as 1, e.g. Image.fromarray((np.array(Image.open(p)) > 127).astype(np.uint8)).save(p)"
    findings = []
    for role, stat in stats.items():
        binary = binary_255(stat.value_sets)
        if binary is None:
            continue
        words = _ROLE_WORDS[role]
        if binary.as_1:
            message = (
                f"{binary.as_255} of the {stat.masks} {words} masks hold 0 and 255 but never 1, and {binary.as_1} "
                f"hold 1 but never 255: binary masks from tools that save the foreground ({classes[1]!r}) as "
                f"255 and as 1? Read as stored, the foreground of the 0/255 ones is ignored. If 255 marks "
                f'unlabelled pixels there, write {{"255": 255}} to {source.root / MASK_VALUES_FILE}; else '
                f"{fix}"
            )
        else:
            message = (
                f"no {words} mask holds class 1 ({classes[1]!r}) but {binary.as_255} of {stat.masks} hold 255: "
                f"binary masks saved as 0/255 make every foreground pixel 'ignore'; {fix}"
            )
        findings.append(Finding("error", "mask-binary", stat.first[IGNORE_INDEX], message))
    return findings


def check_data(
    source: DataSource,
    splits: dict[str, str],
    *,
    full: bool,
    workers: int = 0,
    progress: bool = False,
    ignore_index: int = IGNORE_INDEX,
    cache_dir: Path | None = None,
) -> Report:
    """Check the splits ``splits`` (role ``labeled``/``unlabeled``/``val`` -> split name) of ``source``.

    Reads split lists and image headers and decodes every mask (``full`` also decodes every
    image); mask values must be classes or ``ignore_index``. ``workers`` > 0 reads files in up to
    that many processes; ``cache_dir`` (None: no cache) holds what was read, so that a later
    check reads only changed files. Raises ValueError for an unknown role.
    """
    unknown = set(splits) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown split roles {sorted(unknown)} (expected {', '.join(ROLES)})")
    start = time.perf_counter()
    report = Report(source.name, str(source.root), full, dict(splits))
    if source.mask_values is not None:
        report.mask_values = (str(source.mask_values.path), dict(source.mask_values.mapping))
    findings = report.findings
    try:
        classes: list[str] | None = source.classes
    except DataError as error:
        findings.append(Finding("error", "classes", str(source.root), str(error)))
        classes = None
    ids = _check_splits(source, splits, findings)
    findings += [Finding(*fields) for fields in unused_files(source, splits, ids)]
    report.sizes = {role: len(found) for role, found in ids.items()}
    tasks = _file_tasks(source, ids, findings)
    cache = FileCache(cache_dir, source.root)
    read = _read_files(tasks, full, workers, progress, cache)
    stats: dict[str, _MaskStats] = {role: _MaskStats() for role in ("labeled", "val") if role in ids}
    num_classes = None if classes is None else len(classes)
    values_fix = (
        f"correct the mask, or, if they are classes, name them in {source.root / 'classes.txt'} (line i names value i)"
        if source.name == "folder"
        else "correct the mask (this layout's classes are fixed)"
    )
    for task in tasks:
        findings += _image_findings(task, read)
        if task.mask is None:
            continue
        found, counts = _mask_findings(task, read, num_classes, ignore_index, values_fix)
        findings += found
        if counts is not None:
            for role in task.roles & stats.keys():
                stats[role].add(task.mask, counts)
    if classes is not None and "labeled" in stats:
        labeled = stats["labeled"]
        report.class_images = {name: int(labeled.images[c]) if c < 256 else 0 for c, name in enumerate(classes)}
        report.class_pixels = {name: int(labeled.pixels[c]) if c < 256 else 0 for c, name in enumerate(classes)}
        findings += _binary_masks(stats, classes, source)
        findings += _class_absent(labeled, classes, source)
    report.images = len(tasks)
    report.masks = sum(task.mask is not None for task in tasks)
    report.files_read, report.files_cached, report.workers = read.read, read.cached, read.workers
    report.cache = None if cache.path is None else str(cache.path)
    report.cache_error = cache.save()
    report.seconds = time.perf_counter() - start
    return report


def _can_be_labelled(source: DataSource, class_index: int) -> bool:
    """Whether some stored mask value means ``class_index`` under the source's label map."""
    return source.label_map is None or bool((source.label_map == class_index).any())


# ---------------------------------------------------------------- from a config
def needs_unlabeled(cfg: Config) -> bool:
    """Whether training reads the unlabelled split: the method uses it
    (:attr:`~dualteacher.methods.base.Method.uses_unlabeled`), or epochs run over it."""
    return METHODS.get(cfg.method.name).uses_unlabeled or cfg.train.epoch_over == "unlabeled"


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
    cache_dir: Path | None = None,
) -> Report:
    """:func:`check_data` on ``cfg.data``'s dataset (``splits`` default: :func:`training_splits`);
    a dataset that cannot be opened is a ``layout`` error of the report. ``data.ignore_index``
    reaches the check through the source's label map, which reads it as 255."""
    splits = training_splits(cfg) if splits is None else splits
    try:
        source = source_from_config(cfg.data)
    except DataError as error:
        report = Report(cfg.data.dataset, cfg.data.root, full, dict(splits))
        report.findings.append(Finding("error", "layout", cfg.data.root or "data.root", str(error)))
        return report
    return check_data(source, splits, full=full, workers=workers, progress=progress, cache_dir=cache_dir)


def preflight(cfg: Config) -> Report:
    """The fast check run when training starts, on the splits training reads, in
    ``data.workers`` processes, with the cache in the project's cache folder."""
    return check_config(cfg, full=False, workers=cfg.data.workers, cache_dir=default_cache_dir())

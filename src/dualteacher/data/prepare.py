"""``dualteacher init``: make a folder of images and (some) masks ready to train on.

The user has ``ROOT/images/<id>.jpg|.jpeg|.png`` and ``ROOT/masks/<id>.png`` for some of them
(class index per pixel, see :mod:`dualteacher.data.folder`). :func:`prepare_folder` writes the
rest of the folder layout::

    ROOT/classes.txt                   the names given, else one per mask value found
                                       (``background`` for 0, ``class_<v>`` for the others)
    ROOT/mask_values.json              for binary masks saved as 0/255 only: {"0": 0, "255": 1}
                                       (:mod:`dualteacher.data.mask_values`)
    ROOT/splits/val.txt                a seeded draw of the images that have a mask
    ROOT/splits/train.txt              every other image
    ROOT/splits/labeled_masked.txt     the train images that have a mask and the others
    ROOT/splits/unlabeled_masked.txt   (what ``dualteacher split --labeled masked`` writes)

It never writes into ``images/`` or ``masks/``. A file that exists is left as it is: reported
``unchanged`` when it already holds what init would write, ``kept`` otherwise (the user's own
lists are used as they are, after checking them); ``force`` redraws the split lists, and
replaces ``classes.txt`` when names are given. So a second call changes nothing.

Binary masks that store the foreground as 255, as annotation tools write them (some may store
it as 1; see :func:`~dualteacher.data.mask_values.binary_255`), in a dataset of at most 2
classes, are read through a recorded map: ``mask_values.json`` says 255 is class 1, and every
command reads the masks so; the files stay as they are. A ``mask_values.json`` of the user's is
kept (never replaced, not even by ``force``) and applied before the classes are counted: to read
255 as ignore in such a dataset, write ``{"255": 255}`` there.

Masks that hold no class values are refused before anything is written, naming the files:
colour (RGB/RGBA) renderings, 1-bit and 16-bit masks. ``indexed_copy`` then writes a copy of the
dataset beside it (images hard-linked where the file system allows, else copied; masks converted
to class indices, through the dataset's map when it has one) and prepares the copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from shlex import quote

import numpy as np
from PIL import Image

from dualteacher.data.core import (
    IMAGE_EXTENSIONS,
    DataError,
    decode_failure,
    find_missing,
    read_id_list,
    visible_files,
)
from dualteacher.data.folder import read_classes
from dualteacher.data.mask_values import (
    BINARY_255,
    MASK_VALUES_FILE,
    Binary255,
    MaskValues,
    binary_255,
    describe,
    read_mask_values,
    same_map,
    write_mask_values,
)
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import LABELED_MASKED, MASKED, UNLABELED_MASKED, split_source
from dualteacher.data.transforms import IGNORE_INDEX

VAL_FRACTION = 0.2
"""The share of the images with a mask that ``init`` draws for validation by default."""
MIN_TRAIN_MASKS = 2
"""Images with a mask that the val draw always leaves for training."""
FEW_VAL = 5
"""Below this many val images ``init`` notes that the val mIoU (and the choice of ``best``) rests on them."""
MAX_COLOURS = 255
"""Distinct colours of colour masks that an indexed copy can turn into classes (0..254; 255 is ignore)."""
_SHOWN = 5


def command(*words: str) -> str:
    """A shell command line with every word quoted as needed (``dualteacher init --data 'my data'``)."""
    return " ".join(quote(w) for w in words)


def _some(items: Sequence[str]) -> str:
    """The first few ``items`` joined, and how many more there are."""
    more = len(items) - _SHOWN
    return ", ".join(items[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (:func:`visible_files`)."""
    return [Path(parent) / name for parent, name in visible_files(folder)]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ---------------------------------------------------------------- what the folder holds
@dataclass
class Folder:
    """The images and masks of a folder dataset: id -> file, and the files that were skipped."""

    root: Path
    images: dict[str, Path]
    masks: dict[str, Path]
    skipped: list[str] = field(default_factory=list)

    @property
    def masked(self) -> list[str]:
        """The ids that have a mask, sorted."""
        return sorted(self.masks)


def scan_folder(root: Path, fix: str) -> Folder:
    """The images (``images/<id>.jpg|.jpeg|.png``, sub-folders included) and masks
    (``masks/<id>.png``) of ``root``.

    Raises :class:`DataError` naming the files, each message ending with ``fix`` (the command to
    run once fixed): no images folder or image, upper-case extensions (the reader looks for the
    lower-case ones), two images for one id, no mask, masks that are not PNG, masks that match no image.
    """
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise DataError(
            f"no images folder: {images_dir}. Put the photos there as images/<id>.jpg (or .jpeg/.png) "
            f"and their masks as masks/<id>.png, then run: {fix}"
        )
    images: dict[str, Path] = {}
    skipped, upper, twice = [], [], []
    for path in _visible_files(images_dir):
        name = _rel(path, images_dir)
        if path.suffix in IMAGE_EXTENSIONS:
            sample_id = name[: -len(path.suffix)]
            if sample_id in images:
                twice.append(f"{_rel(images[sample_id], root)} and {_rel(path, root)}")
            images.setdefault(sample_id, path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            upper.append(_rel(path, root))
        else:
            skipped.append(_rel(path, root))
    if upper:
        raise DataError(
            f"{len(upper)} image(s) with an upper-case extension ({_some(upper)}): the folder layout reads "
            f"{', '.join(IMAGE_EXTENSIONS)} in lower case; rename them, then run: {fix}"
        )
    if twice:
        raise DataError(f"two images for one id ({_some(twice)}): keep one of each, then run: {fix}")
    if not images:
        raise DataError(
            f"no image in {images_dir} (looked for {', '.join(IMAGE_EXTENSIONS)}"
            + (f"; found only {_some(skipped)}" if skipped else "")
            + f"): add the photos, then run: {fix}"
        )
    if not masks_dir.is_dir():
        raise DataError(
            f"no masks folder: {masks_dir}. Save a class-index PNG for some of the images as "
            f"masks/<id>.png (same name as the image), then run: {fix}"
        )
    masks: dict[str, Path] = {}
    lossy: list[str] = []
    orphans: list[str] = []
    for path in _visible_files(masks_dir):
        name = _rel(path, masks_dir)
        if path.suffix != ".png":
            (lossy if path.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(_rel(path, root))
            continue
        sample_id = name[: -len(".png")]
        (orphans if sample_id not in images else []).append(_rel(path, root))
        masks[sample_id] = path
    if lossy:
        raise DataError(
            f"{len(lossy)} mask(s) not saved as .png ({_some(lossy)}): masks are class indices and must be "
            f"lossless PNGs named masks/<id>.png; save them so, then run: {fix}"
        )
    if orphans:
        raise DataError(
            f"{len(orphans)} mask(s) match no image ({_some(orphans)}): a mask is masks/<id>.png for the "
            f"image images/<id>.jpg|.jpeg|.png; rename or remove them, then run: {fix}"
        )
    if not masks:
        raise DataError(
            f"no mask in {masks_dir}: save a class-index PNG for some of the images as masks/<id>.png, then run: {fix}"
        )
    return Folder(root, images, masks, skipped)


# ---------------------------------------------------------------- what the masks hold
@dataclass(frozen=True)
class MaskFacts:
    """One mask: PIL mode, size, and its pixels per value (int64 [256], for value masks) or per
    colour (packed 0xRRGGBB -> pixels, for RGB/RGBA masks); neither when it cannot be read as either."""

    path: Path
    mode: str
    size: tuple[int, int]
    values: np.ndarray | None = None
    colours: dict[int, int] | None = None


def _values(array: np.ndarray) -> np.ndarray | None:
    """Pixels per value (int64 [256]) of an integer array, None if a value is outside 0..255."""
    if array.size and (array.min() < 0 or array.max() > 255):
        return None
    return np.bincount(array.ravel().astype(np.int64), minlength=256)


def read_mask(path: Path) -> MaskFacts:
    """What :func:`prepare_folder` needs of one mask. Raises :class:`DataError` naming it if unreadable."""
    try:
        with Image.open(path) as mask:
            mode, size = mask.mode, mask.size
            if mode in ("RGB", "RGBA"):
                rgb = np.asarray(mask.convert("RGB"), dtype=np.uint32).reshape(-1, 3)
                packed, counts = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2], return_counts=True)
                return MaskFacts(path, mode, size, colours=dict(zip(packed.tolist(), counts.tolist(), strict=True)))
            if mode in ("L", "P", "1") or mode.startswith("I"):
                return MaskFacts(path, mode, size, values=_values(np.asarray(mask).astype(np.int64)))
            return MaskFacts(path, mode, size)
    except (OSError, ValueError) as error:
        raise DataError(f"mask {path}: {decode_failure(error)}") from error


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header. Raises :class:`DataError` naming it if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as error:
        raise DataError(f"image {path}: {decode_failure(error)}") from error


def read_masks(folder: Folder, fix: str) -> dict[str, MaskFacts]:
    """Every mask of ``folder`` read, checked against its image's size. Raises :class:`DataError`
    listing every mask whose size differs from its image's, ending with ``fix``."""
    facts = {sample_id: read_mask(path) for sample_id, path in sorted(folder.masks.items())}
    wrong = []
    for sample_id, fact in facts.items():
        size = image_size(folder.images[sample_id])
        if fact.size != size:
            wrong.append(
                f"{_rel(fact.path, folder.root)} is {fact.size[0]}x{fact.size[1]} but "
                f"{_rel(folder.images[sample_id], folder.root)} is {size[0]}x{size[1]}"
            )
    if wrong:
        raise DataError(
            f"{len(wrong)} mask(s) differ in size from their image ({'; '.join(wrong[:_SHOWN])}"
            f"{f' and {len(wrong) - _SHOWN} more' if len(wrong) > _SHOWN else ''}): a mask labels its "
            f"image pixel for pixel; save each at its image's size, then run: {fix}"
        )
    return facts


@dataclass(frozen=True)
class MaskKind:
    """What the masks of a dataset are: ``kind`` is ``indexed`` (class indices, ready),
    ``binary`` (0/255 with the foreground as 255, some masks possibly 0/1: ``binary`` counts
    each), ``bilevel`` (1-bit), ``wide`` (16/32-bit values below 256), ``colour`` (RGB/RGBA
    renderings); ``values`` the pixels per value over every mask (int64 [256]; for colour masks,
    per class of the copy) and ``colours`` the colours of colour masks in class order (black first)."""

    kind: str
    values: np.ndarray
    colours: tuple[int, ...] = ()
    example: Path | None = None
    binary: Binary255 | None = None


def mask_kind(facts: dict[str, MaskFacts], root: Path, class_count: int | None, fix: str) -> MaskKind:
    """Classify the masks (see :class:`MaskKind`); ``class_count`` is the number of class names
    given or listed (None: none): binary masks (:func:`binary_255`) need at most 2, as 255 is
    the ignore value of a dataset of more classes.

    Raises :class:`DataError` ending with ``fix`` for masks of a mode that holds no class
    indices, 16-bit masks with values above 255, and colour masks mixed with value masks.
    """
    unusable = [f"{_rel(f.path, root)} ({f.mode})" for f in facts.values() if f.values is None and f.colours is None]
    if unusable:
        raise DataError(
            f"{len(unusable)} mask(s) hold no class indices ({_some(unusable)}): save masks as 8-bit "
            f"grayscale (L) or palette (P) PNGs whose pixel values are the classes, then run: {fix}"
        )
    colour = [f for f in facts.values() if f.colours is not None]
    if colour:
        if len(colour) < len(facts):
            other = next(f for f in facts.values() if f.colours is None)
            raise DataError(
                f"colour masks ({_rel(colour[0].path, root)}, {colour[0].mode}) mixed with value masks "
                f"({_rel(other.path, root)}, {other.mode}): save every mask one way, then run: {fix}"
            )
        pixels: dict[int, int] = {}
        for f in colour:
            for packed, count in (f.colours or {}).items():
                pixels[packed] = pixels.get(packed, 0) + count
        ordered = tuple(sorted(pixels))  # black (0x000000), if present, first
        values = np.zeros(256, dtype=np.int64)
        if len(ordered) <= MAX_COLOURS:
            values[: len(ordered)] = [pixels[c] for c in ordered]
        return MaskKind("colour", values, ordered, colour[0].path)
    # every mask holds values here: none is unusable, none is a colour mask
    values = np.sum([f.values for f in facts.values() if f.values is not None], axis=0)
    modes = {f.mode for f in facts.values()}
    example = next(iter(facts.values())).path
    if "1" in modes:
        return MaskKind("bilevel", values, example=next(f.path for f in facts.values() if f.mode == "1"))
    wide = [f for f in facts.values() if f.mode not in ("L", "P")]
    if wide:
        return MaskKind("wide", values, example=wide[0].path)
    binary = binary_255(np.flatnonzero(f.values).tolist() for f in facts.values() if f.values is not None)
    if binary is not None and (class_count is None or class_count <= 2):
        holder = next(f.path for f in facts.values() if f.values is not None and f.values[IGNORE_INDEX])
        return MaskKind("binary", values, example=holder, binary=binary)
    return MaskKind("indexed", values, example=example)


def mapped_facts(facts: dict[str, MaskFacts], mask_values: MaskValues) -> dict[str, MaskFacts]:
    """``facts`` with each mask's pixels per value counted after ``mask_values`` (what the reader sees)."""
    table = mask_values.table()
    return {
        sample_id: f
        if f.values is None
        else replace(f, values=np.bincount(table, weights=f.values, minlength=256).astype(np.int64))
        for sample_id, f in facts.items()
    }


def convert_mask(fact: MaskFacts, kind: MaskKind, table: np.ndarray | None = None) -> np.ndarray:
    """The class-index mask (uint8 [H, W]) of one mask of a dataset of ``kind``: its values
    through ``table`` (uint8 [256], the dataset's map) when given, else binary 255 -> 1 (0 and 1
    kept), 1-bit on -> 1, values as they are; each colour -> its index in ``kind.colours``.
    Raises :class:`DataError` naming the file for more colours than classes."""
    with Image.open(fact.path) as mask:
        if kind.kind == "colour":
            if len(kind.colours) > MAX_COLOURS:
                raise DataError(
                    f"{fact.path}: the colour masks hold {len(kind.colours)} colours, more than "
                    f"{MAX_COLOURS} classes (anti-aliased or JPEG-compressed renderings?)"
                )
            rgb = np.asarray(mask.convert("RGB"), dtype=np.uint32)
            packed = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
            return np.searchsorted(np.array(kind.colours, dtype=np.uint32), packed).astype(np.uint8)
        array = np.asarray(mask).astype(np.int64)
    if table is not None:
        return table[array]
    if kind.kind == "binary":
        return np.where(array == IGNORE_INDEX, 1, array).astype(np.uint8)
    return array.astype(np.uint8)


def kind_problem(kind: MaskKind, root: Path, copy_fix: str) -> str:
    """Why masks of ``kind`` (``colour``, ``bilevel`` or ``wide``) cannot be read as they are,
    and the command that writes an indexed copy (``copy_fix``)."""
    example = _rel(kind.example, root) if kind.example else "masks"
    if kind.kind == "colour":
        shown = ", ".join(f"#{c:06x}" for c in kind.colours[:8]) + (" ..." if len(kind.colours) > 8 else "")
        return (
            f"the masks are colour images (e.g. {example}: {len(kind.colours)} colours, {shown}): a colour "
            f"rendering of the labels, not class indices, and no setting reads colours. Write a copy whose "
            f"masks store one class per colour, black first (your files are not changed), run: {copy_fix}"
        )
    what = "1-bit (black and white)" if kind.kind == "bilevel" else "16/32-bit"
    return (
        f"the masks are {what} images (e.g. {example}), which the loader does not read (it reads 8-bit "
        f"grayscale or palette PNGs). Write a copy with 8-bit masks of the same values (your files are not "
        f"changed), run: {copy_fix}"
    )


# ---------------------------------------------------------------- classes
def default_names(kind: MaskKind) -> list[str]:
    """Class names for the values found: ``background`` for 0 when it occurs (else ``class_0``),
    ``class_<v>`` up to the largest value found; ``foreground`` for a binary copy's 1; ``color_rrggbb``
    for a colour copy's classes (black: ``background``)."""
    if kind.kind == "colour":
        return ["background" if c == 0 else f"color_{c:06x}" for c in kind.colours]
    found = [v for v in np.flatnonzero(kind.values).tolist() if v != IGNORE_INDEX]
    if kind.kind in ("binary", "bilevel"):
        return ["background", "foreground"]
    if not found:
        return []
    return ["background" if v == 0 and 0 in found else f"class_{v}" for v in range(max(found) + 1)]


def class_values(kind: MaskKind) -> list[int]:
    """The class values the masks hold once indexed (255, ignore, left out)."""
    if kind.kind == "colour":
        return list(range(len(kind.colours)))
    if kind.kind == "binary":
        return [v for v, n in ((0, kind.values[0]), (1, kind.values[1] + kind.values[IGNORE_INDEX])) if n]
    return [v for v in np.flatnonzero(kind.values).tolist() if v != IGNORE_INDEX]


def check_names(names: Sequence[str], where: str, fix: str) -> None:
    """Raise :class:`DataError` (ending with ``fix``) for fewer than 2 names, blank or repeated names."""
    if len(names) < 2:
        raise DataError(
            f"{where} names {len(names)} class(es): a segmentation needs at least 2 (e.g. background "
            f"and the object); run: {fix}"
        )
    blank = [k for k, n in enumerate(names) if not n.strip() or n != n.strip() or "\n" in n]
    if blank:
        raise DataError(f"{where}: class {blank[0]} has a blank name or one with surrounding spaces; run: {fix}")
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise DataError(f"{where} names {', '.join(twice)} twice; run: {fix}")


def check_values_fit(
    kind: MaskKind, facts: dict[str, MaskFacts], names: Sequence[str], where: str, root: Path, fix: str
) -> None:
    """Raise :class:`DataError` naming a mask whose values are not classes of ``names`` (nor 255)."""
    beyond = [v for v in class_values(kind) if v >= len(names)]
    if beyond:
        holder = next(f.path for f in facts.values() if f.values is not None and f.values[beyond[0]])
        raise DataError(
            f"{_rel(holder, root)} holds the value {beyond[0]} but {where} names {len(names)} classes "
            f"(values 0..{len(names) - 1}; {IGNORE_INDEX} = ignore); the masks hold "
            f"{', '.join(map(str, class_values(kind)))}: name one class per value (line i = class i), "
            f"run: {fix}"
        )


# ---------------------------------------------------------------- what init reports
@dataclass(frozen=True)
class Written:
    """One file of the layout and what init did to it: ``wrote`` (new), ``rewrote`` (force),
    ``unchanged`` (already so), ``kept`` (differs, left as it is)."""

    status: str
    path: Path
    what: str


@dataclass
class InitReport:
    """What :func:`prepare_folder` found and wrote, and the commands to run next."""

    root: Path
    images: int
    masks: int
    files: list[Written] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)
    copy: InitReport | None = None

    def format(self) -> str:
        """The lines ``dualteacher init`` prints."""
        lines = []
        if self.copy is not None:
            lines.append(f"indexed copy of {self.root}: {self.copy.root}")
            return "\n".join([*lines, *[f"  {n}" for n in self.notes], self.copy.format()])
        lines.append(f"{self.root}: {self.images} images, {self.masks} with a mask")
        lines += [f"{w.status:<9}  {w.path}: {w.what}" for w in self.files]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"{'next' if k == 0 else 'then'}: {c}" for k, c in enumerate(self.next_commands)]
        return "\n".join(lines)


def _write_text(path: Path, lines: Sequence[str], force: bool, what: str) -> Written:
    """Write ``lines`` (one per line) to ``path`` unless it already holds them, or holds other
    lines and ``force`` is not set (then it is ``kept``)."""
    text = "".join(f"{line}\n" for line in lines)
    if path.is_file():
        if path.read_text(encoding="utf-8-sig").splitlines() == list(lines):
            return Written("unchanged", path, what)
        if not force:
            return Written("kept", path, what)
    status = "rewrote" if path.exists() else "wrote"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return Written(status, path, what)


# ---------------------------------------------------------------- splits
def val_count(masked: int, fraction: float) -> int:
    """How many of ``masked`` images with a mask ``init --val fraction`` holds out:
    ``max(1, round(fraction · masked))``, at most ``masked - MIN_TRAIN_MASKS``."""
    return min(max(1, round(fraction * masked)), masked - MIN_TRAIN_MASKS)


def draw_val(masked: Sequence[str], fraction: float, seed: int) -> list[str]:
    """:func:`val_count` of the masked ids, drawn with ``seed`` from the sorted ids; returned sorted."""
    ordered = sorted(masked)
    count = val_count(len(ordered), fraction)
    chosen = np.random.default_rng(seed).permutation(len(ordered))[:count]
    return sorted(ordered[k] for k in chosen.tolist())


def _existing_lists(folder: Folder, train_path: Path, val_path: Path, fix_force: str) -> tuple[list[str], list[str]]:
    """The user's own ``val.txt`` and ``train.txt`` (every image not in val when there is no
    train.txt), checked: every id an image, every val id with a mask, no id in both. Raises
    :class:`DataError` ending with ``fix_force``."""
    val = read_id_list(val_path)
    train = read_id_list(train_path) if train_path.is_file() else sorted(set(folder.images) - set(val))
    for path, ids in ((train_path, train), (val_path, val)):
        unknown = [i for i in ids if i not in folder.images]
        if unknown:
            raise DataError(
                f"{path} lists {len(unknown)} id(s) with no image ({_some(unknown)}): fix the list, or draw "
                f"both lists again, run: {fix_force}"
            )
    unmasked = [i for i in val if i not in folder.masks]
    if unmasked:
        raise DataError(
            f"{val_path} lists {len(unmasked)} id(s) without a mask ({_some(unmasked)}): val images are "
            f"scored against their masks; draw val from the masked images again, run: {fix_force}"
        )
    both = [i for i in val if i in set(train)]
    if both:
        raise DataError(
            f"{len(both)} id(s) are in both {train_path.name} and {val_path.name} ({_some(both)}): "
            f"validation would score training images; run: {fix_force}"
        )
    return train, val


# ---------------------------------------------------------------- the verb
def prepare_folder(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    val: float = VAL_FRACTION,
    seed: int = 0,
    force: bool = False,
    indexed_copy: str | Path | None = None,
) -> InitReport:
    """Write ``classes.txt``, the split lists and, for binary masks saved as 0/255,
    ``mask_values.json`` of the folder dataset at ``root`` (see the module docstring); with
    ``indexed_copy``, first write an indexed copy of it there (for masks that are not class
    indices) and prepare the copy instead.

    Raises :class:`DataError`, every message ending with the command that fixes it, before
    anything is written: for missing or misnamed images and masks, masks of another size than
    their image, masks that hold no class values (colour, 1-bit, 16-bit) without ``indexed_copy``,
    an unreadable ``mask_values.json``, class names that do not cover the mask values, fewer than
    3 masks, or user lists that are inconsistent. Raises ValueError for ``val`` outside (0, 1).
    """
    if not 0 < val < 1:
        raise ValueError(f"--val must be a fraction between 0 and 1 (exclusive), got {val}")
    shown = str(root)
    root = Path(root).expanduser()
    base = ["dualteacher", "init", "--data", shown] + (["--classes", *classes] if classes else [])
    fix = command(*base, *(["--indexed-copy", str(indexed_copy)] if indexed_copy else []))
    if not root.is_dir():
        raise DataError(
            f"data root {root} is not a directory: it should hold images/ (the photos) and masks/ "
            f"(masks/<id>.png for some of them); then run: {fix}"
        )
    folder = scan_folder(root, fix)
    facts = read_masks(folder, fix)
    listed = listed_classes(
        root, command("dualteacher", "init", "--data", shown, "--classes", "NAME", "...", "--force")
    )
    kind = mask_kind(facts, root, len(classes) if classes else len(listed) if listed else None, fix)
    recorded = read_mask_values(
        root, f'fix it (e.g. {{"0": 0, "255": 1}}), or delete it for init to write it again, then run: {fix}'
    )
    if indexed_copy is not None:
        return _indexed_copy(
            folder, facts, kind, recorded, Path(indexed_copy), shown, classes or listed, val, seed, force
        )
    if kind.kind not in ("indexed", "binary"):
        copy = f"{shown.rstrip('/')}_indexed"
        raise DataError(kind_problem(kind, root, command(*base, "--indexed-copy", copy)))
    return _write_layout(folder, facts, kind, recorded, shown, classes, listed, val, seed, force)


def _as_read(
    facts: dict[str, MaskFacts], kind: MaskKind, recorded: MaskValues | None
) -> tuple[dict[str, MaskFacts], MaskKind]:
    """The masks as the folder reader sees them: through the user's ``recorded`` map (then
    ``indexed``); as they are without one, or when it is the map init writes for ``binary`` masks."""
    if recorded is None or (kind.kind == "binary" and same_map(recorded.mapping, BINARY_255)):
        return facts, kind
    facts = mapped_facts(facts, recorded)
    values = np.sum([f.values for f in facts.values() if f.values is not None], axis=0)
    return facts, MaskKind("indexed", values, example=kind.example)


def _mask_map(
    kind: MaskKind, recorded: MaskValues | None, root: Path, names: Sequence[str]
) -> tuple[Written | None, list[str]]:
    """What init does with ``mask_values.json`` (to write when the status is ``wrote``) and the notes
    on binary masks: they get :data:`BINARY_255`; a file of the user's is kept (and applied)."""
    path = root / MASK_VALUES_FILE
    if kind.kind != "binary":
        if recorded is None:
            return None, []
        what = f"{describe(recorded.mapping, names)} (your map, applied by every command that reads the masks)"
        return Written("kept", path, what), []
    binary = kind.binary
    assert binary is not None, "mask_kind sets it for binary masks"
    stored = f"{binary.as_255} mask(s) store the foreground as 255" + (
        f" and {binary.as_1} as 1 (masks of two tools?)" if binary.as_1 else ""
    )
    notes = [
        (
            f"binary masks: {stored}; {MASK_VALUES_FILE} maps 255 to class 1 ({names[1]}), so check-data, train "
            f"and eval read them so, and no value is ignored (data.ignore_index=V ignores a stored value V); your "
            f"masks are not changed"
        )
    ]
    if binary.as_1:
        notes.append(
            f'if 255 marks unlabelled pixels in your masks instead, write {{"255": 255}} to {path} '
            f"(init keeps a file that exists) and run init again"
        )
    status = "wrote" if recorded is None else "unchanged"
    return Written(status, path, f"{describe(BINARY_255, names)}: binary masks saved as 0/255"), notes


def listed_classes(root: Path, fix: str) -> list[str] | None:
    """The names of ``root/classes.txt`` (None when there is none). Raises :class:`DataError`
    ending with ``fix`` when it cannot be read as a class list."""
    if not (root / "classes.txt").is_file():
        return None
    try:
        return read_classes(root)
    except DataError as error:
        raise DataError(
            f"{error}: fix the file (one class name per line, line i = class i), or replace it, run: {fix}"
        ) from error


def _write_layout(
    folder: Folder,
    facts: dict[str, MaskFacts],
    kind: MaskKind,
    recorded: MaskValues | None,
    shown: str,
    classes: Sequence[str] | None,
    listed: list[str] | None,
    val: float,
    seed: int,
    force: bool,
) -> InitReport:
    """Check everything, then write classes.txt, mask_values.json (binary masks) and the split
    lists of ``folder`` (masks of class values, read through ``recorded`` when given)."""
    root = folder.root
    facts, kind = _as_read(facts, kind, recorded)
    report = InitReport(root, len(folder.images), len(folder.masks))
    fix_classes = command("dualteacher", "init", "--data", shown, "--classes", "NAME", "...", "--force")
    fix_force = command("dualteacher", "init", "--data", shown, "--force")
    class_file = root / "classes.txt"
    if classes:
        check_names(classes, "--classes", fix_classes)
        check_values_fit(kind, facts, classes, "--classes", root, fix_classes)
        if listed is not None and not force and listed != list(classes):
            raise DataError(
                f"{class_file} already names other classes ({', '.join(listed)}); to replace "
                f"them with --classes, run: {command('dualteacher', 'init', '--data', shown, '--classes', *classes, '--force')}"
            )
        names = list(classes)
    elif listed is not None:
        check_names(listed, str(class_file), fix_classes)
        check_values_fit(kind, facts, listed, str(class_file), root, fix_classes)
        names = listed
    else:
        names = default_names(kind)
        if not names:
            raise DataError(
                f"every pixel of every mask is {IGNORE_INDEX} (ignore): no mask labels a class; "
                f"save class values (0 = background, 1, 2, ...) in the masks, then run: "
                f"{command('dualteacher', 'init', '--data', shown)}"
            )
        check_names(names, f"the masks (values {', '.join(map(str, class_values(kind)))})", fix_classes)
    masked = folder.masked
    train_path, val_path = root / "splits" / "train.txt", root / "splits" / "val.txt"
    drawn_val = draw_val(masked, val, seed) if len(masked) > MIN_TRAIN_MASKS else None
    mine = not force and val_path.is_file()
    if not force and train_path.is_file() and not mine:
        raise DataError(
            f"{train_path} exists but {val_path} does not: write it (images with a mask, none of them in "
            f"train.txt), or draw both lists, run: {fix_force}"
        )
    if mine:
        train_ids, val_ids = _existing_lists(folder, train_path, val_path, fix_force)
    else:
        if drawn_val is None:
            raise DataError(
                f"only {len(masked)} image(s) have a mask ({_some(masked)}): init needs at least "
                f"{MIN_TRAIN_MASKS + 1}, 1 for validation and {MIN_TRAIN_MASKS} to train on; save more "
                f"masks as masks/<id>.png, then run: {command('dualteacher', 'init', '--data', shown)}"
            )
        val_ids = drawn_val
        train_ids = sorted(set(folder.images) - set(val_ids))
    mask_set = set(folder.masks)
    labeled = [i for i in train_ids if i in mask_set]
    unlabeled = [i for i in train_ids if i not in mask_set]
    if not labeled:
        raise DataError(
            f"no image of {train_path} has a mask, so there is nothing to train on; draw the lists "
            f"again, run: {fix_force}"
        )
    mask_file, mask_notes = _mask_map(kind, recorded, root, names)
    # everything checked: write
    if listed is not None and not classes:
        report.files.append(Written("unchanged", class_file, f"{len(names)} classes: {', '.join(names)}"))
    else:
        how = "" if classes else " (from the mask values; rename them by editing the file, line i = class i)"
        report.files.append(_write_text(class_file, names, force, f"{len(names)} classes: {', '.join(names)}{how}"))
    if mask_file is not None:
        if mask_file.status == "wrote":
            write_mask_values(root, BINARY_255)
        report.files.append(mask_file)
    val_what = f"{len(val_ids)} of the {len(masked)} images with a mask" + ("" if mine else f", drawn with seed {seed}")
    train_what = f"{len(train_ids)} images: {len(labeled)} with a mask, {len(unlabeled)} without"
    drawn_train = None if drawn_val is None else sorted(set(folder.images) - set(drawn_val))
    for path, ids, drawn, what in (
        (val_path, val_ids, drawn_val, val_what),
        (train_path, train_ids, drawn_train, train_what),
    ):
        if not mine or not path.is_file():
            report.files.append(_write_text(path, ids, force, what))
        elif ids == drawn:
            report.files.append(Written("unchanged", path, what))
        else:
            report.files.append(Written("kept", path, f"{what} (your list; {fix_force} draws it again)"))
    outside = sorted(set(folder.images) - set(train_ids) - set(val_ids))
    if outside:
        report.notes.append(
            f"{len(outside)} image(s) are in neither train.txt nor val.txt ({_some(outside)}), so "
            f"nothing uses them; {fix_force} draws both lists again"
        )
    report.files += _masked_lists(root, labeled, unlabeled, seed, force, shown)
    if len(val_ids) < FEW_VAL:
        report.notes.append(_few_val_note(len(val_ids), len(masked), val, val_path if mine else None, shown))
    if not unlabeled:
        report.notes.append(
            f"every train image has a mask, so none is unlabelled and no {LABELED_MASKED} list is "
            f"written: supervised training uses train.txt; to try a semi-supervised method, hold "
            f"labels out: {command('dualteacher', 'split', '--data', shown, '--labeled', '1/8')}"
        )
    report.notes += _mask_notes(kind, facts, names, root, derived=not classes and listed is None) + mask_notes
    if folder.skipped:
        report.notes.append(
            f"skipped {len(folder.skipped)} file(s) that are not images or PNG masks: {_some(folder.skipped)}"
        )
    data = quote(shown)
    report.next_commands.append(f"dualteacher check-data --data {data}")
    if unlabeled:
        report.next_commands.append(f"dualteacher train --data {data} --method mean_teacher --minutes 10")
    else:
        report.next_commands.append(f"dualteacher train --data {data} --method supervised --minutes 10")
    return report


def _few_val_note(held_out: int, masked: int, val: float, own_list: Path | None, shown: str) -> str:
    """The note on a val of fewer than :data:`FEW_VAL` images and what would enlarge it: images
    added to the user's ``own_list``, else the smallest ``--val`` (a multiple of 0.05, at most
    0.5) that holds out :data:`FEW_VAL` of the ``masked`` images, else more masks."""
    note = f"val holds {held_out} image(s): its mIoU, and so the choice of best.safetensors, rests on them alone; "
    if own_list is not None:
        return note + f"adding images with a mask to your {own_list} steadies it"
    for step in range(int(val * 20) + 1, 11):
        if val_count(masked, step / 20) >= FEW_VAL:
            again = command("dualteacher", "init", "--data", shown, "--val", f"{step / 20:g}", "--force")
            return note + (
                f"{again} holds out {val_count(masked, step / 20)} of the {masked} images with a mask "
                "(fewer to train on) and draws every list again"
            )
    return note + f"with {FEW_VAL + MIN_TRAIN_MASKS} or more images with a mask, a larger --val can steady it"


def _masked_lists(
    root: Path, labeled: list[str], unlabeled: list[str], seed: int, force: bool, shown: str
) -> list[Written]:
    """``labeled_masked.txt`` and ``unlabeled_masked.txt`` (written by
    :func:`~dualteacher.data.split_files.split_source`), unless they exist (unchanged or kept),
    or every train image has a mask (nothing is unlabelled: none written)."""
    splits = root / "splits"
    paths = (splits / f"{LABELED_MASKED}.txt", splits / f"{UNLABELED_MASKED}.txt")
    what = (f"the {len(labeled)} train images with a mask", f"the {len(unlabeled)} without (unlabelled)")
    if not unlabeled:
        return []
    current = [p.read_text(encoding="utf-8-sig").splitlines() if p.is_file() else None for p in paths]
    if current == [labeled, unlabeled]:
        return [Written("unchanged", p, w) for p, w in zip(paths, what, strict=True)]
    if any(c is not None for c in current) and not force:
        fix = command("dualteacher", "split", "--data", shown, "--labeled", MASKED)
        return [
            Written("kept", p, f"{w} now, not what the list holds; {fix} writes both lists again")
            for p, w in zip(paths, what, strict=True)
        ]
    status = "rewrote" if any(c is not None for c in current) else "wrote"
    written = split_source(open_source("folder", root), MASKED, seed)
    return [Written(status, p, w) for p, w in zip(written, what, strict=True)]


def _mask_notes(
    kind: MaskKind, facts: dict[str, MaskFacts], names: Sequence[str], root: Path, *, derived: bool
) -> list[str]:
    """What the masks hold, in words: values, the ignore value, palette masks, classes no mask
    holds and, for class names ``derived`` from the mask values, the masks (under ``root``)
    holding the values above the first class no mask holds."""
    notes = []
    present = class_values(kind)
    notes.append(
        f"the masks hold the class values {', '.join(map(str, present))}"
        + (
            f" and {IGNORE_INDEX} (ignore: not trained on) in "
            f"{sum(1 for f in facts.values() if f.values is not None and f.values[IGNORE_INDEX])} mask(s)"
            if kind.values[IGNORE_INDEX] and kind.kind == "indexed"
            else ""
        )
    )
    absent = [f"{v} ({names[v]})" for v in range(len(names)) if v not in present]
    if absent:
        notes.append(f"no mask holds the class(es) {_some(absent)}: training never sees them")
        gap = min(v for v in range(len(names)) if v not in present)
        above = sorted({v for v in present if v > gap})
        holders = [
            _rel(f.path, root) for f in facts.values() if f.values is not None and any(f.values[v] for v in above)
        ]
        if derived and above and holders:
            notes.append(
                f"the value(s) {', '.join(map(str, above))} above that gap are in {_some(sorted(holders))}: if a "
                f"mask holds a wrong value, correct it (every value up to the largest becomes a class)"
            )
    if any(f.mode == "P" for f in facts.values()):
        notes.append("palette (P) masks: their palette indices are the classes, their colours are not read")
    return notes


def _link_or_copy(source: Path, target: Path, force: bool, fix: str) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems); left alone when it
    already is that file or a file of the same bytes. Raises :class:`DataError` for another file
    there without ``force``."""
    if target.exists():
        if os.path.samefile(source, target) or target.read_bytes() == source.read_bytes():
            return
        if not force:
            raise DataError(
                f"{target} exists and differs from {source}: choose another folder for the copy, or "
                f"replace it, run: {fix} --force"
            )
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _indexed_copy(
    folder: Folder,
    facts: dict[str, MaskFacts],
    kind: MaskKind,
    recorded: MaskValues | None,
    out: Path,
    shown: str,
    classes: Sequence[str] | None,
    val: float,
    seed: int,
    force: bool,
) -> InitReport:
    """Write ``out``: the images of ``folder`` (hard links), its masks as class indices (through
    the dataset's ``recorded`` map, if any; a stored value it maps to ignore stays 255, and the
    copy records ``{"255": 255}`` so that it is not read as binary), and its split lists (which
    hold the same ids); then prepare ``out``."""
    root = folder.root
    fix = command("dualteacher", "init", "--data", shown, "--indexed-copy", str(out))
    inside = [root / "images", root / "masks"]
    resolved = out.expanduser().resolve()
    if resolved == root.resolve() or any(resolved.is_relative_to(p.resolve()) for p in inside):
        raise DataError(
            f"--indexed-copy {out}: the copy goes into a folder of its own, not into {root}, its images "
            f"or its masks; run: {command('dualteacher', 'init', '--data', shown, '--indexed-copy', shown.rstrip('/') + '_indexed')}"
        )
    if kind.kind == "colour" and len(kind.colours) > MAX_COLOURS:
        raise DataError(
            f"the colour masks hold {len(kind.colours)} colours (e.g. {_rel(kind.example or root, root)}), "
            f"more than {MAX_COLOURS} classes: anti-aliased or JPEG-compressed renderings cannot become "
            f"class indices; export the masks without smoothing, then run: {fix}"
        )
    table = None if recorded is None or kind.kind == "colour" else recorded.table()
    names = list(classes) if classes else default_names(_as_read(facts, kind, None if table is None else recorded)[1])
    report = InitReport(root, len(folder.images), len(folder.masks))
    for image in folder.images.values():
        _link_or_copy(image, out / "images" / image.relative_to(root / "images"), force, fix)
    converted = 0
    for sample_id, fact in facts.items():
        target = out / "masks" / f"{sample_id}.png"
        array = convert_mask(fact, kind, table) if kind.kind != "indexed" or table is not None else None
        if array is None:
            _link_or_copy(fact.path, target, force, fix)
            continue
        if target.is_file():
            with Image.open(target) as existing:
                if existing.mode == "L" and np.array_equal(np.asarray(existing), array):
                    continue
            if not force:
                raise DataError(
                    f"{target} exists and differs from the conversion of {fact.path}: choose another "
                    f"folder for the copy, or replace it, run: {fix} --force"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array, mode="L").save(target)
        converted += 1
    for mine in sorted((root / "splits").glob("*.txt")):  # the user's lists hold the same ids
        theirs = out / "splits" / mine.name
        if not theirs.exists():
            theirs.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mine, theirs)
    what = {
        "binary": "foreground 255 -> 1",
        "colour": "one class per colour, black first",
        "bilevel": "1-bit -> 8-bit 0/1",
        "wide": "16/32-bit -> 8-bit, same values",
        "indexed": "as they are",
    }
    how = what[kind.kind] if recorded is None or table is None else f"through {recorded.path}: {recorded.describe()}"
    report.notes.append(
        f"{len(folder.images)} images linked or copied, {len(facts)} masks converted "
        f"({how}; {converted} written now); {root} is not changed"
    )
    keeps_ignore = recorded is not None and recorded.mapping.get(IGNORE_INDEX, IGNORE_INDEX) == IGNORE_INDEX
    if table is not None and keeps_ignore and not (out / MASK_VALUES_FILE).is_file():
        write_mask_values(out, {IGNORE_INDEX: IGNORE_INDEX})  # 255 stays ignore in the copy, as in the dataset
    if kind.kind == "colour":
        report.notes.append("classes by colour: " + ", ".join(f"{k} = #{c:06x}" for k, c in enumerate(kind.colours)))
    copy_shown = str(out)
    report.copy = prepare_folder(copy_shown, classes=names if names else None, val=val, seed=seed, force=force)
    return report


# ---------------------------------------------------------------- which lists a run reads
def own_splits(source: DataSource, shown: str, *, unlabeled: bool, val: str = "val") -> tuple[str, str, str]:
    """The labelled and unlabelled split of a folder dataset that ``init`` prepared, and a
    sentence saying why: ``labeled_masked``/``unlabeled_masked`` when they exist, else ``train``
    when every train image has a mask (then nothing is unlabelled: refused when ``unlabeled``,
    a run that reads an unlabelled split).

    Raises :class:`DataError` ending with the command that fixes it (``shown``: the root as
    the user wrote it): no class list, train list or ``val`` list (init), train images without a mask
    but no masked lists (init), nothing unlabelled for a method that needs it (split).
    """
    init = command("dualteacher", "init", "--data", shown)
    lacking = [
        p for p in (source.root / "classes.txt", source.split_file("train"), source.split_file(val)) if not p.is_file()
    ]
    if lacking:
        raise DataError(
            f"no {', '.join(map(str, lacking))}: init writes the class list and the split lists of a "
            f"folder of images and masks; run: {init}"
        )
    if source.split_file(LABELED_MASKED).is_file() and source.split_file(UNLABELED_MASKED).is_file():
        return (
            LABELED_MASKED,
            UNLABELED_MASKED,
            (
                f"data.labeled_split={LABELED_MASKED}, data.unlabeled_split="
                f"{UNLABELED_MASKED}: the train images with a mask, and the others "
                f"(written by {init})"
            ),
        )
    ids = source.split_ids("train")
    missing = [os.path.relpath(p, source.root) for p in find_missing(source.files(ids, labeled=True).masks or [])]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(ids)} train images have no mask ({_some(missing)}) and "
            f"{source.split_file(LABELED_MASKED)} is missing; init lists the masked ones; run: {init}"
        )
    if unlabeled:
        split = command("dualteacher", "split", "--data", shown, "--labeled", "1/8")
        raise DataError(
            f"every one of the {len(ids)} train images has a mask, so none is unlabelled for a "
            f"semi-supervised method: hold labels out, run: {split}, then train with "
            f"data.labeled_split=labeled_1-8_seed0 data.unlabeled_split=unlabeled_1-8_seed0 "
            f"(or --method supervised)"
        )
    return "train", "train", "data.labeled_split=train: every train image has a mask"

"""The data core every layout shares: lists, image and mask decoding, samples, eval batches.

A reader (:class:`~dualteacher.data.source.DataSource`: the folder layout of
:mod:`dualteacher.data.folder`, the benchmarks of :mod:`dualteacher.data.standard`) resolves
ids to files; everything after that is here: :class:`FileListDataset` (explicit image/mask
paths, an optional label mapping, seeded transforms), :func:`collate_eval`, the list readers,
and :class:`DataError`, the error naming the file at fault.

Images are decoded by one function, :func:`load_image` (:func:`rgb_image` for an opened PIL
image), for training, evaluation and inference; ``check-data`` reports what it will do with
each file through the functions it uses (:func:`image_conversion`, :func:`image_orientation`):
grayscale ("1", "L", "LA"), palette ("P", "PA"), RGBA, CMYK, YCbCr, LAB and HSV images become
RGB through PIL (an alpha channel is dropped, the colour kept as stored); 16-bit grayscale is
rescaled to 8 bits; 32-bit ("I", "F") and other modes are refused.

**Images are read upright, everywhere**: an EXIF orientation tag (phone photos; also XMP's
``tiff:Orientation``) turns the stored pixels as PIL's ``ImageOps.exif_transpose`` does, for
training, evaluation, ``check-data`` and ``predict`` alike, because annotation tools show the
photo upright and masks are drawn on that view. Masks are never turned: a mask must match the
upright image (:func:`upright_size`); ``check-data`` reports every image whose tag turns it.

Masks are read as stored: for a palette ("P") PNG the palette indices are the classes, for a
grayscale ("L") PNG the values are. An RGB mask is refused: a colour rendering of the labels
is not a class-index mask; so is a mask stored lossily (JPEG data, whatever the file's name:
:func:`lossy_format`), whose compression artefacts would relabel pixels. The stored value of
unlabelled pixels becomes :data:`~dualteacher.data.transforms.IGNORE_INDEX` (see
:func:`ignore_map`).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dualteacher.data.transforms import IGNORE_INDEX, EvalTransform, Transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SKIPPED_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
"""Files an operating system leaves in folders, never a dataset's."""
MASK_MODES = ("L", "P")
"""The PIL modes of class-index masks: 8-bit grayscale and palette."""
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
"""The PIL modes that PIL converts to RGB, in words."""
_MAX_LISTED = 10


class DataError(ValueError):
    """A dataset on disk is missing files or holds invalid content; the message names the file."""


def _list_some(items: Sequence[str]) -> str:
    """The first few items, one per line, then how many more there are."""
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return "  " + shown + (f"\n  ... and {more} more" if more > 0 else "")


def read_list_text(path: Path) -> list[str]:
    """The lines of a text list (split list, class list) as people save them, each stripped.

    UTF-8 with or without a byte-order mark, or UTF-16 with one (Windows "Unicode"); LF or CRLF
    line ends; a stray byte-order mark inside the text (lists joined with ``cat``) is dropped.
    Raises FileNotFoundError/OSError if unreadable, :class:`DataError` if not such text.
    """
    data = Path(path).read_bytes()
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}): save it as UTF-8") from error
    return [line.replace("\ufeff", "").strip() for line in text.splitlines()]


def visible_files(folder: Path | str) -> Iterator[tuple[str, str]]:
    """``(parent folder, file name)`` of every file under ``folder``, recursively, sorted; hidden
    files and folders and :data:`SKIPPED_NAMES` left out. Strings, not Path objects: a
    100,000-image folder is walked at every ``train`` start."""
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name not in SKIPPED_NAMES:
                yield parent, name


def read_list_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line of a list (see :func:`read_list_text`)."""
    return [(number, line) for number, line in enumerate(read_list_text(path), start=1) if line]


def read_id_list(path: Path) -> list[str]:
    """Ids listed in ``path``, one per line (see :func:`read_list_text` for the accepted
    encodings); blank lines skipped, a repeated id is an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    ids = [line for _, line in read_list_lines(path)]
    seen: set[str] = set()
    for sample_id in ids:
        if sample_id in seen:
            raise DataError(f"id {sample_id!r} appears twice in {path}")
        seen.add(sample_id)
    return ids


def strip_image_suffix(name: str) -> str:
    """``name`` without a trailing .jpg/.jpeg/.png (any case)."""
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def extension_hint(sample_id: str) -> str:
    """For an id with no image that was written with an image extension, a hint saying that ids
    are listed without it; ``""`` for any other id."""
    stem = strip_image_suffix(sample_id)
    if stem == sample_id:
        return ""
    return f" ({sample_id!r} looks like a file name but names no image: list ids without the extension, e.g. {stem!r})"


def decode_failure(error: Exception) -> str:
    """What a decoder exception says about a file, in words."""
    if isinstance(error, UnidentifiedImageError):
        return "not a readable image (corrupt, or a format PIL does not know)"
    if isinstance(error, FileNotFoundError):
        return "file not found (moved or deleted?)"
    return f"cannot decode ({type(error).__name__}: {error})"


@contextmanager
def decoding(path: str | Path, what: str) -> Iterator[None]:
    """Re-raise any failure of reading ``path`` (``what``: "image", "mask") as a :class:`DataError`
    naming the file, so that a file gone bad mid-run stops training with a clear message."""
    try:
        yield
    except DataError:
        raise
    except Exception as error:  # any decoder failure is a fault of this file
        raise DataError(f"{what} {path}: {decode_failure(error)}") from error


def image_conversion(mode: str) -> tuple[str, str]:
    """What decoding does with an image of PIL ``mode``: ``(kind, words)``, kind ``"kept"`` (RGB),
    ``"rescaled"`` (16-bit grayscale to 8 bits), ``"converted"`` (to RGB by PIL) or ``"refused"``
    (the decoder raises); ``words`` says it in a sentence for messages (``""`` when kept)."""
    if mode == "RGB":
        return "kept", ""
    if mode.startswith("I;16"):
        return "rescaled", f"16-bit grayscale ({mode}): rescaled to 8 bits (x * 255 / 65535) and copied to 3 channels"
    if mode in _CONVERTED:
        return "converted", f"{_CONVERTED[mode]} ({mode}) image, converted to RGB"
    reason = "32-bit images are not supported" if mode in ("I", "F") else "it cannot be converted to RGB"
    return "refused", f"mode {mode!r}: {reason}; save it as 8-bit RGB"


ORIENTATION_TAG = 0x0112
"""The EXIF tag of the orientation: 1 = show the stored pixels as they are, 2-8 = flip/turn them."""
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""What ``ImageOps.exif_transpose`` does for each orientation (PIL's rotations are counter-clockwise)."""
ORIENTATION_WORDS = {
    1: "shown as stored",
    2: "shown mirrored left-right",
    3: "shown rotated 180 degrees",
    4: "shown mirrored top-bottom",
    5: "shown mirrored across its main diagonal",
    6: "shown rotated 90 degrees clockwise",
    7: "shown mirrored across its anti-diagonal",
    8: "shown rotated 90 degrees counter-clockwise",
}
"""What each EXIF orientation does to the stored pixels for display, in words."""
ORIENTATION_FIX = "exiftool -n -Orientation=1 -overwrite_original {path}"
"""The command that sets the orientation tag of the file ``path`` to 1 without re-encoding its pixels."""


def image_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image, 1 when it has none or an invalid one.

    For a PNG without an eXIf chunk before its pixel data this reads the whole file (PIL looks
    for one after it). Errors of a malformed EXIF block propagate, as in :func:`rgb_image`."""
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and value in _TRANSPOSES else 1


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(width, height)`` of an image stored as ``size`` once turned upright by ``orientation``
    (sides swapped for orientations 5-8)."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned by its EXIF orientation (:func:`image_orientation`) as
    ``ImageOps.exif_transpose`` turns it; ``image`` itself (not a copy) when nothing turns."""
    method = _TRANSPOSES.get(image_orientation(image))
    return image if method is None else image.transpose(method)


def rgb_image(image: Image.Image, path: str | Path | None = None) -> Image.Image:
    """``image`` upright (:func:`upright`) as an RGB PIL image (uint8 [H, W, 3] as an array),
    converted as :func:`image_conversion` says: the one decoder of training, evaluation and
    inference. Raises :class:`DataError` (naming ``path`` when given) for a mode that cannot
    become RGB."""
    kind, words = image_conversion(image.mode)
    if kind == "refused":
        raise DataError(f"image {path}: {words}" if path is not None else f"image: {words}")
    image = upright(image)
    if kind == "rescaled":
        wide = np.asarray(image).astype(np.uint32)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """The image file ``path`` as an upright RGB PIL image (:func:`rgb_image`). Raises
    :class:`DataError` naming the file if it cannot be read or decoded."""
    with decoding(path, "image"), Image.open(path) as image:
        return rgb_image(image, path)


LOSSY_MASK_FIX = "re-export the mask as PNG from the annotation tool (converting this file to PNG keeps the artefacts)"
"""How to repair a mask stored lossily."""


def lossy_format(image: Image.Image) -> str | None:
    """How an opened file stores its pixels lossily, in words (``"JPEG data"``), or None.

    JPEG (and MPO, phones' multi-picture JPEG) whatever the file's extension, and TIFF with
    JPEG compression. WebP is not named: PIL opens it as RGB(A), which masks refuse anyway."""
    if image.format in ("JPEG", "MPO"):
        return "JPEG data"
    if image.format == "TIFF" and str(image.info.get("compression", "")).endswith("jpeg"):
        return "a JPEG-compressed TIFF"
    return None


def load_mask(path: Path, image_path: Path, image_size: tuple[int, int]) -> Image.Image:
    """A class-index mask as a mode-"L" PIL image, read as stored; ``image_size`` is the upright
    image's (W, H). Refuses colour and lossy masks, size mismatches and undecodable files
    (:class:`DataError` naming the file)."""
    with decoding(path, "mask"), Image.open(path) as mask:
        lossy = lossy_format(mask)
        if lossy is not None:
            raise DataError(
                f"mask {path} is {lossy} (lossy): compression artefacts change class values; {LOSSY_MASK_FIX}"
            )
        if mask.mode in ("RGB", "RGBA"):
            raise DataError(f"mask is a colour ({mask.mode}) image, not a class-index mask: {path}")
        if mask.mode not in MASK_MODES:
            raise DataError(f"mask must be an 8-bit grayscale or palette PNG, got mode {mask.mode!r}: {path}")
        if mask.size != image_size:
            turned = mask.size == image_size[::-1]
            hint = " (the image's sides swapped: an EXIF orientation turns it; run `dualteacher check-data`)"
            raise DataError(
                f"mask size {mask.size[0]}x{mask.size[1]} differs from image size "
                f"{image_size[0]}x{image_size[1]}: {path} vs {image_path}{hint if turned else ''}"
            )
        return Image.fromarray(np.asarray(mask, dtype=np.uint8))


def ignore_map(ignore_index: int) -> np.ndarray | None:
    """The label map (uint8 [256]) of masks whose unlabelled pixels are stored as ``ignore_index``.

    The stored value ``ignore_index`` becomes :data:`IGNORE_INDEX` (255, what the rest of the
    library ignores); every other value, 255 included, is kept. None for ``ignore_index`` 255.
    Raises ValueError for a value that no 8-bit mask can hold.
    """
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"ignore_index must be a mask value in [0, 255], got {ignore_index}")
    if ignore_index == IGNORE_INDEX:
        return None
    table = np.arange(256, dtype=np.uint8)
    table[ignore_index] = IGNORE_INDEX
    return table


class DirectoryIndex:
    """File names per directory, listed once: cheap existence checks for many ids."""

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, path: str | Path) -> bool:
        parent, name = os.path.split(path)
        if parent not in self._listings:
            try:
                self._listings[parent] = frozenset(os.listdir(parent or "."))
            except (FileNotFoundError, NotADirectoryError):
                self._listings[parent] = frozenset()
        return name in self._listings[parent]


def missing_files_error(root: Path, missing: Sequence[str], labeled: bool) -> DataError:
    """The error for files that a list of samples needs but that are not on disk."""
    kind = "labelled" if labeled else "unlabelled"
    return DataError(
        f"{len(missing)} file(s) missing for the {kind} samples under {root}:\n{_list_some(list(missing))}"
    )


def find_missing(paths: Sequence[str | Path]) -> list[str]:
    """The paths of ``paths`` that are not files (each directory is listed once)."""
    index = DirectoryIndex()
    return [str(p) for p in paths if not index.exists(p)]


class _SampleKeys(TypedDict):
    image: torch.Tensor
    index: int


class Sample(_SampleKeys, total=False):
    """One sample of :class:`FileListDataset`: ``"image"`` and ``"index"`` always, and ``"mask"``
    (labelled) or ``"valid"`` (unlabelled)."""

    mask: torch.Tensor
    valid: torch.Tensor


class FileListDataset(Dataset):
    """Samples given as explicit image and mask paths, keyed by ``index`` or ``(index, aug_seed)``.

    The transform receives ``np.random.default_rng(aug_seed)`` (``aug_seed = index`` for a plain
    integer key), so augmentation depends only on the key, never on the worker that loads it.
    A sample is a dict with ``"image"`` (uint8 [3,H,W]), ``"index"`` (int) and, when
    ``labeled``, ``"mask"`` (int64 [H,W], 255 = ignore), otherwise ``"valid"`` (bool [H,W],
    False on padding). Unlabelled samples never read a mask, even when one exists.
    ``label_map`` (uint8 [256]) translates stored mask values to classes (e.g. Cityscapes
    label ids to train ids); with ``num_classes`` set, translated values outside
    ``[0, num_classes)`` other than 255 are errors. The paths are not checked here: use
    :func:`find_missing` (the dataset readers do, up front).
    """

    def __init__(
        self,
        ids: list[str],
        image_paths: list[Path],
        mask_paths: list[Path] | None,
        *,
        labeled: bool,
        transform: Transform | Callable | None = None,
        num_classes: int | None = None,
        label_map: np.ndarray | None = None,
    ) -> None:
        if len(image_paths) != len(ids) or (labeled and (mask_paths is None or len(mask_paths) != len(ids))):
            raise ValueError("one image path (and, when labelled, one mask path) is needed per id")
        if label_map is not None and (label_map.shape != (256,) or label_map.dtype != np.uint8):
            raise ValueError("label_map must be a uint8 array of 256 entries")
        self.ids = list(ids)
        self.image_paths = list(image_paths)
        self.mask_paths = list(mask_paths) if labeled and mask_paths is not None else []
        self.labeled = labeled
        self.transform = transform if transform is not None else EvalTransform()
        self.num_classes = num_classes
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        if isinstance(key, tuple):
            index, aug_seed = int(key[0]), int(key[1])
        else:
            index = int(key)
            if index < 0:
                index += len(self)
            aug_seed = index
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = np.random.default_rng(aug_seed)
        image_path = self.image_paths[index]
        image = load_image(image_path)
        mask = load_mask(self.mask_paths[index], image_path, image.size) if self.labeled else None
        if mask is not None and self.label_map is not None:
            mask = Image.fromarray(self.label_map[np.asarray(mask)])
        if mask is not None and self.num_classes is not None:
            self._check_classes(mask, self.mask_paths[index], self.num_classes)
        image_t, mask_t, valid_t = self.transform(image, mask, rng)
        sample: Sample = {"image": image_t, "index": index}
        if self.labeled:
            assert mask_t is not None  # the transform of a labelled sample got its mask
            sample["mask"] = mask_t
        else:
            sample["valid"] = valid_t
        return sample

    def _check_classes(self, mask: Image.Image, path: Path, num_classes: int) -> None:
        values = np.unique(np.asarray(mask))
        bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            mapped = " (after the label mapping)" if self.label_map is not None else ""
            raise DataError(
                f"mask values{mapped} {bad.tolist()} are not classes 0..{num_classes - 1} nor {IGNORE_INDEX}: {path}"
            )


def collate_eval(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Batch samples of different sizes: images padded with 0, masks with 255, ``valid`` with False.

    ``"sizes"`` ([B,2], long) holds each image's (H, W) before padding; labelled batches also
    carry ``"mask_sizes"``, which differ from ``"sizes"`` only if the image was resized.
    """
    count = len(samples)
    sizes = torch.tensor([list(s["image"].shape[-2:]) for s in samples], dtype=torch.long)
    height, width = (int(v) for v in sizes.max(dim=0).values)
    images = torch.zeros((count, 3, height, width), dtype=torch.uint8)
    for i, s in enumerate(samples):
        images[i, :, : s["image"].shape[1], : s["image"].shape[2]] = s["image"]
    batch: dict[str, torch.Tensor] = {
        "image": images,
        "sizes": sizes,
        "index": torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
    }
    if "mask" in samples[0]:
        mask_sizes = torch.tensor([list(s["mask"].shape) for s in samples], dtype=torch.long)
        mh, mw = (int(v) for v in mask_sizes.max(dim=0).values)
        masks = torch.full((count, mh, mw), IGNORE_INDEX, dtype=torch.long)
        for i, s in enumerate(samples):
            masks[i, : s["mask"].shape[0], : s["mask"].shape[1]] = s["mask"]
        batch["mask"] = masks
        batch["mask_sizes"] = mask_sizes
    if "valid" in samples[0]:
        valid = torch.zeros((count, height, width), dtype=torch.bool)
        for i, s in enumerate(samples):
            valid[i, : s["valid"].shape[0], : s["valid"].shape[1]] = s["valid"]
        batch["valid"] = valid
    return batch

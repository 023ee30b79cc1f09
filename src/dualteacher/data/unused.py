"""Files of a folder dataset that training would not use: the part of ``check-data`` that lists
``ROOT/images`` and ``ROOT/masks`` (no file is decoded) and compares them with the split lists.

Files added after ``dualteacher init`` wrote the lists are otherwise ignored without a word: a new
image is in no list, a new mask of an image listed as unlabelled is never trained on, a file
named ``.JPG`` is not found by the reader.

==============  ========  ===================================================================
kind            severity  meaning
==============  ========  ===================================================================
extension-case  warning   an image or mask whose extension is upper case (``.JPG``, ``.PNG``):
                          the reader looks for ``.jpg|.jpeg|.png`` only
mask-not-png    warning   a mask saved as JPEG: masks are read as ``masks/<id>.png``
mask-orphan     warning   a mask whose image (``images/<id>.jpg|.jpeg|.png``) does not exist, of
                          an id no checked split lists (a listed one is ``image-missing``)
mask-unused     warning   the labelled split is ``init``'s (every train image with a mask) but
                          an image listed as unlabelled has a mask: its annotation is not used
image-unlisted  info      an image in none of the split lists (every ``*.txt`` of the splits
                          folder and of ``ROOT/splits``); looked for when an unlabelled split
                          is checked or ``train.txt`` exists (else the images left out of a
                          supervised check are the unlabelled ones)
==============  ========  ===================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from shlex import quote

from dualteacher.data.core import IMAGE_EXTENSIONS, DataError, read_list_lines, visible_files
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import LABELED_MASKED, MASKED

FindingFields = tuple[str, str, str, str]
"""(severity, kind, path or id, message): the fields of a ``check-data`` finding."""


def _files(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, str], list[str], list[str]]:
    """Of the visible files of ``folder`` (recursively): id (path under ``folder`` without its
    suffix, ``/``-separated) -> file for those whose suffix is one of ``suffixes`` (the first
    one wins), the files whose suffix is one of them in another case, and the other files."""
    found: dict[str, str] = {}
    other_case: list[str] = []
    others: list[str] = []
    top = len(str(folder)) + 1
    for parent, name in visible_files(folder):
        stem, suffix = os.path.splitext(name)
        path = os.path.join(parent, name)
        if suffix in suffixes:
            prefix = parent[top:].replace(os.sep, "/")
            found.setdefault(f"{prefix}/{stem}" if prefix else stem, path)
        else:
            (other_case if suffix.lower() in suffixes else others).append(path)
    return found, other_case, others


def _every_listed_id(source: DataSource) -> set[str]:
    """The ids of every readable split list (``*.txt``) in the splits folder and in ``ROOT/splits``
    (repeats are the check's business only if a checked split is that list)."""
    listed: set[str] = set()
    for folder in {source.splits_dir, source.root / "splits"}:
        for path in sorted(folder.glob("*.txt")) if folder.is_dir() else ():
            try:
                listed.update(source.listed_ids([line for _, line in read_list_lines(path)]))
            except (DataError, OSError, ValueError):
                continue
    return listed


def _has_image(root: str, sample_id: str) -> bool:
    """Whether ``images/<id>`` exists with an image extension in any case (through symbolic links)."""
    base = os.path.join(root, "images", *sample_id.split("/"))
    return any(os.path.exists(base + s) or os.path.exists(base + s.upper()) for s in IMAGE_EXTENSIONS)


def unused_files(source: DataSource, splits: dict[str, str], ids: dict[str, list[str]]) -> list[FindingFields]:
    """The findings of the module docstring for a folder ``source`` whose checked ``splits``
    (role -> split name) hold ``ids`` (role -> ids); none for the other layouts."""
    if source.name != "folder":
        return []
    images, upper_images, _ = _files(source.root / "images", IMAGE_EXTENSIONS)
    masks, upper_masks, other_masks = _files(source.root / "masks", (".png",))
    checked = {i for found in ids.values() for i in found}
    findings: list[FindingFields] = []
    for path in upper_images + upper_masks:
        stem, suffix = os.path.splitext(path)
        message = (
            f"the folder layout reads {', '.join(IMAGE_EXTENSIONS)} in lower case, so nothing uses this file: "
            f"rename it to {os.path.basename(stem)}{suffix.lower()}"
        )
        findings.append(("warning", "extension-case", path, message))
    masks_dir = str(source.root / "masks")
    for path in other_masks:
        stem, suffix = os.path.splitext(path)
        if suffix.lower() not in (".jpg", ".jpeg"):
            continue
        sample_id = stem[len(masks_dir) + 1 :].replace(os.sep, "/")
        if sample_id in masks:
            message = f"a JPEG copy of masks/{sample_id}.png, which is the one read: remove this copy"
        else:
            message = (
                f"masks are read as masks/<id>.png, so nothing uses this one: export the mask again from the "
                f"annotation tool as masks/{sample_id}.png (converting this JPEG does not restore class values "
                "that its compression changed at edges)"
            )
        findings.append(("warning", "mask-not-png", path, message))
    root = str(source.root)
    by_name: dict[str, list[str]] = {}
    for sample_id in images:
        by_name.setdefault(sample_id.rsplit("/", 1)[-1], []).append(sample_id)
    for sample_id, path in masks.items():
        if sample_id not in images and sample_id not in checked and not _has_image(root, sample_id):
            message = f"no image images/{sample_id}.jpg|.jpeg|.png for this mask, so nothing uses it: "
            namesakes = [i for i in by_name.get(sample_id.rsplit("/", 1)[-1], []) if i not in masks]
            if namesakes:
                message += f"if it is the mask of {os.path.relpath(images[namesakes[0]], root)}, move it to masks/{namesakes[0]}.png"
            else:
                message += "name it as its image (same path under masks/, .png), or remove it"
            findings.append(("warning", "mask-orphan", path, message))
    own = source.splits_dir.resolve() == (source.root / "splits").resolve()
    data = quote(root) + ("" if own else f" --splits-dir {quote(str(source.splits_dir))}")
    relabel = f"dualteacher split --data {data} --labeled {MASKED}"
    if splits.get("labeled") == LABELED_MASKED and "unlabeled" in ids:
        for sample_id in ids["unlabeled"]:
            if sample_id in masks:
                message = (
                    f"{sample_id} has a mask but is listed as unlabelled in {splits['unlabeled']!r}, so training "
                    f"ignores its annotation; to label every train image that has a mask, run: {relabel}"
                )
                findings.append(("warning", "mask-unused", masks[sample_id], message))
    train = source.split_file("train")
    if "unlabeled" not in ids and not train.is_file():
        return findings
    listed = checked | _every_listed_id(source)
    for sample_id, path in images.items():
        if sample_id not in listed:
            has_mask = " (it has a mask)" if sample_id in masks else ""
            if train.is_file():
                fix = f"add the line {sample_id} to {train}, then draw the labelled lists again, e.g. {relabel}"
            else:
                fix = f"add the line {sample_id} to the list of {splits['unlabeled']!r}"
            findings.append(("info", "image-unlisted", path, f"in no split list{has_mask}, so nothing uses it; {fix}"))
    return findings

"""Files of a folder dataset that training would not use: the part of ``check-data`` that lists
``ROOT/images`` and ``ROOT/masks`` (no file is decoded) and compares them with the split lists.

Files added after ``dualteacher init`` wrote the lists are otherwise ignored without a word: a new
image is in no list, a new mask of an image listed as unlabelled is never trained on.

==============  ========  ===================================================================
kind            severity  meaning
==============  ========  ===================================================================
mask-orphan     warning   a mask whose image (``images/<id>.jpg|.jpeg|.png``) does not exist, of
                          an id in no list (a listed one is ``check-data``'s ``image-missing``)
mask-unused     warning   the labelled split is ``init``'s (every train image with a mask) but
                          an image listed as unlabelled has a mask: its annotation is not used
image-unlisted  info      an image in none of the split lists (every ``*.txt`` of the splits
                          folder and of ``ROOT/splits``)
                          (looked for when an unlabelled split is checked or ``train.txt``
                          exists: else the images left out of a supervised check are unlabelled)
==============  ========  ===================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from shlex import quote

from dualteacher.data.core import IMAGE_EXTENSIONS, DataError, read_id_list
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import LABELED_MASKED, MASKED

FindingFields = tuple[str, str, str, str]
"""(severity, kind, path or id, message): the fields of a ``check-data`` finding."""


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    """id (path under ``folder`` without its suffix, ``/``-separated) -> file, for the visible
    files of ``folder`` (recursively) whose suffix is one of ``suffixes``; the first one wins.
    Strings, not Path objects: a 100,000-image folder is walked at every ``train`` start."""
    found: dict[str, str] = {}
    top = len(str(folder)) + 1
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        prefix = parent[top:].replace(os.sep, "/")
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix in suffixes and not name.startswith("."):
                found.setdefault(f"{prefix}/{stem}" if prefix else stem, os.path.join(parent, name))
    return found


def _every_listed_id(source: DataSource) -> set[str]:
    """The ids of every readable split list (``*.txt``) in the splits folder and in ``ROOT/splits``
    (a list that cannot be read is the check's business only if a checked split is that list)."""
    listed: set[str] = set()
    for folder in {source.splits_dir, source.root / "splits"}:
        for path in sorted(folder.glob("*.txt")) if folder.is_dir() else ():
            try:
                listed.update(source.listed_ids(read_id_list(path)))
            except (DataError, OSError, ValueError):
                continue
    return listed


def unused_files(source: DataSource, splits: dict[str, str], ids: dict[str, list[str]]) -> list[FindingFields]:
    """The findings of the module docstring for a folder ``source`` whose checked ``splits``
    (role -> split name) hold ``ids`` (role -> ids); none for the other layouts."""
    if source.name != "folder":
        return []
    images = _files(source.root / "images", IMAGE_EXTENSIONS)
    masks = _files(source.root / "masks", (".png",))
    listed = {i for found in ids.values() for i in found} | _every_listed_id(source)
    data = quote(str(source.root))
    findings: list[FindingFields] = []
    for sample_id, path in masks.items():
        if sample_id not in images and sample_id not in listed:  # a listed one is an image-missing error
            message = (
                f"no image images/{sample_id}.jpg|.jpeg|.png for this mask, so nothing uses it: rename or remove it"
            )
            findings.append(("warning", "mask-orphan", path, message))
    if splits.get("labeled") == LABELED_MASKED and "unlabeled" in ids:
        relabel = f"dualteacher split --data {data} --labeled {MASKED}"
        for sample_id in ids["unlabeled"]:
            if sample_id in masks:
                message = (
                    f"{sample_id} has a mask but is listed as unlabelled in {splits['unlabeled']!r}, so training "
                    f"ignores its annotation; to label every train image that has a mask, run: {relabel}"
                )
                findings.append(("warning", "mask-unused", masks[sample_id], message))
    lists_every_image = "unlabeled" in ids or source.split_file("train").is_file()
    splits_dir = source.splits_dir
    redraw = splits_dir.resolve() == (source.root / "splits").resolve()  # init's lists, not another folder's
    for sample_id, path in images.items() if lists_every_image else ():
        if sample_id not in listed:
            has_mask = " (it has a mask)" if sample_id in masks else ""
            message = f"in no split list{has_mask}, so nothing uses it; add its id to the lists in {splits_dir}"
            if redraw:
                message += f", or draw every list again: dualteacher init --data {data} --force (val too)"
            findings.append(("info", "image-unlisted", path, message))
    return findings

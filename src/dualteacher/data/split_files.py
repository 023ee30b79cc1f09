"""Write labelled/unlabelled lists for any dataset reader: drawn with a seed, or imported.

Drawn lists are nested across budgets for one seed (see :mod:`dualteacher.data.splits`); the
budget :data:`MASKED` instead takes the images that have a mask file as the labelled set, for
data where only some images are annotated.
The unlabelled list is the reader's unlabelled pool minus the labelled ids: the labelled
pool itself, except for classic PASCAL VOC, whose labelled ids come from the 1,464 ``train``
images and whose unlabelled ids are the rest of the 10,582 ``train_aug`` pool when it is
available (the UniMatch/U2PL protocol).

Imported files may hold one entry per line in either public format:

* UniMatch/U2PL: ``<image path> <mask path>`` relative to the dataset root
  (``JPEGImages/2007_000033.jpg SegmentationClass/2007_000033.png``);
* a plain list of ids or file names (``2007_000033``, ``ADE_train_00000001.jpg``).

Only the first field of a line is used; the reader maps it to its sample id.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from shlex import quote

from dualteacher.data.core import DataError, find_missing, read_list_lines
from dualteacher.data.source import DataSource
from dualteacher.data.splits import budget_tag, make_split, parse_labeled

_SHOWN = 5
MASKED = "masked"
"""The label budget "every image of the pool that has a mask file" (the rest unlabelled)."""
LABELED_MASKED, UNLABELED_MASKED = f"labeled_{MASKED}", f"unlabeled_{MASKED}"
"""The split lists of the budget :data:`MASKED` (``dualteacher init`` writes them)."""


def write_id_list(path: Path, lines: list[str]) -> None:
    """Write a split list, one id per line, through a temporary file and an atomic rename (the
    folder ``path`` is in must exist)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def write_lists(directory: Path, suffix: str, labeled_ids: list[str], unlabeled_ids: list[str]) -> tuple[Path, Path]:
    """Write ``labeled_<suffix>.txt`` and ``unlabeled_<suffix>.txt`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    labeled_path = directory / f"labeled_{suffix}.txt"
    unlabeled_path = directory / f"unlabeled_{suffix}.txt"
    write_id_list(labeled_path, labeled_ids)
    write_id_list(unlabeled_path, unlabeled_ids)
    return labeled_path, unlabeled_path


def masked_ids(source: DataSource, pool: str = "train") -> tuple[list[str], list[str]]:
    """The ids of split ``pool`` whose mask file exists (in pool order), and the others.

    Only for the folder layout: the benchmark readers are fully annotated (and Cityscapes falls back
    to other mask files when one is missing). Raises :class:`DataError` for another reader, when no
    image of the pool has a mask, or when every one has (nothing unlabelled: draw a budget instead).
    """
    root = quote(str(source.root))
    if source.name != "folder":
        raise DataError(
            f"--labeled {MASKED} labels the images that have a mask file in the folder layout (your own "
            f"data); the {source.name} layout is fully annotated: give a budget, e.g. run: dualteacher "
            f"split --dataset {source.name} --data {root} --labeled 1/16"
        )
    ids = source.split_ids(pool)
    masks = source.files(ids, labeled=True).masks
    assert masks is not None  # the folder layout gives labelled files one mask path per id
    missing = set(find_missing(masks))
    labeled = [i for i, mask in zip(ids, masks) if str(mask) not in missing]
    unlabeled = [i for i, mask in zip(ids, masks) if str(mask) in missing]
    where = f"{source.name} {pool!r} split at {source.root}"
    if not labeled:
        raise DataError(
            f"--labeled {MASKED}: no image of the {where} has a mask file (e.g. {masks[0]}); save masks "
            f"as masks/<id>.png, then run: dualteacher init --data {root}"
            if masks
            else f"--labeled {MASKED}: the {where} lists no image; run: dualteacher init --data {root}"
        )
    if not unlabeled:
        raise DataError(
            f"--labeled {MASKED}: every one of the {len(ids)} images of the {where} has a mask, so none "
            f"is unlabelled: label a subset, e.g. run: dualteacher split --data {root} --labeled 1/8"
        )
    return labeled, unlabeled


def refuse_unmasked_pool(source: DataSource, pool: str, labeled: int | float | str) -> None:
    """Raise :class:`DataError` when some ids of split ``pool`` have no mask file: a budget drawn
    from them could list images without a mask as labelled (whatever the seed, so it is refused
    before drawing). The message ends with the command that labels the masked images instead."""
    ids = source.split_ids(pool)
    masks = source.files(ids, labeled=True).masks or []
    missing = [os.path.relpath(path, source.root) for path in find_missing(masks)]
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else "")
        raise DataError(
            f"--labeled {labeled}: {len(missing)} of the {len(ids)} ids of the {pool!r} split at {source.root} have "
            f"no mask file ({shown}), so a budget drawn from them would list images without a mask as labelled. "
            f"To label exactly the images that have a mask, run: dualteacher split --data {quote(str(source.root))} "
            f"--labeled {MASKED}"
        )


def split_source(
    source: DataSource,
    labeled: int | float | str,
    seed: int,
    *,
    pool: str = "train",
    name: str | None = None,
) -> tuple[Path, Path]:
    """Draw ``labeled`` ids of split ``pool`` with ``seed``; write both lists; return their paths.

    The files are ``<splits_dir>/labeled_<name>.txt`` and ``unlabeled_<name>.txt``; ``name``
    defaults to ``<tag>_seed<seed>`` (``92_seed0``, ``1-16_seed0``). The budget :data:`MASKED`
    labels the images of ``pool`` that have a mask file and leaves the others unlabelled,
    whatever the seed (``name`` defaults to ``masked``); see :func:`masked_ids`.
    """
    if labeled == MASKED:
        return write_lists(source.splits_dir, name or MASKED, *masked_ids(source, pool))
    budget = parse_labeled(labeled) if isinstance(labeled, str) else labeled
    if source.name == "folder":
        refuse_unmasked_pool(source, pool, labeled)
    try:
        labeled_ids, rest = make_split(source.split_ids(pool), budget, seed)
    except ValueError as error:
        raise DataError(f"cannot split {source.name} {pool!r}: {error}") from error
    unlabeled_pool = source.default_unlabeled_pool(pool)
    if unlabeled_pool == pool:
        unlabeled_ids = rest
    else:
        chosen = set(labeled_ids)
        unlabeled_ids = sorted(i for i in source.split_ids(unlabeled_pool) if i not in chosen)
    suffix = name if name is not None else f"{budget_tag(budget)}_seed{seed}"
    return write_lists(source.splits_dir, suffix, labeled_ids, unlabeled_ids)


def read_entries(path: str | Path) -> list[str]:
    """The first whitespace-separated field of every non-blank line of ``path`` (UTF-8 with or
    without a byte-order mark, or UTF-16; LF or CRLF)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file to import not found: {path}")
    return [line.split()[0] for _, line in read_list_lines(path)]


def _imported_ids(source: DataSource, path: str | Path) -> list[str]:
    ids = [source.entry_id(entry) for entry in read_entries(path)]
    if not ids:
        raise DataError(f"{path} lists no images")
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise DataError(f"{path} lists {len(repeated)} image(s) twice, e.g. {', '.join(repeated[:_SHOWN])}")
    return sorted(ids)


def _outside(ids: list[str], allowed: set[str]) -> list[str]:
    return [i for i in ids if i not in allowed]


def import_split(
    source: DataSource,
    labeled_file: str | Path,
    name: str,
    *,
    unlabeled_file: str | Path | None = None,
    pool: str = "train",
) -> tuple[Path, Path]:
    """Import a public labelled list (and optionally its unlabelled list) as split ``name``.

    Labelled ids must belong to split ``pool``; without ``unlabeled_file`` the unlabelled ids
    are the unlabelled pool minus the labelled ids (as for :func:`split_source`). Imported
    unlabelled ids must not be labelled or val ids.
    """
    labeled_ids = _imported_ids(source, labeled_file)
    foreign = _outside(labeled_ids, set(source.split_ids(pool)))
    if foreign:
        raise DataError(
            f"{len(foreign)} labelled image(s) of {labeled_file} are not in the {source.name} {pool!r} split, "
            f"e.g. {', '.join(foreign[:_SHOWN])}"
        )
    chosen = set(labeled_ids)
    if unlabeled_file is None:
        unlabeled_ids = sorted(i for i in source.split_ids(source.default_unlabeled_pool(pool)) if i not in chosen)
    else:
        unlabeled_ids = _imported_ids(source, unlabeled_file)
        clash = [i for i in unlabeled_ids if i in chosen]
        if clash:
            raise DataError(f"{len(clash)} image(s) are both labelled and unlabelled, e.g. {', '.join(clash[:_SHOWN])}")
        if "val" in source.builtin_splits:
            val = set(source.split_ids("val"))
            leaked = [i for i in unlabeled_ids if i in val]
            if leaked:
                raise DataError(
                    f"{len(leaked)} image(s) of {unlabeled_file} are val images, e.g. {', '.join(leaked[:_SHOWN])}"
                )
    return write_lists(source.splits_dir, name, labeled_ids, unlabeled_ids)

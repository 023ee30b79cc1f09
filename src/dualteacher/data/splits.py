"""Labelled / unlabelled partitions of a training split, nested across label budgets.

For one seed the ids (sorted first) are permuted once, and the labelled set is the first n of
that permutation: the 1/16 set is contained in the 1/8 set, which is in the 1/4 set, and so on.
A fraction f of N ids gives n = ceil(f·N) labelled ids (1/16 of Cityscapes' 2,975 → 186, the
size of the public U2PL splits).

The lists are written by :func:`~dualteacher.data.split_files.split_source` into the reader's
splits folder (``ROOT/splits`` for the folder layout)::

    labeled_<tag>_seed<seed>.txt     unlabeled_<tag>_seed<seed>.txt

where the tag (:func:`budget_tag`) is the count for a count (``92``) and ``<p>-<q>`` for a
fraction p/q (``1-16`` for 1/16 or 0.0625, ``3-10`` for 0.3).
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np

_MAX_DENOMINATOR = 100_000


def parse_labeled(text: str) -> int | float:
    """Parse a label budget: a count (``"92"``), a fraction (``"0.125"``) or a ratio (``"1/16"``)."""
    cleaned = text.strip()
    try:
        if "/" in cleaned:
            num, den = cleaned.split("/")
            value: int | float = int(num) / int(den)
        elif cleaned.isdigit():
            value = int(cleaned)
        else:
            value = float(cleaned)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"cannot read label budget {text!r}: give a count (92), a fraction (0.125) or a ratio (1/16)"
        ) from None
    _check_budget(value)
    return value


def _check_budget(labeled: int | float) -> None:
    """Counts must be >= 1 and fractions in (0, 1]."""
    if isinstance(labeled, bool) or not isinstance(labeled, (int, float)):
        raise ValueError(f"label budget must be an int count or a float fraction, got {labeled!r}")
    if isinstance(labeled, int) and labeled < 1:
        raise ValueError(f"labelled count must be at least 1, got {labeled}")
    if isinstance(labeled, float) and not 0 < labeled <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {labeled}")


def labeled_count(labeled: int | float, total: int) -> int:
    """Number of labelled ids for a budget over ``total`` ids (fractions round up)."""
    _check_budget(labeled)
    if isinstance(labeled, int):
        n = labeled
    else:
        n = math.ceil(Fraction(labeled).limit_denominator(_MAX_DENOMINATOR) * total)
    if n < 1:
        raise ValueError(f"label budget {labeled} of {total} ids selects no id")
    if n > total:
        raise ValueError(f"label budget {labeled} asks for {n} ids but only {total} are available")
    return n


def make_split(ids: list[str], labeled: int | float, seed: int) -> tuple[list[str], list[str]]:
    """Split ``ids`` into (labelled, unlabelled), both sorted; nested across budgets for one seed."""
    ordered = sorted(ids)
    duplicates = sorted(i for i, c in Counter(ordered).items() if c > 1)
    if duplicates:
        raise ValueError(f"ids listed twice: {', '.join(duplicates[:10])}")
    n = labeled_count(labeled, len(ordered))
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    chosen = set(permutation[:n].tolist())
    labeled_ids = [i for k, i in enumerate(ordered) if k in chosen]
    unlabeled_ids = [i for k, i in enumerate(ordered) if k not in chosen]
    return labeled_ids, unlabeled_ids


def budget_tag(labeled: int | float) -> str:
    """Filesystem-safe name of a budget: ``"92"`` for a count, ``"1-16"`` for the fraction 1/16."""
    _check_budget(labeled)
    if isinstance(labeled, int):
        return str(labeled)
    ratio = Fraction(labeled).limit_denominator(_MAX_DENOMINATOR)
    return f"{ratio.numerator}-{ratio.denominator}"

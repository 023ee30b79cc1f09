"""Resuming a run with other settings: what differs from its checkpoint, what may change, and the LR.

A run directory is resumed with the settings it is given now. Before any weight is loaded,
:func:`compare` lists every difference from the checkpoint (settings as ``key: old → new``,
class names, the epoch length the settings resolve to, and whether moved data is the same
data), and :func:`decide` refuses, with nothing written, unless each difference is

- a note: ``data.workers`` and ``train.loggers`` (no sample stream or number depends on them),
  applied without asking;
- safe and accepted (``--resume-with-changes``): the run's length (``train.epochs``: the LR
  then continues from its current value, :func:`continued_anchor`), the evaluation, log and
  checkpoint cadence, checkpoints kept, device and precision, NaN guard, probe images, val batch
  size, and the data's location (root, splits dir, split names) when its splits list the same ids
  with files of the same sizes.

Everything else (model, method, optimiser, classes, training data and augmentation, batch
sizes, seed, evaluation settings, ...) is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dualteacher.config import Config, ConfigError, OptimConfig
from dualteacher.training.optim import lr_factor

if TYPE_CHECKING:
    from dualteacher.data.core import FileListDataset

NOTE, SAFE, REFUSED = "note", "safe", "refused"

# init_from: a resumed run's networks come from its checkpoint; loggers: where the same numbers are also sent
NOTED = frozenset({"data.workers", "method.init_from", "train.loggers"})
SAFE_KEYS = frozenset(
    {
        "train.epochs",
        "train.eval_every",
        "train.log_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.device",
        "train.amp",
        "train.channels_last",
        "train.deterministic",
        "train.nan_guard",
        "train.max_bad_steps",
        "train.probe_images",
        "data.val_batch_size",
        "data.eval_window_batch",
    }
)
DATA_LOCATION = frozenset(
    {"data.root", "data.splits_dir", "data.labeled_split", "data.unlabeled_split", "data.val_split"}
)
IGNORED = frozenset({"run_dir"})
_REASONS = (  # (setting, or section prefix ending in '.', why it cannot change mid-run); the first match wins
    ("method.name", "the checkpoint holds the networks and state of the old method"),
    ("method.", "it changes the training objective mid-run: the result would belong to neither setting"),
    ("model.", "the checkpoint's weights belong to the old network"),
    ("optim.", "the optimiser state and the learning-rate schedule were built for the old value"),
    (
        "data.eval_",
        "earlier evaluations and best.safetensors were scored with the old value "
        "(`dualteacher eval` scores a checkpoint with other settings)",
    ),
    ("data.", "it changes the training data or its augmentation mid-run"),
    ("train.keep", "best.safetensors so far was chosen among other networks"),
    ("train.", "the sample streams, the epoch numbering and the per-iteration randomness continue from the old value"),
)


class ResumeError(ConfigError):
    """A run directory's checkpoint was written with settings this run cannot (or may not) continue with."""


@dataclass(frozen=True)
class Change:
    """One difference between a checkpoint's run and the run resuming it; ``status`` is NOTE, SAFE or REFUSED."""

    key: str
    old: Any
    new: Any
    status: str
    reason: str = ""

    def __str__(self) -> str:
        """``key: old → new  status[: reason]``."""
        label = {NOTE: "applied", SAFE: "safe", REFUSED: "refused"}[self.status]
        return f"{self.key}: {_show(self.old)} → {_show(self.new)}  {label}" + (
            f": {self.reason}" if self.reason else ""
        )


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


PREDATED: dict[str, Any] = {"model.aspp_dropout": 0.5}
"""What a checkpoint written before a setting existed trained with, where that differs from the
setting's default (SMP's DeepLabV3+ ASPP dropout was 0.5 until ``model.aspp_dropout`` came)."""


def setting_changes(old: Mapping[str, Any], new: Config) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for each setting of ``new`` that differs from ``old`` (a checkpoint's
    ``config``, :meth:`Config.to_dict` form); a setting the checkpoint lacks counts as what such
    runs used: :data:`PREDATED`, else its default."""
    before = {**_flat(Config().to_dict()), **PREDATED, **_flat(old)}
    after = _flat(new.to_dict())
    return [
        (key, before.get(key), value) for key, value in after.items() if key not in IGNORED and before.get(key) != value
    ]


def refusal(key: str) -> str:
    """Why setting ``key`` cannot change in a run in progress."""
    for name, why in _REASONS:
        if key == name or (name.endswith(".") and key.startswith(name)):
            return why
    return "it is not known to be safe to change mid-run"


def _classify(key: str, old: Any, new: Any) -> Change:
    if key in NOTED:
        return Change(key, old, new, NOTE, "no result depends on it")
    if key in SAFE_KEYS or key in DATA_LOCATION:  # a moved dataset is judged by compare()
        return Change(key, old, new, SAFE)
    return Change(key, old, new, REFUSED, refusal(key))


def _class_change(old: list[str], new: list[str]) -> Change:
    """Other class names: refused, naming the first class that differs."""
    i = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    first = f"class {i}: {old[i] if i < len(old) else '(none)'} → {new[i] if i < len(new) else '(none)'}"
    return Change(
        "classes",
        f"{len(old)} classes",
        f"{len(new)} classes",
        REFUSED,
        f"{first}; the network's output layer predicts the checkpoint's classes",
    )


def _size(path: Path) -> int:
    """Byte size of ``path``; -1 if it is gone (a run stopping on a removed file still checkpoints)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def data_fingerprint(splits: Mapping[str, FileListDataset | None]) -> dict[str, dict[str, Any]]:
    """Per split (None: not read): its number of ids and a SHA-256 over its ids, in order, with
    the byte size of each image and mask file. A copy of the data elsewhere keeps it; other data,
    even with the same ids, almost surely changes it. Costs one ``stat`` per file."""
    return {
        name: {"ids": len(dataset.ids), "sha256": files_digest(dataset.ids, dataset.image_paths, dataset.mask_paths)}
        for name, dataset in splits.items()
        if dataset is not None
    }


def files_digest(ids: Sequence[str], images: Sequence[Path], masks: Sequence[Path] | None) -> str:
    """SHA-256 (hex) over ``ids`` in order, each with the byte size of its image and mask file."""
    digest = hashlib.sha256()
    mask_files: Sequence[Path | None] = masks or [None] * len(ids)
    for sample_id, image, mask in zip(ids, images, mask_files):
        sizes = f"{_size(image)}\t{_size(mask) if mask is not None else ''}"
        digest.update(f"{sample_id}\t{sizes}\n".encode())
    return digest.hexdigest()


def _other_data(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str | None:
    """Why the data at the new location is not the checkpoint's data; None when it is."""
    if not old:
        return (
            "the checkpoint does not record its data (written by an older version), so a move "
            "cannot be told from other data"
        )
    for split in sorted(set(old) & set(new)):
        if old[split] != new[split]:
            return (
                f"other data: the {split} split ({old[split]['ids']} → {new[split]['ids']} ids) lists other "
                "ids or files of other sizes"
            )
    return None


def _moved(change: Change, other: str | None) -> Change:
    """A change of the data's location: safe when the data there is the same (``other`` is None)."""
    if other is None:
        return replace(change, reason="same ids and file sizes: the same data at another path")
    return replace(change, status=REFUSED, reason=other)


def total_iterations(state: Mapping[str, Any], iters_per_epoch: int) -> int:
    """The length, in iterations, of the run that wrote ``state``."""
    schedule = state.get("schedule") or {}
    return schedule.get("total_iters") or state["config"]["train"]["epochs"] * iters_per_epoch


def continued_anchor(
    state: Mapping[str, Any], optim: OptimConfig, iters_per_epoch: int, total: int
) -> tuple[int, float] | None:
    """The LR-schedule anchor (see :func:`dualteacher.training.optim.lr_factor`) that continues the run of
    ``state`` to ``total`` iterations.

    The same length keeps the checkpoint's anchor. Another length, past the warm-up, decays from
    the factor the old schedule has at the checkpoint's iteration to 0 at ``total``: the LR goes on
    from where it was, with no jump. During the warm-up, the warm-up goes on and the decay spans
    the new length.
    """
    stored = (state.get("schedule") or {}).get("anchor")
    anchor = (int(stored[0]), float(stored[1])) if stored else None
    old_total, iteration = total_iterations(state, iters_per_epoch), state["iteration"]
    if old_total == total or iteration < optim.warmup_iters:
        return anchor
    return iteration, lr_factor(iteration, old_total, optim, anchor)


def _length_change(change: Change, state: Mapping[str, Any], cfg: Config, iters_per_epoch: int) -> Change:
    """``train.epochs``: safe while the run is under way and ends after the checkpoint."""
    iteration, old_total = state["iteration"], total_iterations(state, iters_per_epoch)
    total = cfg.train.epochs * iters_per_epoch
    if iteration >= old_total:
        why = (
            f"the run finished at iteration {old_total} with its learning rate decayed to 0, so more "
            "iterations would train at LR 0; start a new run in another run_dir"
        )
    elif total <= iteration:
        why = f"the run is already at iteration {iteration}; {cfg.train.epochs} epochs end at iteration {total}"
    else:
        start, factor = continued_anchor(state, cfg.optim, iters_per_epoch, total) or (cfg.optim.warmup_iters, 1.0)
        return replace(
            change,
            reason=f"the LR decays from {factor:.3g}× its base value at iteration {start} "
            f"to 0 at iteration {total}, with no jump",
        )
    return replace(change, status=REFUSED, reason=why)


def compare(
    state: Mapping[str, Any],
    cfg: Config,
    classes: list[str],
    iters_per_epoch: int,
    fingerprint: Callable[[], dict[str, Any]],
) -> list[Change]:
    """Every difference between the run that wrote ``state`` (a training checkpoint's state) and
    a run of ``cfg`` whose data has ``classes`` and whose epochs are ``iters_per_epoch`` long.

    ``fingerprint`` (:func:`data_fingerprint` of the new data) is called only when the data's
    location changed: the move is safe when it matches the checkpoint's record.
    """
    changes = [_classify(key, old, new) for key, old, new in setting_changes(state["config"], cfg)]
    if list(state["classes"]) != list(classes):
        changes.append(_class_change(list(state["classes"]), list(classes)))
    old_epoch = (state.get("schedule") or {}).get("iters_per_epoch")
    if old_epoch is not None and old_epoch != iters_per_epoch:
        changes.append(
            Change(
                "iterations per epoch",
                old_epoch,
                iters_per_epoch,
                REFUSED,
                "it follows from the split size, the batch size and the number of processes, "
                "and the epoch numbering and the sample streams depend on it",
            )
        )
    if any(c.key in DATA_LOCATION for c in changes):
        other = _other_data(state.get("data"), fingerprint())
        changes = [_moved(c, other) if c.key in DATA_LOCATION else c for c in changes]
    return [_length_change(c, state, cfg, iters_per_epoch) if c.key == "train.epochs" else c for c in changes]


def decide(changes: list[Change], *, allow: bool, where: str) -> None:
    """Return when every change is a note, or safe and ``allow``ed; otherwise raise
    :class:`ResumeError` listing each change (``key: old → new``), why any is refused, and what to do."""
    if all(c.status == NOTE or (c.status == SAFE and allow) for c in changes):
        return
    lines = [f"{where} was written with other settings:", *(f"  {c}" for c in changes)]
    if any(c.status == REFUSED for c in changes):
        lines.append(
            "Nothing was written. A refused change cannot apply to a run in progress: drop it to continue "
            "this run (--resume-with-changes applies the others), or start a new run in another run_dir."
        )
    else:
        lines.append(
            "Nothing was written. These changes are safe: add --resume-with-changes (Python: "
            "allow_changes=True) to apply them, or drop them to continue with the checkpoint's settings."
        )
    raise ResumeError("\n".join(lines))

"""Resuming a comparison: which runs finished with the same settings on the same data (their
summaries are reused), and which cannot train because their warm-up is missing."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from dualteacher.config import ConfigError, load_config
from dualteacher.experiments.compare.grid import Run

SETTINGS_VERSION = 2
"""Summaries record it from the release in which each method declares its own settings on; a
summary without it stored the settings of that time."""


def same_settings(method: str, summary: dict[str, Any], settings: list[str]) -> bool:
    """Whether the settings a summary stored resolve to the same configuration of ``method`` as
    ``settings``; spelling a default out, or leaving it out, changes nothing. A Dual Teacher
    summary from before :data:`SETTINGS_VERSION` shifted teachers once per epoch
    (``train.iters_per_epoch`` of its settings), which ``method.shift`` now says."""
    stored = summary.get("settings")
    if stored is None:
        return False
    if summary.get("settings_version", 1) < SETTINGS_VERSION and method == "dual_teacher":
        epoch = [s.split("=", 1)[1] for s in stored if s.startswith("train.iters_per_epoch=")]
        stored = [*stored, f"method.shift={epoch[-1] if epoch else 'epoch'}"]
    try:
        before = load_config(None, [*stored, f"method.name={method}"])
    except ConfigError:
        return False
    return before.to_dict() == load_config(None, [*settings, f"method.name={method}"]).to_dict()


def finished(run: Run) -> dict[str, Any] | None:
    """The summary of ``run`` if it finished; :class:`ConfigError` if it ran with other settings or
    on other data (a summary written before summaries recorded their data is taken as it is)."""
    path = Path(run.summary)
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if not same_settings(run.method, summary, run.settings):
        stored = summary.get("settings")
        differ = [s for s in run.settings if s not in (stored or [])] + [
            s for s in stored or [] if s not in run.settings
        ]
        why = "none recorded" if stored is None else f"e.g. {differ[0]}" if differ else "in another order"
        raise ConfigError(
            f"{path} was trained with other settings ({why}): choose another --out, or remove it to retrain"
        )
    if "data" in summary and summary["data"] != run.data_digest:
        raise ConfigError(
            f"{path} was trained on other data (other ids or files of other sizes in the train or val "
            "split): choose another --out, or remove it to retrain"
        )
    warmup = Path(run.warmup_summary) if run.warmup_summary else None
    if warmup is not None and warmup.exists():
        current = json.loads(warmup.read_text())
        if summary.get("warmup", {}).get("train_seconds") != current["train_seconds"]:
            raise ConfigError(
                f"{path} started from another warm-up than {warmup} (retrained since): remove it to "
                "retrain it from this one"
            )
    return summary


def check_warmup_checkpoints(runs: list[Run]) -> None:
    """Raise :class:`ConfigError` naming both files when an unfinished warm-started run needs a
    finished warm-up whose checkpoint is gone (e.g. a fresh ``--runs``)."""
    for run in runs:
        if not run.warmup_dir or finished(run) is not None:
            continue
        checkpoint = Path(run.warmup_dir) / "last.safetensors"
        if Path(run.warmup_summary).exists() and not checkpoint.exists():
            raise ConfigError(
                f"{run.name} starts from the warm-up {checkpoint}, which is gone although its summary "
                f"{run.warmup_summary} is there: remove the summary to retrain the warm-up"
            )


def waiting_for_warmup(runs: list[Run], finished_names: Collection[str]) -> list[Run]:
    """The unfinished warm-started ``runs`` whose warm-up is not among ``finished_names`` (it failed
    or was interrupted): they would start from a partial network, so they do not train."""
    return [
        run
        for run in runs
        if run.warmup_dir and finished(run) is None and Path(run.warmup_summary).stem not in finished_names
    ]

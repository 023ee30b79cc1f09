"""Build-time pages for `mkdocs build` (run by the mkdocs-gen-files plugin).

Writes `reference/cli.md`, every sub-command's `--help` rendered from the argument parser of
`dualteacher.cli`, so the reference cannot drift from the command; fills the settings tables of
`methods.md` from the `Settings` dataclass of every registered method (name and default from the
class, meaning from :data:`MEANING` or, for a method of your own, from its ``name``: meaning
docstring); and copies the figures of the committed benchmark results into the site, so the
report shows them without a second copy in docs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "benchmarks/results/compare/miou_vs_time.png",
    "benchmarks/results/compare_from_scratch/miou_vs_time.png",
    "benchmarks/results/dual_teacher_length/length/curves.png",
)

os.environ["COLUMNS"] = "80"  # argparse wraps help at the terminal width; fix it for the page
sys.path.insert(0, str(ROOT / "src"))  # document this checkout, not an installed copy

from dualteacher.cli import build_parser, sub_commands  # noqa: E402
from dualteacher.registry import METHODS  # noqa: E402

ABLATION = "report.md#the-ablation-under-the-warm-start"
MEANING: dict[str, str] = {
    "init_from": "warm start: every network of the run, teachers included, starts from this checkpoint or run "
    "directory instead of the encoder's pretrained weights ([Warm start](training.md#warm-start))",
    "threshold": "confidence a pseudo-label needs (FixMatch, UniMatch and the official Dual Teacher code: 0.95)",
    "threshold_mode": "how confidence weights the pseudo-label loss: `pixel`, CE on the pixels whose confidence "
    "reaches the threshold divided by the number of valid pixels (FixMatch/UniMatch); `fraction`, "
    "the official Dual Teacher code's scalar weight, the share of confident pixels per image; "
    "`none`, every valid pixel",
    "unsup_weight": "weight of the unlabelled loss",
    "student_drop_path": "the student's stochastic depth; teachers always run at full depth (0: the method's paper "
    "trains at full depth)",
    "cutmix_p": "probability that an image gets a CutMix box; box area 1 − λ, λ ~ Beta(4, 4)",
    "ema_momentum": "m in the teacher's update θt ← m·θt + (1 − m)·θs (official 0.99)",
    "ema_warmup": "momentum `min(1 − 1/(i + 1), ema_momentum)` at the teacher's i-th update (from 0): the first "
    "update copies the student",
    "ema_buffers": "BatchNorm running statistics are averaged too (the official code averages parameters only, "
    "which leaves a CNN teacher with stale statistics)",
    "teacher_init": "`student`: teachers start as copies of the student; `independent`: built afresh (the official "
    "code: same pretrained encoder, independently initialised heads)",
    "mixings": "the one mixing of the strong view, with its pseudo-labels (a name of `MIXINGS`: `cutmix`, "
    "`classmix`, `none`)",
    "num_teachers": "K, the temporary teachers taking turns (the paper's 2)",
    "icl_weight": "weight of implicit consistency learning: CE between the pseudo-labels of the teacher on shift and "
    "the student on the un-mixed strong view, always per pixel (official 0.2); 0 skips that view",
    "shift": "how long a teacher stays on shift: `labeled_pass` (one pass over the labelled split, the official "
    "code's epoch), `epoch` (one training epoch) or a number of iterations; the teacher on shift is "
    "`shift index mod K` ([Shifts and restarts](#shifts-and-restarts))",
    "restart_per_shift": "the EMA counter of the teacher on shift restarts at each shift (official), so its first "
    "update makes it a copy of the student; `false` keeps one counter per teacher across its "
    "shifts (persistent teachers)",
    "fp_dropout": "channel-dropout probability of the feature-perturbation stream (the paper's `Dropout2d(0.5)`)",
}
"""What each built-in method setting means (shown beside the name and default the class declares)."""
METHOD_MEANING: dict[tuple[str, str], str] = {
    ("dual_teacher", "mixings"): "one mixing per teacher, or one for all: teacher 1 CutMix, teacher 2 ClassMix as in "
    "the paper",
    ("dual_teacher", "threshold_mode"): MEANING["threshold_mode"] + "; for the mixed-view loss only (the consistency "
    "term is always per pixel)",
    ("dual_teacher", "unsup_weight"): "weight of the mixed-view loss",
    ("dual_teacher", "student_drop_path"): "the official student's stochastic depth; teachers always run at full "
    "depth. On the built-in benchmark's 700-iteration runs, 0 instead of 0.1 "
    "scored +4.4 at 1/32 and +1.0 at 1/16 on the mean of 3 seeds, and lost 1.6 "
    f"on 1/16 seed 0 ([ablation]({ABLATION}))",
    ("unimatch", "mixings"): "the one mixing of both strong views, each drawn on its own",
}
"""Where a setting means something particular to one method."""


def yaml_value(value: Any) -> str:
    """A default as it is written in a config: ``null``, ``true``, ``[cutmix, classmix]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


def docstring_meaning(cls: type, name: str) -> str | None:
    """The ````name````: meaning sentence of a settings class's docstring (or a base class's), up to
    the next ``;`` or the end of the sentence outside parentheses."""
    for klass in cls.__mro__:
        match = re.search(rf"``{name}``:\s*(.*)", inspect.getdoc(klass) or "", re.S)
        if not match:
            continue
        depth, text = 0, match.group(1)
        for end, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and (char == ";" or (char == "." and text[end + 1 : end + 2] in ("", " ", "\n"))):
                text = text[:end]
                break
        return " ".join(text.replace("``", "`").split())
    return None


def meaning(method: str, cls: type, name: str) -> str:
    """What setting ``name`` of ``method`` means; RuntimeError (the build stops) when nothing says."""
    text = METHOD_MEANING.get((method, name)) or MEANING.get(name) or docstring_meaning(cls, name)
    if not text:
        raise RuntimeError(
            f"method.{name} of {method!r} ({cls.__module__}.{cls.__qualname__}) has no meaning to show: "
            f"write ``{name}``: <what it does> in the docstring of {cls.__qualname__}"
        )
    return text


def where(obj: type) -> str:
    """The file that defines ``obj``, relative to the checkout (its module for code elsewhere)."""
    path = Path(inspect.getsourcefile(obj) or "")
    return f"`{path.relative_to(ROOT).as_posix()}`" if path.is_relative_to(ROOT) else f"`{obj.__module__}`"


def settings_tables() -> str:
    """One table per registered method: every setting of its ``Settings`` but ``name``, its default,
    its meaning; and the values the shared recipe gives it."""
    lines: list[str] = []
    for method in METHODS:
        implementation = METHODS.get(method)
        cls = implementation.Settings
        defaults = cls()
        lines += [
            "",
            f"### `{method}`",
            "",
            f"`{implementation.__qualname__}` ({where(implementation)}), settings `{cls.__qualname__}` ({where(cls)}).",
            "",
        ]
        lines += ["| setting | default | meaning |", "|---|---|---|"]
        for field in dataclasses.fields(cls):
            if field.name != "name":
                value = yaml_value(getattr(defaults, field.name))
                lines.append(f"| `method.{field.name}` | `{value}` | {meaning(method, cls, field.name)} |")
        if implementation.recipe_settings:
            own = ", ".join(f"`{setting}`" for setting in implementation.recipe_settings)
            lines += ["", f"The shared recipe sets {own}."]
    return "\n".join(lines).strip() + "\n"


def methods_page(text: str) -> str:
    """``methods.md`` with the part between its settings-tables markers replaced by the tables."""
    start, end = "<!-- settings-tables -->", "<!-- /settings-tables -->"
    if start not in text or end not in text:
        raise RuntimeError(f"docs/methods.md: the markers {start} and {end} are missing")
    head, rest = text.split(start, 1)
    return head + settings_tables() + rest.split(end, 1)[1]


def command_summaries(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The one-line help of each sub-command, as `dualteacher --help` lists them (`.dest`, `.help`)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))._choices_actions


def cli_page() -> str:
    """Markdown for the CLI reference: the top-level help, then one section per sub-command."""
    parser = build_parser()
    lines = [
        "# CLI reference",
        "",
        "Generated from `dualteacher.cli.build_parser()` when this site was built: each section is",
        "the command's `--help`. Options may come before, between or after the positional",
        "arguments; `key=value` overrides go to the run's settings ([Training](../training.md)).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    summaries = {choice.dest: choice.help for choice in command_summaries(parser)}
    for name, command in sub_commands(parser).items():
        lines += [
            "",
            f"## dualteacher {name}",
            "",
            f"{summaries[name]}.",
            "",
            "```text",
            command.format_help().rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())

with mkdocs_gen_files.open("methods.md", "w") as page:
    page.write(methods_page((ROOT / "docs" / "methods.md").read_text(encoding="utf-8")))

for figure in FIGURES:
    with mkdocs_gen_files.open(figure.removeprefix("benchmarks/"), "wb") as out:
        out.write((ROOT / figure).read_bytes())

"""Build-time pages for `mkdocs build` (run by the mkdocs-gen-files plugin).

Writes `reference/cli.md`, every sub-command's `--help` rendered from the argument parser of
`dualteacher.cli`, so the reference cannot drift from the command; and copies the figures of the
committed benchmark results into the site, so the report shows them without a second copy in docs/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("benchmarks/results/compare/miou_vs_time.png", "benchmarks/results/compare_from_scratch/miou_vs_time.png")

os.environ["COLUMNS"] = "80"  # argparse wraps help at the terminal width; fix it for the page
sys.path.insert(0, str(ROOT / "src"))  # document this checkout, not an installed copy

from dualteacher.cli import build_parser, sub_commands  # noqa: E402


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
        lines += ["", f"## dualteacher {name}", "", f"{summaries[name]}.", "", "```text", command.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())

for figure in FIGURES:
    with mkdocs_gen_files.open(figure.removeprefix("benchmarks/"), "wb") as out:
        out.write((ROOT / figure).read_bytes())

"""The README's quick start as the tests read it: the ```bash block right after the line
``<!-- quickstart -->``, one command per line, comments after two spaces and ``#`` dropped.

``tests/test_docs.py`` checks its commands against the parser; ``tests/test_quickstart.py`` runs
them from the installed wheel, made short by :data:`SHORT_RUN`.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = "<!-- quickstart -->"

SHORT_RUN = (
    "--minutes 10",
    ("--iterations 4 data.workers=0 train.batch_size=2 train.unlabeled_batch_size=2 train.probe_images=2"),
)
"""The one substitution the wheel test makes in the quick start (the README says so beside the
block): the train command's ``--minutes 10`` becomes 4 iterations of small batches, read in the
training process, so that the run takes seconds; the rest of the commands run as written."""


def quickstart(readme: Path = README) -> list[str]:
    """The commands of the quick start. Raises AssertionError when the README has no such block
    or it starts after line 80."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(rf"{re.escape(MARK)}\n```bash\n(.*?)\n```", text, re.DOTALL)
    assert match, f"README.md: no ```bash block right after {MARK}"
    assert text[: match.start()].count("\n") < 80, "the quick start must start within the README's first 80 lines"
    return [line.split("  #")[0].strip() for line in match.group(1).splitlines() if line.strip()]


def short_quickstart(readme: Path = README) -> list[str]:
    """:func:`quickstart` with :data:`SHORT_RUN` applied. Raises AssertionError unless exactly one
    command, the ``train`` command, holds the text it replaces."""
    commands = quickstart(readme)
    old, new = SHORT_RUN
    holding = [c for c in commands if old in c]
    assert len(holding) == 1 and holding[0].startswith("dualteacher train ") and holding[0].count(old) == 1, (
        f"README.md quick start: the wheel test replaces {old!r} in the train command (and only there); found it "
        f"in {holding or 'no command'}"
    )
    return [c.replace(old, new) for c in commands]

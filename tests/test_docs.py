"""The front door: the README's quick start and links, and the documentation site that
`mkdocs build --strict` makes (CLI reference from the parser, API reference, the benchmark report
with every table the README used to carry)."""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dualteacher.cli import build_parser, sub_commands
from dualteacher.registry import DATASETS, METHODS, NETWORKS, TRACKERS

from quickstart_block import README, quickstart, short_quickstart

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "src" / "dualteacher"

# One or more numbers of every table the benchmark report holds, each with its command, exactly as
# measured: the protocol summary, the protocol study, the demo, the comparison at equal iterations
# and at equal wall-clock, the from-scratch comparison, the checks against the papers, both
# ablations and the step-cost tables.
REPORT_FACTS = (
    "0.752",
    "0.468",
    "0.591",
    "0.725",  # summary
    "0.40 / 0.71 / 0.83",
    "0.742",
    "0.546",
    "0.331",  # protocol study
    "python benchmarks/protocol_study.py",
    "0.390",
    "0.439",
    "196 s",  # demo
    "0.468 ± 0.062",
    "0.401 ± 0.010",
    "0.617 ± 0.035",
    "558 / 368 / 390",  # equal iterations
    "2350 / 2150 / 2200",
    "1122 / 1029 / 1173",
    "0.587 ± 0.030",  # equal wall-clock
    "python benchmarks/compare_methods.py --upper-bound --variants dual_teacher_persistent --report-only",
    "0.438 ± 0.050",
    "0.284 (1 seed)",
    "--out benchmarks/results/compare_from_scratch --report-only",
    "0.11 σ",
    "+0.009 to +0.052",
    "python benchmarks/run_diagnostics.py",  # checks
    "0.512",
    "29.4 %",
    "0.503 (−1.4)",
    "0.08 0.10 0.12 0.14 0.16 0.20 0.23 0.23",  # ablations
    "python benchmarks/dual_teacher_ablation.py --iterations 700",
    "578.5",
    "1,614 images/s",
    "85.3",
    "17.5 GiB",
    "python benchmarks/step_cost.py",  # step costs
)


def test_readme_is_short_and_its_quick_start_ends_in_predictions() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
    commands = quickstart()
    assert 1 <= len(commands) <= 6
    assert commands[-1].startswith("dualteacher predict ")


def test_quick_start_commands_are_valid_for_the_parser() -> None:
    commands = sub_commands(build_parser())
    for line in quickstart() + short_quickstart():  # as written, and as the wheel test runs them
        words = shlex.split(line)
        assert words[0] == "dualteacher", line
        assert words[1] in commands, f"README quick start: no sub-command {words[1]!r} in dualteacher.cli"
        commands[words[1]].parse_intermixed_args(words[2:])  # exits (SystemExit) on an unknown option


def test_readme_links_to_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)(?:#[^)]*)?\)", text)
    assert targets, "README.md links to no documentation page"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def method_settings() -> dict[str, dict[str, object]]:
    """Every registered method's settings but ``name``, with their defaults."""
    return {
        method: {
            f.name: getattr(METHODS.get(method).Settings(), f.name)
            for f in dataclasses.fields(METHODS.get(method).Settings)
            if f.name != "name"
        }
        for method in METHODS
    }


def as_yaml(value: object) -> str:
    """A default as a config writes it: ``null``, ``true``, ``[cutmix, classmix]``, ``0.95``."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, tuple):
        return "[" + ", ".join(as_yaml(v) for v in value) + "]"
    return str(value)


def test_every_method_setting_the_pages_name_exists() -> None:
    """A `method.<key>` written in the README or a page is a setting of some method today (but
    the older key that checkpoints of 0.1.0 hold, and the setting of Extending's example method)."""
    known = {key for settings in method_settings().values() for key in settings} | {"name"}
    not_settings = {"methods.md": {"shift_period"}, "extending.md": {"entropy_weight"}}
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        named = set(re.findall(r"`method\.(\w+)", page.read_text(encoding="utf-8")))
        stale = sorted(named - known - not_settings.get(page.name, set()))
        assert not stale, f"{page.relative_to(ROOT)} names method settings that no method has: {stale}"


def test_the_code_map_names_every_module() -> None:
    """Every module but the package folders' ``__init__.py`` and the modules that only hold a
    registered extension (a new method's file is listed by ``METHODS``, not by the code map)."""
    text = (DOCS / "code-map.md").read_text(encoding="utf-8")
    extensions = {
        registry.get(name).__module__ for registry in (METHODS, DATASETS, NETWORKS, TRACKERS) for name in registry
    }
    modules = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent == PACKAGE
    ]
    missing = [
        module
        for module in modules
        if f"`{module}`" not in text and "dualteacher." + module.removesuffix(".py").replace("/", ".") not in extensions
    ]
    assert not missing, f"docs/code-map.md lacks {missing}"


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page: tags stripped, entities decoded, whitespace collapsed."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("mkdocs", "material", "mkdocs_gen_files", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return out


def test_site_has_every_page_and_the_figures(site: Path) -> None:
    for page in (
        "getting-started",
        "training",
        "compare",
        "evaluation",
        "inference",
        "sharing",
        "benchmarks",
        "distributed",
        "reproducibility",
        "tracking",
        "data-checks",
        "report",
        "methods",
        "extending",
        "code-map",
    ):
        assert (site / page / "index.html").is_file(), page
    for figure in (
        "demo.png",
        "predict_example.png",
        "results/compare/miou_vs_time.png",
        "results/compare_from_scratch/miou_vs_time.png",
    ):
        assert (site / figure).stat().st_size > 10_000, figure


def test_cli_reference_is_the_parser_help(site: Path) -> None:
    text = page_text(site, "reference/cli")
    for name, command in sub_commands(build_parser()).items():
        assert f"dualteacher {name}" in text
        for action in command._actions:
            for option in action.option_strings:
                assert option in text, f"CLI reference lacks {name} {option}"


def test_api_reference_documents_the_public_api(site: Path) -> None:
    text = page_text(site, "reference/api")
    for name in (
        "load_model",
        "LoadedModel",
        "eval_dataset",
        "load_config",
        "Config",
        "train",
        "TrainResult",
        "CompareOptions",
        "prepare_folder",
    ):
        assert re.search(rf"\b{name}\b", text), name
    assert "Rebuild the network stored at" in text  # load_model's docstring, rendered
    assert "Train (or continue) a run; two forms" in text  # dualteacher.train's
    guide = page_text(site, "python-api")
    assert 'logging.getLogger("dualteacher").setLevel(logging.WARNING)' in guide


def test_report_keeps_every_table_and_its_command(site: Path) -> None:
    text = page_text(site, "report")
    missing = [fact for fact in REPORT_FACTS if fact not in text]
    assert not missing, f"benchmark report lacks {missing}"


def test_data_checks_keep_the_real_data_rules_and_the_timing_table(site: Path) -> None:
    checks = page_text(site, "data-checks")
    for fact in (
        "dualteacher make-digits --num-train 3000 --num-val 500",
        "headers read, masks decoded 2.1 s 0.49 s",
        "every image and mask decoded once 8.6 s 0.51 s",
        "no PNG checksums) 7.3 s 0.47 s",
        "108 ms instead of 251 ms",
        "JPEG-stored",
    ):
        assert fact in checks, fact
    guide = page_text(site, "getting-started")
    assert "Phone photos" in guide and "exiftool -n -Orientation=1 -overwrite_original FILE" in guide
    assert "a mask stored as JPEG (whatever its name) is refused" in guide


def test_methods_page_has_a_settings_table_per_method(site: Path) -> None:
    """Generated from the ``Settings`` classes: every setting of every registered method, with its
    default as a config writes it."""
    raw = (site / "methods" / "index.html").read_text(encoding="utf-8")
    for method, settings in method_settings().items():
        section = raw.split(f'<h3 id="{method}"', 1)[1].split("<h", 1)[0]
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", section)).split())
        for key, default in settings.items():
            assert f"method.{key} {as_yaml(default)} " in text, f"methods page, {method}: no row for method.{key}"
    assert "The shared recipe sets method.shift=50." in page_text(site, "methods")

"""``dualteacher compare``: does semi-supervised training help on my data?

Trains the chosen methods with the shared recipe (:mod:`dualteacher.experiments.recipe`, adapted to the
data and overridable with ``key=value``) on labelled fractions of the train split drawn per seed
(nested lists, as ``dualteacher split`` writes them) or, with the budget ``masked``, on the
train images that have a mask file (the others unlabelled, one split for every seed; for data
that is only partly annotated, so without an upper bound), and writes::

    OUT/summary.json          the comparison (schema in :func:`~.summary.summarize`)
    OUT/table.md              the same as markdown tables, with peak memory
    OUT/miou_vs_time.png      student val mIoU against training time, one panel per fraction
    OUT/coupling.png          teacher-student coupling (first fraction and seed), if teachers ran
    OUT/summaries/<run>.json  one per run; OUT/probe.json: the --minutes probe

Budgets. ``iterations``: every method trains N iterations after the warm-up (``iterations``;
``minutes`` M: N such that the reference method trains about M minutes, from a timed probe of
its step; neither: the recipe's 1,000 less the warm-up).
``time``: every method trains for the training time of the reference's N-iteration run of the
same fraction and seed: method m runs round(N · s_ref / s_m) iterations, s the seconds per
training iteration (evaluation excluded) of the equal-iteration runs, which ``time`` therefore
also trains. Variants and the upper bound train under ``iterations`` only.

Warm start (``warmup`` W > 0; default the recipe's ``WARMUP_ITERATIONS``, 0 for none): per
fraction and seed, one supervised run of W iterations on the labelled split trains first, and
every run of that fraction and seed, supervised included, starts from its student
(``method.init_from``, :mod:`dualteacher.training.warm_start`) for its N iterations; the upper bound
trains W + N iterations from the pretrained encoder. A warm-started run's training time, curve
and iterations include the warm-up's, so every wall-clock figure counts it; its seconds per
iteration are its own steps'.

Each run is a fresh spawned process (``jobs`` at a time, the CPU threads shared out), so its
peak memory is its own. A run with a summary is reused when its settings and data match, an interrupted
one resumes from its checkpoint: the same command again trains nothing new.

The package, one job per module: :mod:`~.options` (what is asked, checked first),
:mod:`~.grid` (the runs it names), :mod:`~.planning` (data checked, splits written, recipe
adapted, length fixed), :mod:`~.running` (each run in a fresh process), :mod:`~.resuming`
(finished runs reused, warm-ups checked), :mod:`~.summary`, :mod:`~.table` and :mod:`~.outputs`
(what is written); this module holds the verb.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualteacher.experiments.compare.grid import Plan, Run
from dualteacher.experiments.compare.options import CompareOptions, Comparison
from dualteacher.experiments.compare.outputs import write_outputs
from dualteacher.experiments.compare.planning import plan_comparison
from dualteacher.experiments.compare.resuming import check_warmup_checkpoints, finished, waiting_for_warmup
from dualteacher.experiments.compare.running import launch
from dualteacher.experiments.probe import PROBE_TIMED, PROBE_WARMUP

__all__ = ["CompareOptions", "Comparison", "compare"]

logger = logging.getLogger(__name__)


def _train_or_reuse(runs: list[Run], plan: Plan, results: list[dict]) -> list[str]:
    """Add finished runs' summaries to ``results``, train the others (unless report-only)."""
    pending = []
    for run in runs:
        summary = finished(run)
        if summary is not None:
            results.append(summary)
        else:
            pending.append(run)
    if plan.opts.report_only or not pending:
        return []
    logger.info(
        f"training {len(pending)} run(s), {min(plan.opts.jobs, len(pending))} at a time, "
        f"{plan.threads} thread(s) each; {len(runs) - len(pending)} finished already"
    )

    def done(summary: dict) -> None:
        results.append(summary)
        write_outputs(results, plan, figures=False)

    return launch(pending, plan.opts.jobs, done)


def compare(opts: CompareOptions) -> Comparison:
    """Run (or resume) the comparison of ``opts`` and write its outputs; see the module docstring.

    Raises :class:`ConfigError` / :class:`DataError` for bad options, overrides or data, and for
    finished runs of ``OUT`` trained with other settings, before any run starts.
    """
    plan = plan_comparison(opts)
    logger.info("recipe: " + "\n        ".join(plan.adaptation.account))
    if plan.probe is not None:
        logger.info(
            f"--minutes {opts.minutes}: {opts.reference} took {plan.probe['s_per_iteration']:.3f} s per "
            f"training iteration ({PROBE_TIMED} timed after {PROBE_WARMUP}, alone, {plan.threads} thread(s)) "
            f"-> {plan.iterations} iterations"
        )
    warmups, equal_iterations = plan.warmup_runs(), plan.equal_iteration_runs()
    for run in [*warmups, *equal_iterations]:
        finished(run)  # settings of earlier runs checked before anything trains
    results: list[dict] = []
    if not opts.report_only:
        check_warmup_checkpoints(equal_iterations)
    failed = _train_or_reuse(warmups, plan, results)
    waiting = waiting_for_warmup(equal_iterations, {r["name"] for r in results})
    for run in waiting:
        logger.warning(f"{run.name}: not trained: its warm-up {Path(run.warmup_summary).stem} has not finished")
    failed += [run.name for run in waiting]
    failed += _train_or_reuse([run for run in equal_iterations if run not in waiting], plan, results)
    if "time" in opts.budgets:
        failed += _train_or_reuse(plan.equal_time_runs(results), plan, results)
    summary = write_outputs(results, plan, figures=True)
    logger.info((opts.out / "table.md").read_text())
    return Comparison(summary, failed)

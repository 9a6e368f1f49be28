"""The confirmation phase of a sweep: re-run the top candidates and the sparse baseline with fresh seeds.

A search trial's val_reward is one noisy measurement at the sweep's seed, and the search picked its
candidates *because* their values came out high. The confirmation phase measures again, without that
selection bias: the top ``search.confirm_top_k`` evaluated points by GP posterior mean (see
`tune_jobs.search.recommend`) and the sparse-only baseline each run ``search.confirm_seeds`` more times,
with seeds the search never used. Every candidate runs the *same* seeds as the baseline (common random
numbers), so the paired difference ``candidate - baseline`` at each seed cancels what the seed does to
both, and its 95% Student-t interval says whether a candidate beats the baseline beyond noise.

The re-runs are trials of a second Ray Tune experiment in the run dir (``<storage>/confirm``) with a
fixed list of trial configs (`FixedListSearcher`), so ``--resume`` continues it like the search: finished
re-runs are kept, unfinished ones continue from their checkpoints. The plan (candidates and seeds) is
written to ``<run dir>/confirmation.json`` before any re-run starts and read back on resume. Each re-run
logs to its own MLflow run, nested in the sweep's ``confirmation`` run and tagged
``dense_reward.phase = confirmation``.
"""

from tune_jobs.confirm.outcome import LEVEL, CandidateResult, Confirmation, Interval, summarise, t_interval
from tune_jobs.confirm.phase import (
    CONFIRM_EXPERIMENT,
    FixedListSearcher,
    experiment_path,
    load_confirmation,
    run_confirmation,
)
from tune_jobs.confirm.plan import (
    BASELINE,
    BASELINE_LABEL,
    PLAN_FILE,
    Candidate,
    ConfirmationPlan,
    Rerun,
    check_config,
    fresh_seeds,
    make_plan,
)

__all__ = [
    "BASELINE",
    "BASELINE_LABEL",
    "CONFIRM_EXPERIMENT",
    "LEVEL",
    "PLAN_FILE",
    "Candidate",
    "CandidateResult",
    "Confirmation",
    "ConfirmationPlan",
    "FixedListSearcher",
    "Interval",
    "Rerun",
    "check_config",
    "experiment_path",
    "fresh_seeds",
    "load_confirmation",
    "make_plan",
    "run_confirmation",
    "summarise",
    "t_interval",
]

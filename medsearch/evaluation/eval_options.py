"""`medsearch eval`'s options: the one home of every default, and the checks made before the store is read.

The CLI takes each flag's default from ``EvalOptions()``; the library takes an ``EvalOptions`` (or keyword
overrides of it). ``checked()`` refuses a bad value with one line naming the flag that fixes it. The checks
import the heads, solvers and k-NN modules when they run, so that the CLI, which reads the defaults at
start-up, starts without loading scikit-learn or FAISS.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import MedsearchError
from ..options import check_whole, is_real, workers_for

DEFAULT_HEADS = ("lr", "linear-svc", "svc-linear", "svc-rbf")  # the paper's four
SPLITS = ("auto", "official", "grouped", "paper")
# LinearSVC's solver cap (solvers): Newton steps with more images than dimensions, libsvm passes over
# the data with fewer; scikit-learn's LinearSVC default.
LINEAR_SVC_MAX_ITER = 1000
# Above these many training rows the heads are tuned (and the kernel SVCs also fitted) on a stratified
# subsample, stated in the results (approximation.py). Stores up to 15,000 rows (a 12,000-row training
# part) are evaluated exactly, as they always were.
MAX_TUNING_ROWS = 20_000
MAX_KERNEL_ROWS = 12_000  # solvers.routing.MAX_KERNEL_ROWS: up to here the kernel SVCs run on a precomputed kernel
MIN_LIMIT_ROWS = 100
MAX_FRACTION_SEEDS = 1000  # subsets per fraction: each one refits every method
MAX_N_BOOT = 1_000_000  # resamples; percentile CIs settle long before, and each one costs an AUC per method


@dataclass(frozen=True)
class EvalOptions:
    """Every option of `medsearch eval`, with its default.

    models: stored model keys, or fusions 'a+b' (empty or None: every model of the store).
    heads: classification heads (a tuple, or a comma-separated string); knn / retrieval: score those too.
    split: 'auto' | 'official' | 'grouped' | 'paper'; test_size: the holdout's test share; cv: K outer folds
    instead of one holdout; folds: tuning folds on each training part; seed: every split and the bootstrap.
    ks: retrieval cut-offs; knn_k: a fixed k for the vote (None: chosen on the tuning folds); knn_weights.
    n_boot: bootstrap resamples for CIs and deltas; reference: published figures to print beside ours.
    report_dir: the report folder (None: INDEX/reports/eval-<timestamp>); save_head: a head to save for
    `query --head`. scale: standardise features for the heads; C / linear_svc_loss: grid values (None: the
    paper's); linear_svc_max_iter: the LinearSVC solver's cap; n_jobs: workers (None: every usable core,
    more is clipped to them; fewer when the free memory would not hold them, said in the progress lines);
    progress: progress lines on stderr. max_tuning_rows / max_kernel_rows: above these many training rows,
    heads are tuned (kernel SVCs also fitted) on a stratified subsample of that size, stated in the results;
    exact: never (see approximation.py). train_fractions: label-efficiency curves, every method retrained on
    nested stratified subsets of these shares of the training part (a tuple, or a comma-separated string;
    empty: none), fraction_seeds subsets each (label_curves.py). where: conditions on the stored DICOM header
    fields ('ViewPosition=PA', 'Modality=CR,DX', 'Laterality!=L'; storage/header_filter.py): only the rows that
    meet them all are evaluated, chosen before the split.
    """

    models: tuple[str, ...] = ()
    heads: tuple[str, ...] = DEFAULT_HEADS
    knn: bool = True
    retrieval: bool = True
    split: str = "auto"
    test_size: float = 0.2
    cv: int | None = None
    folds: int = 5
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    knn_k: int | None = None
    knn_weights: str = "similarity"
    n_boot: int = 1000
    reference: str | None = None
    report_dir: str | Path | None = None
    save_head: str | None = None
    scale: bool = True
    C: tuple[float, ...] | None = None
    linear_svc_loss: tuple[str, ...] | None = None
    linear_svc_max_iter: int | None = LINEAR_SVC_MAX_ITER
    n_jobs: int | None = None
    progress: bool = True
    max_tuning_rows: int = MAX_TUNING_ROWS
    max_kernel_rows: int = MAX_KERNEL_ROWS
    exact: bool = False
    train_fractions: tuple[float, ...] | str = ()
    fraction_seeds: int = 5
    where: tuple[str, ...] = ()

    def checked(self) -> EvalOptions:
        """A copy with heads and ks as tuples (heads unique, in order), after checking every option."""
        ks = tuple(self.ks) if isinstance(self.ks, (list, tuple, range)) else self.ks
        heads = self.heads.split(",") if isinstance(self.heads, str) else self.heads
        heads = tuple(dict.fromkeys(h.strip() for h in heads if h.strip()))
        options = dataclasses.replace(self, heads=heads, ks=ks, train_fractions=_fractions(self.train_fractions))
        if options.train_fractions:
            check_whole("--fraction-seeds", options.fraction_seeds, 1, MAX_FRACTION_SEEDS)
            if options.cv is not None:
                raise MedsearchError("--train-fractions needs one train/test split (its test part is the same for "
                                     "every fraction); drop --cv")
            if not options.heads and not options.knn:
                raise MedsearchError("--train-fractions needs a method to retrain: give --heads or drop --no-knn")
        from ..storage.header_filter import parse_where

        parse_where(options.where)
        options._check_heads()
        options._check_numbers()
        options._check_grids()
        return options

    @property
    def workers(self) -> int:
        """Workers the grid search runs on (n_jobs clipped to the usable cores)."""
        return workers_for(self.n_jobs)

    def grids(self) -> dict[str, dict]:
        """Each head's short-name grid: the paper's, with --C and --linear-svc-loss applied."""
        from ..solvers.grid_search import head_grid

        return {name: head_grid(name, self.C, self.linear_svc_loss) for name in self.heads}

    def _check_heads(self) -> None:
        from .heads import get_head

        for name in self.heads:
            get_head(name)  # unknown head -> MedsearchError naming the choices
        if self.split not in SPLITS:
            raise MedsearchError(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        if self.cv is not None:
            check_whole("--cv", self.cv, 2)
            if self.split == "official":
                raise MedsearchError("--cv cannot be combined with --split official (its test rows are fixed)")

    def _check_numbers(self) -> None:
        from ..search.knn import WEIGHTS

        check_whole("--folds", self.folds, 2)
        if not is_real(self.test_size) or not 0.0 < self.test_size < 1.0:
            raise MedsearchError(f"--test-size must be a number between 0 and 1 (exclusive), got {self.test_size!r}")
        if not isinstance(self.ks, tuple) or not self.ks:
            raise MedsearchError(f"--ks needs a list of retrieval cut-offs (whole numbers of at least 1), got {self.ks!r}")
        for q in self.ks:
            check_whole("--ks", q, 1)
        if self.knn_k is not None:
            check_whole("--knn-k", self.knn_k, 1)
        check_whole("--n-boot", self.n_boot, 1, MAX_N_BOOT)
        check_whole("--seed", self.seed, 0, 2**32 - 1)
        if self.knn_weights not in WEIGHTS:
            raise MedsearchError(f"unknown --knn-weights {self.knn_weights!r}; use one of {', '.join(WEIGHTS)}")

    def _check_grids(self) -> None:
        from ..solvers.grid_search import MAX_ITER_LIMIT, check_C, check_losses
        from .heads import SAVABLE_HEADS

        check_C(self.C)
        check_losses(self.linear_svc_loss)
        if self.linear_svc_max_iter is not None:
            check_whole("--max-iter", self.linear_svc_max_iter, 1, MAX_ITER_LIMIT)
        if self.n_jobs is not None:
            check_whole("--jobs", self.n_jobs, 1)
        check_whole("--max-tuning-rows", self.max_tuning_rows, MIN_LIMIT_ROWS)
        check_whole("--max-kernel-rows", self.max_kernel_rows, MIN_LIMIT_ROWS)
        if not isinstance(self.exact, bool):
            raise MedsearchError(f"exact must be True or False (the --exact flag), got {self.exact!r}")
        if self.save_head and self.save_head not in SAVABLE_HEADS:
            raise MedsearchError(f"--save-head {self.save_head}: only {', '.join(SAVABLE_HEADS)} heads can be saved")
        if self.save_head and self.save_head not in self.heads:
            raise MedsearchError(f"--save-head {self.save_head} needs {self.save_head} among the evaluated --heads")


def _fractions(value) -> tuple[float, ...]:
    """--train-fractions as ascending unique floats, each in (0, 1]; a string is split at commas."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        items = [v.strip() if isinstance(v, str) else v for v in items]
    except TypeError:
        raise MedsearchError(f"--train-fractions needs comma-separated shares in (0, 1], got {value!r}") from None
    out = []
    for item in items:
        if isinstance(item, str) and not item:
            continue
        try:
            number = float(item) if not isinstance(item, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not 0.0 < number <= 1.0:  # NaN fails too
            raise MedsearchError(f"--train-fractions values must be shares of the training part in (0, 1], e.g. "
                                 f"0.01,0.1,1; got {item!r}")
        out.append(number)
    return tuple(sorted(set(out)))

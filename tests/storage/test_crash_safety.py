"""kill -9 during `medsearch index` at random moments: the store always opens, holds only complete rows,
and a re-run finishes with every row embedded exactly once and identical to an uninterrupted run."""
from ..conftest import needs_shared
from ..crash_harness import run_trials, symlink_subset

MODEL = "efficientnet-lite0"


def test_sigkill_then_resume_equals_clean_run(tmp_path):
    data = symlink_subset(needs_shared("breast-busi"), tmp_path / "busi", per_class=12)
    # small batches and frequent commits so kills land in journal writes and in store commits alike
    extra = ["--model", MODEL, "--batch-size", "4", "--commit-every", "0.2", "--resize", "96", "--crop", "96"]
    trials = run_trials(data, tmp_path, extra, MODEL, n_trials=3, seed=1)
    for t in trials:
        assert t.store_after_kill in ("absent", "ok"), t
        assert t.complete_rows_ok, t
        assert t.resumed_equal, t
    assert any(t.killed for t in trials)

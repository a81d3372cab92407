"""Fault injection: SIGKILL `medsearch index` at random moments, resume, compare with an uninterrupted run.

    .venv/bin/python benchmarks/bench_crash_safety.py --trials 24

Each trial: start `medsearch index` on a BUSI subset, kill -9 it at a uniformly random time within the clean
run's duration, check the store left behind (opens? rows marked embedded equal to the clean run's?), run the
same command again, and check the result: every row embedded exactly once, embeddings bit-identical."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.crash_harness import run_trials, symlink_subset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--per-class", type=int, default=16)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    extra = ["--model", args.model, "--batch-size", "4", "--commit-every", "0.5", "--resize", "128", "--crop", "128"]
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        data = symlink_subset(REPO.parent / "shared" / "data" / "breast-busi", Path(tmp) / "busi", args.per_class)
        t = time.perf_counter()
        trials = run_trials(data, Path(tmp), extra, args.model, args.trials, args.seed)
        seconds = time.perf_counter() - t
    n_rows = 3 * args.per_class
    print(f"# {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, {args.model}, {n_rows} images, "
          f"{args.trials} trials in {seconds:.0f} s")
    print(f"{'trial':>5} {'kill at s':>9} {'killed':>6} {'store after kill':>16} {'rows kept':>9} {'kept rows exact':>15} {'resumed == clean':>16}")
    for i, t in enumerate(trials):
        print(f"{i:>5} {t.kill_at:>9.2f} {str(t.killed):>6} {t.store_after_kill:>16} {t.rows_after_kill:>9} "
              f"{str(t.complete_rows_ok):>15} {str(t.resumed_equal):>16} {t.error[:60]}")
    killed = [t for t in trials if t.killed]
    ok = [t for t in trials if t.store_after_kill != "unreadable" and t.complete_rows_ok and t.resumed_equal]
    print(f"killed mid-run: {len(killed)}/{len(trials)}; killed with rows already committed: "
          f"{sum(1 for t in killed if 0 < t.rows_after_kill < n_rows)}; "
          f"store readable after every kill: {all(t.store_after_kill != 'unreadable' for t in trials)}; "
          f"trials passing every check: {len(ok)}/{len(trials)}")
    sys.exit(0 if len(ok) == len(trials) else 1)


if __name__ == "__main__":
    main()

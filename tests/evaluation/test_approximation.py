"""Stated approximations of `eval` on large training parts (approximation.py), their flags and progress lines.

Small limits force them on small stores: the result, the warnings and the report say what was done; below
the limits, and with --exact, the results are the exact ones.
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from medsearch.cli import main
from medsearch.evaluation import progress
from medsearch.evaluation.approximation import stratified_subsample
from medsearch.evaluation.eval_options import MAX_KERNEL_ROWS, EvalOptions
from medsearch.evaluation.evaluate import evaluate
from medsearch.solvers import routing

from ..conftest import QUICK, make_store, raises_one_line

N = 300  # rows; the holdout trains on 240


def _methods(result) -> dict:
    return result["models"]["m1"]["methods"]


def _aucs(result) -> dict:
    return {m: s.get("auc") for m, s in _methods(result).items()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("approx") / "s", "binary", n=N, dim=16, spread=3.0)


def test_limits_below_the_training_part_are_stated_in_the_result_and_warned(store, tmp_path):
    r = evaluate(store, report_dir=tmp_path / "rep", max_tuning_rows=120, max_kernel_rows=100, **QUICK).to_json()
    methods = _methods(r)
    for name in ("lr", "linear-svc", "svc-linear"):
        entry = methods[name]["approximation"]
        assert entry["applies_to"] == "tuning" and entry["rows"] == 120 and entry["of"] == 240
        assert "--max-tuning-rows" in entry["change_with"] and entry["why"]
    rbf = methods["svc-rbf"]["approximation"]
    assert (rbf["applies_to"], rbf["rows"], rbf["of"]) == ("kernel", 100, 240)
    assert methods["knn"]["approximation"]["applies_to"] == "knn"
    assert "approximation" not in methods["retrieval"]
    assert r["config"]["approximation_limits"] == {"max_tuning_rows": 120, "max_kernel_rows": 100, "exact": False}
    assert sum("stratified subsample" in w for w in r["warnings"]) == 5  # one per approximated method
    report = (tmp_path / "rep" / "results.md").read_text()
    assert "svc-rbf: tuned and fitted on a stratified subsample" in report
    assert all(0.5 < s["auc"] <= 1.0 for s in methods.values() if "auc" in s)


def test_below_the_limits_nothing_changes_and_exact_turns_them_off(store, tmp_path):
    default = evaluate(store, report_dir=tmp_path / "a", **QUICK).to_json()
    exact = evaluate(store, report_dir=tmp_path / "b", exact=True, **QUICK).to_json()
    forced_off = evaluate(store, report_dir=tmp_path / "c", exact=True, max_tuning_rows=120, max_kernel_rows=100,
                          **QUICK).to_json()
    assert not any("approximation" in s for s in _methods(default).values())
    assert "approximation_limits" not in default["config"]  # the JSON is today's
    assert _aucs(default) == _aucs(exact) == _aucs(forced_off)
    assert [s.get("params") for s in _methods(default).values()] == [s.get("params") for s in _methods(exact).values()]
    assert not any("approximation" in s for s in _methods(forced_off).values())
    assert forced_off["config"]["approximation_limits"]["exact"] is True


def test_tuning_subsample_refits_on_every_training_row(store, tmp_path, monkeypatch):
    import medsearch.evaluation.scoring as scoring

    seen = []
    real = scoring.search_heads

    def spy(names, X, y, task, **kwargs):
        seen.append((tuple(names), X.shape[0], None if kwargs.get("tune_rows") is None else len(kwargs["tune_rows"])))
        return real(names, X, y, task, **kwargs)

    monkeypatch.setattr(scoring, "search_heads", spy)
    evaluate(store, report_dir=tmp_path / "rep", max_tuning_rows=120, max_kernel_rows=100, **QUICK)
    assert seen == [(("lr", "linear-svc", "svc-linear"), 240, 120), (("svc-rbf",), 100, None)]


def test_stratified_subsample_keeps_class_shares_and_is_seeded():
    y = np.r_[np.zeros(700, int), np.ones(300, int)]
    rows = stratified_subsample(y, "binary", 100, seed=0)
    assert rows.size == 100 and np.all(np.diff(rows) > 0) and y[rows].sum() == 30
    assert np.array_equal(rows, stratified_subsample(y, "binary", 100, seed=0))
    assert np.array_equal(stratified_subsample(y, "binary", 5000, seed=0), np.arange(1000))


def test_default_kernel_limit_is_the_precomputed_kernel_limit():
    assert MAX_KERNEL_ROWS == routing.MAX_KERNEL_ROWS


@pytest.mark.parametrize("flag, value", [("max_tuning_rows", 5), ("max_kernel_rows", 0), ("max_tuning_rows", 1.5),
                                         ("max_kernel_rows", "big"), ("exact", "yes")])
def test_bad_limits_are_refused_in_one_line(flag, value):
    message = raises_one_line(lambda: EvalOptions(**{flag: value}).checked())
    assert ("--" + flag.replace("_", "-")) in message or "--exact" in message


def test_cli_flags_reach_the_options_and_bad_values_give_one_line(store, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["eval", "--index", str(store), "--max-kernel-rows", "3", "--quiet"])
    assert bad.exit_code != 0 and "--max-kernel-rows must be a whole number" in bad.output
    assert len([line for line in bad.output.splitlines() if line.strip()]) == 1
    ok = runner.invoke(main, ["eval", "--index", str(store), "--quiet", "--json", "--C", "1", "--n-boot", "50",
                              "--max-tuning-rows", "120", "--exact", "--report-dir", str(tmp_path / "rep")])
    assert ok.exit_code == 0, ok.output
    r = json.loads(ok.stdout)
    assert r["config"]["approximation_limits"] == {"max_tuning_rows": 120, "max_kernel_rows": MAX_KERNEL_ROWS,
                                                   "exact": True}


def test_progress_lines_inside_a_head_have_an_eta(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 0.0)
    evaluate(store, report_dir=tmp_path / "rep", **{**QUICK, "progress": True})
    err = capsys.readouterr().err
    search = [line for line in err.splitlines() if "grid search and refit:" in line]
    assert search and any("ETA" in line for line in search) and search[-1].endswith("done")
    assert any("knn: choosing k:" in line for line in err.splitlines())
    assert any("bootstrap (100 resamples):" in line for line in err.splitlines())
    units = [line.split(": ")[-1].split()[0] for line in search]
    assert units[-1].split("/")[0] == units[-1].split("/")[1]  # counted up to its total


def test_quiet_prints_no_progress(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 0.0)
    evaluate(store, report_dir=tmp_path / "rep", **QUICK)
    assert "ETA" not in capsys.readouterr().err

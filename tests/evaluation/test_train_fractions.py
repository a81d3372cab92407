"""`eval --train-fractions`: label-efficiency curves (subsets in fractions.py, points in label_curves.py, their
rendering in curve_report.py), on synthetic stores with one cheap head."""
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from medsearch.evaluation.curve_report import DPI, FIGSIZE
from medsearch.evaluation.eval_options import EvalOptions
from medsearch.evaluation.evaluate import RowsOf, evaluate
from medsearch.evaluation.label_curves import label_curves
from medsearch.evaluation.progress import EvalLog
from medsearch.evaluation.rounds import make_problem
from medsearch.storage.store import read_store
from medsearch.evaluation.fractions import MIN_UNITS, SubsetDrawer

from ..conftest import QUICK, make_store, raises_one_line, run_cli

FRACTIONS = (0.01, 0.1, 0.5, 1.0)


def _curves(tmp_path, task="binary", groups_of=0, seeds=2, **extra):
    store = make_store(tmp_path / "s", task, n=120, groups_of=groups_of, spread=3.0)
    return evaluate(store, heads=("lr",), retrieval=False, report_dir=tmp_path / "rep", train_fractions=FRACTIONS,
                    fraction_seeds=seeds, **{**QUICK, **extra}).to_json()


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_one_point_per_fraction_and_seed(tmp_path, task):
    r = _curves(tmp_path, task)
    curves = r["curves"]["m1"]
    assert r["config"]["train_fractions"] == list(FRACTIONS) and r["config"]["fraction_seeds"] == 2
    assert sorted((p["fraction"], p["seed"]) for p in curves["points"]) == \
        sorted((f, s) for f in FRACTIONS for s in range(2))
    assert sorted((b["fraction"], b["method"]) for b in curves["bands"]) == \
        sorted((f, m) for f in FRACTIONS for m in ("lr", "knn"))
    n_train = r["split"]["n_train"]
    sizes = [np.mean([p["n_train"] for p in curves["points"] if p["fraction"] == f]) for f in FRACTIONS]
    assert sizes == sorted(sizes) and sizes[-1] == n_train
    for b in curves["bands"]:
        if b["auc"] is not None:
            assert b["lo"] <= b["auc"] <= b["hi"] and b["n_seeds"] + len(b["not_computable"]) == 2
    assert curves["test_rows"] == r["models"]["m1"]["n_test"]


def test_fraction_one_is_the_normal_evaluation(tmp_path):
    r = _curves(tmp_path, "multiclass")
    full = [p for p in r["curves"]["m1"]["points"] if p["fraction"] == 1.0]
    methods = r["models"]["m1"]["methods"]
    for method in ("lr", "knn"):
        assert all(p["auc"][method] == methods[method]["auc"] for p in full)
    # eval takes fraction 1.0 from its main fit; refitted through the curves' own path it is the same
    options = EvalOptions(heads=("lr",), retrieval=False, train_fractions=(1.0,), fraction_seeds=1,
                          **QUICK).checked()
    data = read_store(tmp_path / "s")
    rows = data.models["m1"].usable()
    problem, _ = make_problem(data, rows, options, options.grids(), EvalLog(False))
    refit = label_curves(problem, "m1", RowsOf(data.models["m1"].embedding, rows)).points
    assert refit[0].n_train == r["split"]["n_train"] and refit[0].folds == options.folds
    for method in ("lr", "knn"):
        assert refit[0].auc[method] == pytest.approx(methods[method]["auc"], abs=1e-12)


def test_grouped_subsets_never_split_a_patient(tmp_path):
    rng = np.random.default_rng(1)
    groups = np.repeat([f"p{i}" for i in range(60)], rng.integers(1, 6, 60))
    y = (rng.random(groups.size) < 0.3).astype(int)
    drawer = SubsetDrawer(y, "binary", groups)
    for seed in range(3):
        for sub in drawer.subsets(FRACTIONS, seed):
            inside = set(groups[sub.positions])
            assert all(g in inside for g in groups[np.isin(groups, list(inside))])
            assert np.isin(groups, list(inside)).sum() == sub.positions.size
    r = _curves(tmp_path, "binary", groups_of=3)
    assert r["split"]["mode"] == "grouped"
    assert all(p["n_train"] == 3 * p["n_units"] for p in r["curves"]["m1"]["points"])  # whole patients of 3 rows


def test_subsets_are_stratified_nested_and_floored():
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=2000, p=[0.7, 0.25, 0.05])
    share = np.bincount(y) / y.size
    drawer = SubsetDrawer(y, "multiclass")
    for seed in range(3):
        fractions = (0.001, 0.05, 0.2, 0.5, 1.0)
        subsets = drawer.subsets(fractions, seed)
        for small, large in zip(subsets, subsets[1:]):
            assert np.isin(small.positions, large.positions).all()  # nested
        assert np.bincount(y[subsets[0].positions], minlength=3).min() >= MIN_UNITS  # a class floor at 0.1%
        for f, sub in zip(fractions[1:], subsets[1:]):
            assert sub.positions.size == round(f * y.size)  # rows are the units: the target exactly
            got = np.bincount(y[sub.positions], minlength=3) / sub.positions.size
            assert np.abs(got - share).max() < 0.02, got
        assert subsets[-1].positions.size == y.size
    assert not np.array_equal(drawer.subsets((0.2,), 0)[0].positions, drawer.subsets((0.2,), 1)[0].positions)


def test_multilabel_floor_keeps_every_label_on_both_sides():
    rng = np.random.default_rng(2)
    y = (rng.random((500, 4)) < [0.5, 0.2, 0.03, 0.97]).astype(np.int8)
    for sub in SubsetDrawer(y, "multilabel").subsets((0.005, 0.1), 0):
        positives = y[sub.positions].sum(axis=0)
        assert (positives >= MIN_UNITS).all() and (sub.positions.size - positives >= MIN_UNITS).all()


def test_a_point_that_cannot_be_computed_says_why(tmp_path):
    r = _curves(tmp_path, "binary", knn_k=20)  # 1% of 96 training rows holds fewer than 20
    points = r["curves"]["m1"]["points"]
    small = [p for p in points if p["fraction"] == 0.01]
    # only the k-NN vote refuses the subset; LR keeps its points
    assert all(set(p["auc"]) == {"lr"} and set(p["not_computable"]) == {"knn"} for p in small)
    assert all("--knn-k 20" in p["not_computable"]["knn"] for p in small)
    bands = {b["method"]: b for b in r["curves"]["m1"]["bands"] if b["fraction"] == 0.01}
    assert bands["knn"]["auc"] is None and bands["knn"]["n_seeds"] == 0 and len(bands["knn"]["not_computable"]) == 2
    assert bands["lr"]["auc"] is not None and bands["lr"]["n_seeds"] == 2
    assert all(p["not_computable"] == {} for p in points if p["fraction"] == 1.0)
    text = (tmp_path / "rep" / "results.md").read_text()
    assert "not computable" in text and "--knn-k 20" in text


@pytest.mark.parametrize("flags, named", [
    (dict(train_fractions="0,0.5"), "--train-fractions"), (dict(train_fractions="0.5,1.5"), "--train-fractions"),
    (dict(train_fractions="a"), "--train-fractions"), (dict(train_fractions=(0.1,), fraction_seeds=0), "--fraction-seeds"),
    (dict(train_fractions=(0.1,), cv=3), "--cv"), (dict(train_fractions=(0.1,), heads=(), knn=False), "--heads")])
def test_bad_flags_are_refused_in_one_line(tmp_path, flags, named):
    store = make_store(tmp_path / "s", "binary", n=60)
    assert named in raises_one_line(lambda: evaluate(store, report_dir=tmp_path / "rep", **{**QUICK, **flags}))
    assert not (tmp_path / "rep").exists()


def test_cli_sorts_fractions_and_writes_the_report_and_plot(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=120, spread=3.0)
    out = run_cli("eval", "--index", store, "--heads", "lr", "--C", "1", "--no-retrieval", "--n-boot", "50", "--quiet",
                  "--train-fractions", "1.0,0.05,0.5,0.05", "--fraction-seeds", "2", "--report-dir", tmp_path / "rep",
                  "--json")
    assert out.exit_code == 0, out.output
    r = json.loads(out.output)
    assert r["curves"]["m1"]["fractions"] == [0.05, 0.5, 1.0] and len(r["curves"]["m1"]["points"]) == 6
    rep = tmp_path / "rep"
    assert json.loads((rep / "results.json").read_text())["curves"] == r["curves"]
    assert "Label-efficiency curves: m1" in (rep / "results.md").read_text()
    assert len((rep / "curves.csv").read_text().splitlines()) == 1 + 6 * 2
    with Image.open(rep / "curves-m1.png") as image:
        assert image.format == "PNG" and image.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
        assert np.asarray(image.convert("L")).std() > 10  # drawn, not blank
    text = run_cli("eval", "--index", store, "--heads", "lr", "--C", "1", "--no-retrieval", "--quiet",
                   "--train-fractions", "0.5", "--fraction-seeds", "2", "--report-dir", tmp_path / "rep2")
    assert "m1 label-efficiency curves" in text.output and "50%" in text.output

    bad = run_cli("eval", "--index", store, "--train-fractions", "0.1,2")
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "--train-fractions" in bad.output


def test_a_new_head_joins_the_curves_without_special_cases(tmp_path, monkeypatch):
    """DVME (a head registered beside the paper's) is retrained per fraction like any other; its attention per
    encoder reaches the JSON and the report."""
    from medsearch.evaluation.dvme import DVMEClassifier
    from medsearch.evaluation.heads import ALL_HEADS
    from medsearch.evaluation.report import format_eval_results

    quick = dataclasses.replace(ALL_HEADS["dvme"], build=lambda: DVMEClassifier(lr=1e-2, max_epochs=20),
                                own_grid={"shared_dim": [8], "weight_decay": [1e-4]})
    monkeypatch.setitem(ALL_HEADS, "dvme", quick)
    store = make_store(tmp_path / "s", n=90, dim=8, spread=3.0, models=("m1", "m2"))
    r = evaluate(store, models=["m1+m2"], heads=("dvme",), knn=False, retrieval=False, report_dir=tmp_path / "rep",
                 train_fractions=(0.2, 1.0), fraction_seeds=1, **QUICK).to_json()
    points = r["curves"]["m1+m2"]["points"]
    assert [(p["fraction"], set(p["auc"])) for p in points] == [(0.2, {"dvme"}), (1.0, {"dvme"})]
    assert points[0]["auc"]["dvme"] > 0.5 and points[0]["n_train"] < points[1]["n_train"]
    attention = r["models"]["m1+m2"]["methods"]["dvme"]["attention"]
    assert attention["encoders"] == ["m1", "m2"]
    assert "DVME mean attention per encoder" in format_eval_results(r)

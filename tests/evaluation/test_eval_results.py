"""EvalResult: the dataclasses `evaluate` returns, and their JSON form (the keys and order of `eval --json`)."""
import json

import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.evaluation.eval_options import EvalOptions
from medsearch.evaluation.eval_results import Delta, EvalResult, MethodScores, ModelEvaluation, RetrievalScores, SplitInfo

from ..conftest import QUICK, make_store

TOP = ["format", "medsearch_version", "created", "index_dir", "store", "config", "split", "notes", "warnings",
       "reference", "models", "report_dir"]
METHOD = ["method", "label", "kind", "auc", "auc_ci", "accuracy", "precision", "recall", "f1", "n_test",
          "per_class_auc", "params", "cv_auc", "cv_results", "fit_seconds", "not_converged", "n_fits", "notes"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    store = make_store(root / "s", "multiclass", n=90, spread=12.0)
    options = EvalOptions(heads=("lr", "svc-rbf"), **QUICK)
    return evaluate(store, options, save_head="lr", report_dir=root / "rep"), root


def test_evaluate_takes_options_and_overrides(result):
    r, root = result
    assert isinstance(r, EvalResult) and r.config.heads == ["lr", "svc-rbf"] and r.config.n_boot == 100
    model = r.models["m1"]
    assert isinstance(model, ModelEvaluation) and isinstance(r.split, SplitInfo)
    assert isinstance(model.methods["lr"], MethodScores) and isinstance(model.methods["retrieval"], RetrievalScores)
    assert all(isinstance(d, Delta) and d.vs == model.best for d in model.deltas.values())
    assert model.saved_head == str(root / "s" / "heads" / "m1-lr.npz")


def test_json_keys_and_order(result):
    r, _ = result
    out = r.to_json()
    assert list(out) == TOP and out["format"] == "medsearch-eval/1"
    model = out["models"]["m1"]
    assert list(model) == ["n_train", "n_test", "methods", "best", "deltas", "provenance", "dim", "saved_head"]
    assert list(model["methods"]) == ["lr", "svc-rbf", "knn", "retrieval"]
    assert list(model["methods"]["lr"]) == METHOD
    assert list(model["methods"]["retrieval"]) == ["method", "label", "kind", "metrics", "fit_seconds"]
    assert list(next(iter(model["deltas"].values()))) == ["vs", "delta", "lo", "hi", "p_value", "n_boot"]
    assert list(out["split"]) == ["mode", "requested", "description", "cv", "seed", "grouped", "rounds", "n_train",
                                  "n_test"]
    assert list(out["split"]["rounds"][0]) == ["n_train", "n_test", "groups_in_both", "test_rows_with_a_training_copy",
                                               "train_rows", "test_rows"]
    assert json.loads(json.dumps(out)) == out  # plain JSON: no numpy values left


def test_saved_head_is_in_the_json_only_when_a_head_was_saved(result):
    r, _ = result
    model = r.models["m1"]
    model.saved_head = None
    try:
        assert "saved_head" not in r.to_json()["models"]["m1"]
    finally:
        model.saved_head = "kept"
    assert r.to_json()["models"]["m1"]["saved_head"] == "kept"

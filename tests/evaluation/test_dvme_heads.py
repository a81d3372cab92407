"""The mlp and dvme heads inside eval: registered heads with their own grids, saved as arrays and reloaded to
the same probabilities, scored on a fused store with a CI and the attention per encoder, refused on one model."""
import dataclasses
import json

import numpy as np
import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.evaluation.fusion import fuse
from medsearch.evaluation.dvme import DVMEClassifier
from medsearch.evaluation.heads import ALL_HEADS, fit_head, fused_grid, get_head, head_scores, load_head, save_head
from medsearch.evaluation.network_head import NETWORK_FORMAT, NetworkHead
from medsearch.evaluation.splits import cv_splits
from medsearch.solvers.routing import SKLEARN, route
from medsearch.storage.store import provenance, read_store

from ..conftest import QUICK, make_store, raises_one_line

pytestmark = pytest.mark.usefixtures("one_blas_thread")
FAST = {"lr": [1e-2], "max_epochs": [40]}  # small problems: a larger step, fewer epochs


def _fused(tmp_path, task="multiclass"):
    data = read_store(make_store(tmp_path / "s", task=task, n=120, dim=8, spread=3.0, models=("m1", "m2")))
    return data, fuse(data, "m1+m2")


def _fit(name, task, X, y, block_dims=None):
    grid = {**fused_grid(name, {"C": [1.0], **get_head(name).paper_grid()}, block_dims or (X.shape[1],)), **FAST}
    grid = {**grid, ("hidden_dim" if name == "mlp" else "shared_dim"): [16]}
    return fit_head(name, X, y, task, folds=cv_splits(y, task, n_splits=2, seed=0), grid=grid)


def test_network_heads_are_registered_with_their_own_grids_and_the_reference_solver():
    assert get_head("mlp").paper_grid() == {"hidden_dim": [32, 128], "weight_decay": [1e-4, 1e-2]}
    assert fused_grid("dvme", {"C": [1.0], "shared_dim": [32]}, (8, 8)) == {"shared_dim": [32], "block_dims": [(8, 8)]}
    assert route("dvme", "binary", 100, 120, 16) == SKLEARN and route("mlp", "multiclass", 10, 20, 4096) == SKLEARN


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_saved_dvme_and_mlp_heads_reproduce_their_probabilities(tmp_path, task):
    data, fused = _fused(tmp_path, task)
    X, y = np.asarray(fused.embedding), data.labels
    for name, key, X_, model in [("dvme", "m1+m2", X, fused), ("mlp", "m1", np.asarray(data.models["m1"].embedding),
                                                                data.models["m1"])]:
        estimator, params, _ = _fit(name, task, X_, y, (8, 8) if name == "dvme" else None)
        path = tmp_path / f"{name}-{task}.npz"
        save_head(path, estimator, name=name, task=task, classes=data.label_names, model_key=key,
                  encoder=provenance(model))
        head = load_head(path)
        assert isinstance(head, NetworkHead) and head.probabilities and head.block_dims == ((8, 8) if name == "dvme" else (8,))
        assert np.array_equal(head.scores(X_), head_scores(estimator, X_, task))
        predicted = estimator.predict(X_)
        assert np.array_equal(head.predict(X_), predicted if task == "multilabel" else
                              np.asarray(data.label_names)[predicted])
        assert head.mismatches(task=task, label_names=data.label_names, model_key=key, dim=X_.shape[1],
                               provenance=provenance(model)) == []
        with np.load(path, allow_pickle=False) as stored:
            assert json.loads(str(stored["metadata"]))["format"] == NETWORK_FORMAT
    other = {**provenance(fused), "parts": {**provenance(fused)["parts"], "m2": {"encoder": "resnet18"}}}
    assert any("of m2 were made with another encoder" in m for m in
               head.mismatches(task=task, label_names=data.label_names, model_key="m1+m2", dim=16, provenance=other)
               ) if isinstance(head, NetworkHead) and len(head.blocks) == 2 else True


def test_a_tampered_network_head_is_refused(tmp_path):
    data, fused = _fused(tmp_path)
    estimator, _, _ = _fit("dvme", "multiclass", np.asarray(fused.embedding), data.labels, (8, 8))
    path = tmp_path / "h.npz"
    save_head(path, estimator, name="dvme", task="multiclass", classes=data.label_names, model_key="m1+m2",
              encoder=provenance(fused))
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    for change in ({"net_out_bias": arrays["net_out_bias"][:2]}, {"net_proj1_weight": None},
                   {"metadata": np.array(json.dumps({**json.loads(str(arrays["metadata"])), "block_dims": [8, 9]}))}):
        bad = {**arrays, **change}
        with open(path, "wb") as fh:
            np.savez(fh, **{k: v for k, v in bad.items() if v is not None})
        assert "not a valid medsearch head file" in raises_one_line(lambda: load_head(path))


def test_eval_scores_dvme_on_a_fusion_with_its_ci_and_the_attention(tmp_path, monkeypatch):
    quick = dataclasses.replace(ALL_HEADS["dvme"], build=lambda: DVMEClassifier(lr=1e-2, max_epochs=40),
                                own_grid={"shared_dim": [16], "weight_decay": [1e-4, 1e-2]})
    monkeypatch.setitem(ALL_HEADS, "dvme", quick)
    store = make_store(tmp_path / "s", n=150, dim=8, spread=3.0, models=("m1", "m2"))
    r = evaluate(store, models=["m1+m2"], heads=("lr", "dvme"), knn=False, retrieval=False,
                 report_dir=tmp_path / "rep", **QUICK)
    dvme = r.models["m1+m2"].methods["dvme"]
    lo, hi = dvme.auc_ci
    assert dvme.label == "DVME" and lo <= dvme.auc <= hi and dvme.auc > 0.8
    assert set(dvme.params) == {"shared_dim", "weight_decay"}
    attention = dvme.attention
    assert attention["encoders"] == ["m1", "m2"] and abs(sum(attention["mean"]) - 1) < 1e-3
    assert set(attention["per_class"]) == {"a", "b", "c"}
    assert "dvme" in r.models["m1+m2"].deltas or r.models["m1+m2"].best == "dvme"


def test_dvme_on_a_single_model_is_refused_in_one_line(tmp_path):
    store = make_store(tmp_path / "s", n=60, dim=8, models=("m1", "m2"))
    message = raises_one_line(lambda: evaluate(store, models=["m1"], heads=("dvme",), report_dir=tmp_path / "r",
                                               **QUICK))
    assert "--model a+b" in message and "'m1'" in message

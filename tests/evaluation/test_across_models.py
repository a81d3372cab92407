"""Deltas across the models of one eval: single encoders and their fusion side by side, dvme on the fusion only,
every method paired with the best single-encoder method on the same test rows and bootstrap resamples."""
import dataclasses
import re

import pytest

from medsearch.evaluation.dvme import DVMEClassifier
from medsearch.evaluation.evaluate import evaluate
from medsearch.evaluation.heads import ALL_HEADS
from medsearch.evaluation.report import format_eval_results

from ..conftest import QUICK, make_store, raises_one_line

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture
def quick_dvme(monkeypatch):
    quick = dataclasses.replace(ALL_HEADS["dvme"], build=lambda: DVMEClassifier(lr=1e-2, max_epochs=40),
                                own_grid={"shared_dim": [16], "weight_decay": [1e-3]})
    monkeypatch.setitem(ALL_HEADS, "dvme", quick)


def test_singles_and_their_fusion_in_one_run_are_paired_against_the_best_single(tmp_path, quick_dvme):
    store = make_store(tmp_path / "s", n=150, dim=8, spread=3.0, models=("m1", "m2"))
    r = evaluate(store, models=["m1", "m2", "m1+m2"], heads=("lr", "dvme"), retrieval=False,
                 report_dir=tmp_path / "rep", **QUICK)
    assert set(r.models["m1"].methods) == set(r.models["m2"].methods) == {"lr", "knn"}
    assert set(r.models["m1+m2"].methods) == {"lr", "dvme", "knn"}
    across = r.across_models
    assert across.reference == "best single-encoder method"
    single_aucs = {(k, m): s.auc for k in ("m1", "m2") for m, s in r.models[k].methods.items()}
    ref_model, ref_method = across.vs.split(" ")
    assert single_aucs[ref_model, ref_method] == max(single_aucs.values()) == across.auc
    assert len(across.deltas) == 7 - 1 and "m1+m2 dvme" in across.deltas
    for name, d in across.deltas.items():
        model, method = name.split(" ")
        assert d.delta == pytest.approx(r.models[model].methods[method].auc - across.auc)
        assert d.lo <= d.delta <= d.hi and 0 <= d.p_value <= 1
    # pairing: a method of the reference's own model gets the delta that model's own table gives it
    own = r.models[ref_model]
    assert own.best == ref_method and own.deltas
    for method, d in own.deltas.items():
        same = across.deltas[f"{ref_model} {method}"]
        assert (same.delta, same.lo, same.hi, same.p_value) == (d.delta, d.lo, d.hi, d.p_value)
    text = format_eval_results(r)
    assert "deltas across models, against the best single-encoder method" in text
    assert re.search(r"\nm1\+m2 +DVME +[+-]\d\.\d{3} +\[", text) and "it ran on the fused models only" in text
    assert r.to_json()["across_models"]["vs"] == across.vs


def test_single_models_alone_are_compared_against_the_best_of_any(tmp_path):
    store = make_store(tmp_path / "s", n=120, dim=8, spread=3.0, models=("m1", "m2"))
    r = evaluate(store, models=["m1", "m2"], heads=("lr",), retrieval=False, report_dir=tmp_path / "rep", **QUICK)
    assert r.across_models.reference == "best method of any model" and len(r.across_models.deltas) == 3
    one = evaluate(store, models=["m1"], heads=("lr",), retrieval=False, report_dir=tmp_path / "one", **QUICK)
    assert one.across_models is None and "across_models" not in one.to_json()


def test_dvme_without_any_fused_model_is_refused_in_one_line(tmp_path):
    store = make_store(tmp_path / "s", n=60, dim=8, models=("m1", "m2"))
    message = raises_one_line(lambda: evaluate(store, models=["m1", "m2"], heads=("dvme",),
                                               report_dir=tmp_path / "r", **QUICK))
    assert "'m1', 'm2' are single models" in message and "--model a+b" in message

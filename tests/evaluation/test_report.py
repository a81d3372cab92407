"""The eval report folder: results.json / .csv / .md and ROC plots, and the terminal table."""
import csv
import json

import pytest
from PIL import Image

from medsearch.evaluation.evaluate import evaluate
from medsearch.evaluation.report import format_eval_results

from ..conftest import make_store

METHODS = ("LR", "SVC-rbf", "k-NN vote", "retrieval")


@pytest.fixture(scope="module", params=["binary", "multiclass", "multilabel"])
def report(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    store = make_store(root / "store", request.param, n=120, spread=2.0, models=("m1", "m2"))
    results = evaluate(store, heads=("lr", "svc-rbf"), C=(1.0,), n_boot=50, n_jobs=2, progress=False,
                       reference="HAM10000", report_dir=root / "report")
    return results, root / "report"


def test_files_exist_and_parse(report):
    results, folder = report
    assert results.report_dir == str(folder)
    assert json.loads((folder / "results.json").read_text()) == results.to_json()
    with open(folder / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["method"]) for r in rows] == [(m, x) for m in ("m1", "m2") for x in METHODS]
    assert all(float(r["auc"]) > 0.5 for r in rows if r["method"] != "retrieval")
    assert all(r["auc"] == "" and float(r["precision@k"]) > 0.5 for r in rows if r["method"] == "retrieval")


def test_markdown_has_one_row_per_model_and_method(report):
    _, folder = report
    main, across = (folder / "results.md").read_text().split("Paired bootstrap AUC deltas across models")
    table = [line for line in main.splitlines() if line.startswith("| m") and not line.startswith("| model")]
    assert [tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in table] == \
        [(m, x) for m in ("m1", "m2") for x in METHODS]
    paired = [line for line in across.splitlines() if line.startswith("| m") and not line.startswith("| model")]
    assert len(paired) == 2 * (len(METHODS) - 1) - 1  # each method with an AUC, of both models, but the reference


def test_roc_plots_are_valid_images(report):
    _, folder = report
    for model in ("m1", "m2"):
        with Image.open(folder / f"roc-{model}.png") as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] >= 500


def test_terminal_table(report):
    results, _ = report
    text = format_eval_results(results)
    assert text == format_eval_results(results.to_json())  # the dataclass or its JSON form
    assert "AUC [95% CI]" in text and "mAP@10" in text
    assert text.count("k-NN vote") >= 2 and "paired bootstrap AUC deltas" in text
    assert "not recorded" in text and "0.9586" in text  # the reference rows, nulls spelled out
    assert "train /" in text and "chosen settings" in text

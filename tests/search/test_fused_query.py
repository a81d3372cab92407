"""`query --head` with a head saved from a fused model (dvme): the query image is embedded by every part's
encoder and fused as the stored rows are, so a stored image gets the probabilities of its own stored row."""
import json

import numpy as np
import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.evaluation.fusion import fuse
from medsearch.evaluation.heads import load_head
from medsearch.ingest.indexing import index_dataset
from medsearch.storage.store import read_store

from ..conftest import FAST, cli_error_line, make_image, run_cli

FUSED = "mobilenet-v2+efficientnet-lite0"


@pytest.fixture(scope="module")
def fused_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("fused")
    for c, name in enumerate(["benign", "malignant", "normal"]):
        (base / "data" / name).mkdir(parents=True)
        for i in range(12):
            make_image(base / "data" / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    index_dataset(str(base / "data"), out=str(base / "idx"), models=("mobilenet-v2", "efficientnet-lite0"),
                  random_init=True, progress=False, **FAST)
    r = evaluate(base / "idx", models=["mobilenet-v2", FUSED], heads=("lr", "dvme"), knn=False, retrieval=False,
                 save_head="dvme", folds=3, n_boot=20, n_jobs=1, progress=False, report_dir=base / "rep")
    assert r.models["mobilenet-v2"].saved_head is None  # dvme is saved where it ran: the fused model only
    return base, r.models[FUSED].saved_head


def test_a_dvme_head_scores_a_stored_image_as_its_stored_fused_row(fused_store):
    base, head_path = fused_store
    image = base / "data" / "malignant" / "malignant_03.png"
    out = run_cli("query", image, "--index", base / "idx", "--model", "mobilenet-v2", "--head", head_path, "--json")
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)[0]
    probabilities = answer["head"]["probabilities"]
    assert answer["head"]["name"] == "dvme" and list(probabilities) == ["benign", "malignant", "normal"]
    data = read_store(base / "idx")
    row = data.ids.index("malignant/malignant_03.png")
    stored = load_head(head_path).predict_proba(fuse(data, FUSED).embedding[row:row + 1])[0]
    assert np.allclose(list(probabilities.values()), stored, atol=2e-3)
    assert answer["neighbours"] and all(n["row"] != row for n in answer["neighbours"])


def test_a_dvme_head_on_a_store_without_its_parts_is_refused_in_one_line(fused_store, tmp_path):
    base, head_path = fused_store
    make_image(tmp_path / "q.png", 1, seed=7)
    for name in ("a", "b"):
        (tmp_path / "other" / name).mkdir(parents=True)
        for i in range(6):
            make_image(tmp_path / "other" / name / f"{i}.png", i % 2, seed=i)
    index_dataset(str(tmp_path / "other"), out=str(tmp_path / "idx"), models=("mobilenet-v2",), random_init=True,
                  progress=False, **FAST)
    line = cli_error_line(run_cli("query", tmp_path / "q.png", "--index", tmp_path / "idx", "--head", head_path))
    assert f"fused model '{FUSED}'" in line and "no model 'efficientnet-lite0'" in line

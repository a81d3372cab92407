"""`medsearch query`: saved heads applied only to the store they were trained for, the vote's memory, and
one line per item in the text output whatever the file and label names hold."""
import json
import os
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.ingest.indexing import index_dataset
from medsearch.cli.query import format_query_results
from medsearch.search.query import labelled_vote_shares, query
from medsearch.search.query_results import HeadOutput, QueryResult
from medsearch.errors import MedsearchError
from medsearch.evaluation.heads import SAVE_FORMAT
from medsearch.storage.store import StoreData, read_store

from ..conftest import FAST, cli_error_line, make_image, run_cli

MODEL = dict(models=("mobilenet-v2",), random_init=True, progress=False, **FAST)


def _folders(root, names, per_class=12):
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            make_image(root / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return root


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A 3-class store (benign, malignant, normal) with an lr head saved from it, and a binary store (0, 1),
    both embedded by the same random-init mobilenet-v2 under the same model key."""
    base = tmp_path_factory.mktemp("stores")
    three = _folders(base / "busi", ["benign", "malignant", "normal"])
    binary = _folders(base / "bin", ["0", "1"])
    index_dataset(str(three), out=str(base / "idx3"), **MODEL)
    index_dataset(str(binary), out=str(base / "idx2"), **MODEL)
    r = evaluate(base / "idx3", heads=("lr",), knn=False, retrieval=False, save_head="lr", folds=3, C=(1.0,),
                 n_boot=50, n_jobs=1, progress=False, report_dir=base / "rep")
    return {"three": three, "idx3": base / "idx3", "idx2": base / "idx2",
            "head": r.models["mobilenet-v2"].saved_head}


def test_head_of_a_store_with_other_classes_is_refused(stores):
    """Issue 12, defect 1: a 3-class head applied to a binary store gave `lr probabilities: 0 100%, 1 0%`."""
    img = stores["three"] / "benign" / "benign_00.png"
    out = cli_error_line(run_cli("query", img, "--index", stores["idx2"], "--head", stores["head"], "-k", "3"))
    assert "benign, malignant, normal" in out and "0, 1" in out and "multiclass" in out and "binary" in out
    assert f"--index {stores['idx2']} --save-head lr" in out
    ok = run_cli("query", img, "--index", stores["idx3"], "--head", stores["head"], "-k", "3")
    assert ok.exit_code == 0, ok.output
    line = next(x for x in ok.output.splitlines() if "lr probabilities:" in x)
    assert all(name in line for name in ("benign", "malignant", "normal"))
    as_json = json.loads(run_cli("query", img, "--index", stores["idx3"], "--head", stores["head"], "--json").output)
    probabilities = as_json[0]["head"]["probabilities"]
    assert list(probabilities) == ["benign", "malignant", "normal"] and sum(probabilities.values()) == pytest.approx(1, abs=1e-3)


def _rewrite(path, new_path, change):
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["metadata"]))
    change(meta, arrays)
    arrays["metadata"] = np.array(json.dumps(meta))
    with open(new_path, "wb") as fh:
        np.savez(fh, **arrays)
    return new_path


def test_head_of_an_older_format_is_refused(stores, tmp_path):
    """A head file of format 1 recorded neither the classes' order check nor the encoder: it cannot be trusted."""
    def old_format(meta, arrays):
        meta.clear()
        meta.update({"format": "medsearch-linear-head/1", "name": "lr", "task": "multiclass", "model_key": "mobilenet-v2",
                     "classes": ["benign", "malignant", "normal"], "n_features": int(arrays["coef"].shape[1])})

    old = _rewrite(stores["head"], tmp_path / "old.npz", old_format)
    img = stores["three"] / "benign" / "benign_00.png"
    out = cli_error_line(run_cli("query", img, "--index", stores["idx3"], "--head", old))
    assert "re-save it" in out and "medsearch-linear-head/1" in out and SAVE_FORMAT != "medsearch-linear-head/1"


def test_head_of_another_encoder_or_dimension_is_refused(stores, tmp_path):
    img = str(stores["three"] / "benign" / "benign_00.png")

    def other_preprocess(meta, arrays):
        meta["encoder"]["preprocess"] = {**meta["encoder"]["preprocess"], "crop": 224}

    head = _rewrite(stores["head"], tmp_path / "prep.npz", other_preprocess)
    with pytest.raises(MedsearchError, match="preprocess") as info:
        query([img], index_dir=str(stores["idx3"]), k=3, head=str(head))
    assert "\n" not in str(info.value)

    def other_weights(meta, arrays):
        meta["encoder"].update(weights_source="file:/w.pth", weights_sha256="ab" * 32)

    head = _rewrite(stores["head"], tmp_path / "w.npz", other_weights)
    with pytest.raises(MedsearchError, match="weights"):
        query([img], index_dir=str(stores["idx3"]), k=3, head=str(head))

    def narrower(meta, arrays):
        for key in ("coef", "scaler_mean", "scaler_scale"):
            arrays[key] = arrays[key][..., :1000]
        meta["embedding_dim"] = 1000
        meta["encoder"]["dim"] = 1000

    head = _rewrite(stores["head"], tmp_path / "dim.npz", narrower)
    with pytest.raises(MedsearchError, match="1000-dimensional") as info:
        query([img], index_dir=str(stores["idx3"]), k=3, head=str(head))
    assert "1280" in str(info.value)


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory):
    """A store whose class name and one file name hold a newline (and a tab, and an escape character)."""
    root = tmp_path_factory.mktemp("odd") / "data"
    _folders(root, ["benign", "mal\nignant"])
    evil = root / "benign" / "evil\nname\t\x1b[31m.png"
    make_image(evil, 0, seed=999)
    out = root.parent / "idx"
    index_dataset(str(root), out=str(out), **MODEL)
    return root, out, evil


def test_newlines_in_names_stay_on_one_line(odd_names):
    """Issue 12, defect 10: a newline in a file name split the one-line-per-neighbour output."""
    root, out, evil = odd_names
    k = 6
    res = run_cli("query", evil, "--index", out, "-k", k, "--include-self")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len(lines) == 3 + k, res.output  # query line, header, k neighbours, vote
    assert lines[0].startswith("query: ") and "evil\\nname\\t\\x1b[31m.png" in lines[0]
    assert "\x1b" not in res.output and "\t" not in res.output
    assert lines[2].split()[0] == "1" and lines[2].endswith("benign/evil\\nname\\t\\x1b[31m.png")
    assert all(line.split()[0] == str(rank) for rank, line in enumerate(lines[2:2 + k], 1))
    other = root / "mal\nignant" / "mal\nignant_00.png"
    res = run_cli("query", other, "--index", out, "-k", k, "--exclude-id", "benign/evil\nname\t\x1b[31m.png")
    lines = res.output.splitlines()
    assert res.exit_code == 0 and len(lines) == 3 + k, res.output
    assert "excluding benign/evil\\nname\\t\\x1b[31m.png" in lines[0]
    assert "mal\\nignant" in lines[-1] and lines[-1].startswith("  k-NN vote: ")
    assert any("mal\\nignant" in line for line in lines[2:2 + k])
    as_json = json.loads(run_cli("query", evil, "--index", out, "-k", k, "--include-self", "--json").output)[0]
    assert as_json["query"] == str(evil) and as_json["neighbours"][0]["source"] == "benign/evil\nname\t\x1b[31m.png"
    assert set(as_json["vote"]) == {"benign", "mal\nignant"}


def test_head_line_escapes_names():
    result = QueryResult(query="q\n.png", model="m", excluded_self=False, self_ids=[], excluded_ids=[], neighbours=[],
                         vote={"a\nb": 1.0}, head=HeadOutput("lr", probabilities={"a\nb": 0.9, "c": 0.1}))
    text = format_query_results([result])
    assert text.count("\n") == 4 and "a\\nb 90%" in text and "q\\n.png" in text
    scores = replace(result, head=HeadOutput("linear-svc", decision_scores={"x\ry": 1.5}))
    assert "x\\ry +1.50" in format_query_results([scores]) and format_query_results([scores]).count("\n") == 4


def test_vote_memory_does_not_grow_with_the_square_of_the_classes():
    """Issue 12, defect 8: np.eye(n_classes) per query took 2.7 GB at 15,000 classes."""
    C, k = 50_000, 10
    names = [f"c{i}" for i in range(C)]
    data = StoreData([f"r{i}" for i in range(k)], [f"r{i}" for i in range(k)], np.arange(0, 5 * k, 5, dtype=np.int64),
                     names, "multiclass")
    rows, sims = list(range(k)), list(np.linspace(0.9, 0.5, k))
    labelled_vote_shares(data, rows[:1], sims[:1], "uniform")  # warm-up
    tracemalloc.start()
    try:
        shares = labelled_vote_shares(data, rows, sims, "similarity")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    w = np.asarray(sims) + 1e-6
    assert shares["c0"] == round(w[0] / w.sum(), 4) and shares["c5"] == round(w[1] / w.sum(), 4)
    assert shares["c1"] == 0 and len(shares) == C


@pytest.mark.parametrize("options,flag", [({"k": 2.5}, "-k"), ({"k": 0}, "-k"), ({"weighting": "distance"}, "--weighting")])
def test_query_options_are_checked_before_the_store_is_read(tmp_path, options, flag):
    with pytest.raises(MedsearchError, match=flag) as info:
        query(["x.png"], index_dir=str(tmp_path / "no-store"), **options)
    assert "no medsearch store" not in str(info.value)


def test_an_approximate_index_says_how_approximate_and_exact_search_is_one_flag_away(folder_dataset, tmp_path):
    """Issue 14, item 4 (first part): the recall measured at build time travels with every answer."""
    out = tmp_path / "hnsw"
    index_dataset(str(folder_dataset), out=str(out), models=("mobilenet-v2",), random_init=True, progress=False,
                  index_type="HNSW32", **FAST)
    image = str(next((folder_dataset / "benign").iterdir()))
    [approx] = query([image], index_dir=str(out), k=5)
    assert not approx.search.exact and approx.search.factory == "IndexHNSWFlat"
    assert 0.0 <= approx.search.recall_at_10 <= 1.0 and set(approx.search.search_params) == {"efSearch"}
    assert "approximate search (HNSW32: IndexHNSWFlat, efSearch" in format_query_results([approx])
    [exact] = query([image], index_dir=str(out), k=5, exact=True)
    assert exact.search.exact and exact.search.recall_at_10 == 1.0
    assert "approximate search" not in format_query_results([exact])
    data = read_store(out)  # the exact answer is the brute-force cosine ranking of the stored vectors
    m = data.models["mobilenet-v2"]
    x = m.embedding / np.linalg.norm(m.embedding, axis=1, keepdims=True)
    own = data.ids.index(os.path.relpath(image, folder_dataset))
    ranking = [r for r in np.argsort(-(x @ x[own]), kind="stable") if r != own][:5]
    assert [n.row for n in exact.neighbours] == ranking
    result = run_cli("query", image, "--index", out, "-k", "5", "--exact", "--json")
    assert result.exit_code == 0 and json.loads(result.output)[0]["search"]["exact"] is True


def test_an_mlp_head_gives_probabilities_and_is_refused_on_other_classes(stores, tmp_path):
    """eval --save-head mlp: query --head prints the network head's class probabilities, checked like a linear
    head's against the store."""
    r = evaluate(stores["idx3"], heads=("mlp",), knn=False, retrieval=False, save_head="mlp", folds=3, n_boot=20,
                 n_jobs=1, progress=False, report_dir=tmp_path / "rep")
    head = r.models["mobilenet-v2"].saved_head
    img = stores["three"] / "malignant" / "malignant_03.png"
    as_json = json.loads(run_cli("query", img, "--index", stores["idx3"], "--head", head, "--json").output)
    probabilities = as_json[0]["head"]["probabilities"]
    assert as_json[0]["head"]["name"] == "mlp" and list(probabilities) == ["benign", "malignant", "normal"]
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-3)
    out = cli_error_line(run_cli("query", img, "--index", stores["idx2"], "--head", head, "-k", "3"))
    assert "benign, malignant, normal" in out and "--save-head mlp" in out

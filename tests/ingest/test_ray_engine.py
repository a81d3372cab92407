"""`medsearch index --engine ray` on one machine: Ray started locally (2 CPUs, a bounded object store) builds
the store the local engine builds, from real images; images named by file:// URIs are read where they are;
every misuse is refused in one line before any work. The cluster and crash cases are in test_ray_cluster.py."""
from __future__ import annotations

import csv
import hashlib
import json
import sys

import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.ingest.index_options import IndexOptions
from medsearch.storage.schema import EMBEDDED, SKIPPED
from medsearch.storage.store import read_store

from ..conftest import cli_error_line, needs_shared, run_cli
from .conftest import BUSI, busi_subset
from .ray_helpers import MODEL, assert_same_store, run_index

pytest.importorskip("ray")
SMALL = ("--resize", "72", "--crop", "64")


@pytest.fixture(scope="module")
def busi(tmp_path_factory):
    needs_shared("breast-busi")
    return busi_subset(tmp_path_factory.mktemp("ray") / "busi", 16)


@pytest.fixture(scope="module")
def local_store(busi, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "local"
    res = run_index(busi, out, *SMALL, "--batch-size", "8")
    assert res.returncode == 0, res.stderr
    return out


def test_local_ray_builds_the_store_the_local_engine_builds(busi, local_store, tmp_path):
    out = tmp_path / "ray"
    res = run_index(busi, out, *SMALL, "--batch-size", "8", "--engine", "ray", "--json")
    assert res.returncode == 0, res.stderr
    assert "ray: started on this machine" in res.stderr and "2 CPUs" in res.stderr
    summary = json.loads(res.stdout)["models"][MODEL]
    assert summary["embedded"] == summary["embedded_this_run"] == 48
    probes = [str(BUSI / "benign" / "benign (1).png"), str(BUSI / "normal" / "normal (3).png")]
    assert_same_store(local_store, out, probes)
    again = run_index(busi, out, *SMALL, "--batch-size", "8", "--engine", "ray", "--json")  # nothing left to do
    assert again.returncode == 0 and json.loads(again.stdout)["models"][MODEL]["embedded_this_run"] == 0


def test_images_given_as_file_uris_are_read_where_they_are(busi, tmp_path):
    """The manifest's image column holds file:// URIs of images outside the dataset folder (a shared file
    system); the store keeps each source as given and the sha256 of the bytes the worker read."""
    images = sorted((busi / "malignant").iterdir())[:6]
    ds = tmp_path / "uris"
    ds.mkdir()
    rows = [[p.resolve().as_uri(), "malignant" if i % 2 else "benign"] for i, p in enumerate(images)]
    rows.append(["file:///nowhere/gone.png", "benign"])
    rows.append(["http://example.org/x.png", "benign"])
    with open(ds / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "label"], *rows])
    for engine in ("ray", "local"):
        out = tmp_path / engine
        res = run_index(ds, out, *SMALL, "--engine", engine)
        assert res.returncode == 0, res.stderr
        data = read_store(out)
        assert data.sources == [r[0] for r in rows]
        m = data.models[MODEL]
        assert (m.state[:6] == EMBEDDED).all() and (m.state[6:] == SKIPPED).all()
        assert m.reason[6] == "file not found" and "scheme 'http' is not read" in m.reason[7]
        assert data.sha256[:6] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]
    a, b = read_store(tmp_path / "ray").models[MODEL], read_store(tmp_path / "local").models[MODEL]
    np.testing.assert_allclose(a.embedding[np.arange(6)], b.embedding[np.arange(6)], rtol=1e-4, atol=1e-4)


def test_a_plain_absolute_path_in_a_manifest_is_still_refused_with_the_uri_form(tmp_path):
    from medsearch.ingest.image_paths import resolve

    rel, why = resolve(tmp_path, tmp_path, "/etc/passwd", {})
    assert "absolute path" in why and "file:///" in why


@pytest.mark.parametrize("options, fragment", [
    (dict(ray_address="127.0.0.1:6379"), "add --engine ray"),
    (dict(gpus_per_worker=1.0), "add --engine ray"),
    (dict(engine="ray", gpus_per_worker=-1.0), "--gpus-per-worker must be a number >= 0"),
    (dict(engine="ray", device="cuda"), "use --gpus-per-worker"),
    (dict(engine="spark"), "unknown --engine 'spark'"),
    (dict(shards=0), "--shards must be a whole number >= 1"),
])
def test_engine_options_are_checked_before_any_work(options, fragment):
    with pytest.raises(MedsearchError, match=fragment.replace("(", r"\(")) as info:
        IndexOptions(**options).check()
    assert "\n" not in str(info.value)


def test_without_ray_installed_the_error_says_how_to_get_it(busi, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    res = run_cli("index", str(busi), "--out", str(tmp_path / "x"), "--model", MODEL, "--engine", "ray", "--quiet")
    cli_error_line(res, "--engine ray needs Ray", "pip install 'medsearch[ray]'")
    assert not (tmp_path / "x").exists()  # refused before any work


def test_an_unreachable_cluster_is_one_line(busi, tmp_path):
    res = run_index(busi, tmp_path / "x", *SMALL, "--engine", "ray", "--ray-address", "127.0.0.1:1", timeout=180)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("medsearch: error: cannot start or reach the Ray cluster at '127.0.0.1:1'"), last


def test_gpus_asked_of_a_cluster_without_gpus_is_one_line(busi, tmp_path):
    res = run_index(busi, tmp_path / "x", *SMALL, "--engine", "ray", "--gpus-per-worker", "1")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("medsearch: error: --gpus-per-worker 1.0 but the Ray cluster "
                                                          "has no GPU")


def test_a_worker_with_other_weights_is_refused():
    from types import SimpleNamespace

    from medsearch.ingest.ray_engine import _check_same_weights

    ours = SimpleNamespace(weights_sha256="a" * 64, weights_source="file:/w.pth")
    _check_same_weights({"weights_sha256": "a" * 64, "weights_source": "file:/elsewhere/w.pth"}, ours)
    with pytest.raises(MedsearchError, match="a Ray worker loaded other weights"):
        _check_same_weights({"weights_sha256": "b" * 64, "weights_source": "file:/w.pth"}, ours)


def test_cpu_actors_are_as_many_as_the_cores_the_memory_allows(capsys):
    """A node with many cores and little memory runs fewer actors (each holds a model and its batch's
    activations) rather than having Ray kill them for memory; each actor asks Ray for that memory."""
    from types import SimpleNamespace

    from medsearch.ingest.encoders import get_spec
    from medsearch.ingest.ray_engine import EncoderRecipe, _pipeline, actor_memory
    from medsearch.ingest.sources import RowSource

    calls = []

    class Data:
        def map(self, fn, **kwargs):
            calls.append(kwargs)
            return self

    per_actor = actor_memory(64, 224)
    items = [{"rows": list(range(64)), "sources": [], "missing": []}]
    recipe = EncoderRecipe(MODEL, None, False, get_spec(MODEL).preprocess)
    for memory, actors in ((10 * per_actor + 1, 10), (1000 * per_actor, 64), (per_actor // 2, 1)):
        fake = SimpleNamespace(cluster_resources=lambda m=memory: {"CPU": 64.0, "memory": float(m)},
                               data=SimpleNamespace(from_items=lambda *a, **k: Data(),
                                                    ActorPoolStrategy=lambda size: SimpleNamespace(size=size)))
        _pipeline(fake, items, RowSource("/x"), recipe, "skip", 0.0, first=True)
        assert calls[-1]["compute"].size == actors and calls[-1]["memory"] == per_actor
    assert "memory allows 10 CPU actors" in capsys.readouterr().err


def test_decoding_in_tasks_ahead_of_the_actors_gives_the_same_batches(busi, local_store, monkeypatch):
    """The GPU layout (CPU tasks decode, actors only encode) run on CPUs: no GPU here, but the stage that feeds
    GPU actors, and the decoded batches it hands them through Ray's object store, are the same code. The work
    is cut into pipelines of 2 batches, as a long run's is into pipelines of PIPELINE_BATCHES."""
    import ray

    import medsearch.ingest.ray_engine as ray_engine

    monkeypatch.setattr(ray_engine, "PIPELINE_BATCHES", 2)

    from medsearch.ingest.datasets import scan
    from medsearch.ingest.encoders import get_spec, load_encoder, preprocess_with
    from medsearch.ingest.ray_engine import EncoderRecipe, ray_embed_rows, ray_session

    ds = scan(str(busi))
    preprocess = preprocess_with(get_spec(MODEL).preprocess, resize=72, crop=64)
    encoder = load_encoder(MODEL, preprocess=preprocess)
    want = read_store(local_store)
    ray.init(address="local", num_cpus=4, object_store_memory=100 << 20, include_dashboard=False, log_to_driver=False)
    try:
        with ray_session(None):  # the running Ray is used, not another one started
            batches = list(ray_embed_rows(ds.row_source(), lambda r: (ds.sources[r], ""), np.arange(len(ds)), encoder,
                                          EncoderRecipe(MODEL, None, False, preprocess), batch_size=8,
                                          on_missing="skip", gpus_per_worker=0.0, progress=False, desc="x",
                                          decode_tasks=True))
    finally:
        ray.shutdown()
    rows = np.concatenate([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(len(ds))) and all(len(b.rows) == 8 for b in batches)
    got = np.zeros((len(ds), encoder.dim), np.float32)
    for b in batches:
        got[b.rows] = b.embedding
    order = [want.ids.index(i) for i in ds.ids]
    np.testing.assert_allclose(got, want.models[MODEL].embedding[np.asarray(order)], rtol=1e-4, atol=1e-4)


def test_while_ray_runs_its_prints_go_to_stderr_so_json_output_stays_clean(capsys):
    """Ray prints cluster events (a node marked dead) to stdout from its own threads; `index --json` prints
    its summary on stdout once Ray is gone."""
    import threading

    import ray

    from medsearch.ingest.ray_engine import ray_session

    ray.init(address="local", num_cpus=1, object_store_memory=80 << 20, include_dashboard=False, log_to_driver=False)
    try:
        with ray_session(None):
            t = threading.Thread(target=print, args=("(raylet) The node ... has been marked dead",))
            t.start()
            t.join()
    finally:
        ray.shutdown()
    out = capsys.readouterr()
    assert "marked dead" in out.err and out.out == ""

"""Behaviour pinned end to end: `index`, `query --json`, `info --json` and `eval --json` on the bundled BreastMNIST
demo file, compared with the outputs captured in tests/golden/demo.json (apart from timestamps, timings and the
temporary paths). It guards refactors that must not change what users get (issue 13's restructuring).

Re-capture only when a change of behaviour is intended, and say so in the commit:
    MEDSEARCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden.py
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from medsearch.cli import main
from medsearch.demo import demo_file
from medsearch.ingest.images import array_to_image

GOLDEN = Path(__file__).parent / "golden" / "demo.json"
REPO = str(Path(__file__).resolve().parents[1])
# Keys whose values are clocks, durations, machine facts, library versions or the FAISS file's checksum (its
# bytes follow float noise of the forward pass), not behaviour.
VOLATILE = {"created", "updated", "index_built", "built", "sha256", "seconds", "images_per_second", "fit_seconds", "n_jobs",
            "medsearch_version", "versions", "library_versions", "torch", "torchvision", "timm", "open_clip",
            "numpy", "faiss", "sklearn", "scikit-learn", "python", "seconds_per_fit", "wall_seconds"}
FLOAT_TOL = 1e-4


def _normal(obj, tmp: str):
    """Comparable copy: volatile keys dropped, the temporary folder and the checkout replaced by <TMP> / <REPO>."""
    if isinstance(obj, dict):
        return {k: _normal(v, tmp) for k, v in obj.items() if k not in VOLATILE and not k.endswith("_seconds")}
    if isinstance(obj, list):
        return [_normal(v, tmp) for v in obj]
    if isinstance(obj, str):
        return obj.replace(tmp, "<TMP>").replace(REPO, "<REPO>")
    return obj


def _run(*args) -> dict | list:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _capture(tmp_path) -> dict:
    out = tmp_path / "store"
    npz = demo_file("breastmnist")
    with np.load(npz, allow_pickle=False) as z:
        array_to_image(z["test_images"][0]).save(tmp_path / "query.png")
    tmp = str(tmp_path)
    return _normal({
        "index": _run("index", npz, "--out", out, "--model", "efficientnet-lite0", "--quiet", "--json"),
        "query": _run("query", tmp_path / "query.png", "--index", out, "-k", "10", "--exclude-id", "test/0", "--json"),
        "info": _run("info", out, "--json"),
        "eval": _run("eval", "--index", out, "--quiet", "--json", "--heads", "lr,linear-svc,svc-linear,svc-rbf",
                     "--C", "0.1,1", "--n-boot", "200", "--jobs", "2", "--report-dir", tmp_path / "report"),
    }, tmp)


def _diff(want, got, where="") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}/{k}: missing" for k in want if k not in got]
        out += [f"{where}/{k}: new" for k in got if k not in want]
        return out + [d for k in want if k in got for d in _diff(want[k], got[k], f"{where}/{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} items, now {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in _diff(a, b, f"{where}[{i}]")]
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(want, bool) \
                and math.isclose(want, got, rel_tol=FLOAT_TOL, abs_tol=FLOAT_TOL):
            return []
    elif want == got:
        return []
    return [f"{where}: {json.dumps(want)[:80]} -> {json.dumps(got)[:80]}"]


@pytest.mark.slow
def test_demo_outputs_equal_the_golden_capture(tmp_path):
    got = _capture(tmp_path)
    if os.environ.get("MEDSEARCH_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    differences = _diff(want, got)
    assert not differences, "\n".join(differences[:30])

"""`medsearch index --engine ray --ray-address` on a two-node Ray cluster started on this machine (a head and a
worker node, each `ray start` in its own processes): it builds the store the local engine builds, and when
the worker node is killed with SIGKILL mid-run and then the driver too, the restarted driver ends with every
row embedded exactly once: nothing committed is embedded again, nothing is lost."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store

from ..conftest import REPO, needs_shared
from .conftest import BUSI, busi_subset
from .ray_helpers import MODEL, RAY_ENV, RayNodes, assert_same_store, index_cmd, run_index

pytest.importorskip("ray")
SETTINGS = ("--resize", "144", "--crop", "128", "--batch-size", "4")
PROBES = [str(BUSI / "malignant" / "malignant (2).png"), str(BUSI / "benign" / "benign (5).png")]


@pytest.fixture(scope="module")
def busi(tmp_path_factory):
    needs_shared("breast-busi")
    return busi_subset(tmp_path_factory.mktemp("cluster") / "busi", 60)


@pytest.fixture(scope="module")
def reference(busi, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster") / "local"
    res = run_index(busi, out, *SETTINGS)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def cluster():
    nodes = RayNodes()
    try:
        head = nodes.start(head=True, cpus=1)
        worker = nodes.start(head=False, cpus=1)
        yield nodes, head, worker
    finally:
        nodes.stop()


def test_a_two_node_cluster_builds_the_store_the_local_engine_builds(busi, reference, cluster, tmp_path):
    nodes, _, _ = cluster
    out = tmp_path / "ray"
    res = run_index(busi, out, *SETTINGS, "--engine", "ray", "--ray-address", nodes.address)
    assert res.returncode == 0, res.stderr
    assert f"ray: connected to {nodes.address}" in res.stderr and "2 node(s), 2 CPUs" in res.stderr
    assert_same_store(reference, out, PROBES)


def _embedded(out) -> int:
    try:
        return int((read_store(out).models[MODEL].state == EMBEDDED).sum())
    except (MedsearchError, KeyError):  # not written yet
        return 0


def _wait(driver, out, more_than: int, what: str, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _embedded(out)
        if done > more_than:
            return done
        assert driver.poll() is None, f"the driver ended before {what}: {driver.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError(f"no progress within {timeout} s {what}")


def test_worker_node_then_driver_killed_every_row_embedded_exactly_once(busi, reference, cluster, tmp_path):
    nodes, _, worker = cluster
    out = tmp_path / "ray"
    n = 180
    driver = subprocess.Popen(index_cmd(busi, out, *SETTINGS, "--engine", "ray", "--ray-address", nodes.address,
                                        "--commit-every", "0"),
                              cwd=REPO, env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        at_node_kill = _wait(driver, out, 0, "the first commit")
        RayNodes.kill(worker)  # SIGKILL to the worker node's raylet, object store and workers at once
        after = _wait(driver, out, at_node_kill + 8, "after the worker node died")
        assert driver.poll() is None
        driver.kill()  # SIGKILL: the driver, the store's single writer, dies mid-run
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    committed = _embedded(out)
    assert 0 < at_node_kill < after <= committed < n  # killed mid-run, after progress without the worker node
    res = run_index(busi, out, *SETTINGS, "--engine", "ray", "--ray-address", nodes.address, "--json")
    assert res.returncode == 0, res.stderr
    already = int(re.search(rf"{MODEL}: (\d+) rows already stored, embedding (\d+)", res.stderr).group(1))
    summary = json.loads(res.stdout)["models"][MODEL]
    assert already >= committed  # every committed row (and every journaled one) is kept, not embedded again
    assert already + summary["embedded_this_run"] == n and summary["embedded"] == n
    assert_same_store(reference, out, PROBES)  # every row once, each with the embedding of its own image
    assert np.isin(read_store(out).ids, read_store(reference).ids).all()


def test_the_whole_cluster_killed_mid_run_loses_nothing_committed(busi, reference, cluster, tmp_path):
    """Every node SIGKILLed at once: the driver ends (Ray stops it once the cluster's control store is gone;
    here after 5 s instead of Ray's default 60), the store opens with what was committed, and the same command
    on a new cluster finishes the job."""
    nodes, _, _ = cluster
    out = tmp_path / "ray"
    env = {**os.environ, **RAY_ENV, "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}
    driver = subprocess.Popen(index_cmd(busi, out, *SETTINGS, "--engine", "ray", "--ray-address", nodes.address,
                                        "--commit-every", "0"),
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(driver, out, 0, "the first commit")
        nodes.stop()
        assert driver.wait(timeout=120) != 0
    finally:
        if driver.poll() is None:
            driver.kill()
    committed = _embedded(out)
    assert 0 < committed < 180
    again = RayNodes()
    try:
        again.start(head=True, cpus=2)
        res = run_index(busi, out, *SETTINGS, "--engine", "ray", "--ray-address", again.address, "--json")
    finally:
        again.stop()
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["models"][MODEL]["embedded_this_run"] <= 180 - committed
    assert_same_store(reference, out, PROBES)

"""Shared by the Ray engine tests: `medsearch index` in a child process, a
Ray cluster of separate node processes on this machine, and the comparison of two stores."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medsearch.search.query import query
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store


REPO = Path(__file__).resolve().parents[2]
MODEL = "efficientnet-lite0"
# Ray's token authentication needs a token file shared by every node and driver; these nodes live and die
# within one test, on one machine.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
OBJECT_STORE = str(100 << 20)


def index_cmd(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medsearch", "index", str(dataset), "--out", str(out), "--model", MODEL,
            "--quiet", *extra]


def run_index(dataset: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(index_cmd(dataset, out, *extra), cwd=REPO, env={**os.environ, **RAY_ENV},
                          capture_output=True, text=True, timeout=timeout)


def assert_same_store(a_dir: Path, b_dir: Path, probes: list[str]) -> None:
    """Same rows, same states, embeddings equal within float tolerance, same neighbours for ``probes``."""
    a, b = read_store(a_dir), read_store(b_dir)
    assert a.ids == b.ids and a.sources == b.sources and a.sha256 == b.sha256
    ma, mb = a.models[MODEL], b.models[MODEL]
    assert (ma.state == mb.state).all() and (ma.state == EMBEDDED).all()
    ea, eb = ma.embedding[np.arange(len(a))], mb.embedding[np.arange(len(b))]
    np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=1e-4)
    assert len({(e.tobytes()) for e in eb}) == len(b)  # every row its own embedding: no row written twice over another
    for ra, rb in zip(query(probes, index_dir=str(a_dir), k=5), query(probes, index_dir=str(b_dir), k=5)):
        assert [n.id for n in ra.neighbours] == [n.id for n in rb.neighbours]
        np.testing.assert_allclose([n.similarity for n in ra.neighbours], [n.similarity for n in rb.neighbours],
                                   atol=2e-4)  # similarities are reported to 4 decimals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    """A Ray cluster of a head and worker nodes, each `ray start --block` in its own process group, so that
    one node can be killed whole with SIGKILL."""

    def __init__(self):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def start(self, *, head: bool, cpus: int) -> subprocess.Popen:
        ray = Path(sys.executable).with_name("ray")
        where = ["--head", "--port", str(self.port), "--include-dashboard", "false"] if head else \
            ["--address", self.address]
        node = subprocess.Popen([str(ray), "start", *where, "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                                 "--object-store-memory", OBJECT_STORE, "--disable-usage-stats", "--block"],
                                env={**os.environ, **RAY_ENV}, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.nodes.append(node)
        self.wait_for(len(self.nodes))
        return node

    def wait_for(self, alive: int, timeout: float = 240) -> None:
        """Until ``alive`` nodes are up: the head's port answers, then a probe driver counts the live nodes (a
        busy machine can make either slow; each try is bounded, the whole wait too)."""
        script = ("import ray; ray.init(address='%s', log_to_driver=False, logging_level='ERROR'); "
                  "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                out = subprocess.run([sys.executable, "-c", script], env={**os.environ, **RAY_ENV},
                                     capture_output=True, text=True, timeout=60)
                if out.returncode == 0 and out.stdout.strip().endswith(str(alive)):
                    return
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(1)
        raise AssertionError(f"the Ray cluster at {self.address} did not reach {alive} live nodes")

    @staticmethod
    def kill(node: subprocess.Popen) -> None:
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait(timeout=30)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.kill(node)

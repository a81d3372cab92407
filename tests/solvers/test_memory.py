"""The grid search's memory: workers chosen from the free memory, and no float64 copy of float32 input."""
import numpy as np
import pytest

from medsearch.evaluation.splits import cv_splits
from medsearch.solvers import fast, memory
from medsearch.solvers.grid_search import search_heads
from medsearch.solvers.memory import RESERVE_FRACTION, WORKER_BASE_BYTES, memory_workers
from medsearch.solvers.primal import PrimalLinearSVC, primal_linear_kernel_svc
from medsearch.solvers.units import make_folds

pytestmark = pytest.mark.usefixtures("one_blas_thread")
GB = 10**9


def test_workers_are_as_many_as_the_free_memory_holds():
    per = GB  # threads: only the units' own memory counts
    assert memory_workers(4, per, processes=False, available=100 * GB)[0] == 4
    assert memory_workers(4, per, processes=False, available=int(2.5 * GB / (1 - RESERVE_FRACTION)))[0] == 2
    assert memory_workers(4, per, processes=False, available=GB // 10)[0] == 1  # never fewer than one
    # a worker process also holds its interpreter
    room = int(2 * (per + WORKER_BASE_BYTES) / (1 - RESERVE_FRACTION)) + 1
    assert memory_workers(4, per, processes=True, available=room)[0] == 2
    assert memory_workers(4, per, processes=False, available=room)[0] == 2 + (room * (1 - RESERVE_FRACTION) >= 3 * per)


def test_the_reason_is_stated(monkeypatch):
    workers, why = memory_workers(2, 3 * GB, processes=True, available=4 * GB)
    assert workers == 1
    assert why.startswith("1 worker processes (4.0 GB available, about 3.3 GB each; 2 would not fit")
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    assert memory_workers(2, 1, processes=False) == (2, "2 worker threads (free memory unknown)")


def test_available_memory_is_read_on_linux():
    free = memory.available_memory()
    assert free is None or free > 0


def _problem(n=600, d=40, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    X = (rng.normal(size=(n, d)) + 0.4 * y[:, None] * rng.normal(size=d)).astype(np.float32)
    return X, y


@pytest.mark.parametrize("make", [lambda: PrimalLinearSVC(C=1.0), lambda: PrimalLinearSVC(C=10.0, loss="hinge"),
                                  lambda: primal_linear_kernel_svc(C=1.0)])
def test_primal_solver_takes_float32_as_it_is_with_the_float64_answer(make):
    X, y = _problem()
    a, b = make().fit(X, y), make().fit(X.astype(np.float64), y)
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
    assert a.n_iter_ == b.n_iter_


def test_search_logs_its_workers_and_fewer_workers_give_the_same_search(monkeypatch):
    X, y = _problem()
    folds = cv_splits(y, "binary", n_splits=3, seed=0)
    lines = []
    many = search_heads(["linear-svc", "lr"], X, y, "binary", folds=folds, n_jobs=2, log=lines.append)
    assert lines and "worker" in lines[0] and "available" in lines[0]
    monkeypatch.setattr(fast, "memory_workers", lambda n_jobs, per, processes: (1, "1 worker (forced)"))
    one = search_heads(["linear-svc", "lr"], X, y, "binary", folds=folds, n_jobs=2)
    for name in many:
        assert many[name].params == one[name].params and many[name].cv_results == one[name].cv_results


def test_unit_memory_grows_with_the_fold():
    X, y = _problem()
    small, big = (make_folds(X[:n], y[:n], [(np.arange(n // 2), np.arange(n // 2, n))], True)[0] for n in (200, 600))
    for kind, args in (("primal", lambda f: ("linear-svc", [], "binary", f, None)),
                       ("kernel", lambda f: ({}, "binary", {}, f, None)),
                       ("plain", lambda f: ("lr", "binary", {}, f))):
        sizes = [fast.unit_bytes(fast._Unit(kind, None, 0, None, args(f))) for f in (small, big)]
        assert 0 < sizes[0] < sizes[1]


def test_workers_released_before_large_refits_are_started_again_by_the_next_search():
    X, y = _problem()
    folds = cv_splits(y, "binary", n_splits=3, seed=0)
    first = search_heads(["linear-svc"], X, y, "binary", folds=folds, n_jobs=2)
    fast.release_workers()
    fast.release_workers()  # nothing left to stop
    again = search_heads(["linear-svc"], X, y, "binary", folds=folds, n_jobs=2)
    assert first["linear-svc"].cv_results == again["linear-svc"].cv_results


@pytest.mark.parametrize("name", ["svc-rbf", "svc-linear"])
def test_kernel_svc_scores_new_rows_by_blocks(name, monkeypatch):
    """One block gives exactly the scores of the whole kernel; smaller blocks the same to rounding."""
    from medsearch.solvers import kernels
    from medsearch.solvers.kernels import KernelSVC, rbf, sq_distances, sq_norms

    X, y = _problem()
    new = np.random.default_rng(1).normal(size=(301, X.shape[1])).astype(np.float32)
    est = KernelSVC(name=name, C=1.0).fit(X, y)
    A, B = new.astype(np.float64), X.astype(np.float64)
    whole = A @ B.T if name == "svc-linear" else rbf(sq_distances(A @ B.T, sq_norms(A), sq_norms(B)), est.gamma_)
    assert np.array_equal(est.decision_function(new), est.svc_.decision_function(whole))
    assert np.array_equal(est.predict(new), est.svc_.predict(whole))
    monkeypatch.setattr(kernels, "KERNEL_BLOCK_BYTES", 8 * X.shape[0] * 40)  # 40 rows a block
    assert np.allclose(est.decision_function(new), est.svc_.decision_function(whole), rtol=0, atol=1e-10)
    assert est.decision_function(new[:1]).shape == (1,)

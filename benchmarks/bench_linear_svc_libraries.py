"""Hand-written LinearSVC solvers against libraries, on the same problems, in one process.

For one-vs-rest labels of a store (train/test split: by group when the store has groups, else stratified;
seeded), each C and both losses: our primal Newton solvers as eval runs them (warm-started path, the CV
unit; and the cold refit at one C, PrimalLinearSVC), our dual (libsvm on the Gram matrix, DualLinearSVC)
when the training part is small, scikit-learn's LinearSVC (dual=False / True; dual='auto' resolves to one
of them), liblinear-official and liblinear-multicore (2.50), skglm, cyanure and snapml where installed.
Every solver gets the same problem, liblinear's: standardised embeddings (scaler fitted on the training
part), the intercept as a regularised weight with intercept_scaling 1,
    f(w) = 1/2 |w~|^2 + C sum_i loss(1 - y_i w~.[x_i, 1]),
(libraries without that option get [x, 1] with fit_intercept=False, which is the same problem). The
objective is computed here from each solver's coef/intercept (lower is better; 'excess' is relative to the
best any solver reached); test AUC from the decision values on the held-out part; 'x path' and 'x refit'
are seconds over ours in the same process (> 1: ours faster). Our solvers run with one BLAS thread (as in
eval's workers); libraries with a thread option get --threads.

    python benchmarks/bench_linear_svc_libraries.py STORE [--model efficientnet-lite0] [--labels 1|all]
        [--C 0.1,1,10,100] [--test-size 0.2] [--threads 2] [--solvers a,b] [--quick]
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import time
import warnings
from pathlib import Path
from queue import Empty

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsearch.solvers.dual import DualLinearSVC  # noqa: E402
from medsearch.solvers.primal import (PrimalLinearSVC, augmented, hinge_start_from_squared,  # noqa: E402
                                      solve_hinge, solve_squared_hinge)
from medsearch.storage.schema import EMBEDDED  # noqa: E402
from medsearch.storage.store import read_store  # noqa: E402

LOSSES = ("squared_hinge", "hinge")
# run in this process, without a time limit: ours, liblinear-multicore and snapml, whose threads deadlock
# in a forked child (an OpenMP runtime is already loaded here, e.g. by faiss)
IN_PROCESS = ("ours", "ll-multicore", "snapml")
OFFICIAL_DIR = "/tmp/bench-llofficial"  # liblinear-official installed with pip --target (its module is also 'liblinear')


def objective(Xa, y, C, w, loss) -> float:
    slack = np.maximum(0.0, 1.0 - y * (Xa @ w))
    return 0.5 * float(w @ w) + C * float((slack if loss == "hinge" else slack ** 2).sum())


# ---- solvers: each returns w over [x, 1] (d + 1) and a note ------------------------------------------


def sklearn_linear_svc(dual):
    def fit(P, C, loss):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = LinearSVC(C=C, loss=loss, dual=dual, max_iter=1000, random_state=0).fit(P.X, P.y)
        stopped = any("converge" in str(w.message) for w in caught)
        return np.r_[m.coef_[0], m.intercept_[0]], f"{m.n_iter_} it" + (" cap" if stopped else "")
    return fit


def liblinear_module(official: bool):
    """liblinearutil of liblinear-multicore (installed) or liblinear-official (under OFFICIAL_DIR, loaded as
    package 'liblinear_official', since both call their package 'liblinear')."""
    if not official:
        from liblinear import liblinearutil
        return liblinearutil
    spec = importlib.util.spec_from_file_location("liblinear_official", f"{OFFICIAL_DIR}/liblinear/__init__.py",
                                                  submodule_search_locations=[f"{OFFICIAL_DIR}/liblinear"])
    package = importlib.util.module_from_spec(spec)
    sys.modules["liblinear_official"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("liblinear_official.liblinearutil")


def liblinear(official: bool, solver: int, threads: int):
    util = liblinear_module(official)

    def prepare(P):  # the problem is built once per label, outside the timing (like a reused problem)
        if P.problem.get(official) is None:
            P.problem[official] = util.problem(P.y, P.X)

    def fit(P, C, loss):
        prepare(P)
        opts = f"-s {solver} -c {C:g} -B 1 -q" + (f" -m {threads}" if threads > 1 else "")
        model = util.train(P.problem[official], opts)
        w, b = model.get_decfun()
        sign = 1.0 if model.get_labels()[0] == 1 else -1.0
        return sign * np.r_[w, b], ""
    fit.prepare = prepare
    return fit


def skglm_svc(P, C, loss):
    from skglm import LinearSVC as SkglmSVC
    m = SkglmSVC(C=C, fit_intercept=False).fit(P.Xa, P.y)
    return np.ravel(m.coef_), f"{m.n_iter_} it"


def cyanure_svc(threads):
    def fit(P, C, loss):
        from cyanure.estimators import LinearSVC as CyanureSVC
        m = CyanureSVC(loss="sqhinge", penalty="l2", fit_intercept=False, lambda_1=1.0 / (C * P.Xa.shape[0]),
                       n_threads=threads, verbose=False)  # its objective is f / (C n)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.fit(P.Xa, P.y)
        return np.ravel(m.coef_), "cap" if any("max_iter" in str(w.message) for w in caught) else ""
    return fit


def snapml_svc(threads):
    def fit(P, C, loss):
        from snapml import SupportVectorMachine
        m = SupportVectorMachine(regularizer=1.0 / C, fit_intercept=False, n_jobs=threads, max_iter=1000)
        m.fit(P.Xa, P.y)
        return np.ravel(m.coef_), ""
    return fit


def ours_refit(P, C, loss):
    with threadpool_limits(1):
        m = PrimalLinearSVC(C=C, loss=loss, max_iter=1000).fit(P.X, P.y)
    return np.r_[m.coef_[0], m.intercept_[0]], "" if m.converged_ else "not converged"


def ours_dual(P, C, loss):
    with threadpool_limits(1):
        m = DualLinearSVC(C=C, loss=loss, max_iter=1000).fit(P.X, P.y)
    return np.r_[m.coef_[0], m.intercept_[0]], "" if m.converged_ else "cap"


def library_solvers(threads: int) -> dict:
    """name -> (losses, fit); libraries that do not import are left out (with a note)."""
    out = {
        "ours-refit": (LOSSES, ours_refit),
        "ours-dual": (LOSSES, ours_dual),
        "sk dual=False": (("squared_hinge",), sklearn_linear_svc(False)),
        "sk dual=True": (LOSSES, sklearn_linear_svc(True)),
    }
    optional = {
        "ll-official -s2": (("squared_hinge",), lambda: liblinear(True, 2, 1)),
        f"ll-multicore -s2 -m{threads}": (("squared_hinge",), lambda: liblinear(False, 2, threads)),
        f"ll-multicore -s1 -m{threads}": (("squared_hinge",), lambda: liblinear(False, 1, threads)),
        f"ll-multicore -s3 -m{threads}": (("hinge",), lambda: liblinear(False, 3, threads)),
        "skglm": (("hinge",), lambda: skglm_svc),
        f"cyanure t{threads}": (("squared_hinge",), lambda: cyanure_svc(threads)),  # its LinearSVC: no hinge
        f"snapml j{threads}": (("hinge",), lambda: snapml_svc(threads)),
    }
    for name, (losses, make) in optional.items():
        try:
            out[name] = (losses, make())
        except ImportError as e:
            print(f"# {name}: not installed ({e})")
    return out


# ---- the run -----------------------------------------------------------------------------------


class Problem:
    """One one-vs-rest label: standardised train/test parts, {-1, +1} targets, [x, 1] copies."""

    def __init__(self, X, Xt, labels, labels_t):
        self.X, self.Xt = X, Xt
        self.y = np.where(labels > 0, 1.0, -1.0)
        self.yt = np.where(labels_t > 0, 1.0, -1.0)
        self.Xa, self.Xat = augmented(X), augmented(Xt)
        self.problem = {}


def ours_path(P, Cs):
    """Eval's CV unit for one problem: the squared hinge along Cs (each C warm-starting the next), then the
    hinge along Cs, its first C started from the squared hinge's solution there. {(loss, C): (w, s, note)}."""
    out, Xa32 = {}, P.Xa.astype(np.float32)
    with threadpool_limits(1):
        t = time.perf_counter()
        gram = P.Xa.T @ P.Xa
        setup = time.perf_counter() - t
        w = None
        for C in Cs:
            t = time.perf_counter()
            w, ok = solve_squared_hinge(P.Xa, P.y, C, w0=w, gram=gram, Xa32=Xa32, max_newton=1000)
            out["squared_hinge", C] = (w, time.perf_counter() - t + setup, "" if ok else "not converged")
            setup = 0.0
        start = hinge_start_from_squared(P.Xa, P.y, Cs[0], out["squared_hinge", Cs[0]][0])
        for C in Cs:
            t = time.perf_counter()
            w, alpha, ok = solve_hinge(P.Xa, P.y, C, w0=start[0], alpha0=start[1], Xa32=Xa32, max_newton=1000)
            out["hinge", C] = (w, time.perf_counter() - t, "" if ok else "not converged")
            start = (w, alpha)
    return out


def split(data, labels, test_size, seed):
    rows = np.arange(labels.shape[0])
    if data.groups is not None:
        splitter, kw = GroupShuffleSplit(1, test_size=test_size, random_state=seed), {"groups": np.asarray(data.groups)}
    elif labels.ndim == 1:
        splitter, kw = StratifiedShuffleSplit(1, test_size=test_size, random_state=seed), {"y": labels}
    else:
        splitter, kw = ShuffleSplit(1, test_size=test_size, random_state=seed), {}
    train, test = next(splitter.split(rows, **kw))
    return train, test


def warm_up(solvers) -> None:
    """JIT compilation (numba in skglm and liblinear's loader) outside the timings."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    P = Problem(X, X, (X[:, 0] > 0).astype(int), (X[:, 0] > 0).astype(int))
    for name, (losses, fit) in solvers.items():
        if hasattr(fit, "prepare"):
            fit.prepare(P)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit(P, 1.0, losses[0])


def _child(fit, P, C, loss, queue) -> None:
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w, note = fit(P, C, loss)
    queue.put((time.perf_counter() - t, w, note))


def timed_fit(fit, P, C, loss, timeout):
    """(seconds, w, note): the fit in a forked process, stopped after ``timeout`` seconds (w None then;
    None: no limit)."""
    if timeout is None:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, note = fit(P, C, loss)
        return time.perf_counter() - t, w, note
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(fit, P, C, loss, queue))
    child.start()
    try:
        return queue.get(timeout=timeout)
    except Empty:
        return timeout, None, f"stopped after {timeout:g} s"
    finally:
        child.kill()
        child.join()


def run_label(P, Cs, solvers, name, timeout):
    rows = []
    for (loss, C), (w, s, note) in ours_path(P, Cs).items():
        rows.append((loss, C, "ours-path", s, w, note))
    for fit in dict.fromkeys(fit for _, fit in solvers.values()):
        getattr(fit, "prepare", lambda P: None)(P)
    for loss in LOSSES:
        stopped = set()
        for C in Cs:  # ascending: a solver stopped at one C is not run at the larger ones
            for solver, (losses, fit) in solvers.items():
                if loss not in losses or solver in stopped:
                    continue
                s, w, note = timed_fit(fit, P, C, loss, None if solver.startswith(IN_PROCESS) else timeout)
                if w is None:
                    stopped.add(solver)
                rows.append((loss, C, solver, s, w, note))
                print(f"# {name} {loss} C={C:g} {solver}: {s:.2f} s {note}", file=sys.stderr, flush=True)
    print(f"\n## label {name!r}: {P.X.shape[0]} train x {P.X.shape[1]} ({int((P.y > 0).sum())} positive), "
          f"{P.Xt.shape[0]} test")
    print(f"{'loss':<13} {'C':>5} {'solver':<21} {'seconds':>8} {'x path':>7} {'x refit':>7} {'objective':>12} "
          f"{'excess':>8} {'test AUC':>8}  note")
    summary = []
    for loss in LOSSES:
        for C in Cs:
            group = [r for r in rows if r[0] == loss and r[1] == C]
            objs = {r[2]: objective(P.Xa, P.y, C, r[4], loss) if r[4] is not None else np.nan for r in group}
            best = np.nanmin(list(objs.values()))
            secs = {r[2]: r[3] for r in group}
            for _, _, solver, s, w, note in group:
                auc = roc_auc_score(P.yt, P.Xat @ w) if w is not None else np.nan
                excess = objs[solver] / best - 1.0
                print(f"{loss:<13} {C:>5g} {solver:<21} {s:>8.2f} {s / secs['ours-path']:>7.2f} "
                      f"{s / secs.get('ours-refit', np.nan):>7.2f} {objs[solver]:>12.6g} {excess:>8.1e} {auc:>8.4f}  {note}",
                      flush=True)
                summary.append((loss, solver, C, s, excess, auc))
    return summary


def print_summary(summary) -> None:
    print("\n## summary over labels and C: total seconds, worst objective excess, mean test AUC")
    print(f"{'loss':<13} {'solver':<21} {'seconds':>8} {'x path':>7} {'worst excess':>12} {'mean AUC':>8}")
    for loss in LOSSES:
        base = sum(r[3] for r in summary if r[0] == loss and r[1] == "ours-path")
        for solver in dict.fromkeys(r[1] for r in summary if r[0] == loss):
            part = [r for r in summary if r[0] == loss and r[1] == solver]
            s = sum(r[3] for r in part)
            print(f"{loss:<13} {solver:<21} {s:>8.1f} {s / base:>7.2f} {np.nanmax([r[4] for r in part]):>12.1e} "
                  f"{np.nanmean([r[5] for r in part]):>8.4f}" + ("  (some C stopped)" if any(np.isnan(r[4]) for r in part) else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--labels", default="1", help="label columns / classes, comma-separated, or 'all'")
    ap.add_argument("--C", default="0.1,1,10,100")
    ap.add_argument("--test-size", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="threads of the libraries that have the option")
    ap.add_argument("--solvers", default="", help="comma-separated solver names to run besides ours-path (default all)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a library fit may take (it is stopped "
                    "after, and not run at larger C)")
    ap.add_argument("--rows", type=int, default=0, help="use the first N training rows (0: all)")
    ap.add_argument("--quick", action="store_true", help="C in {0.1, 10}, 2000 training rows at most")
    args = ap.parse_args()
    Cs = [0.1, 10.0] if args.quick else [float(c) for c in args.C.split(",")]
    rows = args.rows or (2000 if args.quick else 0)
    data = read_store(args.store)
    model = data.models[args.model]
    keep = np.flatnonzero(model.state == EMBEDDED)
    X, labels = model.embedding[keep].astype(np.float64), data.labels[keep]
    if data.groups is not None:
        data.groups = [data.groups[i] for i in keep]
    train, test = split(data, labels, args.test_size, args.seed)
    if rows:
        train = train[:rows]
    scaler = StandardScaler().fit(X[train])
    Xtr, Xte = scaler.transform(X[train]), scaler.transform(X[test])
    n_labels = labels.shape[1] if labels.ndim == 2 else len(data.label_names)
    which = range(n_labels) if args.labels == "all" else [int(k) for k in args.labels.split(",")]
    solvers = library_solvers(args.threads)
    if args.solvers:
        wanted = set(args.solvers.split(","))
        solvers = {k: v for k, v in solvers.items() if k in wanted or k == "ours-refit"}
    elif Xtr.shape[0] > 2 * Xtr.shape[1]:  # eval uses the dual only up to as many rows as dimensions
        solvers.pop("ours-dual")
    print(f"# {args.store} {args.model}: {X.shape[0]} x {X.shape[1]}, task {data.task}, split "
          f"{'by group' if data.groups is not None else 'stratified'} (test {args.test_size}, seed {args.seed}), "
          f"C {Cs}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# solvers: ours-path, {', '.join(solvers)}; dual='auto' with more rows than features resolves to "
          f"dual=False for the squared hinge and dual=True for the hinge (scikit-learn's rule), so it is not run twice")
    warm_up(solvers)
    summary = []
    for k in which:
        lab = labels[:, k] if labels.ndim == 2 else (labels == k).astype(int)
        P = Problem(Xtr, Xte, lab[train], lab[test])
        summary += run_label(P, Cs, solvers, data.label_names[k], args.timeout)
    print_summary(summary)


if __name__ == "__main__":
    main()

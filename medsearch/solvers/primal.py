"""LinearSVC's problems solved in the primal by Newton's method with exact line search (both losses).

scikit-learn's LinearSVC(loss='squared_hinge') solves, per one-vs-rest problem with labels y in {-1, +1},
    min_w f(w) = 1/2 |w|^2 + C sum_i max(0, 1 - y_i w.x~_i)^2,   x~ = [x, s] (the bias is a regularised weight).
On dense embeddings with more images than dimensions liblinear's solvers run out of their pass budget here
still short of the optimum. f is piecewise quadratic, so Newton's method with an exact line search ends
in a few steps (Keerthi & DeCoste 2005, "A modified finite Newton method for fast solution of large scale
linear SVMs"): with A = {i : y_i w.x~_i < 1}, the step solves (I + 2C X~_A'X~_A) p = -grad f(w). With at
most a few thousand dimensions that matrix is formed (in float32; the gradient, which decides convergence,
stays float64) and Cholesky-factored directly; between steps only the rows that enter or leave A change
it, so it is updated by those rows, and while they are few the last factor is reused through the Woodbury
identity (_NewtonSystem); the first step from w = 0, where every row is in A, uses X~'X~, which is computed
once for all problems and all C. Solutions at one C warm-start the next. The result is
liblinear's optimum to the gradient tolerance (tests compare the two).

The hinge loss is not smooth; solve_hinge (below) runs an augmented Lagrangian whose inner problems are
piecewise quadratic again (semismooth Newton; Yan & Li 2020, "An efficient augmented Lagrangian method for
support vector machine"), and stops on a certified duality gap, where liblinear's coordinate descent on
the same data stops at its pass cap still short of the optimum.

SVC(kernel='linear') (binary, multilabel) is the hinge problem with a free bias; primal_linear_kernel_svc
solves it as the hinge problem with the bias column scaled by FREE_BIAS_SCALING (see there).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve, lu_factor, lu_solve, solve

from .dual import DualLinearSVC, constant_score

GRAD_TOL = 1e-6  # stop when |grad f(w)| <= GRAD_TOL * |grad f(0)|
# A squared-hinge step shorter than this (exact Newton on a piecewise quadratic takes t near 1 unless it
# crosses kinks) means the float32-tracked Hessian has drifted too far for 2C: the next step rebuilds it in
# float64. Without this rebuild Newton can sit at t = 0 until the step cap (seen on real embeddings).
STALL_STEP = 1e-3
WOODBURY_ROWS = 64  # see _NewtonSystem


def augmented(X, intercept_scaling: float = 1.0) -> np.ndarray:
    """X~ = [X, s] as float64: the bias as one more (regularised) weight, as liblinear treats it."""
    Xa = np.empty((X.shape[0], X.shape[1] + 1))
    Xa[:, :-1] = X
    Xa[:, -1] = intercept_scaling
    return Xa


def _minimise_along(slope) -> float:
    """The t >= 0 where a convex piecewise-quadratic function of t has its minimum, given ``slope(t)`` ->
    (first, second derivative). Safeguarded Newton on the (piecewise linear, increasing) first derivative
    inside a bracket; each step costs one slope evaluation, O(n)."""
    lo, hi = 0.0, 1.0
    while slope(hi)[0] < 0:  # still descending at t = hi: widen the bracket
        lo, hi = hi, 2.0 * hi
    t = hi if lo > 0 else 1.0
    for _ in range(100):
        d1, d2 = slope(t)
        if d1 == 0:
            return t
        lo, hi = (t, hi) if d1 < 0 else (lo, t)
        if hi - lo <= 1e-13 * hi:
            break
        step = t - d1 / d2 if d2 > 0 else 0.5 * (lo + hi)
        t = step if lo < step < hi else 0.5 * (lo + hi)
    return t


def _step_length(w, p, z, dz, y, C) -> float:
    """The exact minimiser t >= 0 of f(w + t p); z = X~w, dz = X~p."""
    wp, pp = float(w @ p), float(p @ p)
    yz, ydz = y * z, y * dz

    def slope(t):
        gap = 1.0 - (yz + t * ydz)
        on = gap > 0
        return wp + t * pp - 2.0 * C * float(ydz[on] @ gap[on]), pp + 2.0 * C * float(ydz[on] @ ydz[on])

    return _minimise_along(slope)


def _outer(rows: np.ndarray, sign=None) -> np.ndarray:
    weighted = rows if sign is None else rows * sign[:, None].astype(rows.dtype)
    return (rows.T @ weighted).astype(np.float64)


def _newton_direction(scale: float, H: np.ndarray, g: np.ndarray, exact_rows, exact: bool = False,
                      float64: bool = False) -> tuple[np.ndarray, tuple | None]:
    """-(I + scale H)^-1 g. H is kept by float32 rank updates, so it is float32-accurate anyway: the matrix
    is factored in float32 (cheaper than float64) and the solve refined once against I + scale H in
    float64, as long as the float32 solve is good to 10% (else the matrix is too ill-conditioned for
    float32, as at large penalties, and it is factored in float64; ``float64`` skips the float32 attempt).
    ``exact`` (after a stalled step: the float32 errors in H itself, magnified by a large scale, can make the
    direction useless) rebuilds H in float64 from ``exact_rows()`` (in place) and factors in float64; so does
    a matrix that rounding made lose definiteness, and as a last resort the system is solved by a symmetric
    indefinite factorisation. Returns (direction, the Cholesky factor used (float32 or float64) or None)."""
    if exact:
        H[...] = _outer(exact_rows())
    elif not float64:
        M = np.multiply(H, scale, dtype=np.float32)
        M.flat[::M.shape[0] + 1] += 1.0
        try:
            factor = cho_factor(M, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            pass
        else:
            p = -cho_solve(factor, g.astype(np.float32), check_finite=False).astype(np.float64)
            residual = -g - p - scale * (H @ p)
            if np.linalg.norm(residual) <= 0.1 * np.linalg.norm(g):
                return p + cho_solve(factor, residual.astype(np.float32), check_finite=False), factor
    return _float64_direction(scale, H, g, exact_rows)


def _float64_direction(scale, H, g, exact_rows) -> tuple[np.ndarray, tuple | None]:
    eye = np.eye(H.shape[0])
    for attempt in range(2):
        try:
            factor = cho_factor(eye + scale * H, check_finite=False)
            return -cho_solve(factor, g, check_finite=False), factor
        except np.linalg.LinAlgError:
            if attempt == 0:
                H[...] = _outer(exact_rows())
    return -solve(eye + scale * H, g, assume_a="sym", check_finite=False), None


class _NewtonSystem:
    """Newton directions -(I + scale X~_M'X~_M)^-1 g for one solve, where the row set M (the active rows, or
    the band) changes by a few rows per step.

    H = X~_M'X~_M is kept by float32 rank updates, brought up to date (by the rows that joined or left M, or
    rebuilt when more changed than M holds; ``full`` = X~'X~ when M is every row) only when a matrix is to be
    factored. The Cholesky factor of the last matrix factored (float32, or float64) is reused while the scale
    is unchanged and at most WOODBURY_ROWS rows differ from its M: the direction then comes from it by the
    Woodbury identity (triangular solves for those rows instead of a d^3/3 factorisation), refined once
    against the current matrix in float64 like a fresh factor's direction (see _newton_direction).
    """

    def __init__(self, Xa: np.ndarray, Xa32: np.ndarray, full: np.ndarray | None = None, float64: bool = False):
        self.Xa, self.Xa32, self.full, self.float64 = Xa, Xa32, full, float64
        self.H = self.mask = self.factor = self.scale = None

    def direction(self, scale: float, g: np.ndarray, mask: np.ndarray, exact: bool = False) -> np.ndarray:
        changed = None if self.mask is None else np.flatnonzero(mask != self.mask)
        if self.factor is not None and scale == self.scale and not exact and changed.size <= WOODBURY_ROWS:
            p = self._woodbury(scale, g, mask, changed)
            if p is not None:
                return p
        if changed is None or changed.size >= mask.sum():
            self.H = self.full.copy() if self.full is not None and mask.all() else _outer(self.Xa32[mask])
        elif changed.size:
            self.H += _outer(self.Xa32[changed], np.where(mask[changed], 1.0, -1.0).astype(np.float32))
        self.mask, self.scale = mask, scale
        p, self.factor = _newton_direction(scale, self.H, g, lambda: self.Xa[mask], exact=exact,
                                           float64=self.float64)
        return p

    def _woodbury(self, scale, g, mask, changed) -> np.ndarray | None:
        """I + scale (H + W'SW) = F + W'(scale S)W, with F factored, W the changed rows and S their signs
        (+1 joined, -1 left): its inverse is F^-1 - Z (S/scale + W Z)^-1 Z', Z = F^-1 W'."""
        W = self.Xa32[changed]
        sign = np.where(mask[changed], 1.0, -1.0)
        Z = small = None
        if changed.size:
            Z = cho_solve(self.factor, W.T, check_finite=False)
            small = lu_factor(np.diag(sign / scale) + (W @ Z).astype(np.float64), check_finite=False)

        def solve_with(v):
            u = cho_solve(self.factor, v.astype(self.factor[0].dtype), check_finite=False).astype(np.float64)
            return u if small is None else u - Z @ lu_solve(small, W @ u, check_finite=False)

        p = solve_with(-g)
        residual = -g - p - scale * (self.H @ p + W.T @ (sign * (W @ p)))
        if not np.linalg.norm(residual) <= 0.1 * np.linalg.norm(g):
            return None
        return p + solve_with(residual)


def solve_squared_hinge(Xa: np.ndarray, y: np.ndarray, C: float, *, w0: np.ndarray | None = None,
                        gram: np.ndarray | None = None, Xa32: np.ndarray | None = None,
                        tol: float = GRAD_TOL, max_newton: int = 200, steps: list | None = None
                        ) -> tuple[np.ndarray, bool]:
    """Minimise f for labels y in {-1, +1} on X~ = ``Xa`` (see augmented). Returns (w, converged).

    ``w0`` warm-starts (e.g. the solution at a smaller C); the optimum does not depend on it. ``gram``
    (X~'X~) and ``Xa32`` (X~ as float32) may be passed in when several problems share the data.
    ``steps``, when given, gets the number of Newton steps taken appended.
    """
    y = np.asarray(y, dtype=np.float64)
    Xa32 = Xa.astype(np.float32) if Xa32 is None else Xa32
    w = np.zeros(Xa.shape[1]) if w0 is None else np.array(w0, dtype=np.float64)
    g0 = np.linalg.norm(2.0 * C * (Xa.T @ y))  # |grad f(0)|
    system, stalled = _NewtonSystem(Xa, Xa32, full=gram), False
    z = Xa @ w  # kept up to date by the steps
    converged, taken = False, max_newton
    for step in range(max_newton):
        active = y * z < 1.0
        g = w + 2.0 * C * (Xa.T @ np.where(active, z - y, 0.0))
        if np.linalg.norm(g) <= tol * g0:
            converged, taken = True, step
            break
        p = system.direction(2.0 * C, g, active, exact=stalled)
        dz = Xa @ p
        t = _step_length(w, p, z, dz, y, C)
        w, z, stalled = w + t * p, z + t * dz, t < STALL_STEP
    if steps is not None:
        steps.append(taken)
    return w, converged


def linear_svc_path(Xa: np.ndarray, targets, Cs, loss: str = "squared_hinge", *, max_newton: int = 200,
                    squared_first: np.ndarray | None = None, steps: list | None = None
                    ) -> list[tuple[np.ndarray, int]]:
    """Solve every one-vs-rest problem (``targets``: {-1, +1} vectors) at each C of ``Cs`` (ascending order
    is fastest: each C warm-starts the next). Returns [(W (d+1, K), problems not converged)] in Cs order.

    ``squared_first`` (hinge only): the squared hinge's solutions W at Cs[0], which then start the hinge
    problems there (see hinge_start_from_squared) instead of w = 0. ``steps``, when given, gets each
    solve's number of Newton steps appended.
    A target with a single sign has no SVM: its column is the constant score scikit-learn's one-vs-rest gives.
    """
    Xa32 = Xa.astype(np.float32)
    gram = Xa.T @ Xa if loss == "squared_hinge" else None
    start = [None] * len(targets)
    if squared_first is not None and loss == "hinge":
        start = [hinge_start_from_squared(Xa, target, Cs[0], squared_first[:, k]) for k, target in enumerate(targets)]
    out = []
    for C in Cs:
        columns, failed = [], 0
        for k, target in enumerate(targets):
            if (target > 0).all() or (target < 0).all():
                column = np.zeros(Xa.shape[1])
                column[-1] = constant_score(target) / Xa[0, -1]
            elif loss == "squared_hinge":
                column, converged = solve_squared_hinge(Xa, target, C, w0=start[k], gram=gram, Xa32=Xa32,
                                                        max_newton=max_newton, steps=steps)
                failed += not converged
                start[k] = column
            else:
                w0, alpha0 = start[k] or (None, None)
                column, alpha, converged = solve_hinge(Xa, target, C, w0=w0, alpha0=alpha0, Xa32=Xa32,
                                                       max_newton=max_newton, steps=steps)
                failed += not converged
                start[k] = (column, alpha)
            columns.append(column)
        out.append((np.column_stack(columns), failed))
    return out


def hinge_start_from_squared(Xa, y, C: float, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A warm start for the hinge problem at C from the squared hinge's solution w at the same C: w itself
    and its dual point 2C max(0, 1 - margin) clipped into the hinge's box [0, C]: a feasible start closer
    to the optimum than w = 0. Only the first C of a path starts so; the later ones warm-start from the
    previous C (starting every C from the squared hinge gained nothing in the benchmarks)."""
    return w, np.clip(2.0 * C * np.maximum(0.0, 1.0 - y * (Xa @ w)), 0.0, C)


# SVC(kernel='linear') solves the hinge problem with a free (unregularised) bias. With x~ = [x, s] the bias
# b = s w_b costs b^2 / (2 s^2), and the optimum w_s of that problem is within |b| / s of SVC's w*
# (the objective is 1-strongly convex in w and differs from SVC's by at most b*^2 / (2 s^2) at w*): at
# s = 1000, where |b| is a few units on standardised embeddings, that is below libsvm's own tolerance.
FREE_BIAS_SCALING = 1e3


class PrimalLinearSVC(DualLinearSVC):
    """A LinearSVC whose problems (either loss) go through ``linear_svc_path``: same problem, parameters and
    attributes as liblinear's; ``max_iter`` caps the Newton steps of each solve, ``n_iter_`` is the most
    any solve took. Takes 2-D 0/1 labels (multilabel) like DualLinearSVC.

    float32 X is taken as it is: ``augmented`` copies it into float64 exactly, so the solution is the one
    of X.astype(float64), without a second float64 copy of X held beside the augmented one.
    """

    input_dtypes = (np.float64, np.float32)

    def _weights(self, X: np.ndarray, targets) -> tuple[np.ndarray, bool, int]:
        Xa = augmented(X, self.intercept_scaling)
        Cs = continuation(float(self.C)) if self.loss == "squared_hinge" else [float(self.C)]
        steps = [0]
        W, failed = linear_svc_path(Xa, targets, Cs, self.loss, max_newton=int(self.max_iter), steps=steps)[-1]
        return W.T, failed == 0, max(steps)


def continuation(C: float, start: float = 0.1) -> list[float]:
    """C / 10^k, ..., C / 10, C from the first value at or below ``start``: a squared-hinge solve at a large C
    from w = 0 crosses kinks at almost every Newton step, and the path through smaller C warm-starts it
    with a few steps per C. The hinge
    solver has its own cold start (COLD_SIGMA) and gains nothing from a path."""
    ladder = [C]
    while ladder[0] > start:
        ladder.insert(0, ladder[0] / 10.0)
    return ladder


def primal_linear_kernel_svc(C: float = 1.0, max_iter: int = 1000) -> PrimalLinearSVC:
    """SVC(kernel='linear')'s one-vs-rest problems (binary, multilabel) solved in the primal: the hinge loss
    with the bias made free by FREE_BIAS_SCALING; ``max_iter`` caps the Newton steps."""
    return PrimalLinearSVC(C=C, loss="hinge", intercept_scaling=FREE_BIAS_SCALING, max_iter=max_iter)


# ---- the hinge loss: augmented Lagrangian + semismooth Newton ----------------------------------------
#
# min_w 1/2 |w|^2 + C sum_i max(0, 1 - m_i), m = A w, A = diag(y) X~. With the split m = s and multipliers
# lam, minimising the augmented Lagrangian over s leaves phi(w) = 1/2 |w|^2 + sum_i E(a_i.w + lam_i/sigma),
# E the Moreau envelope of C max(0, 1 - s): E'(v) = 0 (v >= 1), sigma (v - 1) (1 - C/sigma <= v < 1), -C (below).
# phi is piecewise quadratic, so the same Newton step and exact line search apply, with the Hessian
# I + sigma A_M'A_M over the rows M in the middle band; lam <- E'(v) after each inner solve, sigma grows.
# alpha = -lam is a feasible dual point, so the duality gap certifies the optimum.

HINGE_GAP = 1e-6  # stop when primal - dual <= HINGE_GAP * primal
SIGMA_MAX = 1e4   # the penalty grows to at most SIGMA_MAX * C (the method converges for any fixed one)
SIGMA_GROWTH = 2.0  # per outer step; faster growth narrows the band sooner and costs more Newton steps
COLD_SIGMA = 0.1    # the penalty's start from w = 0 when C is larger (see solve_hinge)


def _envelope_slope(v, C, sigma):
    return np.where(v >= 1.0, 0.0, np.maximum(sigma * (v - 1.0), -C))


def _hinge_step_length(w, p, v, dv, C, sigma) -> float:
    """Exact minimiser t >= 0 of phi(w + t p); v = A w + lam/sigma, dv = A p."""
    wp, pp = float(w @ p), float(p @ p)

    def slope(t):
        u = v + t * dv
        band = (u < 1.0) & (u >= 1.0 - C / sigma)
        return wp + t * pp + float(_envelope_slope(u, C, sigma) @ dv), pp + sigma * float(dv[band] @ dv[band])

    return _minimise_along(slope)


def hinge_gap(Xa, y, C, w, alpha, margins=None) -> tuple[float, float]:
    """(primal objective at w, duality gap against the dual point alpha in [0, C]); ``margins`` = y * X~w if
    already computed."""
    margins = y * (Xa @ w) if margins is None else margins
    primal = 0.5 * float(w @ w) + C * float(np.maximum(0.0, 1.0 - margins).sum())
    support = np.flatnonzero(alpha)
    wa = Xa[support].T @ (alpha[support] * y[support])
    dual = float(alpha.sum()) - 0.5 * float(wa @ wa)
    return primal, primal - dual


def solve_hinge(Xa: np.ndarray, y: np.ndarray, C: float, *, w0=None, alpha0=None, Xa32=None,
                gap_tol: float = HINGE_GAP, max_newton: int = 500, steps: list | None = None
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Minimise the hinge-loss problem for labels y in {-1, +1} on X~ = ``Xa``. Returns (w, alpha, converged).

    ``w0`` / ``alpha0`` warm-start (e.g. from a smaller C; alpha is clipped to [0, C]). ``steps``, when
    given, gets the number of Newton steps taken appended.
    """
    n, dim = Xa.shape
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(dim) if w0 is None else np.array(w0, dtype=np.float64)
    lam = np.zeros(n) if alpha0 is None else -np.clip(alpha0, 0.0, C)
    # Warm-started, the band starts 1 wide (sigma = C); a narrow one at small C makes Newton cross kinks at
    # every step. From w = 0 at large C, sigma = C can stall where the classes are (nearly) separable, the
    # multipliers far below C (seen on real embeddings: the step cap reached short of the optimum, where a
    # small start converges; `bench_linear_svc_solvers.py --cold`), and is slower on most other problems.
    sigma = C if w0 is not None or alpha0 is not None else min(C, COLD_SIGMA)
    # A large intercept scaling (SVC-linear's free bias) leaves the bias direction without the identity's
    # help, so its Newton step hangs on a small Schur complement that float32 (in the rank updates or the
    # factor) cannot resolve (seen on real embeddings: the multipliers lost the balance sum(alpha y) = 0 and
    # the solve stopped at the step cap); in float64 it converges.
    free_bias = Xa[0, -1] > 1.0
    Xa32 = Xa if free_bias else (Xa.astype(np.float32) if Xa32 is None else Xa32)
    system = _NewtonSystem(Xa, Xa32, float64=free_bias)
    taken, converged = 0, False
    margins = y * (Xa @ w)  # kept up to date by the steps below, recomputed once per outer step
    while taken < max_newton:
        # inner: Newton on phi until its gradient is small against the current infeasibility
        for _ in range(50):
            v = margins + lam / sigma
            slope = _envelope_slope(v, C, sigma)
            nz = np.flatnonzero(slope)  # rows beyond the margin add nothing: most of them, one-vs-rest
            g = w + Xa[nz].T @ (slope[nz] * y[nz])
            band = (v < 1.0) & (v >= 1.0 - C / sigma)
            if np.linalg.norm(g) <= 1e-3 * max(1.0, np.linalg.norm(w)) / sigma or taken >= max_newton:
                break
            # (no stall rebuild here: short steps are common after multiplier updates, and rebuilding H on
            # them costs a float64 product without saving Newton steps)
            p = system.direction(sigma, g, band)
            dv = y * (Xa @ p)
            t = _hinge_step_length(w, p, v, dv, C, sigma)
            w, margins = w + t * p, margins + t * dv
            taken += 1
        margins = y * (Xa @ w)
        lam = _envelope_slope(margins + lam / sigma, C, sigma)
        primal, gap = hinge_gap(Xa, y, C, w, -lam, margins)
        converged = gap <= gap_tol * max(primal, 1e-12)
        if converged:
            break
        sigma = min(SIGMA_GROWTH * sigma, SIGMA_MAX * C)  # beyond that, rounding in I + sigma G outgrows I
    if steps is not None:
        steps.append(taken)
    return w, -lam, converged

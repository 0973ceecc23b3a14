//! `em`: maximum likelihood for the multinomial ecological-inference model, by the EM algorithm.
//!
//! The model (the one of Thraves, Ubilla & Hermosilla's `fastei`): in unit `b` each of the
//! `x_bg` voters of row `g` chooses column `c` independently with probability `p_gc`, the same in
//! every unit; the column counts `y_b` are the sum of these `R` multinomials. The unknown unit
//! tables `n_bgc` are the missing data, so EM alternates
//!
//! * **E-step**: the expected unit table given both of its margins. Exactly, the unit table
//!   given its margins follows the multivariate Fisher non-central hypergeometric law
//!   `∝ Π_g x_bg! Π_c p_gc^n_bgc / n_bgc!`, whose mean has no closed form for `R x C` tables.
//!   Two approximations are used, both closed-form per unit:
//!   - **multinomial** (fastei's `mult` idea): the other voters of the unit are taken as one
//!     multinomial at the unit's mean shares `μ_bc / N_b`, `μ_bc = Σ_f x_bf p_fc`, which gives
//!     `q_bgc ∝ p_gc · y_bc / μ_bc` (normalised over `c`) and `n_bgc = x_bg q_bgc`. Its tables
//!     keep the unit's row margins but not its column margins. It is one pass of iterative
//!     proportional fitting from the seed `x_bg p_gc`;
//!   - **mode** (the default E-step): the table that maximises that conditional law with
//!     Stirling's approximation of the factorials, i.e. `n_bgc = a_bg · p_gc · b_bc` with `a`,
//!     `b` such that both margins hold exactly (to [`MODE_TOL`] of the unit's voters): Newton's
//!     method on `ln b` (proportional fitting as the fallback), warm-started from the previous
//!     EM step's `b`, so a step costs one or two Newton steps per unit. For units with many
//!     voters the law is concentrated and its mode is close to its mean.
//! * **M-step** (closed form): `p_gc = Σ_b n_bgc / Σ_b x_bg`.
//!
//! The fit runs multinomial steps first (cheap, to get near), then mode steps. Each phase is
//! accelerated by SQUAREM (Varadhan & Roland 2008: two EM steps, an extrapolation along their
//! difference, then one stabilising EM step; the extrapolation is kept only when it does not
//! increase the fixed-point residual), and stops at a fixed point: when no cell of the aggregate
//! table moves by more than `tol` (default one millionth) of all voters in one EM step. The log-likelihood reported is that of the multinomial approximation
//! of each unit's column counts, `Σ_b Σ_c y_bc ln(μ_bc / N_b)`.
//!
//! Weights: every unit carries a weight (1 for the data; the multiplicity of the unit in a
//! bootstrap resample), so a resample needs no copy of the data.
//!
//! Determinism: units are processed in fixed chunks of [`crate::data::CHUNK`] whose partial
//! sums are added in chunk order, so the result does not depend on the number of threads.

use crate::data::{Data, CHUNK, MAX_DIM};
use rayon::prelude::*;

/// Settings of the EM fit.
#[derive(Debug, Clone, PartialEq)]
pub struct EmConfig {
    /// Stop when no cell of the aggregate table moves by more than this share of all voters
    /// in one EM step (`|Δp_gc| · X_g / N`).
    pub tol: f64,
    /// Most EM steps (SQUAREM counts three per cycle), per phase.
    pub max_iter: usize,
    /// Phase 2 by Newton's method on the fixed-point equation (exact derivative of the mode
    /// E-step) instead of SQUAREM. Off by default: SQUAREM's stopping rule (a small EM step)
    /// ends far from the fixed point where EM is slow, and that stopped point is what was
    /// measured as the default's accuracy; Newton reaches the fixed point itself, which on the
    /// New Zealand development half is less accurate (8.96% against 7.99%).
    pub newton: bool,
}

impl Default for EmConfig {
    fn default() -> Self {
        EmConfig {
            tol: 1e-6,
            max_iter: 5_000,
            newton: false,
        }
    }
}

/// A fitted EM.
#[derive(Debug, Clone)]
pub(crate) struct EmFit {
    /// Row proportions of the reported table `votes`, row-major `R x C`.
    pub p: Vec<f64>,
    /// The EM fixed point (the model's `p`), row-major: warm start of the bootstrap.
    pub p_em: Vec<f64>,
    /// The reported table: the sum over units of the E-step tables at `p_em` (row-major, votes).
    pub votes: Vec<f64>,
    /// EM steps run (each is one pass over the units).
    pub iterations: usize,
    /// Log-likelihood (multinomial approximation) at `p_em`.
    pub loglik: f64,
    /// Change of the log-likelihood over the last SQUAREM cycle.
    pub loglik_change: f64,
    /// Largest cell change over the last EM step (share of all voters, see [`EmConfig::tol`]).
    pub max_change: f64,
    pub converged: bool,
    /// Per-unit E-step tables (`kept` order, `u * R * C`), when asked for.
    pub units: Option<Vec<f64>>,
    /// Each unit's fitting factors of its mode table at `p_em` (`U x C`): the warm start of
    /// [`sandwich`].
    pub bstate: Vec<f64>,
}

/// Floor of a proportion inside the iteration: a cell at exactly 0 can never move again under
/// EM's multiplicative update, so the start and the extrapolations keep every cell above it.
const P_FLOOR: f64 = 1e-12;

/// Most fitting rounds of one unit's mode table by proportional fitting (the fallback).
const MODE_ROUNDS: usize = 20;

/// Column mismatch (share of the unit's voters) at which a unit's mode table is fitted.
const MODE_TOL: f64 = 1e-7;

/// The E-step approximation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EStep {
    Mult,
    Mode,
}

/// `μ_c = Σ_g x_g p_gc` into `mu` (`C` long).
fn unit_mu(x: &[f64], p: &[f64], mu: &mut [f64]) {
    let c = mu.len();
    mu.iter_mut().for_each(|v| *v = 0.0);
    for (g, &xg) in x.iter().enumerate() {
        if xg > 0.0 {
            for k in 0..c {
                mu[k] += xg * p[g * c + k];
            }
        }
    }
}

/// The unit's log-likelihood term `Σ_c y_c ln(μ_c / N)` from its `μ` ([`unit_mu`]).
fn unit_ll(x: &[f64], y: &[f64], mu: &[f64]) -> f64 {
    let c = y.len();
    let n: f64 = x.iter().sum();
    let mut ll = 0.0;
    for k in 0..c {
        if y[k] > 0.0 {
            ll += y[k] * (mu[k].max(1e-300) / n).ln();
        }
    }
    ll
}

/// The multinomial E-step table of one unit into `t` (row-major, votes); returns its
/// log-likelihood term with `want_ll` (0 without: its logarithms are a good part of the step).
fn unit_mult(x: &[f64], y: &[f64], p: &[f64], t: &mut [f64], want_ll: bool) -> f64 {
    let c = y.len();
    let mut mu = [0.0f64; MAX_DIM];
    unit_mu(x, p, &mut mu[..c]);
    let ll = if want_ll {
        unit_ll(x, y, &mu[..c])
    } else {
        0.0
    };
    for (g, &xg) in x.iter().enumerate() {
        let row = &mut t[g * c..(g + 1) * c];
        if xg <= 0.0 {
            row.iter_mut().for_each(|v| *v = 0.0);
            continue;
        }
        let mut s = 0.0;
        for k in 0..c {
            row[k] = if y[k] > 0.0 {
                p[g * c + k] * y[k] / mu[k].max(1e-300)
            } else {
                0.0
            };
            s += row[k];
        }
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v *= xg / s);
        } else {
            // Every column this row could use is empty in the unit: the data say nothing.
            for k in 0..c {
                row[k] = xg * p[g * c + k];
            }
        }
    }
    ll
}

/// The mode E-step table of one unit into `t`: `a_g p_gc b_c` with both margins, by
/// iterative proportional fitting from the column factors `b` (started by [`unit_mode`];
/// updated in place), at most [`MODE_ROUNDS`] rounds. The fallback of [`unit_mode`] when its
/// Newton steps fail.
fn unit_mode_ipf(x: &[f64], y: &[f64], p: &[f64], b: &mut [f64], t: &mut [f64]) {
    let (r, c) = (x.len(), y.len());
    let n: f64 = x.iter().sum();
    let mut a = [0.0f64; MAX_DIM];
    for _ in 0..MODE_ROUNDS {
        // Rows: a_g = x_g / Σ_c p_gc b_c.
        for g in 0..r {
            let s: f64 = (0..c).map(|k| p[g * c + k] * b[k]).sum();
            a[g] = if x[g] > 0.0 && s > 0.0 { x[g] / s } else { 0.0 };
        }
        // Columns: b_c = y_c / Σ_g a_g p_gc.
        let mut off = 0.0f64;
        for k in 0..c {
            let s: f64 = (0..r).map(|g| a[g] * p[g * c + k]).sum();
            let have = s * b[k];
            off = off.max((have - y[k]).abs());
            b[k] = if y[k] > 0.0 && s > 0.0 { y[k] / s } else { 0.0 };
        }
        if off <= MODE_TOL * n {
            break;
        }
    }
    for g in 0..r {
        let s: f64 = (0..c).map(|k| p[g * c + k] * b[k]).sum();
        let ag = if x[g] > 0.0 && s > 0.0 { x[g] / s } else { 0.0 };
        for k in 0..c {
            t[g * c + k] = ag * p[g * c + k] * b[k];
        }
        if x[g] > 0.0 && s <= 0.0 {
            for k in 0..c {
                t[g * c + k] = x[g] * p[g * c + k];
            }
        }
    }
}

/// Solves the symmetric positive definite `n x n` system `h z = g` in place (`h` row-major, its
/// lower triangle destroyed; `g` becomes `z`) by Cholesky; `false` if `h` is not positive
/// definite to working precision.
fn cholesky_solve(h: &mut [f64], n: usize, g: &mut [f64]) -> bool {
    for j in 0..n {
        let mut d = h[j * n + j];
        for l in 0..j {
            d -= h[j * n + l] * h[j * n + l];
        }
        // Not positive (NaN included).
        if d.is_nan() || d <= 1e-12 * h[j * n + j].abs().max(f64::MIN_POSITIVE) {
            return false;
        }
        let d = d.sqrt();
        h[j * n + j] = d;
        for i in j + 1..n {
            let mut v = h[i * n + j];
            for l in 0..j {
                v -= h[i * n + l] * h[j * n + l];
            }
            h[i * n + j] = v / d;
        }
    }
    for i in 0..n {
        let mut v = g[i];
        for l in 0..i {
            v -= h[i * n + l] * g[l];
        }
        g[i] = v / h[i * n + i];
    }
    for i in (0..n).rev() {
        let mut v = g[i];
        for l in i + 1..n {
            v -= h[l * n + i] * g[l];
        }
        g[i] = v / h[i * n + i];
    }
    true
}

/// Number of columns of a unit kernel compiled for `N` columns: `N` itself, or any (`y.len()`)
/// for `N = MAX_DIM` (the general version). See [`fit_by_newton`].
#[inline(always)]
fn columns<const N: usize>(y: &[f64]) -> usize {
    if N == MAX_DIM {
        y.len()
    } else {
        debug_assert_eq!(y.len(), N);
        N
    }
}

/// The row-fitted table of one unit at column factors `b`: `q_gc = p_gc b_c / Σ_c' p_gc' b_c'`
/// (the row shares; the table is `x_g q_gc`) into `q`, its column sums into `col`; returns
/// the largest column mismatch `|col_c − y_c|`. `N`: see [`columns`].
#[inline(always)]
fn row_fit<const N: usize>(
    x: &[f64],
    y: &[f64],
    p: &[f64],
    b: &[f64],
    q: &mut [f64],
    col: &mut [f64],
) -> f64 {
    let c = columns::<N>(y);
    let r = x.len();
    let (y, b, col) = (&y[..c], &b[..c], &mut col[..c]);
    col.iter_mut().for_each(|v| *v = 0.0);
    for ((&xg, prow), row) in x
        .iter()
        .zip(p[..r * c].chunks_exact(c))
        .zip(q[..r * c].chunks_exact_mut(c))
    {
        if xg <= 0.0 {
            row.iter_mut().for_each(|v| *v = 0.0);
            continue;
        }
        let mut s = 0.0;
        for k in 0..c {
            row[k] = prow[k] * b[k];
            s += row[k];
        }
        if s > 0.0 {
            let inv = 1.0 / s;
            for k in 0..c {
                row[k] *= inv;
                col[k] += xg * row[k];
            }
        }
    }
    (0..c).fold(0.0f64, |m, k| m.max((col[k] - y[k]).abs()))
}

/// `Σ_c (col_c − y_c)²`.
fn sum_sq(col: &[f64], y: &[f64]) -> f64 {
    col.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// Work space of [`unit_mode`], one per chunk of units (zeroing `MAX_DIM²` arrays on the stack
/// for every unit cost more than the solve itself).
pub(crate) struct ModeScratch {
    /// Hessian (`C x C` at most).
    h: Vec<f64>,
    /// Trial row shares (`R x C`).
    qt: Vec<f64>,
}

impl ModeScratch {
    pub(crate) fn new(r: usize, c: usize) -> ModeScratch {
        ModeScratch {
            h: vec![0.0; c * c],
            qt: vec![0.0; r * c],
        }
    }
}

/// Newton steps of [`unit_mode`] before it falls back to proportional fitting rounds.
const NEWTON_STEPS: usize = 8;

/// The mode E-step table of one unit into `t`: `a_g p_gc b_c` with both margins, from the column
/// factors `b` (updated in place: the next EM step starts from them; all zero = not started).
/// Returns the log-likelihood term with `want_ll` (else 0).
///
/// Solved by Newton's method on the log column factors: `β = ln b` minimises the convex
/// `Σ_g x_g ln Σ_c p_gc e^β_c − Σ_c y_c β_c`, whose gradient is the column mismatch of the
/// row-fitted table and whose Hessian is `diag(col) − Σ_g x_g q_g q_gᵀ` (one active column
/// pinned: the scale of `b` is free). Why not proportional fitting alone: its rounds converge
/// linearly, slowly when rows vote alike; on Poland 2020 (14 x 5) it used 16.7 rounds per unit on
/// average against a cap of 20, so most unit tables were left off their margins, which also
/// slowed EM itself (447 steps; 123 with fitted tables). Newton needs 1.5 steps per unit there,
/// each about two rounds' work. A step that does not shrink the squared mismatch is halved; if
/// Newton still cannot finish, proportional fitting takes over ([`unit_mode_ipf`]). Stops at
/// the same mismatch as proportional fitting ([`MODE_TOL`] of the unit's voters).
fn unit_mode(
    x: &[f64],
    y: &[f64],
    p: &[f64],
    b: &mut [f64],
    t: &mut [f64],
    sc: &mut ModeScratch,
    want_ll: bool,
) -> f64 {
    let c = y.len();
    let cold = b.iter().all(|&v| v == 0.0);
    let mut ll = 0.0;
    // `μ` only starts the factors and gives the log-likelihood: a warm step without the
    // log-likelihood (nearly every one) needs neither.
    if cold || want_ll {
        let mut mu = [0.0f64; MAX_DIM];
        unit_mu(x, p, &mut mu[..c]);
        if want_ll {
            ll = unit_ll(x, y, &mu[..c]);
        }
        if cold {
            for k in 0..c {
                b[k] = if y[k] > 0.0 {
                    y[k] / mu[k].max(1e-300)
                } else {
                    0.0
                };
            }
        }
    }
    let n: f64 = x.iter().sum();
    if !fit_by_newton(x, y, p, b, t, MODE_TOL * n, NEWTON_STEPS, sc) {
        // Newton could not finish (a near-singular Hessian): proportional fitting rounds.
        unit_mode_ipf(x, y, p, b, t);
    }
    ll
}

/// Fits the table `t_gc = a_g s_gc b_c` (seed `s`, `R x C` row-major, positive where it
/// matters) to row sums `x` and column sums `y` by Newton's method on `ln b` from the factors
/// `b` (updated in place; columns with `y_c = 0` are left out): `t` gets the table, rows exact,
/// columns within `tol`. `false` (and `t`, `b` unspecified) if that is not reached in
/// `max_steps` steps. See [`unit_mode`] for the method; [`crate::lp`] uses it too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_by_newton(
    x: &[f64],
    y: &[f64],
    s: &[f64],
    b: &mut [f64],
    t: &mut [f64],
    tol: f64,
    max_steps: usize,
    sc: &mut ModeScratch,
) -> bool {
    // This runs for every unit on every EM step. Compiled for a known number of columns its
    // loops unroll, its small arrays are that long (zeroing `MAX_DIM` of each cost more than
    // their use) and their bounds checks go; the arithmetic is the same, in the same order.
    match y.len() {
        2 => newton_fit::<2>(x, y, s, b, t, tol, max_steps, sc),
        3 => newton_fit::<3>(x, y, s, b, t, tol, max_steps, sc),
        4 => newton_fit::<4>(x, y, s, b, t, tol, max_steps, sc),
        5 => newton_fit::<5>(x, y, s, b, t, tol, max_steps, sc),
        6 => newton_fit::<6>(x, y, s, b, t, tol, max_steps, sc),
        _ => newton_fit::<MAX_DIM>(x, y, s, b, t, tol, max_steps, sc),
    }
}

/// [`fit_by_newton`] for `N` columns ([`columns`]).
#[allow(clippy::too_many_arguments)]
fn newton_fit<const N: usize>(
    x: &[f64],
    y: &[f64],
    s: &[f64],
    b: &mut [f64],
    t: &mut [f64],
    tol: f64,
    max_steps: usize,
    sc: &mut ModeScratch,
) -> bool {
    let (r, c) = (x.len(), columns::<N>(y));
    let (y, b) = (&y[..c], &mut b[..c]);
    let p = &s[..r * c];
    // Active columns but the pinned one (the largest).
    let mut free = [0usize; N];
    let mut m = 0;
    let mut pin = usize::MAX;
    for k in 0..c {
        if y[k] > 0.0 && (pin == usize::MAX || y[k] > y[pin]) {
            pin = k;
        }
    }
    for k in 0..c {
        if y[k] > 0.0 && k != pin {
            free[m] = k;
            m += 1;
        }
    }
    let free = &free[..m];
    let q = &mut t[..r * c];
    let mut col = [0.0f64; N];
    let mut off = row_fit::<N>(x, y, p, b, q, &mut col[..c]);
    let (h, qt) = (&mut sc.h, &mut sc.qt[..r * c]);
    let mut z = [0.0f64; N];
    let mut bt = [0.0f64; N];
    let mut colt = [0.0f64; N];
    let mut steps = 0;
    // At least one step even when the warm start already fits: a table left at its previous
    // factors would follow `p` only up to the tolerance, and EM's map would be that rough at
    // fine scales (one Newton step from a fitted start is exact to rounding).
    while (off > tol || (steps == 0 && off > 0.0)) && m > 0 && steps < max_steps {
        steps += 1;
        for (ii, &i) in free.iter().enumerate() {
            z[ii] = y[i] - col[i];
            for (jj, &j) in free.iter().enumerate().take(ii + 1) {
                let mut v = if i == j { col[i] } else { 0.0 };
                for (&xg, qrow) in x.iter().zip(q.chunks_exact(c)) {
                    v -= xg * qrow[i] * qrow[j];
                }
                h[ii * m + jj] = v;
                h[jj * m + ii] = v;
            }
        }
        let mut accepted = false;
        if cholesky_solve(&mut h[..m * m], m, &mut z[..m]) {
            // The Newton direction lowers the sum of squared mismatches for a short enough
            // step (its derivative along the step is −2·that sum), so halving finds one; a full
            // step can overshoot where a column's share saturates (a factor far from its root).
            let ss = sum_sq(&col[..c], y);
            let mut lambda = 1.0;
            for _ in 0..40 {
                bt[..c].copy_from_slice(b);
                for (ii, &i) in free.iter().enumerate() {
                    bt[i] = b[i] * (lambda * z[ii]).exp();
                }
                let o = row_fit::<N>(x, y, p, &bt[..c], qt, &mut colt[..c]);
                if sum_sq(&colt[..c], y) < ss {
                    b.copy_from_slice(&bt[..c]);
                    q.copy_from_slice(qt);
                    col[..c].copy_from_slice(&colt[..c]);
                    off = o;
                    accepted = true;
                    break;
                }
                lambda *= 0.5;
            }
        }
        if !accepted {
            break;
        }
    }
    if off > tol {
        return false;
    }
    for (&xg, row) in x.iter().zip(q.chunks_exact_mut(c)) {
        row.iter_mut().for_each(|v| *v *= xg);
    }
    true
}

/// Runs `chunk` over the units in chunks of `CHUNK` (each with its slice of `bstate`, `c` values
/// a unit), on all cores; one chunk runs on the caller's thread (small inputs run thousands of
/// steps, and a thread hand-off each step would cost more than the work).
fn by_chunks<T: Send>(
    units: usize,
    c: usize,
    bstate: &mut [f64],
    chunk: impl Fn(usize, &mut [f64]) -> T + Sync,
) -> Vec<T> {
    if units <= CHUNK {
        vec![chunk(0, bstate)]
    } else {
        bstate
            .par_chunks_mut(CHUNK * c)
            .enumerate()
            .map(|(ci, bs)| chunk(ci, bs))
            .collect()
    }
}

/// One E-step over the units at `p` (`bstate`: the mode tables' column factors, `U x C`): the
/// aggregate table (row-major, votes; unit weights `w`, `None` = all 1), with `want_ll` the
/// log-likelihood at `p` (else NaN), and with `keep` the unit tables.
fn e_step(
    d: &Data,
    p: &[f64],
    w: Option<&[f64]>,
    e: EStep,
    bstate: &mut [f64],
    keep: bool,
    want_ll: bool,
) -> (Vec<f64>, f64, Option<Vec<f64>>) {
    let (r, c) = (d.r, d.c);
    let k = r * c;
    let chunk = |ci: usize, bs: &mut [f64]| {
        let (lo, hi) = (ci * CHUNK, ((ci + 1) * CHUNK).min(d.u));
        let mut num = vec![0.0f64; k];
        let mut ll = 0.0;
        let mut units = Vec::with_capacity(if keep { (hi - lo) * k } else { 0 });
        let mut t = [0.0f64; MAX_DIM * MAX_DIM];
        let mut sc = ModeScratch::new(r, c);
        let t = &mut t[..k];
        for u in lo..hi {
            let wu = w.map_or(1.0, |w| w[u]);
            if wu == 0.0 && !keep {
                continue;
            }
            let (x, y) = (d.xu(u), d.yu(u));
            ll += wu
                * match e {
                    EStep::Mult => unit_mult(x, y, p, t, want_ll),
                    EStep::Mode => unit_mode(
                        x,
                        y,
                        p,
                        &mut bs[(u - lo) * c..(u - lo + 1) * c],
                        t,
                        &mut sc,
                        want_ll,
                    ),
                };
            num.iter_mut().zip(t.iter()).for_each(|(s, v)| *s += wu * v);
            if keep {
                units.extend_from_slice(t);
            }
        }
        (num, ll, units)
    };
    let parts = by_chunks(d.u, c, bstate, chunk);
    let mut num = vec![0.0; k];
    let mut ll = 0.0;
    let mut all = Vec::with_capacity(if keep { d.u * k } else { 0 });
    for (n, l, u) in parts {
        num.iter_mut().zip(&n).for_each(|(s, v)| *s += v);
        ll += l;
        all.extend(u);
    }
    (
        num,
        if want_ll { ll } else { f64::NAN },
        keep.then_some(all),
    )
}

/// The log-likelihood at `p` (unit weights `w`): the sum [`e_step`] returns with `want_ll`,
/// term for term and in the same order, without the E-step.
fn loglik(d: &Data, p: &[f64], w: Option<&[f64]>) -> f64 {
    let c = d.c;
    let parts = crate::data::par_chunks(d.u, |_, lo, hi| {
        let mut ll = 0.0;
        let mut mu = [0.0f64; MAX_DIM];
        for u in lo..hi {
            let wu = w.map_or(1.0, |w| w[u]);
            if wu == 0.0 {
                continue;
            }
            let (x, y) = (d.xu(u), d.yu(u));
            unit_mu(x, p, &mut mu[..c]);
            ll += wu * unit_ll(x, y, &mu[..c]);
        }
        ll
    });
    parts.into_iter().fold(0.0, |a, l| a + l)
}

/// Scratch of [`unit_jac`] (one per chunk).
struct JacScratch {
    q: Vec<f64>,
    a: Vec<f64>,
    ainv: Vec<f64>,
    pinv: Vec<f64>,
    u: Vec<f64>,
    qu: Vec<f64>,
    psi: Vec<f64>,
}

impl JacScratch {
    fn new(r: usize, c: usize) -> JacScratch {
        JacScratch {
            q: vec![0.0; r * c],
            a: vec![0.0; c * c],
            ainv: vec![0.0; c * c],
            pinv: vec![0.0; c * c],
            u: vec![0.0; r * c],
            qu: vec![0.0; r * r],
            psi: vec![0.0; r * c],
        }
    }
}

/// Inverts the `n x n` row-major matrix `a` into `inv` by Gauss–Jordan elimination with
/// partial pivoting (`a` is destroyed); `false` if it is singular.
fn invert(a: &mut [f64], n: usize, inv: &mut [f64]) -> bool {
    inv[..n * n].iter_mut().for_each(|v| *v = 0.0);
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    let scale = a[..n * n].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        let pv = a[piv * n + col];
        if pv.abs() <= 1e-13 * scale || pv.is_nan() {
            return false;
        }
        if piv != col {
            for j in 0..n {
                a.swap(piv * n + j, col * n + j);
                inv.swap(piv * n + j, col * n + j);
            }
        }
        for j in 0..n {
            a[col * n + j] /= pv;
            inv[col * n + j] /= pv;
        }
        for i in 0..n {
            if i == col {
                continue;
            }
            let f = a[i * n + col];
            if f != 0.0 {
                for j in 0..n {
                    a[i * n + j] -= f * a[col * n + j];
                    inv[i * n + j] -= f * inv[col * n + j];
                }
            }
        }
    }
    true
}

/// Adds `wu` times the derivative of one unit's mode table `t` (both margins `x`, `y` held)
/// with respect to `θ = ln p` to `jt` (`K x K`, `jt[a * K + b] = ∂t_a / ∂θ_b`).
///
/// The table is `t_gc = exp(α_g + β_c + θ_gc)` with `α`, `β` fixed by the margins; by the
/// implicit function theorem `dt_gc = t_gc (dθ_gc − s_g + dβ_c − q_g·dβ)`, with `q_g = t_g / x_g`,
/// `s_g = q_g·dθ_g` and `A dβ = Σ_g t_g (s_g − dθ_g)`, `A = diag(y) − Σ_g t_g t_gᵀ / x_g` (singular
/// along the constant vector, so one active column of `β` is pinned).
fn unit_jac(x: &[f64], y: &[f64], t: &[f64], wu: f64, s: &mut JacScratch, jt: &mut [f64]) {
    // Once per unit for the sandwich; compiled per number of columns as [`fit_by_newton`].
    match y.len() {
        2 => unit_jac_n::<2>(x, y, t, wu, s, jt),
        3 => unit_jac_n::<3>(x, y, t, wu, s, jt),
        4 => unit_jac_n::<4>(x, y, t, wu, s, jt),
        5 => unit_jac_n::<5>(x, y, t, wu, s, jt),
        6 => unit_jac_n::<6>(x, y, t, wu, s, jt),
        _ => unit_jac_n::<MAX_DIM>(x, y, t, wu, s, jt),
    }
}

/// [`unit_jac`] for `N` columns ([`columns`]).
fn unit_jac_n<const N: usize>(
    x: &[f64],
    y: &[f64],
    t: &[f64],
    wu: f64,
    s: &mut JacScratch,
    jt: &mut [f64],
) {
    let (r, c) = (x.len(), columns::<N>(y));
    let mut cols = [0usize; N];
    let mut m = 0;
    for j in 0..c {
        if y[j] > 0.0 {
            cols[m] = j;
            m += 1;
        }
    }
    if m <= 1 {
        // One column holds every voter: the table is fixed by the margins.
        return;
    }
    let all_active = m == c;
    let cols = &cols[..m];
    for g in 0..r {
        for j in 0..c {
            s.q[g * c + j] = if x[g] > 0.0 { t[g * c + j] / x[g] } else { 0.0 };
        }
    }
    // Pin the active column with the most voters.
    let pin = cols
        .iter()
        .copied()
        .max_by(|&a, &b| y[a].total_cmp(&y[b]))
        .unwrap_or(cols[0]);
    let mut free = [0usize; N];
    let mut n = 0;
    for &j in cols {
        if j != pin {
            free[n] = j;
            n += 1;
        }
    }
    let free = &free[..n];
    for (ii, &i) in free.iter().enumerate() {
        for (jj, &j) in free.iter().enumerate() {
            let mut v = if i == j { y[i] } else { 0.0 };
            for g in 0..r {
                if x[g] > 0.0 {
                    v -= t[g * c + i] * t[g * c + j] / x[g];
                }
            }
            s.a[ii * n + jj] = v;
        }
    }
    let ok = invert(&mut s.a[..n * n], n, &mut s.ainv[..n * n]);
    s.pinv.iter_mut().for_each(|v| *v = 0.0);
    if ok {
        for (ii, &i) in free.iter().enumerate() {
            for (jj, &j) in free.iter().enumerate() {
                s.pinv[i * c + j] = s.ainv[ii * n + jj];
            }
        }
    }
    // u_g = P q_g, qu[g][h] = q_g · u_h.
    for g in 0..r {
        for i in 0..c {
            s.u[g * c + i] = (0..c).map(|j| s.pinv[i * c + j] * s.q[g * c + j]).sum();
        }
    }
    for g in 0..r {
        for h in 0..r {
            s.qu[g * r + h] = (0..c).map(|j| s.q[g * c + j] * s.u[h * c + j]).sum();
        }
    }
    if all_active {
        jac_add_all(x, c, t, wu, s, jt);
    } else {
        jac_add(x, c, t, wu, s, cols, jt);
    }
}

/// The sum of [`unit_jac`]: adds the unit's derivative (`c` columns, the active ones `cols`)
/// to `jt`.
#[inline(always)]
fn jac_add(
    x: &[f64],
    c: usize,
    t: &[f64],
    wu: f64,
    s: &JacScratch,
    cols: &[usize],
    jt: &mut [f64],
) {
    let r = x.len();
    let k = r * c;
    for g in 0..r {
        if x[g] <= 0.0 {
            continue;
        }
        for &cc in cols {
            let a = g * c + cc;
            let na = wu * t[a];
            if na == 0.0 {
                continue;
            }
            let row = &mut jt[a * k..(a + 1) * k];
            for h in 0..r {
                if x[h] <= 0.0 {
                    continue;
                }
                let base = s.u[h * c + cc] - s.qu[g * r + h];
                for &kk in cols {
                    let b = h * c + kk;
                    let mut v = t[b] * (base - s.pinv[cc * c + kk] + s.u[g * c + kk]);
                    if h == g {
                        v += (cc == kk) as u8 as f64 - s.q[b];
                    }
                    row[b] += na * v;
                }
            }
        }
    }
}

/// [`jac_add`] when every column is active (the usual case): the same sums, over runs of
/// contiguous columns (with `c` known at compile time they vectorise).
#[inline(always)]
fn jac_add_all(x: &[f64], c: usize, t: &[f64], wu: f64, s: &JacScratch, jt: &mut [f64]) {
    let r = x.len();
    let k = r * c;
    for g in 0..r {
        if x[g] <= 0.0 {
            continue;
        }
        let ug = &s.u[g * c..(g + 1) * c];
        for cc in 0..c {
            let a = g * c + cc;
            let na = wu * t[a];
            if na == 0.0 {
                continue;
            }
            let pinv = &s.pinv[cc * c..(cc + 1) * c];
            let row = &mut jt[a * k..(a + 1) * k];
            for h in 0..r {
                if x[h] <= 0.0 {
                    continue;
                }
                let base = s.u[h * c + cc] - s.qu[g * r + h];
                let th = &t[h * c..(h + 1) * c];
                let out = &mut row[h * c..(h + 1) * c];
                if h == g {
                    let qh = &s.q[h * c..(h + 1) * c];
                    for kk in 0..c {
                        let v = th[kk] * (base - pinv[kk] + ug[kk])
                            + ((cc == kk) as u8 as f64 - qh[kk]);
                        out[kk] += na * v;
                    }
                } else {
                    for kk in 0..c {
                        out[kk] += na * (th[kk] * (base - pinv[kk] + ug[kk]));
                    }
                }
            }
        }
    }
}

/// The mode E-step at `p` with its derivative: the aggregate table (`K`), `∂table / ∂p`
/// (`K x K`, row-major) and, with `want_s`, `S = Σ_u w_u ψ_u ψ_uᵀ`, `ψ_u = t_u − x_u ⊗ p` (the
/// unit's contribution to the estimating equation `Σ_u ψ_u = 0` of the fixed point).
fn e_step_jac(
    d: &Data,
    p: &[f64],
    w: Option<&[f64]>,
    bstate: &mut [f64],
    want_s: bool,
) -> (Vec<f64>, Vec<f64>, Option<Vec<f64>>) {
    let (r, c) = (d.r, d.c);
    let k = r * c;
    let chunk = |ci: usize, bs: &mut [f64]| {
        let (lo, hi) = (ci * CHUNK, ((ci + 1) * CHUNK).min(d.u));
        let mut num = vec![0.0f64; k];
        let mut jt = vec![0.0f64; k * k];
        let mut sm = if want_s {
            vec![0.0f64; k * k]
        } else {
            Vec::new()
        };
        let mut scratch = JacScratch::new(r, c);
        let mut t = [0.0f64; MAX_DIM * MAX_DIM];
        let mut sc = ModeScratch::new(r, c);
        let t = &mut t[..k];
        for u in lo..hi {
            let wu = w.map_or(1.0, |w| w[u]);
            if wu == 0.0 {
                continue;
            }
            let (x, y) = (d.xu(u), d.yu(u));
            unit_mode(
                x,
                y,
                p,
                &mut bs[(u - lo) * c..(u - lo + 1) * c],
                t,
                &mut sc,
                false,
            );
            num.iter_mut().zip(t.iter()).for_each(|(s, v)| *s += wu * v);
            unit_jac(x, y, t, wu, &mut scratch, &mut jt);
            if want_s {
                for g in 0..r {
                    for j in 0..c {
                        scratch.psi[g * c + j] = t[g * c + j] - x[g] * p[g * c + j];
                    }
                }
                for a in 0..k {
                    let pa = wu * scratch.psi[a];
                    if pa != 0.0 {
                        sm[a * k..(a + 1) * k]
                            .iter_mut()
                            .zip(&scratch.psi)
                            .for_each(|(s, v)| *s += pa * v);
                    }
                }
            }
        }
        (num, jt, sm)
    };
    let parts = by_chunks(d.u, c, bstate, chunk);
    let mut num = vec![0.0; k];
    let mut jt = vec![0.0; k * k];
    let mut sm = if want_s { vec![0.0; k * k] } else { Vec::new() };
    for (n, j, s) in parts {
        num.iter_mut().zip(&n).for_each(|(a, v)| *a += v);
        jt.iter_mut().zip(&j).for_each(|(a, v)| *a += v);
        sm.iter_mut().zip(&s).for_each(|(a, v)| *a += v);
    }
    // ∂t/∂θ_b = p_b ∂t/∂p_b.
    for row in jt.chunks_mut(k) {
        row.iter_mut()
            .zip(p)
            .for_each(|(v, pb)| *v /= pb.max(P_FLOOR));
    }
    (num, jt, want_s.then_some(sm))
}

/// `I − ∂M/∂p` of the EM map `M(p) = table(p) / X_g` from the aggregate table's derivative
/// `jt` (`row_tot[g] = X_g`; rows with no voters get the identity).
fn newton_matrix(jt: &[f64], row_tot: &[f64], c: usize) -> Vec<f64> {
    let k = row_tot.len() * c;
    let mut m = vec![0.0; k * k];
    for a in 0..k {
        let xg = row_tot[a / c];
        for b in 0..k {
            let jm = if xg > 0.0 { jt[a * k + b] / xg } else { 0.0 };
            m[a * k + b] = (a == b) as u8 as f64 - jm;
        }
    }
    m
}

/// Rows of an aggregate table normalised to proportions (`fallback` for an empty row).
fn normalise(num: &[f64], c: usize, fallback: &[f64]) -> Vec<f64> {
    let mut next = vec![0.0; num.len()];
    for (g, row) in num.chunks(c).enumerate() {
        let s: f64 = row.iter().sum();
        for j in 0..c {
            next[g * c + j] = if s > 0.0 {
                row[j] / s
            } else {
                fallback[g * c + j]
            };
        }
    }
    next
}

/// Every row on the simplex with every cell at least [`P_FLOOR`].
fn project(p: &mut [f64], c: usize) {
    for row in p.chunks_mut(c) {
        row.iter_mut().for_each(|v| {
            if !v.is_finite() || *v < P_FLOOR {
                *v = P_FLOOR
            }
        });
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
}

/// The convergence yardstick: the largest change of a cell of the aggregate table, as a share
/// of all voters (`|Δp_gc| · X_g / N`; `share[g] = X_g / N`). A tiny row whose proportions are
/// barely identified does not hold the fit back for changes worth a fraction of a vote.
fn change(a: &[f64], b: &[f64], share: &[f64], c: usize) -> f64 {
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(q, (x, y))| (x - y).abs() * share[q / c])
        .fold(0.0, f64::max)
}

#[cfg(test)]
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The usual neutral start: each row votes like the whole electorate (`p_gc = column share`).
pub(crate) fn neutral_start(d: &Data) -> Vec<f64> {
    let mut p = Vec::with_capacity(d.r * d.c);
    for _ in 0..d.r {
        for j in 0..d.c {
            p.push(d.col_tot[j] / d.total.max(1.0));
        }
    }
    project(&mut p, d.c);
    p
}

/// How one SQUAREM phase ended.
struct Phase {
    p: Vec<f64>,
    steps: usize,
    max_change: f64,
    loglik: f64,
    loglik_change: f64,
    converged: bool,
}

impl Phase {
    /// Before the first step: nothing measured, not converged.
    fn not_started() -> Phase {
        Phase {
            p: Vec::new(),
            steps: 0,
            max_change: f64::INFINITY,
            loglik: f64::NAN,
            loglik_change: f64::NAN,
            converged: false,
        }
    }
}

/// SQUAREM on the EM map `f` (p -> next p) from `p`; the phase's log-likelihood (and its change
/// over the last cycle) by `loglik` (p -> log-likelihood at p), at the end only: only the last
/// two cycles' values are reported, and computing it on every step cost about a tenth of the fit.
fn squarem(
    mut p: Vec<f64>,
    c: usize,
    share: &[f64],
    tol: f64,
    max_steps: usize,
    mut f: impl FnMut(&[f64]) -> Vec<f64>,
    loglik: impl Fn(&[f64]) -> f64,
) -> Phase {
    project(&mut p, c);
    let mut steps = 0usize;
    // The start of the previous cycle and of the current one.
    let mut starts: (Option<Vec<f64>>, Option<Vec<f64>>) = (None, None);
    let mut out = Phase::not_started();
    while steps < max_steps {
        let p1 = f(&p);
        steps += 1;
        let ch = change(&p1, &p, share, c);
        starts = (starts.1.take(), Some(p.clone()));
        out.max_change = ch;
        if ch <= tol {
            out.converged = true;
            break;
        }
        let p2 = f(&p1);
        steps += 1;
        let (mut rr, mut vv) = (0.0, 0.0);
        for q in 0..p.len() {
            let r = p1[q] - p[q];
            let v = p2[q] - 2.0 * p1[q] + p[q];
            rr += r * r;
            vv += v * v;
        }
        let alpha = if vv > 0.0 {
            -(rr / vv).sqrt().max(1.0)
        } else {
            -1.0
        };
        let mut pe: Vec<f64> = (0..p.len())
            .map(|q| {
                let r = p1[q] - p[q];
                let v = p2[q] - 2.0 * p1[q] + p[q];
                p[q] - 2.0 * alpha * r + alpha * alpha * v
            })
            .collect();
        project(&mut pe, c);
        // Stabilising step from the extrapolation; kept only if its fixed-point residual is not
        // larger than at the start of the cycle (the mode E-step is not the ascent of one
        // closed-form likelihood, so the residual is the common yardstick).
        let p3 = f(&pe);
        steps += 1;
        p = if p3.iter().all(|v| v.is_finite()) && change(&p3, &pe, share, c) <= ch {
            p3
        } else {
            p2
        };
        project(&mut p, c);
    }
    // Over the last SQUAREM cycle (three EM steps, one extrapolation): NaN after one cycle.
    if let Some(last) = &starts.1 {
        out.loglik = loglik(last);
        out.loglik_change = match &starts.0 {
            Some(prev) => out.loglik - loglik(prev),
            None => f64::NAN,
        };
    }
    out.p = p;
    out.steps = steps;
    out
}

/// Solves `a z = rhs` for each of the `nrhs` columns of `rhs` (`K x nrhs`, row-major) through
/// the inverse of `a` (`K x K`, small); `None` if `a` is singular.
fn solve_many(a: &[f64], k: usize, rhs: &[f64], nrhs: usize) -> Option<Vec<f64>> {
    let mut work = a.to_vec();
    let mut inv = vec![0.0; k * k];
    if !invert(&mut work, k, &mut inv) {
        return None;
    }
    Some(mat_mul(&inv, &rhs[..k * nrhs], k, nrhs))
}

/// `a` (k x k) times `b` (k x n), row-major; zero entries of `a` are skipped (the derivatives
/// are sparse).
fn mat_mul(a: &[f64], b: &[f64], k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; k * n];
    for i in 0..k {
        for l in 0..k {
            let v = a[i * k + l];
            if v != 0.0 {
                for j in 0..n {
                    out[i * n + j] += v * b[l * n + j];
                }
            }
        }
    }
    out
}

/// Newton's method on the fixed-point equation `M(p) = p` of the EM map, with the exact
/// derivative of the mode E-step ([`e_step_jac`]); the derivative is reused while it keeps
/// halving the residual (chord steps, one plain E-step each) and recomputed otherwise. A step
/// that does not reduce the residual is halved (three times at most), then replaced by an EM
/// step. Each E-step (plain or with the derivative) counts as one step.
fn newton(
    d: &Data,
    w: Option<&[f64]>,
    mut p: Vec<f64>,
    bstate: &mut [f64],
    share: &[f64],
    tol: f64,
    max_steps: usize,
) -> Phase {
    let c = d.c;
    let k = d.r * c;
    let mut row_tot = vec![0.0f64; d.r];
    for u in 0..d.u {
        let wu = w.map_or(1.0, |w| w[u]);
        for (g, &x) in d.xu(u).iter().enumerate() {
            row_tot[g] += wu * x;
        }
    }
    project(&mut p, c);
    let mut steps = 0usize;
    let mut out = Phase::not_started();
    // The current (I - J) inverse, and M(p) at the current p when already known.
    let mut inv: Option<Vec<f64>> = None;
    let mut known: Option<(Vec<f64>, f64)> = None;
    let mut last_ll = f64::NAN;
    while steps < max_steps {
        let (mp, ll) = match known.take() {
            Some(v) => v,
            None => {
                steps += 1;
                if inv.is_none() {
                    let (num, jt, _) = e_step_jac(d, &p, w, bstate, false);
                    let mut a = newton_matrix(&jt, &row_tot, c);
                    let mut iv = vec![0.0; k * k];
                    inv = invert(&mut a, k, &mut iv).then_some(iv);
                    // The log-likelihood is not needed on the way; NaN until the last step.
                    (normalise(&num, c, &p), f64::NAN)
                } else {
                    let (num, ll, _) = e_step(d, &p, w, EStep::Mode, bstate, false, true);
                    (normalise(&num, c, &p), ll)
                }
            }
        };
        let ch = change(&mp, &p, share, c);
        out.max_change = ch;
        out.loglik = ll;
        out.loglik_change = ll - last_ll;
        last_ll = ll;
        if ch <= tol {
            out.converged = true;
            break;
        }
        let Some(iv) = inv.as_ref() else {
            // Singular derivative: one EM step, then try again.
            p = mp;
            project(&mut p, c);
            continue;
        };
        let resid: Vec<f64> = mp.iter().zip(&p).map(|(a, b)| a - b).collect();
        let delta: Vec<f64> = (0..k)
            .map(|i| (0..k).map(|j| iv[i * k + j] * resid[j]).sum())
            .collect();
        let mut accepted = false;
        let mut lambda = 1.0;
        for _ in 0..4 {
            let mut pn: Vec<f64> = p.iter().zip(&delta).map(|(a, b)| a + lambda * b).collect();
            project(&mut pn, c);
            let (num, lln, _) = e_step(d, &pn, w, EStep::Mode, bstate, false, true);
            steps += 1;
            let mn = normalise(&num, c, &pn);
            let chn = change(&mn, &pn, share, c);
            if chn.is_finite() && chn < ch {
                // Keep the derivative while it at least halves the residual.
                if chn > 0.5 * ch {
                    inv = None;
                }
                p = pn;
                known = Some((mn, lln));
                accepted = true;
                break;
            }
            lambda *= 0.5;
        }
        if !accepted {
            // The derivative is stale or the step too long: an EM step from p, fresh derivative.
            p = mp;
            project(&mut p, c);
            inv = None;
        }
    }
    out.p = p;
    out.steps = steps;
    out
}

/// The cluster (unit) sandwich covariance of the EM fixed point `p` (`K x K`): `p` solves
/// `Σ_u ψ_u(p) = 0`; resampling units moves that sum by about `Σ_u (w_u − 1) ψ_u`, whose
/// covariance is `S = Σ_u ψ_u ψ_uᵀ` (times `U / (U − 1)`), so
/// `Var p ≈ (I − J)⁻¹ D S D (I − J)⁻ᵀ` with `J = ∂M/∂p` and `D = diag(1 / X_g)`: the
/// linearisation of the unit bootstrap, without a re-solve. `None` if `I − J` is singular.
/// `bstate`: each unit's fitting factors near `p` (from the fit; `None` = one more pass first).
pub(crate) fn sandwich(d: &Data, p: &[f64], bstate: Option<Vec<f64>>) -> Option<Vec<f64>> {
    let (r, c) = (d.r, d.c);
    let k = r * c;
    let mut bstate = match bstate {
        Some(b) if b.len() == d.u * c => b,
        _ => {
            let mut b = vec![0.0f64; d.u * c];
            let _ = e_step(d, p, None, EStep::Mode, &mut b, false, false);
            b
        }
    };
    let (_, jt, sm) = e_step_jac(d, p, None, &mut bstate, true);
    let sm = sm?;
    let a = newton_matrix(&jt, &d.row_tot, c);
    let corr = if d.u > 1 {
        d.u as f64 / (d.u as f64 - 1.0)
    } else {
        1.0
    };
    // D S D.
    let mut dsd = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            let (xi, xj) = (d.row_tot[i / c], d.row_tot[j / c]);
            if xi > 0.0 && xj > 0.0 {
                dsd[i * k + j] = corr * sm[i * k + j] / (xi * xj);
            }
        }
    }
    // B = (I - J)^-1; V = B (D S D) B^T.
    let mut eye = vec![0.0; k * k];
    for i in 0..k {
        eye[i * k + i] = 1.0;
    }
    let b = solve_many(&a, k, &eye, k)?;
    let bs = mat_mul(&b, &dsd[..k * k], k, k);
    let mut v = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            v[i * k + j] = (0..k).map(|l| bs[i * k + l] * b[j * k + l]).sum();
        }
    }
    Some(v)
}

/// Fits the model on `d` (unit weights `w`, `None` = all 1) from `start` (`None`: on large
/// inputs, the fit of a strided subsample of ~5,000 units; otherwise the neutral start).
pub(crate) fn fit(
    d: &Data,
    start: Option<&[f64]>,
    w: Option<&[f64]>,
    cfg: &EmConfig,
    keep_units: bool,
) -> EmFit {
    fit_with(d, start, w, cfg, keep_units, &|_| {})
}

/// [`fit`], calling `step(n)` after each pass over the units (`n` passes so far in the phase).
pub(crate) fn fit_with(
    d: &Data,
    start: Option<&[f64]>,
    w: Option<&[f64]>,
    cfg: &EmConfig,
    keep_units: bool,
    step: &(dyn Fn(usize) + Sync),
) -> EmFit {
    let c = d.c;
    let p0 = match start {
        Some(s) => s.to_vec(),
        None if d.u > 20_000 && w.is_none() => {
            let sub = d.subsample(d.u / 5_000);
            let loose = EmConfig {
                tol: cfg.tol.max(1e-5),
                ..cfg.clone()
            };
            fit(&sub, None, None, &loose, false).p_em
        }
        None => neutral_start(d),
    };
    let mut bstate = vec![0.0f64; d.u * c];
    // Row shares of the (weighted) voters, for the convergence yardstick.
    let mut share = vec![0.0f64; d.r];
    for u in 0..d.u {
        let wu = w.map_or(1.0, |w| w[u]);
        for (g, &x) in d.xu(u).iter().enumerate() {
            share[g] += wu * x;
        }
    }
    let all: f64 = share.iter().sum::<f64>().max(1e-300);
    share.iter_mut().for_each(|v| *v /= all);
    let mut iterations = 0;
    // Phase 1, from a cold start only: multinomial steps to get near.
    let p1 = if start.is_none() {
        let mut n = 0;
        // Only the end point of this phase is used: no log-likelihood.
        let ph = squarem(
            p0,
            c,
            &share,
            cfg.tol.max(1e-4),
            cfg.max_iter,
            |p| {
                n += 1;
                step(n);
                let (num, _, _) = e_step(d, p, w, EStep::Mult, &mut bstate, false, false);
                normalise(&num, c, p)
            },
            |_| f64::NAN,
        );
        iterations += ph.steps;
        ph.p
    } else {
        p0
    };
    // Phase 2: mode steps to the fixed point.
    let ph = if cfg.newton {
        newton(d, w, p1, &mut bstate, &share, cfg.tol, cfg.max_iter)
    } else {
        let mut n = 0;
        squarem(
            p1,
            c,
            &share,
            cfg.tol,
            cfg.max_iter,
            |p| {
                n += 1;
                step(n);
                let (num, _, _) = e_step(d, p, w, EStep::Mode, &mut bstate, false, false);
                normalise(&num, c, p)
            },
            |p| loglik(d, p, w),
        )
    };
    iterations += ph.steps;
    // The reported table: the E-step at the returned p (one more pass).
    let (votes, ll, units) = e_step(d, &ph.p, w, EStep::Mode, &mut bstate, keep_units, true);
    iterations += 1;
    let p = normalise(&votes, c, &ph.p);
    let last = change(&p, &ph.p, &share, c);
    EmFit {
        p,
        p_em: ph.p,
        votes,
        iterations,
        loglik: ll,
        loglik_change: ph.loglik_change,
        max_change: if ph.converged { ph.max_change } else { last },
        converged: ph.converged || last <= cfg.tol,
        units,
        bstate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Margins;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Units drawn from the model itself: 3 rows, 3 columns, known p.
    fn planted(units: usize, seed: u64) -> (Margins, Vec<f64>) {
        let p = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = Margins {
            unit_ids: vec![],
            rows: vec!["a".into(), "b".into(), "c".into()],
            cols: vec!["x".into(), "y".into(), "z".into()],
            row_counts: vec![],
            col_counts: vec![],
        };
        for u in 0..units {
            let x: Vec<u64> = (0..3).map(|_| rng.gen_range(0..400)).collect();
            let mut y = vec![0u64; 3];
            for g in 0..3 {
                for _ in 0..x[g] {
                    let t: f64 = rng.gen();
                    let j = if t < p[g * 3] {
                        0
                    } else if t < p[g * 3] + p[g * 3 + 1] {
                        1
                    } else {
                        2
                    };
                    y[j] += 1;
                }
            }
            m.unit_ids.push(u.to_string());
            m.row_counts.push(x);
            m.col_counts.push(y);
        }
        (m, p.to_vec())
    }

    #[test]
    fn recovers_a_planted_table_and_converges() {
        let (m, truth) = planted(300, 3);
        let d = Data::new(&m);
        let f = fit(&d, None, None, &EmConfig::default(), false);
        assert!(f.converged, "{} iterations", f.iterations);
        let err = max_abs_diff(&f.p, &truth);
        assert!(err < 0.03, "max |dp| {err}: {:?}", f.p);
        // The aggregate table matches the row totals exactly.
        for g in 0..3 {
            let s: f64 = f.votes[g * 3..g * 3 + 3].iter().sum();
            assert!((s - d.row_tot[g]).abs() < 1e-6 * d.row_tot[g]);
        }
    }

    #[test]
    fn squarem_reaches_the_plain_em_fixed_point() {
        let (m, _) = planted(120, 5);
        let d = Data::new(&m);
        let f = fit(&d, None, None, &EmConfig::default(), false);
        // Plain EM from the same start, many steps.
        let mut p = neutral_start(&d);
        let mut b = vec![0.0; d.u * d.c];
        for _ in 0..20_000 {
            let (num, _, _) = e_step(&d, &p, None, EStep::Mode, &mut b, false, false);
            p = normalise(&num, d.c, &p);
        }
        assert!(max_abs_diff(&f.p_em, &p) < 1e-5, "{:?} vs {p:?}", f.p_em);
    }

    #[test]
    fn weights_equal_repeats() {
        let (m, _) = planted(60, 9);
        let d = Data::new(&m);
        let idx: Vec<usize> = (0..60).chain(0..20).collect();
        let rep = d.select(&idx);
        let mut w = vec![1.0; 60];
        w[..20].iter_mut().for_each(|v| *v = 2.0);
        let tight = EmConfig {
            tol: 1e-11,
            ..EmConfig::default()
        };
        let a = fit(&rep, None, None, &tight, false);
        let b = fit(&d, None, Some(&w), &tight, false);
        assert!(a.converged && b.converged);
        assert!(max_abs_diff(&a.p, &b.p) < 1e-6, "{:?} vs {:?}", a.p, b.p);
    }

    #[test]
    fn derivative_of_the_mode_e_step_matches_finite_differences() {
        let (m, _) = planted(40, 13);
        let d = Data::new(&m);
        let (c, k) = (d.c, d.r * d.c);
        let p = vec![0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.25, 0.35, 0.4];
        let mut b = vec![0.0; d.u * c];
        let (_, jt, _) = e_step_jac(&d, &p, None, &mut b, false);
        let table = |q: &[f64]| {
            let mut b = vec![0.0; d.u * c];
            // Repeated passes from warm factors: each unit's table fitted well below the step.
            for _ in 0..5 {
                e_step(&d, q, None, EStep::Mode, &mut b, false, false);
            }
            e_step(&d, q, None, EStep::Mode, &mut b, false, false).0
        };
        let scale = jt.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(scale > 0.0);
        for col in 0..k {
            let h = 1e-4 * p[col];
            let (mut up, mut dn) = (p.clone(), p.clone());
            up[col] += h;
            dn[col] -= h;
            let (tu, td) = (table(&up), table(&dn));
            for a in 0..k {
                let fd = (tu[a] - td[a]) / (2.0 * h);
                let an = jt[a * k + col];
                assert!(
                    (fd - an).abs() <= 1e-3 * scale,
                    "cell {a} wrt {col}: finite difference {fd}, derivative {an}"
                );
            }
        }
    }

    #[test]
    fn newton_reaches_the_squarem_fixed_point() {
        let (m, _) = planted(200, 21);
        let d = Data::new(&m);
        let tight = EmConfig {
            tol: 1e-10,
            newton: true,
            ..EmConfig::default()
        };
        let f = fit(&d, None, None, &tight, false);
        assert!(f.converged);
        let share: Vec<f64> = d.row_tot.iter().map(|v| v / d.total).collect();
        let mut b = vec![0.0; d.u * d.c];
        let sq = squarem(
            neutral_start(&d),
            d.c,
            &share,
            1e-10,
            20_000,
            |p| {
                let (num, _, _) = e_step(&d, p, None, EStep::Mode, &mut b, false, false);
                normalise(&num, d.c, p)
            },
            |p| loglik(&d, p, None),
        );
        assert!(sq.converged);
        assert!(
            max_abs_diff(&f.p_em, &sq.p) < 1e-6,
            "{:?} vs {:?}",
            f.p_em,
            sq.p
        );
        assert!(f.iterations < sq.steps, "{} vs {}", f.iterations, sq.steps);
    }

    #[test]
    fn sandwich_matches_the_spread_of_resolved_bootstrap_replicates() {
        use rand::Rng;
        let (m, _) = planted(300, 17);
        let d = Data::new(&m);
        let f = fit(&d, None, None, &EmConfig::default(), false);
        let v = sandwich(&d, &f.p_em, None).unwrap();
        let k = d.r * d.c;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let reps: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                let mut w = vec![0.0; d.u];
                (0..d.u).for_each(|_| w[rng.gen_range(0..d.u)] += 1.0);
                let tight = EmConfig {
                    tol: 1e-9,
                    ..EmConfig::default()
                };
                fit(&d, Some(&f.p_em), Some(&w), &tight, false).p
            })
            .collect();
        for q in 0..k {
            let mean = reps.iter().map(|r| r[q]).sum::<f64>() / reps.len() as f64;
            let var =
                reps.iter().map(|r| (r[q] - mean).powi(2)).sum::<f64>() / (reps.len() - 1) as f64;
            let ratio = (v[q * k + q] / var).sqrt();
            assert!(
                (0.75..1.33).contains(&ratio),
                "cell {q}: sandwich sd / bootstrap sd = {ratio}"
            );
        }
    }

    /// A random unit with `c` columns: its margins (same total), a seed table and start factors.
    fn random_unit(c: usize, rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let r = 5;
        let x: Vec<f64> = (0..r).map(|_| rng.gen_range(0..300) as f64).collect();
        let mut y = vec![0.0; c];
        for _ in 0..x.iter().sum::<f64>() as usize {
            y[rng.gen_range(0..c)] += 1.0;
        }
        let mut p: Vec<f64> = (0..r * c).map(|_| rng.gen_range(0.01..1.0)).collect();
        project(&mut p, c);
        (x, y, p)
    }

    /// The kernels compiled for a known number of columns are the general ones, to the bit.
    fn same_as_general<const N: usize>(rng: &mut ChaCha8Rng) {
        let (x, y, p) = random_unit(N, rng);
        let (r, k) = (x.len(), x.len() * N);
        let mut sc = ModeScratch::new(r, N);
        let b0: Vec<f64> = (0..N).map(|_| rng.gen_range(0.5..2.0)).collect();
        let (mut b1, mut b2) = (b0.clone(), b0);
        let (mut t1, mut t2) = (vec![0.0; k], vec![0.0; k]);
        let tol = MODE_TOL * x.iter().sum::<f64>();
        let ok1 = newton_fit::<N>(&x, &y, &p, &mut b1, &mut t1, tol, 50, &mut sc);
        let ok2 = newton_fit::<MAX_DIM>(&x, &y, &p, &mut b2, &mut t2, tol, 50, &mut sc);
        assert!(ok1 && ok2);
        assert_eq!((&b1, &t1), (&b2, &t2), "{N} columns");
        let mut js = JacScratch::new(r, N);
        let (mut j1, mut j2) = (vec![0.0; k * k], vec![0.0; k * k]);
        unit_jac_n::<N>(&x, &y, &t1, 1.5, &mut js, &mut j1);
        unit_jac_n::<MAX_DIM>(&x, &y, &t1, 1.5, &mut js, &mut j2);
        assert!(j1.iter().any(|&v| v != 0.0));
        assert_eq!(j1, j2, "{N} columns");
        // A unit with an empty column takes the path over the active columns only.
        let mut y0 = y.clone();
        let moved = y0[0];
        y0[0] = 0.0;
        y0[1] += moved;
        let mut b3 = vec![1.0; N];
        // As a cold start sets it: no factor for a column without voters.
        b3[0] = 0.0;
        let mut t3 = vec![0.0; k];
        assert!(newton_fit::<N>(
            &x, &y0, &p, &mut b3, &mut t3, tol, 50, &mut sc
        ));
        let (mut j3, mut j4) = (vec![0.0; k * k], vec![0.0; k * k]);
        unit_jac_n::<N>(&x, &y0, &t3, 1.0, &mut js, &mut j3);
        unit_jac_n::<MAX_DIM>(&x, &y0, &t3, 1.0, &mut js, &mut j4);
        assert_eq!(j3, j4, "{N} columns, one empty");
    }

    #[test]
    fn kernels_for_a_known_number_of_columns_match_the_general_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for _ in 0..20 {
            same_as_general::<2>(&mut rng);
            same_as_general::<3>(&mut rng);
            same_as_general::<4>(&mut rng);
            same_as_general::<5>(&mut rng);
            same_as_general::<6>(&mut rng);
        }
    }
}

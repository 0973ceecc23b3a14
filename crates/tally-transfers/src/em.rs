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
//!     `b` such that both margins hold exactly: iterative proportional fitting to convergence
//!     (warm-started from the previous EM step's `b`, so a step costs a few passes). For units
//!     with many voters the law is concentrated and its mode is close to its mean.
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
}

impl Default for EmConfig {
    fn default() -> Self {
        EmConfig {
            tol: 1e-6,
            max_iter: 5_000,
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
}

/// Floor of a proportion inside the iteration: a cell at exactly 0 can never move again under
/// EM's multiplicative update, so the start and the extrapolations keep every cell above it.
const P_FLOOR: f64 = 1e-12;

/// Most fitting rounds of one unit's mode table.
const MODE_ROUNDS: usize = 20;

/// Column mismatch (share of the unit's voters) at which a unit's mode table is fitted.
const MODE_TOL: f64 = 1e-7;

/// The E-step approximation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EStep {
    Mult,
    Mode,
}

/// `μ_c = Σ_g x_g p_gc` into `mu`; returns the unit's log-likelihood term `Σ_c y_c ln(μ_c / N)`.
fn unit_mu(x: &[f64], y: &[f64], p: &[f64], mu: &mut [f64]) -> f64 {
    let c = y.len();
    mu.iter_mut().for_each(|v| *v = 0.0);
    let n: f64 = x.iter().sum();
    for (g, &xg) in x.iter().enumerate() {
        if xg > 0.0 {
            for k in 0..c {
                mu[k] += xg * p[g * c + k];
            }
        }
    }
    let mut ll = 0.0;
    for k in 0..c {
        if y[k] > 0.0 {
            ll += y[k] * (mu[k].max(1e-300) / n).ln();
        }
    }
    ll
}

/// The multinomial E-step table of one unit into `t` (row-major, votes); returns its
/// log-likelihood term.
fn unit_mult(x: &[f64], y: &[f64], p: &[f64], t: &mut [f64]) -> f64 {
    let c = y.len();
    let mut mu = [0.0f64; MAX_DIM];
    let ll = unit_mu(x, y, p, &mut mu[..c]);
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
/// iterative proportional fitting from the column factors `b` (updated in place: the next
/// EM step starts from them; all zero = not started). Returns the log-likelihood term.
fn unit_mode(x: &[f64], y: &[f64], p: &[f64], b: &mut [f64], t: &mut [f64]) -> f64 {
    let (r, c) = (x.len(), y.len());
    let mut mu = [0.0f64; MAX_DIM];
    let ll = unit_mu(x, y, p, &mut mu[..c]);
    if b.iter().all(|&v| v == 0.0) {
        for k in 0..c {
            b[k] = if y[k] > 0.0 {
                y[k] / mu[k].max(1e-300)
            } else {
                0.0
            };
        }
    }
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
    ll
}

/// One E-step over the units at `p` (`bstate`: the mode tables' column factors, `U x C`): the aggregate table (row-major, votes; unit weights `w`,
/// `None` = all 1), the log-likelihood at `p`, and with `keep` the unit tables.
fn e_step(
    d: &Data,
    p: &[f64],
    w: Option<&[f64]>,
    e: EStep,
    bstate: &mut [f64],
    keep: bool,
) -> (Vec<f64>, f64, Option<Vec<f64>>) {
    let (r, c) = (d.r, d.c);
    let k = r * c;
    let chunk = |ci: usize, bs: &mut [f64]| {
        let (lo, hi) = (ci * CHUNK, ((ci + 1) * CHUNK).min(d.u));
        let mut num = vec![0.0f64; k];
        let mut ll = 0.0;
        let mut units = Vec::with_capacity(if keep { (hi - lo) * k } else { 0 });
        let mut t = [0.0f64; MAX_DIM * MAX_DIM];
        let t = &mut t[..k];
        for u in lo..hi {
            let wu = w.map_or(1.0, |w| w[u]);
            if wu == 0.0 && !keep {
                continue;
            }
            let (x, y) = (d.xu(u), d.yu(u));
            ll += wu
                * match e {
                    EStep::Mult => unit_mult(x, y, p, t),
                    EStep::Mode => unit_mode(x, y, p, &mut bs[(u - lo) * c..(u - lo + 1) * c], t),
                };
            num.iter_mut().zip(t.iter()).for_each(|(s, v)| *s += wu * v);
            if keep {
                units.extend_from_slice(t);
            }
        }
        (num, ll, units)
    };
    let parts: Vec<_> = if d.u <= CHUNK {
        // One chunk: no thread hand-off (small inputs run thousands of steps).
        vec![chunk(0, bstate)]
    } else {
        bstate
            .par_chunks_mut(CHUNK * c)
            .enumerate()
            .map(|(ci, bs)| chunk(ci, bs))
            .collect()
    };
    let mut num = vec![0.0; k];
    let mut ll = 0.0;
    let mut all = Vec::with_capacity(if keep { d.u * k } else { 0 });
    for (n, l, u) in parts {
        num.iter_mut().zip(&n).for_each(|(s, v)| *s += v);
        ll += l;
        all.extend(u);
    }
    (num, ll, keep.then_some(all))
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

/// SQUAREM on the EM map `f` (p -> (next p, log-likelihood at p)) from `p`.
fn squarem(
    mut p: Vec<f64>,
    c: usize,
    share: &[f64],
    tol: f64,
    max_steps: usize,
    mut f: impl FnMut(&[f64]) -> (Vec<f64>, f64),
) -> Phase {
    project(&mut p, c);
    let mut steps = 0usize;
    let mut last_ll = f64::NAN;
    let mut out = Phase {
        p: Vec::new(),
        steps: 0,
        max_change: f64::INFINITY,
        loglik: f64::NAN,
        loglik_change: f64::NAN,
        converged: false,
    };
    while steps < max_steps {
        let (p1, ll0) = f(&p);
        steps += 1;
        let ch = change(&p1, &p, share, c);
        // Over the last SQUAREM cycle (three EM steps, one extrapolation).
        out.loglik_change = ll0 - last_ll;
        out.loglik = ll0;
        out.max_change = ch;
        last_ll = ll0;
        if ch <= tol {
            out.converged = true;
            break;
        }
        let (p2, _) = f(&p1);
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
        let (p3, lle) = f(&pe);
        steps += 1;
        p = if lle.is_finite() && change(&p3, &pe, share, c) <= ch {
            p3
        } else {
            p2
        };
        project(&mut p, c);
    }
    out.p = p;
    out.steps = steps;
    out
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
        let ph = squarem(p0, c, &share, cfg.tol.max(1e-4), cfg.max_iter, |p| {
            let (num, ll, _) = e_step(d, p, w, EStep::Mult, &mut bstate, false);
            (normalise(&num, c, p), ll)
        });
        iterations += ph.steps;
        ph.p
    } else {
        p0
    };
    // Phase 2: mode steps to the fixed point.
    let ph = squarem(p1, c, &share, cfg.tol, cfg.max_iter, |p| {
        let (num, ll, _) = e_step(d, p, w, EStep::Mode, &mut bstate, false);
        (normalise(&num, c, p), ll)
    });
    iterations += ph.steps;
    // The reported table: the E-step at the returned p (one more pass).
    let (votes, ll, units) = e_step(d, &ph.p, w, EStep::Mode, &mut bstate, keep_units);
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
            let (num, _, _) = e_step(&d, &p, None, EStep::Mode, &mut b, false);
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
}

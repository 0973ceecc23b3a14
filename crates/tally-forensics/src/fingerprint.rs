//! Election fingerprint (turnout × leader's share) and a fit of the Klimek et al. (2012)
//! incremental/extreme ballot-stuffing model.
//!
//! ## The model
//! A station with turnout `a` and leader share `v` is *clean* with `a ~ N(mu_a, sd_a)`,
//! `v ~ N(mu_v, sd_v)` with correlation `corr` (censored to [0, 1]). With probability `fi` it receives
//! *incremental* stuffing: a fraction `x ~ |N(0, alpha)|` of its non-voters and of its opponents'
//! votes become leader votes, so `a' = a + x(1-a)` and `v' = (a(1-x)v + x) / a'`. With probability
//! `fe` it receives *extreme* stuffing: the same with `x ~ 1 - |N(0, theta)|`, `theta = 0.05`.
//! A small uniform *background* component (weight `bg`) absorbs stations the model cannot explain
//! (its size is a diagnostic of misfit).
//!
//! ## The estimator
//! Binned maximum likelihood: the stations' (turnout, share) pairs are binned into 50 × 50 cells
//! of two points, and the multinomial log-likelihood of the cell counts under the model's cell
//! probabilities is maximised. The cell probabilities are computed by numerical integration, not
//! simulation: given `a` (integrated exactly over turnout bins) and `x` (integrated over quantile
//! nodes), `v'` is an affine function of a normal variable, so its bin probabilities are exact
//! differences of the normal distribution function. The mixture weights (clean, fi, fe, bg) enter
//! linearly and are maximised by EM for each shape; the six shape parameters
//! (mu_a, sd_a, mu_v, sd_v, corr, alpha) are maximised by Nelder–Mead with one restart.
//!
//! ## Intervals
//! Percentile bootstrap over stations (a multinomial redraw of the cell counts, identical in
//! distribution to resampling stations). In each replicate fi, fe, bg and alpha are re-estimated;
//! the clean-peak parameters are held at the full-data estimate to keep the cost bounded (their
//! sampling error is small next to the alpha–fi trade-off, but the intervals are conditional on them).

use crate::digits::multinomial;
use crate::util::{percentile_interval, rng_for, stream};
use rayon::prelude::*;
use serde::Serialize;

/// Bins per axis of the fingerprint and of the fit (one percentage point each).
pub const BINS: usize = 100;
/// Width of the extreme-stuffing spread (fixed, as in Klimek et al.'s formulation).
pub const THETA_EXTREME: f64 = 0.05;
/// Bins per axis of the fit (two percentage points each).
pub const FIT_BINS: usize = 50;
const N_CELLS: usize = FIT_BINS * FIT_BINS;

/// Name of the estimator, printed in reports.
pub const ESTIMATOR: &str = "binned maximum likelihood (50x50 cells of 2 points, numerical integration of the \
Klimek model; EM for the mixture weights, Nelder-Mead for the shape), percentile bootstrap over stations";

/// Cell index of a (turnout, share) pair.
#[inline]
pub(crate) fn cell(a: f64, v: f64) -> usize {
    bin(a) * BINS + bin(v)
}

#[inline]
fn fit_cell(a: f64, v: f64) -> usize {
    let b = |x: f64| {
        let b = (x * FIT_BINS as f64).floor();
        if b.is_nan() || b < 0.0 {
            0
        } else {
            (b as usize).min(FIT_BINS - 1)
        }
    };
    b(a) * FIT_BINS + b(v)
}

#[inline]
pub(crate) fn bin(x: f64) -> usize {
    let b = (x * BINS as f64).floor();
    if b.is_nan() || b < 0.0 {
        0
    } else {
        (b as usize).min(BINS - 1)
    }
}

/// Standard normal distribution function from a table with a second-order Taylor correction
/// (absolute error below 1e-9), for the inner loops of the fit.
pub(crate) struct NormTable {
    cdf: Vec<f64>,
    pdf: Vec<f64>,
}

const TABLE_LIM: f64 = 9.0;
const TABLE_STEP: f64 = 1.0 / 256.0;

impl NormTable {
    pub(crate) fn new() -> Self {
        let n = (2.0 * TABLE_LIM / TABLE_STEP) as usize + 1;
        let mut cdf = Vec::with_capacity(n);
        let mut pdf = Vec::with_capacity(n);
        for i in 0..n {
            let z = -TABLE_LIM + i as f64 * TABLE_STEP;
            cdf.push(crate::util::norm_cdf(z));
            pdf.push((-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt());
        }
        NormTable { cdf, pdf }
    }

    #[inline]
    pub(crate) fn cdf(&self, z: f64) -> f64 {
        if z <= -TABLE_LIM {
            return 0.0;
        }
        if z >= TABLE_LIM {
            return 1.0;
        }
        let pos = (z + TABLE_LIM) / TABLE_STEP;
        let i = (pos + 0.5) as usize;
        let z0 = -TABLE_LIM + i as f64 * TABLE_STEP;
        let d = z - z0;
        let f = self.pdf[i];
        self.cdf[i] + f * d - 0.5 * z0 * f * d * d
    }
}

/// Shape parameters of the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CleanShape {
    /// Mean turnout of clean stations.
    pub mu_turnout: f64,
    /// Standard deviation of turnout of clean stations.
    pub sd_turnout: f64,
    /// Mean leader share of clean stations.
    pub mu_share: f64,
    /// Standard deviation of the leader share of clean stations.
    pub sd_share: f64,
    /// Correlation of turnout and share among clean stations (absorbs genuine heterogeneity, e.g.
    /// regions that both turn out more and support the leader more).
    pub corr: f64,
}

/// Result of the Klimek model fit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KlimekFit {
    /// Which estimator produced these numbers.
    pub estimator: String,
    /// Stations entering the fit.
    pub stations: usize,
    /// Fraction of stations with incremental stuffing.
    pub fi: f64,
    /// Fraction of stations with extreme stuffing.
    pub fe: f64,
    /// Bootstrap percentile intervals (at `ci_level`).
    pub fi_ci: [f64; 2],
    pub fe_ci: [f64; 2],
    /// Spread of the incremental stuffing fraction x ~ |N(0, alpha)|.
    pub alpha: f64,
    pub alpha_ci: [f64; 2],
    /// Fixed spread of extreme stuffing.
    pub theta: f64,
    /// Weight of the uniform background component (misfit diagnostic; large = model fits poorly).
    pub background: f64,
    /// The clean-station distribution.
    pub clean: CleanShape,
    /// Maximised log-likelihood per station.
    pub log_likelihood_per_station: f64,
    /// Model evaluations used by the optimiser.
    pub evaluations: usize,
    /// Bootstrap replicates used for the intervals.
    pub bootstrap_reps: usize,
}

/// Model components for one shape.
struct Components<'c> {
    clean: &'c [f64],
    inc: &'c [f64],
    ext: &'c [f64],
}

/// Owned components.
struct OwnedComponents {
    clean: Vec<f64>,
    inc: Vec<f64>,
    ext: Vec<f64>,
}

impl OwnedComponents {
    fn view(&self) -> Components<'_> {
        Components {
            clean: &self.clean,
            inc: &self.inc,
            ext: &self.ext,
        }
    }
}

/// Distribution of the stuffing fraction x.
#[derive(Debug, Clone, Copy)]
enum XDist {
    /// x ~ |N(0, alpha)| (incremental).
    Half(f64),
    /// x ~ 1 - |N(0, theta)| (extreme).
    Extreme(f64),
}

impl XDist {
    #[inline]
    fn cdf(self, t: &NormTable, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        match self {
            XDist::Half(alpha) => 2.0 * t.cdf(x / alpha) - 1.0,
            XDist::Extreme(theta) => {
                if x >= 1.0 {
                    1.0
                } else {
                    2.0 * (1.0 - t.cdf((1.0 - x) / theta))
                }
            }
        }
    }
}

/// Probability of each of the FIT_BINS bins of N(mean, sd) censored to [0,1] (tails into the edge bins).
#[inline]
fn binned_normal(t: &NormTable, mean: f64, sd: f64, out: &mut [f64; FIT_BINS]) {
    let inv = 1.0 / sd;
    let mut prev = 0.0;
    for (j, o) in out.iter_mut().enumerate() {
        let upper = if j + 1 == FIT_BINS {
            1.0
        } else {
            t.cdf(((j + 1) as f64 / FIT_BINS as f64 - mean) * inv)
        };
        *o = upper - prev;
        prev = upper;
    }
}

/// Sub-points per turnout bin and per stuffing interval in the numerical integration.
const SUB_A: usize = 2;
const SUB_X: usize = 2;

/// Binned clean distribution: turnout bins and conditional share bins per turnout sub-point.
struct Marg {
    pa: [f64; FIT_BINS],
    pv: Vec<[f64; FIT_BINS]>,
    /// Conditional mean and sd of the share at each turnout sub-point.
    cond: Vec<(f64, f64)>,
}

struct Model<'a> {
    table: &'a NormTable,
}

impl<'a> Model<'a> {
    fn new(table: &'a NormTable) -> Self {
        Model { table }
    }

    /// Binned turnout distribution, and for each turnout sub-point the binned conditional share
    /// distribution (bivariate normal: v | a ~ N(mu_v + corr sd_v/sd_a (a - mu_a), sd_v sqrt(1-corr^2))).
    fn marginals(&self, shape: &CleanShape) -> Marg {
        let mut pa = [0.0; FIT_BINS];
        binned_normal(self.table, shape.mu_turnout, shape.sd_turnout, &mut pa);
        let h = 1.0 / FIT_BINS as f64;
        let slope = shape.corr * shape.sd_share / shape.sd_turnout;
        let sd = shape.sd_share * (1.0 - shape.corr * shape.corr).sqrt();
        let mut pv = vec![[0.0; FIT_BINS]; FIT_BINS * SUB_A];
        let mut cond = vec![(shape.mu_share, sd); FIT_BINS * SUB_A];
        for i in 0..FIT_BINS {
            if pa[i] < 1e-12 {
                continue;
            }
            for sa in 0..SUB_A {
                let a = (i as f64 + (sa as f64 + 0.5) / SUB_A as f64) * h;
                let mean = shape.mu_share + slope * (a - shape.mu_turnout);
                binned_normal(self.table, mean, sd, &mut pv[i * SUB_A + sa]);
                cond[i * SUB_A + sa] = (mean, sd);
            }
        }
        Marg { pa, pv, cond }
    }

    fn clean(&self, m: &Marg) -> Vec<f64> {
        let mut out = vec![0.0; N_CELLS];
        for i in 0..FIT_BINS {
            if m.pa[i] < 1e-12 {
                continue;
            }
            for sa in 0..SUB_A {
                let w = m.pa[i] / SUB_A as f64;
                let pv = &m.pv[i * SUB_A + sa];
                for j in 0..FIT_BINS {
                    out[i * FIT_BINS + j] += w * pv[j];
                }
            }
        }
        out
    }

    /// Stuffed component: for each clean turnout sub-point `a`, the stuffing fraction x is cut into
    /// the exact intervals that send a' = a + x(1-a) into each turnout bin (probabilities from the
    /// distribution function of x), each split in SUB_X pieces; given a and x the share
    /// v' = (a(1-x)v + x)/a' is normal, and its bin probabilities are exact differences of the
    /// normal distribution function.
    fn stuffed(&self, m: &Marg, dist: XDist) -> Vec<f64> {
        let pa = &m.pa;
        let t = self.table;
        let h = 1.0 / FIT_BINS as f64;
        let mut out = vec![0.0; N_CELLS];
        // (turnout bin of a', x, probability) pieces for one a.
        let mut pieces: Vec<(usize, f64, f64)> = Vec::with_capacity(4 * FIT_BINS);
        for (i, &pai) in pa.iter().enumerate() {
            if pai < 1e-12 {
                continue;
            }
            for sa in 0..SUB_A {
                let a = (i as f64 + (sa as f64 + 0.5) / SUB_A as f64) * h;
                let wa = pai / SUB_A as f64;
                pieces.clear();
                let one_minus_a = 1.0 - a;
                for k in i..FIT_BINS {
                    let x_lo = ((k as f64 * h - a) / one_minus_a).max(0.0);
                    let x_hi = if k + 1 == FIT_BINS {
                        1.0
                    } else {
                        (((k + 1) as f64 * h - a) / one_minus_a).min(1.0)
                    };
                    let f_lo = dist.cdf(t, x_lo);
                    if f_lo >= 1.0 - 1e-13 {
                        break;
                    }
                    let step = (x_hi - x_lo) / SUB_X as f64;
                    let mut prev = f_lo;
                    for s in 0..SUB_X {
                        let hi = x_lo + (s + 1) as f64 * step;
                        let f_hi = if k + 1 == FIT_BINS && s + 1 == SUB_X {
                            1.0
                        } else {
                            dist.cdf(t, hi)
                        };
                        let p = f_hi - prev;
                        prev = f_hi;
                        if p > 1e-14 {
                            pieces.push((k, x_lo + (s as f64 + 0.5) * step, p));
                        }
                    }
                }
                let (cm, cs) = m.cond[i * SUB_A + sa];
                for &(k, x, p) in &pieces {
                    let a2 = a + x * one_minus_a;
                    let slope = a * (1.0 - x) / a2;
                    // v' = slope * v + x / a', v ~ N(cm, cs): binned exactly within ±7 sd.
                    let mean = slope * cm + x / a2;
                    let sd = (slope * cs).max(1e-4);
                    let row = k * FIT_BINS;
                    let w = wa * p;
                    let lo = ((mean - 7.0 * sd) * FIT_BINS as f64).floor().max(0.0) as usize;
                    let hi = (((mean + 7.0 * sd) * FIT_BINS as f64).floor().max(0.0) as usize)
                        .min(FIT_BINS - 1);
                    let lo = lo.min(hi);
                    let inv = 1.0 / sd;
                    let mut prev = 0.0;
                    for j in lo..=hi {
                        let upper = if j == hi {
                            1.0
                        } else {
                            t.cdf(((j + 1) as f64 * h - mean) * inv)
                        };
                        out[row + j] += w * (upper - prev);
                        prev = upper;
                    }
                }
            }
        }
        out
    }

    fn components(&self, shape: &CleanShape, alpha: f64) -> OwnedComponents {
        let m = self.marginals(shape);
        OwnedComponents {
            clean: self.clean(&m),
            inc: self.stuffed(&m, XDist::Half(alpha)),
            ext: self.stuffed(&m, XDist::Extreme(THETA_EXTREME)),
        }
    }
}

/// Observed data of the fit: nonzero cells and their counts.
#[derive(Debug, Clone)]
pub(crate) struct FitData {
    pub cells: Vec<u32>,
    pub counts: Vec<u64>,
}

impl FitData {
    pub(crate) fn from_pairs(turnout: &[f64], share: &[f64]) -> Self {
        let mut grid = vec![0u64; N_CELLS];
        for (&a, &v) in turnout.iter().zip(share) {
            grid[fit_cell(a, v)] += 1;
        }
        let mut cells = Vec::new();
        let mut counts = Vec::new();
        for (c, &n) in grid.iter().enumerate() {
            if n > 0 {
                cells.push(c as u32);
                counts.push(n);
            }
        }
        FitData { cells, counts }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Mixture weights: clean, incremental, extreme, background.
type Weights = [f64; 4];

/// EM for the mixture weights with fixed components; returns (weights, log-likelihood).
fn em(data: &FitData, comp: &Components, start: Weights, max_iter: usize) -> (Weights, f64) {
    let bg = 1.0 / N_CELLS as f64;
    let total = data.total() as f64;
    let mut w = start;
    // Keep every weight strictly positive so that EM can move it.
    for x in w.iter_mut() {
        *x = x.max(1e-6);
    }
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= s);
    let mut ll_prev = f64::NEG_INFINITY;
    let mut ll = f64::NEG_INFINITY;
    for _ in 0..max_iter {
        let mut acc = [0.0f64; 4];
        ll = 0.0;
        for (&c, &n) in data.cells.iter().zip(&data.counts) {
            let c = c as usize;
            let p = [
                w[0] * comp.clean[c],
                w[1] * comp.inc[c],
                w[2] * comp.ext[c],
                w[3] * bg,
            ];
            let m = p[0] + p[1] + p[2] + p[3];
            let nf = n as f64;
            ll += nf * m.ln();
            let r = nf / m;
            for k in 0..4 {
                acc[k] += p[k] * r;
            }
        }
        for k in 0..4 {
            w[k] = acc[k] / total;
        }
        if (ll - ll_prev).abs() < 1e-9 * total {
            break;
        }
        ll_prev = ll;
    }
    (w, ll)
}

/// Unconstrained parameter vector <-> shape and alpha.
fn decode(p: &[f64; 6]) -> (CleanShape, f64) {
    (
        CleanShape {
            mu_turnout: p[0].clamp(0.0, 1.0),
            sd_turnout: p[1].exp().clamp(0.004, 0.5),
            mu_share: p[2].clamp(0.0, 1.0),
            sd_share: p[3].exp().clamp(0.004, 0.5),
            corr: p[5].tanh().clamp(-0.95, 0.95),
        },
        p[4].exp().clamp(0.003, 3.0),
    )
}

/// Minimises `f` by Nelder–Mead from `x0` with initial steps `step`.
fn nelder_mead<const D: usize>(
    mut f: impl FnMut(&[f64; D]) -> f64,
    x0: [f64; D],
    step: [f64; D],
    max_evals: usize,
    tol: f64,
) -> ([f64; D], f64, usize) {
    let mut evals = 0usize;
    let mut simplex: Vec<([f64; D], f64)> = Vec::with_capacity(D + 1);
    let v0 = f(&x0);
    evals += 1;
    simplex.push((x0, v0));
    for d in 0..D {
        let mut x = x0;
        x[d] += step[d];
        let v = f(&x);
        evals += 1;
        simplex.push((x, v));
    }
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let best = simplex[0].1;
        let worst = simplex[D].1;
        if (worst - best).abs() <= tol * (1.0 + best.abs()) {
            break;
        }
        let mut centroid = [0.0; D];
        for (x, _) in simplex.iter().take(D) {
            for d in 0..D {
                centroid[d] += x[d] / D as f64;
            }
        }
        let along = |t: f64| -> [f64; D] {
            let mut x = [0.0; D];
            for d in 0..D {
                x[d] = centroid[d] + t * (simplex[D].0[d] - centroid[d]);
            }
            x
        };
        let xr = along(-1.0);
        let vr = f(&xr);
        evals += 1;
        if vr < simplex[0].1 {
            let xe = along(-2.0);
            let ve = f(&xe);
            evals += 1;
            simplex[D] = if ve < vr { (xe, ve) } else { (xr, vr) };
        } else if vr < simplex[D - 1].1 {
            simplex[D] = (xr, vr);
        } else {
            let (xc, vc) = if vr < simplex[D].1 {
                let x = along(-0.5);
                (x, f(&x))
            } else {
                let x = along(0.5);
                (x, f(&x))
            };
            evals += 1;
            if vc < simplex[D].1.min(vr) {
                simplex[D] = (xc, vc);
            } else {
                // Shrink towards the best point.
                let xb = simplex[0].0;
                for item in simplex.iter_mut().skip(1) {
                    let mut x = [0.0; D];
                    for d in 0..D {
                        x[d] = xb[d] + 0.5 * (item.0[d] - xb[d]);
                    }
                    *item = (x, f(&x));
                    evals += 1;
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    (simplex[0].0, simplex[0].1, evals)
}

/// Starting values from the data: modes of the marginals and half-widths on their lower side.
fn initial_shape(data: &FitData) -> CleanShape {
    let mut ma = [0f64; FIT_BINS];
    let mut mv = [0f64; FIT_BINS];
    for (&c, &n) in data.cells.iter().zip(&data.counts) {
        ma[c as usize / FIT_BINS] += n as f64;
        mv[c as usize % FIT_BINS] += n as f64;
    }
    let stat = |m: &[f64; FIT_BINS]| -> (f64, f64) {
        // Smoothed mode below 95%.
        let mut best = 0usize;
        let mut best_v = -1.0;
        for i in 0..(FIT_BINS * 95 / 100) {
            let lo = i.saturating_sub(1);
            let hi = (i + 1).min(FIT_BINS - 1);
            let s: f64 = m[lo..=hi].iter().sum();
            if s > best_v {
                best_v = s;
                best = i;
            }
        }
        let mode = (best as f64 + 0.5) / FIT_BINS as f64;
        let (mut s2, mut w) = (0.0, 0.0);
        for (i, &c) in m.iter().enumerate().take(best + 1) {
            let x = (i as f64 + 0.5) / FIT_BINS as f64 - mode;
            s2 += c * x * x;
            w += c;
        }
        let sd = if w > 0.0 { (s2 / w).sqrt() } else { 0.1 };
        (mode, sd.clamp(0.01, 0.3))
    };
    let (mu_a, sd_a) = stat(&ma);
    let (mu_v, sd_v) = stat(&mv);
    CleanShape {
        mu_turnout: mu_a,
        sd_turnout: sd_a,
        mu_share: mu_v,
        sd_share: sd_v,
        corr: 0.0,
    }
}

fn encode(shape: &CleanShape, alpha: f64) -> [f64; 6] {
    [
        shape.mu_turnout,
        shape.sd_turnout.ln(),
        shape.mu_share,
        shape.sd_share.ln(),
        alpha.ln(),
        shape.corr.clamp(-0.95, 0.95).atanh(),
    ]
}

struct PointFit {
    shape: CleanShape,
    alpha: f64,
    weights: Weights,
    ll: f64,
    evals: usize,
}

fn fit_point(data: &FitData, model: &Model) -> PointFit {
    let init = initial_shape(data);
    let start_w: Weights = [0.8, 0.1, 0.05, 0.05];
    let mut evals = 0usize;
    let mut best: Option<PointFit> = None;
    // Two starting values of alpha (small and large stuffing), then a restart from the better one.
    for &alpha0 in &[0.08, 0.3] {
        let mut last_w = start_w;
        let obj = |p: &[f64; 6]| -> f64 {
            let (shape, alpha) = decode(p);
            let comp = model.components(&shape, alpha);
            let (w, ll) = em(data, &comp.view(), last_w, 300);
            last_w = w;
            -ll
        };
        let (x, _, e) = nelder_mead(
            obj,
            encode(&init, alpha0),
            [0.02, 0.2, 0.02, 0.2, 0.5, 0.3],
            300,
            1e-8,
        );
        evals += e;
        let (shape, alpha) = decode(&x);
        let comp = model.components(&shape, alpha);
        let (w, ll) = em(data, &comp.view(), start_w, 2000);
        if best.as_ref().is_none_or(|b| ll > b.ll) {
            best = Some(PointFit {
                shape,
                alpha,
                weights: w,
                ll,
                evals: 0,
            });
        }
    }
    let b = best.expect("at least one start");
    // Restart with a fresh simplex at the best point (guards against a collapsed simplex).
    let mut last_w = b.weights;
    let obj = |p: &[f64; 6]| -> f64 {
        let (shape, alpha) = decode(p);
        let comp = model.components(&shape, alpha);
        let (w, ll) = em(data, &comp.view(), last_w, 300);
        last_w = w;
        -ll
    };
    let (x, _, e) = nelder_mead(
        obj,
        encode(&b.shape, b.alpha),
        [0.01, 0.1, 0.01, 0.1, 0.3, 0.15],
        200,
        1e-9,
    );
    evals += e;
    let (shape, alpha) = decode(&x);
    let comp = model.components(&shape, alpha);
    let (w, ll) = em(data, &comp.view(), b.weights, 3000);
    if ll >= b.ll {
        PointFit {
            shape,
            alpha,
            weights: w,
            ll,
            evals,
        }
    } else {
        PointFit { evals, ..b }
    }
}

/// Incremental components precomputed on a grid of ln(alpha), interpolated linearly in between
/// (used by the bootstrap, where the clean shape is held fixed).
struct AlphaGrid {
    lo: f64,
    step: f64,
    comps: Vec<Vec<f64>>,
}

impl AlphaGrid {
    fn new(model: &Model, shape: &CleanShape, alpha0: f64, half_width: f64, n: usize) -> Self {
        let m = model.marginals(shape);
        let lo = alpha0.ln() - half_width;
        let step = 2.0 * half_width / (n - 1) as f64;
        let comps = (0..n)
            .into_par_iter()
            .map(|k| model.stuffed(&m, XDist::Half((lo + k as f64 * step).exp())))
            .collect();
        AlphaGrid { lo, step, comps }
    }

    fn hi(&self) -> f64 {
        self.lo + self.step * (self.comps.len() - 1) as f64
    }

    fn at(&self, la: f64, out: &mut [f64]) {
        let pos = ((la - self.lo) / self.step).clamp(0.0, (self.comps.len() - 1) as f64);
        let k = (pos.floor() as usize).min(self.comps.len() - 2);
        let f = pos - k as f64;
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.comps[k][c] * (1.0 - f) + self.comps[k + 1][c] * f;
        }
    }
}

/// Golden-section maximisation of the profile likelihood over ln(alpha) with the clean shape fixed.
fn fit_alpha_only(
    data: &FitData,
    grid: &AlphaGrid,
    clean: &[f64],
    ext: &[f64],
    w0: Weights,
) -> (f64, Weights) {
    let mut inc = vec![0.0; N_CELLS];
    let mut eval = |la: f64| -> (f64, Weights) {
        grid.at(la, &mut inc);
        let comp = Components {
            clean,
            inc: &inc,
            ext,
        };
        let (w, ll) = em(data, &comp, w0, 400);
        (ll, w)
    };
    let g = 0.618_033_988_749_894_9;
    let (mut lo, mut hi) = (grid.lo, grid.hi());
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let mut f1 = eval(x1);
    let mut f2 = eval(x2);
    for _ in 0..12 {
        if f1.0 > f2.0 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = eval(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = eval(x2);
        }
    }
    if f1.0 > f2.0 {
        (x1.exp(), f1.1)
    } else {
        (x2.exp(), f2.1)
    }
}

/// Fits the model to stations' (turnout, share) pairs. `level` is the interval level.
pub(crate) fn fit(
    turnout: &[f64],
    share: &[f64],
    boot_reps: usize,
    level: f64,
    seed: u64,
) -> KlimekFit {
    let data = FitData::from_pairs(turnout, share);
    let table = NormTable::new();
    let model = Model::new(&table);
    let n = data.total();
    if n < 10 {
        return KlimekFit {
            estimator: ESTIMATOR.to_string(),
            stations: n as usize,
            fi: f64::NAN,
            fe: f64::NAN,
            fi_ci: [f64::NAN; 2],
            fe_ci: [f64::NAN; 2],
            alpha: f64::NAN,
            alpha_ci: [f64::NAN; 2],
            theta: THETA_EXTREME,
            background: f64::NAN,
            clean: initial_shape(&data),
            log_likelihood_per_station: f64::NAN,
            evaluations: 0,
            bootstrap_reps: 0,
        };
    }
    let pf = fit_point(&data, &model);
    let m = model.marginals(&pf.shape);
    let clean = model.clean(&m);
    let ext = model.stuffed(&m, XDist::Extreme(THETA_EXTREME));
    let grid = AlphaGrid::new(&model, &pf.shape, pf.alpha, 1.0, 21);

    let reps: Vec<(f64, f64, f64)> = (0..boot_reps)
        .into_par_iter()
        .map(|r| {
            let mut rng = rng_for(seed, stream::FIT_BOOT, r as u64);
            let mut counts = vec![0u64; data.counts.len()];
            multinomial(&mut rng, n, &data.counts, &mut counts);
            // Cells drawn zero times drop out of the likelihood.
            let mut bd = FitData {
                cells: Vec::with_capacity(counts.len()),
                counts: Vec::with_capacity(counts.len()),
            };
            for (&c, &k) in data.cells.iter().zip(&counts) {
                if k > 0 {
                    bd.cells.push(c);
                    bd.counts.push(k);
                }
            }
            let (alpha, w) = fit_alpha_only(&bd, &grid, &clean, &ext, pf.weights);
            (w[1], w[2], alpha)
        })
        .collect();
    let fi_r: Vec<f64> = reps.iter().map(|r| r.0).collect();
    let fe_r: Vec<f64> = reps.iter().map(|r| r.1).collect();
    let al_r: Vec<f64> = reps.iter().map(|r| r.2).collect();
    KlimekFit {
        estimator: ESTIMATOR.to_string(),
        stations: n as usize,
        fi: pf.weights[1],
        fe: pf.weights[2],
        fi_ci: percentile_interval(&fi_r, level),
        fe_ci: percentile_interval(&fe_r, level),
        alpha: pf.alpha,
        alpha_ci: percentile_interval(&al_r, level),
        theta: THETA_EXTREME,
        background: pf.weights[3],
        clean: pf.shape,
        log_likelihood_per_station: pf.ll / n as f64,
        evaluations: pf.evals,
        bootstrap_reps: boot_reps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn table_cdf_is_accurate() {
        let t = NormTable::new();
        for i in -800..800 {
            let z = i as f64 / 97.0;
            assert!((t.cdf(z) - crate::util::norm_cdf(z)).abs() < 2e-9, "{z}");
        }
    }

    #[test]
    fn components_are_probability_distributions() {
        let t = NormTable::new();
        let m = Model::new(&t);
        let shape = CleanShape {
            mu_turnout: 0.55,
            sd_turnout: 0.1,
            mu_share: 0.5,
            sd_share: 0.08,
            corr: 0.3,
        };
        let c = m.components(&shape, 0.2);
        for comp in [&c.clean, &c.inc, &c.ext] {
            let s: f64 = comp.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "{s}");
        }
        // Extreme stuffing puts its mass in the top-right corner.
        let corner: f64 = (45..FIT_BINS)
            .flat_map(|i| (45..FIT_BINS).map(move |j| i * FIT_BINS + j))
            .map(|k| c.ext[k])
            .sum();
        assert!(corner > 0.95, "{corner}");
    }

    /// Simulates the model directly (not through the binned integration) and checks recovery.
    #[test]
    fn recovers_parameters_of_simulated_model() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n = 20_000;
        let (fi, fe, alpha): (f64, f64, f64) = (0.3, 0.04, 0.25);
        let na = Normal::new(0.55, 0.08).unwrap();
        let nv = Normal::new(0.45, 0.07).unwrap();
        let z = Normal::new(0.0, 1.0).unwrap();
        let mut ts = Vec::with_capacity(n);
        let mut vs = Vec::with_capacity(n);
        use rand::Rng;
        for _ in 0..n {
            let a: f64 = na.sample(&mut rng);
            let v: f64 = nv.sample(&mut rng);
            let a = a.clamp(0.0, 1.0);
            let v = v.clamp(0.0, 1.0);
            let u: f64 = rng.gen();
            let x: f64 = if u < fi {
                (alpha * z.sample(&mut rng)).abs()
            } else if u < fi + fe {
                1.0 - (THETA_EXTREME * z.sample(&mut rng)).abs()
            } else {
                0.0
            };
            let x = x.clamp(0.0, 1.0);
            let a2 = a + x * (1.0 - a);
            let v2 = if a2 > 0.0 {
                (a * (1.0 - x) * v + x) / a2
            } else {
                v
            };
            ts.push(a2);
            vs.push(v2);
        }
        let f = fit(&ts, &vs, 30, 0.95, 5);
        assert!((f.fi - fi).abs() < 0.05, "fi {}", f.fi);
        assert!((f.fe - fe).abs() < 0.01, "fe {}", f.fe);
        assert!(
            f.fi_ci[0] <= fi + 0.02 && f.fi_ci[1] >= fi - 0.02,
            "{:?}",
            f.fi_ci
        );
        assert!((f.clean.mu_turnout - 0.55).abs() < 0.01);
        assert!(f.background < 0.02);
    }
}

//! # tally-project
//!
//! Election night from a partial count: the projected final result with intervals, a race call
//! that waits until it is safe, the parallel vote tabulation (quick count) from a random sample of
//! stations, and the backtests that show how honest all of it was on past elections.
//!
//! - [`Population`]: every station with its size (registered voters), its area, its covariates
//!   from a baseline (an earlier round or election, matched by station id) and its counts where it
//!   has reported;
//! - [`project`]: a baseline-and-swing model in the manner of newsroom election-night models (each
//!   candidate's votes per registered voter regressed on the baseline's shares, turnout and size,
//!   with random effects for areas, fitted on the stations in so far), projecting every station not
//!   yet in and summing; without a baseline the same model on size and areas alone. Intervals come
//!   from the model's prediction variance (the fitted parameters, made robust to errors shared
//!   within an area, plus each station's own noise) and are clipped to what is still possible;
//! - [`call`]: elected / runoff / too close, never across an interval;
//! - [`sample`]: a stratified random sample of stations and the stratified ratio estimator with
//!   the finite-population correction;
//! - [`backtest`]: replays of a final count in an arrival order, with coverage of the intervals
//!   and every wrong call.
//!
//! Architecture invariant: pure and seeded, like the other evidence crates: reads
//! `tally_model::Round`s (never files), decides with `tally_model::rule`, prints nothing.

pub mod backtest;
pub mod call;
mod fit;
pub mod population;
pub mod sample;

pub use call::{Call, CallKind};
pub use population::{default_level, Inputs, Population, PopulationError};

use rayon::prelude::*;
use serde::Serialize;
use tally_model::Rule;

/// The JSON format name of a projection.
pub const FORMAT: &str = "tally.projection/1";

/// What a projection is asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Confidence of the intervals (0.95 for 95%).
    pub confidence: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { confidence: 0.95 }
    }
}

/// A value with its interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Band {
    pub share: f64,
    pub lower: f64,
    pub upper: f64,
}

/// One candidate's projection. Shares are percent of valid votes.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateProjection {
    pub id: String,
    pub name: String,
    /// Votes counted so far.
    pub votes_now: u64,
    /// Share of the valid votes counted so far.
    pub share_now: f64,
    /// Projected final share and its interval.
    pub share: f64,
    pub lower: f64,
    pub upper: f64,
    /// Projected final votes and their interval.
    pub votes: u64,
    pub votes_lower: u64,
    pub votes_upper: u64,
}

/// How much is in.
#[derive(Clone, Debug, Serialize)]
pub struct Reported {
    pub stations: usize,
    pub stations_total: usize,
    pub registered: u64,
    pub registered_total: u64,
    /// Percent of registered voters in reported stations.
    pub registered_share: f64,
}

/// A projection of one round's final result.
#[derive(Clone, Debug, Serialize)]
pub struct Projection {
    pub format: &'static str,
    pub round: u8,
    pub confidence: f64,
    /// `baseline-swing`, `area`, `quick-count`, `bounds` (too few stations in to model) or
    /// `complete` (everything is in: the count itself).
    pub method: &'static str,
    /// The area level of the area effects, or of the strata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub reported: Reported,
    pub candidates: Vec<CandidateProjection>,
    /// Projected turnout (ballots cast per registered voter), percent.
    pub turnout: Band,
    pub call: Call,
    /// The method and its assumptions, in words.
    pub assumptions: Vec<String>,
    /// For a quick count: how much of the sample is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleProgress>,
}

/// How many sampled stations of a quick count have reported.
#[derive(Clone, Debug, Serialize)]
pub struct SampleProgress {
    pub drawn: usize,
    pub reported: usize,
    pub strata: usize,
    pub strata_without_report: usize,
}

/// Projects the final result of `pop` from its counted stations.
pub fn project(pop: &Population, rule: &Rule, opts: &Options) -> Projection {
    project_reported(pop, &pop.counted, rule, opts)
}

/// Projects as if only the stations with `reported[i]` (and counted in `pop`) were in.
pub fn project_reported(
    pop: &Population,
    reported: &[bool],
    rule: &Rule,
    opts: &Options,
) -> Projection {
    let k = pop.k();
    let n = pop.len();
    let is_in = |i: usize| reported[i] && pop.counted[i] && pop.in_play[i];
    let mut now = vec![0u64; k];
    let mut turnout_now = 0u64;
    let (mut st_in, mut st_total) = (0usize, 0usize);
    let (mut reg_in, mut reg_total) = (0f64, 0f64);
    let mut unreported = Vec::new();
    let mut rows = Vec::new();
    for i in 0..n {
        if !pop.in_play[i] {
            continue;
        }
        st_total += 1;
        reg_total += pop.size[i];
        if is_in(i) {
            st_in += 1;
            reg_in += pop.size[i];
            for (a, &v) in now.iter_mut().zip(pop.votes_of(i)) {
                *a += u64::from(v);
            }
            turnout_now += u64::from(pop.turnout[i]);
            rows.push(i);
        } else {
            unreported.push(i);
        }
    }
    let reported = Reported {
        stations: st_in,
        stations_total: st_total,
        registered: reg_in.round() as u64,
        registered_total: reg_total.round() as u64,
        registered_share: if reg_total > 0.0 {
            100.0 * reg_in / reg_total
        } else {
            0.0
        },
    };
    let estimate = if unreported.is_empty() {
        Estimate::exact(&now, turnout_now)
    } else if rows.len() < pop.p + 10 {
        Estimate::bounds(pop, &now, turnout_now, &unreported)
    } else {
        Estimate::model(pop, &rows, &unreported, &now, turnout_now)
    };
    let so_far = SoFar {
        votes: &now,
        turnout: turnout_now,
        registered_total: reg_total,
    };
    assemble(pop, rule, opts, reported, &so_far, estimate)
}

/// The variance of a linear combination of the targets' unreported totals.
type VarianceOf = Box<dyn Fn(&[f64]) -> f64>;

/// What is in so far.
struct SoFar<'a> {
    votes: &'a [u64],
    turnout: u64,
    registered_total: f64,
}

/// Projected totals of the unreported stations and the variance of any linear combination.
pub(crate) struct Estimate {
    method: &'static str,
    /// Projected final votes per candidate, then ballots cast.
    totals: Vec<f64>,
    /// Registered voters in the stations not yet in (the most they can add).
    room: f64,
    /// Variance of `sum over unreported of size * (coef . targets)` for coefficients over the
    /// `k + 1` targets; `None` when only the logical bounds are known.
    var: Option<VarianceOf>,
    notes: Vec<String>,
}

impl Estimate {
    fn exact(now: &[u64], turnout_now: u64) -> Estimate {
        let mut totals: Vec<f64> = now.iter().map(|&v| v as f64).collect();
        totals.push(turnout_now as f64);
        Estimate {
            method: "complete",
            totals,
            room: 0.0,
            var: Some(Box::new(|_| 0.0)),
            notes: vec!["Every station has reported: these are the counted results.".into()],
        }
    }

    fn bounds(pop: &Population, now: &[u64], turnout_now: u64, unreported: &[usize]) -> Estimate {
        let room: f64 = unreported.iter().map(|&i| pop.size[i]).sum();
        let mut totals: Vec<f64> = now.iter().map(|&v| v as f64).collect();
        totals.push(turnout_now as f64);
        Estimate {
            method: "bounds",
            totals,
            room,
            var: None,
            notes: vec![format!(
                "Too few stations have reported to fit a model ({} needed); the intervals are \
                 only what the {} registered voters still out could change.",
                pop.p + 10,
                room.round()
            )],
        }
    }

    fn model(
        pop: &Population,
        rows: &[usize],
        unreported: &[usize],
        now: &[u64],
        turnout_now: u64,
    ) -> Estimate {
        let q = pop.k() + 1;
        let nr = rows.len();
        // Pass 1: weights proportional to size (sampling noise of a rate shrinks with size);
        // then the variance of a station's residual is fitted as a + b / size (sampling noise
        // plus differences between stations that do not shrink).
        let w1: Vec<f64> = rows.iter().map(|&i| pop.size[i]).collect();
        let m1 = fit::fit(pop, rows, &w1, None);
        let (va, vb) = variance_function(pop, rows, &m1.resid, q);
        let unit_var = |size: f64| va + vb / size;
        let w: Vec<f64> = rows.iter().map(|&i| 1.0 / unit_var(pop.size[i])).collect();
        // The spread of area means of those residuals beyond what station noise explains gives
        // the random-effect variance, hence the penalty on area effects.
        let lambda = if pop.groups.len() > 1 {
            area_penalty(pop, rows, &w, &m1.resid, q)
        } else {
            None
        };
        // Held-out calibration: areas split into folds, each fold predicted from the others; the
        // mean ratio of squared aggregate errors to their model variance (at least 1) scales
        // every variance below.
        let calibration = calibrate(pop, rows, unreported, &w, lambda, &unit_var);
        let model = fit::fit(pop, rows, &w, lambda);

        let mut totals: Vec<f64> = now.iter().map(|&v| v as f64).collect();
        totals.push(turnout_now as f64);
        let groups = if lambda.is_some() {
            pop.groups.len()
        } else {
            0
        };
        let mut ax = vec![0.0; pop.p];
        let mut ag = vec![0.0; groups];
        let mut unit_sum = 0.0;
        let mut room = 0.0;
        for &u in unreported {
            let s = pop.size[u];
            room += s;
            for (t, total) in totals.iter_mut().enumerate() {
                *total += s * model.predict(pop, u, t).clamp(0.0, 1.0);
            }
            for (a, &x) in ax.iter_mut().zip(pop.row(u)) {
                *a += s * x;
            }
            if groups > 0 {
                ag[pop.group[u] as usize] += s;
            }
            unit_sum += s * s * unit_var(s);
        }
        let (vx, vg) = model.solver.solve(&ax, &ag);
        let k_param: f64 = ax.iter().zip(&vx).map(|(a, b)| a * b).sum::<f64>()
            + ag.iter().zip(&vg).map(|(a, b)| a * b).sum::<f64>();
        // Each fitted station's pull on the aggregate prediction, for the area-robust variance.
        let pull: Vec<f64> = rows
            .iter()
            .zip(&w)
            .map(|(&i, &wi)| {
                let mut h: f64 = pop.row(i).iter().zip(&vx).map(|(x, v)| x * v).sum();
                if groups > 0 {
                    h += vg[pop.group[i] as usize];
                }
                wi * h
            })
            .collect();
        let dof = (nr as f64 - model.dof_used).max(1.0);
        let resid = model.resid;
        let group_of: Vec<u32> = rows.iter().map(|&i| pop.group[i]).collect();
        let n_groups = pop.groups.len();
        // Areas with no station in yet: their stations share an effect the model has not seen
        // (voters abroad, a region that counts last). Its variance is taken as the raw mean
        // square of the area means of residuals among the areas seen (before any shrinkage).
        let mut seen = vec![false; n_groups];
        for &g in &group_of {
            seen[g as usize] = true;
        }
        let mut unseen_mass = vec![0.0; n_groups];
        for &u in unreported {
            let g = pop.group[u] as usize;
            if !seen[g] {
                unseen_mass[g] += pop.size[u];
            }
        }
        let unseen_sq: f64 = unseen_mass.iter().map(|m| m * m).sum();
        let free_resid = m1.resid;
        let var = move |coef: &[f64]| -> f64 {
            let combine = |res: &[f64], r: usize| -> f64 {
                coef.iter()
                    .zip(&res[r * q..(r + 1) * q])
                    .map(|(c, e)| c * e)
                    .sum()
            };
            let unseen = if unseen_sq > 0.0 {
                let mut sw = vec![0.0; n_groups];
                let mut swe = vec![0.0; n_groups];
                let mut count = vec![0usize; n_groups];
                let (mut all_w, mut all_we2) = (0.0, 0.0);
                for r in 0..nr {
                    let e = combine(&free_resid, r);
                    let g = group_of[r] as usize;
                    sw[g] += w[r];
                    swe[g] += w[r] * e;
                    count[g] += 1;
                    all_w += w[r];
                    all_we2 += w[r] * e * e;
                }
                let (mut sum, mut areas) = (0.0, 0usize);
                for g in (0..n_groups).filter(|&g| count[g] >= 2) {
                    sum += (swe[g] / sw[g]).powi(2);
                    areas += 1;
                }
                let spread = if areas > 0 {
                    sum / areas as f64
                } else {
                    all_we2 / all_w.max(1e-300)
                };
                spread * unseen_sq
            } else {
                0.0
            };
            let mut ss = 0.0;
            let mut by_group = vec![0.0; n_groups];
            for r in 0..nr {
                let e = combine(&resid, r);
                ss += w[r] * e * e;
                by_group[group_of[r] as usize] += pull[r] * e;
            }
            let sigma2 = ss / dof;
            let model_param = sigma2 * k_param;
            let robust_param: f64 = by_group.iter().map(|s| s * s).sum();
            calibration * (model_param.max(robust_param) + sigma2 * unit_sum) + unseen
        };
        let mut notes = Vec::new();
        let base = pop.has_baseline.iter().filter(|&&h| h).count();
        if base > 0 {
            notes.push(format!(
                "Baseline and swing: each candidate's votes and the ballots cast per registered \
                 voter are regressed, over the {nr} stations in, on the baseline's shares and \
                 turnout and the station's size{}; every station not yet in is projected and \
                 the projections are summed.",
                area_words(pop, lambda)
            ));
            let without = pop
                .in_play
                .iter()
                .zip(&pop.has_baseline)
                .filter(|(p, h)| **p && !**h)
                .count();
            if without > 0 {
                notes.push(format!(
                    "{without} stations have no baseline; they get their own intercept."
                ));
            }
        } else {
            notes.push(format!(
                "No baseline: each candidate's votes and the ballots cast per registered voter \
                 are modelled from the station's size{} alone, fitted on the {nr} stations in. \
                 Without a baseline the model knows little about stations unlike those in; the \
                 intervals say so.",
                area_words(pop, lambda)
            ));
        }
        let [_, from_registry, from_baseline, from_median] = pop.sizes_from;
        if from_registry + from_baseline + from_median > 0 {
            notes.push(format!(
                "Registered voters missing in the count were taken from the registry for \
                 {from_registry} stations and from the baseline for {from_baseline}; \
                 {from_median} stations with no known size were given their area's median."
            ));
        }
        notes.push(
            "Intervals: the model's prediction variance (its fitted parameters, made robust to \
             errors shared within an area, plus each station's own noise, a + b/size), clipped \
             to what the registered voters still out can change. They assume the stations not \
             yet in differ from those in only as the model describes."
                .into(),
        );
        Estimate {
            method: if base > 0 { "baseline-swing" } else { "area" },
            totals,
            room,
            var: Some(Box::new(var)),
            notes,
        }
    }
}

fn area_words(pop: &Population, lambda: Option<f64>) -> String {
    match (&pop.level, lambda) {
        (Some(level), Some(_)) => format!(
            ", with a random effect for each of the {} areas at level {level}",
            pop.groups.len()
        ),
        (Some(level), None) => format!(
            " (areas at level {level} add nothing measurable beyond that, so none is modelled)"
        ),
        _ => String::new(),
    }
}

/// How much the model's variance of a held-out aggregate understates its real error: areas are
/// split into five folds, each fold's stations are predicted from the others', and the squared
/// error of each fold's total (per target) is compared with its model variance. The mean ratio,
/// never below 1, multiplies every variance of the projection.
fn calibrate(
    pop: &Population,
    rows: &[usize],
    unreported: &[usize],
    w: &[f64],
    lambda: Option<f64>,
    unit_var: &(dyn Fn(f64) -> f64 + Sync),
) -> f64 {
    const FOLDS: u64 = 5;
    let q = pop.k() + 1;
    let fold_of =
        |i: usize| (u64::from(pop.group[i]).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % FOLDS;
    // One more fold: as many reported stations as are still out (at most a fifth), those closest
    // in size to the typical station still out. When large stations report first, these are the
    // smallest in, and predicting them from the larger ones measures what extrapolating down in
    // size costs.
    let like_out: Vec<bool> = {
        let mut logs: Vec<f64> = unreported.iter().map(|&u| pop.size[u].ln()).collect();
        let mid = logs.len() / 2;
        let centre = if logs.is_empty() {
            0.0
        } else {
            *logs.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
        };
        let mut by_distance: Vec<(f64, usize)> = rows
            .iter()
            .enumerate()
            .map(|(r, &i)| ((pop.size[i].ln() - centre).abs(), r))
            .collect();
        by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut flag = vec![false; rows.len()];
        for &(_, r) in by_distance
            .iter()
            .take(unreported.len().min(rows.len() / 5))
        {
            flag[r] = true;
        }
        flag
    };
    // The folds' sufficient statistics in one pass; a fold's training fit is the total minus
    // the fold, so no station is read twice.
    let groups = if lambda.is_some() {
        pop.groups.len()
    } else {
        0
    };
    let mut normals: Vec<fit::Normal> = (0..=FOLDS)
        .map(|_| fit::Normal::new(pop.p, q, groups))
        .collect();
    let mut y = vec![0.0; q];
    for (r, &i) in rows.iter().enumerate() {
        normals[fold_of(i) as usize].add(pop, i, w[r], &mut y);
        if like_out[r] {
            normals[FOLDS as usize].add(pop, i, w[r], &mut y);
        }
    }
    for n in &mut normals {
        n.seal(pop.p);
    }
    let total = normals[1..FOLDS as usize]
        .iter()
        .fold(normals[0].clone(), |acc, n| acc.plus(n));
    // Each fold's ratios (squared error / model variance, per target), the folds on all cores.
    let fold = |f: u64| -> Vec<f64> {
        let held_n = &normals[f as usize];
        if held_n.rows == 0 || total.rows - held_n.rows < pop.p + 10 {
            return Vec::new();
        }
        let train = total.minus(held_n);
        let m = fit::solve_normal(pop, &train, lambda);
        let mut y = vec![0.0; q];
        let mut ax = vec![0.0; pop.p];
        let mut ag = vec![0.0; groups];
        let mut unit = 0.0;
        let mut err = vec![0.0; q];
        for (r, &i) in rows.iter().enumerate() {
            let held = if f == FOLDS {
                like_out[r]
            } else {
                fold_of(i) == f
            };
            if !held {
                continue;
            }
            let s = pop.size[i];
            fit::targets(pop, i, &mut y);
            for (t, e) in err.iter_mut().enumerate() {
                *e += s * (y[t] - m.predict(pop, i, t));
            }
            for (a, &x) in ax.iter_mut().zip(pop.row(i)) {
                *a += s * x;
            }
            if groups > 0 {
                ag[pop.group[i] as usize] += s;
            }
            unit += s * s * unit_var(s);
        }
        let (vx, vg) = m.solver.solve(&ax, &ag);
        let k_param: f64 = ax.iter().zip(&vx).map(|(a, b)| a * b).sum::<f64>()
            + ag.iter().zip(&vg).map(|(a, b)| a * b).sum::<f64>();
        let dof = (train.rows as f64 - m.dof_used).max(1.0);
        err.iter()
            .enumerate()
            .filter_map(|(t, e)| {
                let v = m.weighted_ss(&train, t) / dof * (k_param + unit);
                (v > 0.0).then(|| e * e / v)
            })
            .collect()
    };
    let ratios: Vec<Vec<f64>> = (0..=FOLDS).into_par_iter().map(fold).collect();
    let (mut sum, mut terms) = (0.0, 0usize);
    for r in &ratios[..FOLDS as usize] {
        sum += r.iter().sum::<f64>();
        terms += r.len();
    }
    let like = &ratios[FOLDS as usize];
    let (like_sum, like_terms) = (like.iter().sum::<f64>(), like.len());
    let mean = |s: f64, n: usize| if n == 0 { 1.0 } else { s / n as f64 };
    mean(sum, terms).max(mean(like_sum, like_terms)).max(1.0)
}

/// Fits `resid^2 = a + b / size` (pooled over targets, each scaled to its mean square) by least
/// squares with `a, b >= 0`: the variance of one station's residual as a function of its size.
fn variance_function(pop: &Population, rows: &[usize], resid: &[f64], q: usize) -> (f64, f64) {
    let nr = rows.len();
    let mut scale = vec![0.0; q];
    for r in 0..nr {
        for t in 0..q {
            scale[t] += resid[r * q + t].powi(2);
        }
    }
    for s in &mut scale {
        *s = (*s / nr as f64).max(1e-300);
    }
    // u_r = mean over targets of resid^2 / scale, regressed on (1, 1/size).
    let (mut s1, mut sx, mut sxx, mut sy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (r, &i) in rows.iter().enumerate() {
        let u: f64 = (0..q)
            .map(|t| resid[r * q + t].powi(2) / scale[t])
            .sum::<f64>()
            / q as f64;
        let x = 1.0 / pop.size[i];
        s1 += 1.0;
        sx += x;
        sxx += x * x;
        sy += u;
        sxy += x * u;
    }
    let det = s1 * sxx - sx * sx;
    let (mut a, mut b) = if det.abs() > 1e-300 {
        ((sxx * sy - sx * sxy) / det, (s1 * sxy - sx * sy) / det)
    } else {
        (sy / s1, 0.0)
    };
    let mean_u = sy / s1;
    if b < 0.0 {
        b = 0.0;
        a = mean_u;
    }
    if a <= 0.0 {
        a = 1e-3 * mean_u.max(1e-12);
        b = ((sy - a * s1) / sx.max(1e-300)).max(0.0);
    }
    (a, b)
}

/// The penalty on area effects from the spread of area means of the residuals (method of
/// moments, pooled over targets): `sigma^2 / tau^2` in the weights' scale; `None` when areas
/// explain nothing beyond station noise.
fn area_penalty(
    pop: &Population,
    rows: &[usize],
    w: &[f64],
    resid: &[f64],
    q: usize,
) -> Option<f64> {
    let g = pop.groups.len();
    let nr = rows.len();
    let mut sigma2_sum = 0.0;
    let mut tau2_sum = 0.0;
    for t in 0..q {
        let mut ws = vec![0.0; g];
        let mut we = vec![0.0; g];
        let mut count = vec![0usize; g];
        let mut ss = 0.0;
        for (r, &i) in rows.iter().enumerate() {
            let e = resid[r * q + t];
            let gi = pop.group[i] as usize;
            ws[gi] += w[r];
            we[gi] += w[r] * e;
            count[gi] += 1;
            ss += w[r] * e * e;
        }
        let sigma2 = ss / (nr as f64 - pop.p as f64).max(1.0);
        let (mut num, mut areas) = (0.0, 0usize);
        for j in 0..g {
            if count[j] >= 2 {
                let mean = we[j] / ws[j];
                num += mean * mean - sigma2 / ws[j];
                areas += 1;
            }
        }
        if areas >= 2 {
            sigma2_sum += sigma2;
            tau2_sum += (num / areas as f64).max(0.0);
        }
    }
    (tau2_sum > 0.0).then(|| sigma2_sum / tau2_sum)
}

fn assemble(
    pop: &Population,
    rule: &Rule,
    opts: &Options,
    reported: Reported,
    so_far: &SoFar<'_>,
    est: Estimate,
) -> Projection {
    let (now, turnout_now, reg_total) = (so_far.votes, so_far.turnout, so_far.registered_total);
    let k = pop.k();
    let z = normal_quantile(0.5 + opts.confidence / 2.0);
    let valid_now: u64 = now.iter().sum();
    let valid: f64 = est.totals[..k].iter().sum();
    let shares: Vec<f64> = est.totals[..k]
        .iter()
        .map(|&t| if valid > 0.0 { t / valid } else { 0.0 })
        .collect();
    let room = est.room;
    // What the stations still out can change at most: each share between all of their votes
    // going elsewhere and all going to this candidate.
    let share_bounds = |j: usize| -> (f64, f64) {
        let a = now[j] as f64;
        let v = valid_now as f64;
        let lo = if v + room > 0.0 { a / (v + room) } else { 0.0 };
        let hi = if v + room > 0.0 {
            (a + room) / (v + room)
        } else {
            1.0
        };
        (lo, hi)
    };
    // The interval of share j minus share l (l = None: share j alone) at quantile zq.
    let contrast = |j: usize, l: Option<usize>, zq: f64| -> (f64, f64) {
        let centre = shares[j] - l.map_or(0.0, |l| shares[l]);
        let mut coef = vec![0.0; k + 1];
        for (c, item) in coef.iter_mut().enumerate().take(k) {
            *item = -centre;
            if c == j {
                *item += 1.0;
            }
            if Some(c) == l {
                *item -= 1.0;
            }
        }
        let (blo, bhi) = match l {
            None => share_bounds(j),
            Some(l) => {
                let (jl, jh) = share_bounds(j);
                let (ll, lh) = share_bounds(l);
                (jl - lh, jh - ll)
            }
        };
        match &est.var {
            Some(var) if valid > 0.0 => {
                let sd = var(&coef).max(0.0).sqrt() / valid;
                (
                    (centre - zq * sd).clamp(blo, bhi),
                    (centre + zq * sd).clamp(blo, bhi),
                )
            }
            _ => (blo, bhi),
        }
    };
    let candidates: Vec<CandidateProjection> = (0..k)
        .map(|j| {
            let (lo, hi) = contrast(j, None, z);
            let mut coef = vec![0.0; k + 1];
            coef[j] = 1.0;
            let total = est.totals[j];
            let (vlo, vhi) = match &est.var {
                Some(var) => {
                    let sd = var(&coef).max(0.0).sqrt();
                    (total - z * sd, total + z * sd)
                }
                None => (now[j] as f64, now[j] as f64 + room),
            };
            let (vmin, vmax) = (now[j] as f64, now[j] as f64 + room);
            CandidateProjection {
                id: pop.candidates[j].id.clone(),
                name: pop.candidates[j].name.clone(),
                votes_now: now[j],
                share_now: pct(now[j] as f64, valid_now as f64),
                share: 100.0 * shares[j],
                lower: 100.0 * lo,
                upper: 100.0 * hi,
                votes: total.round() as u64,
                votes_lower: vlo.clamp(vmin, vmax).round() as u64,
                votes_upper: vhi.clamp(vmin, vmax).round() as u64,
            }
        })
        .collect();
    let turnout_total = est.totals[k];
    let turnout = {
        let mut coef = vec![0.0; k + 1];
        coef[k] = 1.0;
        let lo_b = turnout_now as f64 / reg_total.max(1.0);
        let hi_b = (turnout_now as f64 + room) / reg_total.max(1.0);
        let centre = turnout_total / reg_total.max(1.0);
        let (lo, hi) = match &est.var {
            Some(var) => {
                let sd = var(&coef).max(0.0).sqrt() / reg_total.max(1.0);
                (
                    (centre - z * sd).clamp(lo_b, hi_b),
                    (centre + z * sd).clamp(lo_b, hi_b),
                )
            }
            None => (lo_b, hi_b),
        };
        Band {
            share: 100.0 * centre,
            lower: 100.0 * lo,
            upper: 100.0 * hi,
        }
    };
    let call = if est.method == "complete" {
        call::from_count(rule, pop.round, &pop.candidates, now)
    } else {
        call::decide(
            rule,
            pop.round,
            &pop.candidates,
            &shares,
            opts.confidence,
            &contrast,
        )
    };
    Projection {
        format: FORMAT,
        round: pop.round,
        confidence: opts.confidence,
        method: est.method,
        level: pop.level.clone(),
        reported,
        candidates,
        turnout,
        call,
        assumptions: est.notes,
        sample: None,
    }
}

fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        100.0 * a / b
    } else {
        0.0
    }
}

/// The standard normal quantile.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p.clamp(1e-12, 1.0 - 1e-12))
}

//! Sampling intervals for the LP methods: a unit-level nonparametric bootstrap.
//!
//! Each replicate draws `U` units with replacement from the `U` units used (whole units: a unit's
//! row and column margins stay together, so the within-unit dependence is kept), re-runs the
//! method (lphom, then the unit-level pass(es) for tslphom / nslphom) and records the aggregate
//! row proportions. The interval is the 2.5% / 97.5% percentile of the replicates, per cell.
//!
//! What it measures: the variability of the estimator over resamples of units (which units
//! happened to exist), **not** the uncertainty of the ecological assumption itself — a biased
//! estimator gets a narrow interval around its bias. The Duncan–Davis bounds stay in the output
//! as the assumption-free statement.
//!
//! Determinism: replicate `b` draws its units from its own ChaCha8 stream seeded from
//! `(seed, b)`; replicates run in parallel but are collected in replicate order, and each
//! estimate is itself thread-count independent, so the interval does not depend on the number of
//! threads.

use crate::data::{derive_seed, Data};
use crate::{lp, Method, Options};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Stream tag of the bootstrap's random numbers.
const BOOT_STREAM: u64 = 0xB007_5742;

/// Fewest replicates worth reporting as a percentile interval (with fewer, the 2.5% / 97.5%
/// percentiles are just the extremes of a handful of values).
pub(crate) const MIN_REPLICATES: usize = 20;

/// Replicates actually run: `requested`, reduced so that `replicates x units` stays within
/// `unit_budget` (0 = no limit), but never below [`MIN_REPLICATES`] (nor above `requested`).
pub(crate) fn replicates_for(units: usize, requested: usize, unit_budget: usize) -> usize {
    if requested == 0 || unit_budget == 0 {
        return requested;
    }
    let affordable = unit_budget / units.max(1);
    requested.min(affordable.max(MIN_REPLICATES))
}

/// Percentile interval of the aggregate proportions (row-major `R x C`).
pub(crate) struct BootInterval {
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub replicates: usize,
}

/// Certified relative gap of the bundle method in a bootstrap replicate.
const REPLICATE_REL_GAP: f64 = 1e-5;

/// Type-7 quantile of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Proportions estimated by `method` (an LP method) on the resample `idx` of `full`; rows empty
/// in the resample are NaN (not identified in it, left out of the percentiles).
fn estimate_p(
    full: &Data,
    idx: &[usize],
    p_full: &[f64],
    method: Method,
    opts: &Options,
) -> Vec<f64> {
    let d = &full.select(idx);
    // Small inputs: the exact LP on the distinct units weighted by their multiplicity (same
    // optimum, smaller LP); the same size rule as the point estimate decides the solver.
    let exact = if d.u * d.c <= opts.exact_lp_max_cells {
        let mut mult = vec![0u32; full.u];
        idx.iter().for_each(|&u| mult[u] += 1);
        let distinct: Vec<usize> = (0..full.u).filter(|&u| mult[u] > 0).collect();
        let w: Vec<f64> = distinct.iter().map(|&u| mult[u] as f64).collect();
        lp::lphom_exact_weighted(&full.select(&distinct), Some(&w))
    } else {
        None
    };
    // Large inputs: the bundle, warm-started from the full-data solution `p_full`, to a
    // certified gap of 1e-5 of the objective: the resampling spread the interval measures is
    // far wider than what the last digit of the gap moves (Poland 2020, lphom: the point
    // estimates at 1e-5 and 1e-6 differ by at most 0.3 points on the smallest row, while a
    // 1e-6 replicate costs 2.7x the time).
    let fit = match exact {
        Some(f) => f,
        None => lp::lphom_bundle_from(d, REPLICATE_REL_GAP, 2000, Some(p_full)),
    };
    let mut p = match method {
        Method::Tslphom => lp::refine(d, &fit.p, 1, opts.nslphom_tol, false).p,
        Method::Nslphom => {
            lp::refine(
                d,
                &fit.p,
                opts.nslphom_max_passes.max(1),
                opts.nslphom_tol,
                false,
            )
            .p
        }
        // lphom is the plain LP; em is not run here.
        Method::Lphom | Method::Em => fit.p,
    };
    for (i, &t) in d.row_tot.iter().enumerate() {
        if t <= 0.0 {
            p[i * d.c..(i + 1) * d.c]
                .iter_mut()
                .for_each(|v| *v = f64::NAN);
        }
    }
    p
}

/// em on the resample with unit weights `w`, warm-started from the full-data fixed point
/// `p_em`; rows empty in the resample are NaN.
fn em_p(d: &Data, w: &[f64], p_em: &[f64], opts: &Options) -> Vec<f64> {
    let cfg = crate::EmConfig {
        tol: opts.em.tol.max(REPLICATE_EM_TOL),
        ..opts.em.clone()
    };
    let mut p = crate::em::fit(d, Some(p_em), Some(w), &cfg, false).p;
    for i in 0..d.r {
        let t: f64 = (0..d.u).map(|u| w[u] * d.x[u * d.r + i]).sum();
        if t <= 0.0 {
            p[i * d.c..(i + 1) * d.c]
                .iter_mut()
                .for_each(|v| *v = f64::NAN);
        }
    }
    p
}

/// Stopping tolerance of an em replicate (largest cell change per EM step, share of the voters): the spread
/// the interval measures is orders of magnitude wider.
const REPLICATE_EM_TOL: f64 = 1e-5;

/// Runs `replicates` bootstrap replicates of `method` on `d`.
/// `p_full`: the warm start of the replicates, from the full data: the lphom solution (bundle
/// replicates of the LP methods) or the EM fixed point (em).
pub(crate) fn run(
    d: &Data,
    p_full: &[f64],
    method: Method,
    opts: &Options,
    replicates: usize,
    progress: &(dyn Fn(crate::Progress) + Sync),
) -> BootInterval {
    let k = d.r * d.c;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let reps: Vec<Vec<f64>> = (0..replicates)
        .into_par_iter()
        .map(|b| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(opts.seed, &[BOOT_STREAM, b as u64]));
            let p = if method == Method::Em {
                // The resample as unit weights (multiplicities): no copy of the data.
                let mut w = vec![0.0f64; d.u];
                (0..d.u).for_each(|_| w[rng.gen_range(0..d.u)] += 1.0);
                em_p(d, &w, p_full, opts)
            } else {
                let idx: Vec<usize> = (0..d.u).map(|_| rng.gen_range(0..d.u)).collect();
                estimate_p(d, &idx, p_full, method, opts)
            };
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(crate::Progress::Bootstrap {
                done: n,
                of: replicates,
            });
            p
        })
        .collect();
    let mut lower = vec![f64::NAN; k];
    let mut upper = vec![f64::NAN; k];
    for q in 0..k {
        let mut v: Vec<f64> = reps
            .iter()
            .map(|p| p[q])
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        lower[q] = quantile(&v, 0.025);
        upper[q] = quantile(&v, 0.975);
    }
    BootInterval {
        lower,
        upper,
        replicates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_budget() {
        assert_eq!(replicates_for(1_000, 200, 2_000_000), 200);
        assert_eq!(replicates_for(974, 200, 50_000), 51);
        assert_eq!(replicates_for(50_000, 200, 2_000_000), 40);
        assert_eq!(replicates_for(1_000_000, 200, 2_000_000), MIN_REPLICATES);
        assert_eq!(replicates_for(1_000_000, 10, 2_000_000), 10);
        assert_eq!(replicates_for(1_000_000, 200, 0), 200);
        assert_eq!(replicates_for(10, 0, 100), 0);
    }

    #[test]
    fn weighted_lp_equals_lp_with_repeats() {
        use rand::{Rng, SeedableRng};
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut m = crate::input::Margins {
            unit_ids: vec![],
            rows: vec!["a".into(), "b".into(), "c".into()],
            cols: vec!["x".into(), "y".into()],
            row_counts: vec![],
            col_counts: vec![],
        };
        for u in 0..40 {
            let t: Vec<u64> = (0..6).map(|_| rng.gen_range(0..50)).collect();
            m.unit_ids.push(u.to_string());
            m.row_counts
                .push((0..3).map(|i| t[2 * i] + t[2 * i + 1]).collect());
            m.col_counts
                .push((0..2).map(|j| (0..3).map(|i| t[2 * i + j]).sum()).collect());
        }
        let full = Data::new(&m);
        let idx: Vec<usize> = (0..full.u).map(|_| rng.gen_range(0..full.u)).collect();
        let rep = full.select(&idx);
        let plain = lp::lphom_exact(&rep).unwrap();
        let mut mult = vec![0u32; full.u];
        idx.iter().for_each(|&u| mult[u] += 1);
        let distinct: Vec<usize> = (0..full.u).filter(|&u| mult[u] > 0).collect();
        let w: Vec<f64> = distinct.iter().map(|&u| mult[u] as f64).collect();
        let weighted = lp::lphom_exact_weighted(&full.select(&distinct), Some(&w)).unwrap();
        // Same optimum (the minimiser need not be unique): compare objectives on the resample.
        let (f_w, _) = lp::eval(&rep, &weighted.p);
        assert!(
            (f_w - plain.objective).abs() < 1e-5 * plain.objective,
            "{f_w} vs {}",
            plain.objective
        );
        assert!((weighted.objective - f_w).abs() < 1e-6 * f_w);
    }

    #[test]
    fn quantile_interpolates() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert!((quantile(&v, 0.025) - 0.1).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }
}

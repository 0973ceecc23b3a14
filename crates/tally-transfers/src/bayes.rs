//! Bayesian multinomial-Dirichlet ecological inference (the hierarchical model of Rosen, Jiang,
//! King & Tanner 2001, as fitted by eiPack's `ei.MD.bayes` and PyEI), with our own sampler.
//!
//! Model, unit `u`, row `r`: the row's voters split over the columns as
//! `n_ur· ~ Multinomial(x_ur, β_ur)`, `β_ur ~ Dirichlet(α_r)`, `α_rc ~ Gamma(λ₁, λ₂)` (shape, rate;
//! eiPack's defaults 4 and 2). Only the margins are observed; the unit cell counts `n_urc` are latent.
//!
//! Sampler (data augmentation, Gibbs with one Metropolis block), one sweep:
//! 1. `β_ur | n, α ~ Dirichlet(α_r + n_ur·)` (conjugate), for every unit and row;
//! 2. `n_u | β_u, margins`: a number of exact Gibbs steps on random 2x2 sub-tables. Moving `k` votes
//!    around a 2x2 sub-table keeps every margin; the conditional law of `k` is Fisher's noncentral
//!    hypergeometric with odds ratio `β₁₁β₂₂/(β₁₂β₂₁)`, which is log-concave: we find its mode by
//!    bisection and sample it exactly by walking the probability ratios outward from the mode;
//! 3. `α_r | β`: component-wise random-walk Metropolis on `log α_rc`, using only the sufficient
//!    statistics `Σ_u log β_urc` (so this step costs O(R·C), not O(units)); step sizes adapt during
//!    warm-up only.
//!
//! Steps 1–2 run in parallel over fixed chunks of units, each chunk with its own ChaCha8 stream
//! derived from (seed, chain, sweep, chunk): results do not depend on the thread count.
//!
//! The reported quantity is the aggregate table `Σ_u n_urc` (and its row proportions) — the
//! finite-population table that actually happened — with posterior means, 2.5%/97.5% quantiles
//! pooled over chains, split R-hat and ESS per cell.

use crate::data::{derive_seed, ln_gamma, Data, CHUNK, MAX_DIM};
use crate::diag;
use crate::lp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use rayon::prelude::*;

/// Sampler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BayesConfig {
    /// Number of chains (>= 2 for diagnostics).
    pub chains: usize,
    /// Warm-up sweeps per chain (discarded; step sizes adapt here).
    pub warmup: usize,
    /// Recorded sweeps per chain.
    pub samples: usize,
    /// Keep every `thin`-th recorded sweep (>= 1).
    pub thin: usize,
    /// 2x2 Gibbs moves per unit per sweep; 0 means `(R−1)(C−1)` (the table's degrees of freedom).
    pub moves_per_unit: usize,
    /// Gamma prior on α: shape.
    pub lambda1: f64,
    /// Gamma prior on α: rate.
    pub lambda2: f64,
}

impl Default for BayesConfig {
    fn default() -> Self {
        BayesConfig { chains: 2, warmup: 300, samples: 300, thin: 1, moves_per_unit: 0, lambda1: 4.0, lambda2: 2.0 }
    }
}

pub(crate) struct BayesFit {
    /// Posterior mean of the aggregate cells (votes), row-major.
    pub votes: Vec<f64>,
    /// Posterior mean of the aggregate row proportions.
    pub p: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub rhat: Vec<f64>,
    pub ess: Vec<f64>,
    pub draws_per_chain: usize,
    /// Posterior mean unit tables (`u * R * C`), when requested.
    pub units: Option<Vec<f64>>,
    /// Posterior mean of α (row-major).
    pub alpha: Vec<f64>,
}

/// Integer table with the exact margins `x`, `y`, close to the real table `t` (row-major).
fn round_table(t: &[f64], x: &[u64], y: &[u64], out: &mut [u32]) {
    let (nr, nc) = (x.len(), y.len());
    let mut rr = [0u64; MAX_DIM];
    let mut cc = [0u64; MAX_DIM];
    rr[..nr].copy_from_slice(x);
    cc[..nc].copy_from_slice(y);
    for i in 0..nr {
        for j in 0..nc {
            let v = (t[i * nc + j].max(0.0).floor() as u64).min(rr[i]).min(cc[j]);
            out[i * nc + j] = v as u32;
            rr[i] -= v;
            cc[j] -= v;
        }
    }
    // Largest fractional parts first, one vote at a time.
    let mut order: Vec<usize> = (0..nr * nc).collect();
    order.sort_by(|&a, &b| {
        let fa = t[a] - t[a].floor();
        let fb = t[b] - t[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for k in order {
        let (i, j) = (k / nc, k % nc);
        if rr[i] > 0 && cc[j] > 0 {
            out[k] += 1;
            rr[i] -= 1;
            cc[j] -= 1;
        }
    }
    // Whatever is left: north-west corner (always feasible since the remainders balance).
    let (mut i, mut j) = (0, 0);
    while i < nr && j < nc {
        let m = rr[i].min(cc[j]);
        out[i * nc + j] += m as u32;
        rr[i] -= m;
        cc[j] -= m;
        if rr[i] == 0 {
            i += 1;
        } else {
            j += 1;
        }
    }
}

/// Exact draw of the shift `k` for the 2x2 sub-table `[[a, b], [c, d]]` -> `[[a+k, b−k], [c−k, d+k]]`
/// under Fisher's noncentral hypergeometric law with log odds ratio `log_omega`.
fn fnch_shift(a: i64, b: i64, c: i64, d: i64, log_omega: f64, rng: &mut ChaCha8Rng, buf: &mut Vec<f64>) -> i64 {
    let lo = -a.min(d);
    let hi = b.min(c);
    if lo == hi {
        return 0;
    }
    let omega = log_omega.clamp(-700.0, 700.0).exp();
    // ratio(k) = p(k+1) / p(k)
    let ratio = |k: i64| -> f64 {
        omega * ((b - k) as f64) * ((c - k) as f64) / (((a + k + 1) as f64) * ((d + k + 1) as f64))
    };
    // Mode: smallest k with ratio(k) < 1 (ratio is decreasing, ratio(hi) = 0).
    let (mut l, mut h) = (lo, hi);
    while l < h {
        let mid = l + (h - l) / 2;
        if ratio(mid) < 1.0 {
            h = mid;
        } else {
            l = mid + 1;
        }
    }
    let mode = l;
    const TINY: f64 = 1e-15;
    buf.clear();
    // buf holds weights for k = mode+1, mode+2, ... then a separator count, then mode-1, mode-2, ...
    let mut total = 1.0;
    let mut w = 1.0;
    let mut k = mode;
    while k < hi {
        w *= ratio(k);
        if w < TINY {
            break;
        }
        buf.push(w);
        total += w;
        k += 1;
    }
    let n_up = buf.len();
    w = 1.0;
    k = mode;
    while k > lo {
        let r = ratio(k - 1);
        if r <= 0.0 {
            break;
        }
        w /= r;
        if w < TINY {
            break;
        }
        buf.push(w);
        total += w;
        k -= 1;
    }
    let mut u = rng.gen::<f64>() * total;
    if u < 1.0 {
        return mode;
    }
    u -= 1.0;
    for (s, &wk) in buf[..n_up].iter().enumerate() {
        if u < wk {
            return mode + 1 + s as i64;
        }
        u -= wk;
    }
    for (s, &wk) in buf[n_up..].iter().enumerate() {
        if u < wk {
            return mode - 1 - s as i64;
        }
        u -= wk;
    }
    // Rounding residue: fall back to the last tabulated point.
    if buf.len() > n_up {
        mode - (buf.len() - n_up) as i64
    } else {
        mode + n_up as i64
    }
}

fn draw_gamma(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    match Gamma::new(shape, 1.0) {
        Ok(g) => g.sample(rng),
        Err(_) => 0.0,
    }
}

/// Log posterior of row `r`'s α (on the log scale, including the Jacobian), given `Σ_u log β`.
fn alpha_logpost(alpha: &[f64], s: &[f64], units: f64, l1: f64, l2: f64) -> f64 {
    let a: f64 = alpha.iter().sum();
    let mut lp = units * ln_gamma(a);
    for (j, &aj) in alpha.iter().enumerate() {
        lp += -units * ln_gamma(aj) + (aj - 1.0) * s[j] + l1 * aj.ln() - l2 * aj;
    }
    lp
}

struct ChunkOut {
    sum_log_beta: Vec<f64>,
    cells: Vec<f64>,
}

/// One chain. Returns the recorded aggregate cells per sweep (`draws[s][k]`), the running sum of
/// unit tables (if requested) and the mean α.
#[allow(clippy::too_many_arguments)]
fn run_chain(
    d: &Data,
    init: &[f64],
    alpha0: &[f64],
    cfg: &BayesConfig,
    seed: u64,
    chain: usize,
    keep_units: bool,
) -> (Vec<Vec<f64>>, Option<Vec<f64>>, Vec<f64>) {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let mut n = vec![0u32; d.u * k];
    n.par_chunks_mut(k).enumerate().for_each(|(u, out)| {
        round_table(&init[u * k..(u + 1) * k], &d.xi[u * nr..(u + 1) * nr], &d.yi[u * nc..(u + 1) * nc], out)
    });
    let mut unit_sum = if keep_units { Some(vec![0.0f64; d.u * k]) } else { None };
    let mut alpha = alpha0.to_vec();
    let mut alpha_sum = vec![0.0; k];
    let mut log_step = vec![(0.1f64).ln(); k];
    let moves = if cfg.moves_per_unit == 0 { (nr - 1) * (nc - 1) } else { cfg.moves_per_unit };
    let thin = cfg.thin.max(1);
    let total = cfg.warmup + cfg.samples * thin;
    let mut draws = Vec::with_capacity(cfg.samples);
    let mut arng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[chain as u64, u64::MAX]));
    let units = d.u as f64;
    for it in 0..total {
        let recording = it >= cfg.warmup && (it - cfg.warmup) % thin == thin - 1;
        let alpha_ref = &alpha;
        let work = |ci: usize, chunk: &mut [u32], sums: Option<&mut [f64]>| -> ChunkOut {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[chain as u64, it as u64, ci as u64]));
            let mut out = ChunkOut { sum_log_beta: vec![0.0; k], cells: vec![0.0; k] };
            let mut lb = [0.0f64; MAX_DIM * MAX_DIM];
            let mut g = [0.0f64; MAX_DIM];
            let mut buf = Vec::with_capacity(64);
            let mut rows = [0usize; MAX_DIM];
            let mut cols = [0usize; MAX_DIM];
            let u0 = ci * CHUNK;
            let mut sums = sums;
            for (off, t) in chunk.chunks_mut(k).enumerate() {
                let u = u0 + off;
                // 1. beta | n, alpha
                for i in 0..nr {
                    let mut s = 0.0;
                    for j in 0..nc {
                        let v = draw_gamma(alpha_ref[i * nc + j] + t[i * nc + j] as f64, &mut rng).max(1e-300);
                        g[j] = v;
                        s += v;
                    }
                    let ls = s.ln();
                    for j in 0..nc {
                        let l = g[j].ln() - ls;
                        lb[i * nc + j] = l;
                        out.sum_log_beta[i * nc + j] += l;
                    }
                }
                // 2. n | beta, margins: random 2x2 Gibbs steps over active rows/cols.
                let mut ar = 0;
                for i in 0..nr {
                    if d.xi[u * nr + i] > 0 {
                        rows[ar] = i;
                        ar += 1;
                    }
                }
                let mut ac = 0;
                for j in 0..nc {
                    if d.yi[u * nc + j] > 0 {
                        cols[ac] = j;
                        ac += 1;
                    }
                }
                if ar >= 2 && ac >= 2 {
                    for _ in 0..moves {
                        let i1 = rows[rng.gen_range(0..ar)];
                        let mut i2 = rows[rng.gen_range(0..ar - 1)];
                        if i2 == i1 {
                            i2 = rows[ar - 1];
                        }
                        let j1 = cols[rng.gen_range(0..ac)];
                        let mut j2 = cols[rng.gen_range(0..ac - 1)];
                        if j2 == j1 {
                            j2 = cols[ac - 1];
                        }
                        let (p11, p12, p21, p22) = (i1 * nc + j1, i1 * nc + j2, i2 * nc + j1, i2 * nc + j2);
                        let lo = lb[p11] + lb[p22] - lb[p12] - lb[p21];
                        let sh = fnch_shift(
                            t[p11] as i64,
                            t[p12] as i64,
                            t[p21] as i64,
                            t[p22] as i64,
                            lo,
                            &mut rng,
                            &mut buf,
                        );
                        if sh != 0 {
                            t[p11] = (t[p11] as i64 + sh) as u32;
                            t[p22] = (t[p22] as i64 + sh) as u32;
                            t[p12] = (t[p12] as i64 - sh) as u32;
                            t[p21] = (t[p21] as i64 - sh) as u32;
                        }
                    }
                }
                for (c, &v) in out.cells.iter_mut().zip(t.iter()) {
                    *c += v as f64;
                }
                if let Some(s) = sums.as_deref_mut() {
                    for (acc, &v) in s[off * k..(off + 1) * k].iter_mut().zip(t.iter()) {
                        *acc += v as f64;
                    }
                }
            }
            out
        };
        let parts: Vec<ChunkOut> = match (unit_sum.as_mut(), recording) {
            (Some(us), true) => n
                .par_chunks_mut(CHUNK * k)
                .zip(us.par_chunks_mut(CHUNK * k))
                .enumerate()
                .map(|(ci, (chunk, s))| work(ci, chunk, Some(s)))
                .collect(),
            _ => n.par_chunks_mut(CHUNK * k).enumerate().map(|(ci, chunk)| work(ci, chunk, None)).collect(),
        };
        let mut slb = vec![0.0; k];
        let mut cells = vec![0.0; k];
        for p in parts {
            for q in 0..k {
                slb[q] += p.sum_log_beta[q];
                cells[q] += p.cells[q];
            }
        }
        // 3. alpha | beta
        for _ in 0..5 {
            for i in 0..nr {
                let s = &slb[i * nc..(i + 1) * nc];
                for j in 0..nc {
                    let q = i * nc + j;
                    let row = &mut alpha[i * nc..(i + 1) * nc];
                    let cur = alpha_logpost(row, s, units, cfg.lambda1, cfg.lambda2);
                    let old = row[j];
                    let z: f64 = StandardNormal.sample(&mut arng);
                    row[j] = (old.ln() + log_step[q].exp() * z).exp().clamp(1e-8, 1e12);
                    let new = alpha_logpost(row, s, units, cfg.lambda1, cfg.lambda2);
                    let accept = (new - cur).is_finite() && arng.gen::<f64>().ln() < new - cur;
                    if !accept {
                        row[j] = old;
                    }
                    if it < cfg.warmup {
                        let rate = 1.0 / ((it + 1) as f64).powf(0.6);
                        log_step[q] += rate * (if accept { 1.0 } else { 0.0 } - 0.44);
                        log_step[q] = log_step[q].clamp(-25.0, 3.0);
                    }
                }
            }
        }
        if recording {
            for (a, &b) in alpha_sum.iter_mut().zip(&alpha) {
                *a += b;
            }
            draws.push(cells);
        }
    }
    let nd = draws.len().max(1) as f64;
    if let Some(us) = unit_sum.as_mut() {
        us.iter_mut().for_each(|v| *v /= nd);
    }
    alpha_sum.iter_mut().for_each(|v| *v /= nd);
    (draws, unit_sum, alpha_sum)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Runs `cfg.chains` chains (one after another, each parallel over units). Chain 0, 2, ... start from
/// the tslphom unit tables of `p_start`; chains 1, 3, ... from the independence tables
/// `x_r y_c / N` (dispersed starts, so R-hat can detect non-convergence).
pub(crate) fn fit(d: &Data, p_start: &[f64], cfg: &BayesConfig, seed: u64, keep_units: bool) -> BayesFit {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let chains = cfg.chains.max(1);
    let (lp_tables, _) = (lp::aggregate_units(d, p_start, true).1.unwrap_or_default(), ());
    let indep: Vec<f64> = (0..d.u)
        .flat_map(|u| {
            let x = d.xu(u);
            let y = d.yu(u);
            let n: f64 = x.iter().sum();
            (0..k).map(move |q| x[q / nc] * y[q % nc] / n)
        })
        .collect();
    let mut all_draws: Vec<Vec<Vec<f64>>> = Vec::with_capacity(chains);
    let mut unit_acc: Option<Vec<f64>> = None;
    let mut alpha_acc = vec![0.0; k];
    for ch in 0..chains {
        let init = if ch % 2 == 0 { &lp_tables } else { &indep };
        // Starting α: concentration 10 around the starting table's aggregate row proportions.
        let mut agg = vec![0.0; k];
        for u in 0..d.u {
            for q in 0..k {
                agg[q] += init[u * k + q];
            }
        }
        let conc = if ch % 2 == 0 { 10.0 } else { 2.0 };
        let alpha0: Vec<f64> = (0..k)
            .map(|q| {
                let rt = d.row_tot[q / nc];
                let p = if rt > 0.0 { agg[q] / rt } else { 1.0 / nc as f64 };
                (conc * p).max(0.05)
            })
            .collect();
        let (draws, units, alpha) = run_chain(d, init, &alpha0, cfg, seed, ch, keep_units);
        if let Some(us) = units {
            match unit_acc.as_mut() {
                Some(acc) => acc.iter_mut().zip(&us).for_each(|(a, b)| *a += b),
                None => unit_acc = Some(us),
            }
        }
        alpha_acc.iter_mut().zip(&alpha).for_each(|(a, b)| *a += b / chains as f64);
        all_draws.push(draws);
    }
    if let Some(acc) = unit_acc.as_mut() {
        acc.iter_mut().for_each(|v| *v /= chains as f64);
    }
    let nd = all_draws[0].len();
    let mut votes = vec![0.0; k];
    let mut p = vec![0.0; k];
    let mut lower = vec![0.0; k];
    let mut upper = vec![0.0; k];
    let mut rhat = vec![f64::NAN; k];
    let mut ess = vec![f64::NAN; k];
    for q in 0..k {
        let rt = d.row_tot[q / nc];
        let per_chain: Vec<Vec<f64>> = all_draws
            .iter()
            .map(|c| c.iter().map(|dr| if rt > 0.0 { dr[q] / rt } else { 0.0 }).collect())
            .collect();
        let mut pooled: Vec<f64> = per_chain.iter().flatten().copied().collect();
        let tot = pooled.len().max(1) as f64;
        p[q] = pooled.iter().sum::<f64>() / tot;
        votes[q] = all_draws.iter().flatten().map(|dr| dr[q]).sum::<f64>() / tot;
        pooled.sort_by(f64::total_cmp);
        lower[q] = quantile(&pooled, 0.025);
        upper[q] = quantile(&pooled, 0.975);
        if chains >= 2 && nd >= 8 {
            rhat[q] = diag::split_rhat(&per_chain);
            ess[q] = diag::ess(&per_chain);
        }
    }
    BayesFit { votes, p, lower, upper, rhat, ess, draws_per_chain: nd, units: unit_acc, alpha: alpha_acc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_table_keeps_margins() {
        let t = [1.4, 2.6, 0.0, 3.3, 0.2, 1.5];
        let x = [4u64, 5];
        let y = [5u64, 3, 1];
        let mut out = [0u32; 6];
        round_table(&t, &x, &y, &mut out);
        assert_eq!(out[0] + out[1] + out[2], 4);
        assert_eq!(out[3] + out[4] + out[5], 5);
        assert_eq!(out[0] + out[3], 5);
        assert_eq!(out[1] + out[4], 3);
        assert_eq!(out[2] + out[5], 1);
    }

    #[test]
    fn fnch_matches_exact_law() {
        // Table [[3, 4], [5, 2]], odds ratio 2: compare empirical frequencies with exact pmf.
        let (a, b, c, d) = (3i64, 4, 5, 2);
        let lw = 2f64.ln();
        let lo = -a.min(d);
        let hi = b.min(c);
        let lf = |n: i64| ln_gamma(n as f64 + 1.0);
        let logp: Vec<f64> =
            (lo..=hi).map(|k| k as f64 * lw - lf(a + k) - lf(b - k) - lf(c - k) - lf(d + k)).collect();
        let m = logp.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logp.iter().map(|l| (l - m).exp()).sum();
        let exact: Vec<f64> = logp.iter().map(|l| (l - m).exp() / z).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut buf = Vec::new();
        let n = 200_000;
        let mut counts = vec![0usize; exact.len()];
        for _ in 0..n {
            let k = fnch_shift(a, b, c, d, lw, &mut rng, &mut buf);
            counts[(k - lo) as usize] += 1;
        }
        for (i, &e) in exact.iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            assert!((f - e).abs() < 4.0 * (e * (1.0 - e) / n as f64).sqrt() + 1e-4, "k={} f={f} e={e}", lo + i as i64);
        }
    }
}

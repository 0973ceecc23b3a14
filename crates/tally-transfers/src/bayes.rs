//! Bayesian multinomial-Dirichlet ecological inference (the hierarchical model of Rosen, Jiang,
//! King & Tanner 2001, as fitted by eiPack's `ei.MD.bayes` and PyEI), with our own sampler.
//!
//! Model, unit `u`, row `r`: the row's voters split over the columns as
//! `n_ur· ~ Multinomial(x_ur, β_ur)`, `β_ur ~ Dirichlet(α_r)`, `α_rc ~ Gamma(λ₁, λ₂)` (shape, rate;
//! eiPack's defaults 4 and 2). Only the margins are observed; the unit cell counts `n_urc` are latent.
//!
//! Sampler (collapsed data augmentation: β is integrated out, so each unit row is
//! Dirichlet-multinomial given α), one sweep:
//! 1. `n_u | α, margins`: a number of exact Gibbs steps on random 2x2 sub-tables of each unit table.
//!    Moving `k` votes around a 2x2 sub-table keeps every margin; the conditional law of `k` is
//!    `Π Γ(α + cell)/cell!` over the four cells, sampled exactly by walking the probability ratios
//!    outward from a crossing point (with a monotone bound so that bimodal laws, α < 1, stay exact);
//! 2. `α_r | n`: slice sampling (stepping out) on `ln α_r`, one coordinate at a time plus the
//!    common direction (the row's concentration), with widths adapted during warm-up only. The
//!    conditional depends on the unit tables only through value histograms of each cell and of the
//!    row totals, so one evaluation costs O(distinct values), not O(units): a full slice sweep over
//!    α is cheap even at 200,000 units (it replaced a Metropolis step that needed two passes over
//!    the units per proposal).
//!
//! Chains start from the tslphom unit tables of the lphom solution (even chains) and from the
//! independence tables (odd chains: dispersed starts, so R-hat can detect non-convergence), with α
//! set by the method of moments.
//!
//! Known limitation: data augmentation for ecological inference has a very large fraction of
//! missing information (`α | n` is far narrower than `α | margins`), so mixing is slow. On senc
//! (3 x 3, 212 units) 1000 + 1000 sweeps converge; on the 5 x 4 synthetic elections the chains do
//! not (see README).
//!
//! Step 1 runs in parallel over fixed chunks of units, each chunk with its own ChaCha8 stream
//! derived from (seed, chain, sweep, chunk); step 2 uses one stream per chain and histograms of
//! integer counts (order-independent): results do not depend on the thread count.
//!
//! The reported quantity is the aggregate table `Σ_u n_urc` (and its row proportions) — the
//! finite-population table that actually happened — with posterior means, 2.5%/97.5% quantiles
//! pooled over chains, split R-hat and ESS per cell.

use crate::boot::quantile;
#[cfg(test)]
use crate::data::par_chunks;
use crate::data::{derive_seed, ln_gamma, Data, CHUNK, MAX_DIM};
use crate::diag;
use crate::lp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
        BayesConfig {
            chains: 2,
            warmup: 1000,
            samples: 1000,
            thin: 1,
            moves_per_unit: 0,
            lambda1: 4.0,
            lambda2: 2.0,
        }
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
            let v = (t[i * nc + j].max(0.0).floor() as u64)
                .min(rr[i])
                .min(cc[j]);
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
/// when each row of the unit table is Dirichlet-multinomial with parameters `al = [α_a, α_b, α_c, α_d]`
/// (β integrated out): `p(k) ∝ Π Γ(α + cell) / cell!`.
///
/// The law is unimodal when every α >= 1 but not in general, so we start at a crossing point of the
/// probability ratio (bisection) and walk outward, stopping in each direction only when the weight
/// is negligible *and* a bound on all remaining ratios shows it can only decrease further.
fn dm_shift(
    a: i64,
    b: i64,
    c: i64,
    d: i64,
    al: [f64; 4],
    rng: &mut ChaCha8Rng,
    buf: &mut Vec<f64>,
) -> i64 {
    let lo = -a.min(d);
    let hi = b.min(c);
    if lo == hi {
        return 0;
    }
    let [aa, ab, ac, ad] = al;
    let fa = |k: i64| (aa + (a + k) as f64) / ((a + k + 1) as f64);
    let fd = |k: i64| (ad + (d + k) as f64) / ((d + k + 1) as f64);
    let fb = |k: i64| ((b - k) as f64) / (ab + (b - k - 1) as f64);
    let fc = |k: i64| ((c - k) as f64) / (ac + (c - k - 1) as f64);
    // ratio(k) = p(k+1) / p(k), for lo <= k < hi.
    let ratio = |k: i64| fa(k) * fd(k) * fb(k) * fc(k);
    // Sup of ratio(k'') over k'' >= k (each factor is monotone in k).
    let bound_up = |k: i64| {
        let x = if aa >= 1.0 { fa(k) } else { 1.0 };
        let y = if ad >= 1.0 { fd(k) } else { 1.0 };
        let z = if ab >= 1.0 { fb(k) } else { 1.0 / ab };
        let w = if ac >= 1.0 { fc(k) } else { 1.0 / ac };
        x * y * z * w
    };
    // Sup of 1/ratio(k'') over k'' <= k.
    let bound_down = |k: i64| {
        let x = if aa >= 1.0 { 1.0 / fa(k) } else { 1.0 / aa };
        let y = if ad >= 1.0 { 1.0 / fd(k) } else { 1.0 / ad };
        let z = if ab >= 1.0 { 1.0 / fb(k) } else { 1.0 };
        let w = if ac >= 1.0 { 1.0 / fc(k) } else { 1.0 };
        x * y * z * w
    };
    let (mut l, mut h) = (lo, hi);
    while l < h {
        let mid = l + (h - l) / 2;
        if ratio(mid) < 1.0 {
            h = mid;
        } else {
            l = mid + 1;
        }
    }
    let start = l;
    const TINY: f64 = 1e-16;
    const HUGE: f64 = 1e250;
    buf.clear();
    let mut total = 1.0;
    let mut w0 = 1.0; // weight of `start` (rescaled if other weights explode)
    let mut w = 1.0;
    let mut k = start;
    while k < hi {
        w *= ratio(k);
        k += 1;
        if w < TINY * total && (k >= hi || bound_up(k) <= 1.0) {
            break;
        }
        buf.push(w);
        total += w;
        if w > HUGE {
            buf.iter_mut().for_each(|v| *v /= HUGE);
            total /= HUGE;
            w /= HUGE;
            w0 /= HUGE;
        }
    }
    let n_up = buf.len();
    w = w0;
    k = start;
    while k > lo {
        let r = ratio(k - 1);
        if r <= 0.0 {
            break;
        }
        w /= r;
        k -= 1;
        if w < TINY * total && (k <= lo || bound_down(k - 1) <= 1.0) {
            break;
        }
        buf.push(w);
        total += w;
        if w > HUGE {
            buf.iter_mut().for_each(|v| *v /= HUGE);
            total /= HUGE;
            w /= HUGE;
            w0 /= HUGE;
        }
    }
    let mut u = rng.gen::<f64>() * total;
    if u < w0 {
        return start;
    }
    u -= w0;
    for (s, &wk) in buf[..n_up].iter().enumerate() {
        if u < wk {
            return start + 1 + s as i64;
        }
        u -= wk;
    }
    for (s, &wk) in buf[n_up..].iter().enumerate() {
        if u < wk {
            return start - 1 - s as i64;
        }
        u -= wk;
    }
    start
}

/// Method-of-moments Dirichlet-multinomial parameters of each row from unit tables `n`.
fn moment_alpha(d: &Data, n: &[u32]) -> Vec<f64> {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let mut alpha = vec![1.0; k];
    for i in 0..nr {
        let mu: Vec<f64> = (0..nc)
            .map(|j| {
                let s: f64 = (0..d.u).map(|u| n[u * k + i * nc + j] as f64).sum();
                if d.row_tot[i] > 0.0 {
                    (s / d.row_tot[i]).max(1e-4)
                } else {
                    1.0 / nc as f64
                }
            })
            .collect();
        let q: f64 = mu.iter().map(|m| m * (1.0 - m)).sum();
        let (mut ss, mut cnt, mut xm1) = (0.0, 0.0, 0.0);
        for u in 0..d.u {
            let x = d.x[u * nr + i];
            if x >= 2.0 {
                for j in 0..nc {
                    let p = n[u * k + i * nc + j] as f64 / x;
                    ss += x * (p - mu[j]) * (p - mu[j]);
                }
                cnt += 1.0;
                xm1 += x - 1.0;
            }
        }
        let rho = if xm1 > 0.0 && q > 0.0 {
            ((ss / q - cnt) / xm1).clamp(1e-5, 0.95)
        } else {
            0.5
        };
        let a = 1.0 / rho - 1.0;
        for j in 0..nc {
            alpha[i * nc + j] = (a * mu[j]).max(1e-3);
        }
    }
    alpha
}

/// Reference (test only): Dirichlet-multinomial log likelihood of each row for several α matrices:
/// `out[s][r] = Σ_u [lnΓ(A) − lnΓ(A + x_ur) + Σ_c lnΓ(α_c + n_urc) − lnΓ(α_c)]`.
#[cfg(test)]
fn dm_loglik(d: &Data, n: &[u32], alphas: &[&[f64]]) -> Vec<Vec<f64>> {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let ns = alphas.len();
    // Per-set constants.
    let consts: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = alphas
        .iter()
        .map(|a| {
            let asum: Vec<f64> = (0..nr)
                .map(|i| a[i * nc..(i + 1) * nc].iter().sum())
                .collect();
            let lga: Vec<f64> = asum.iter().map(|&s| ln_gamma(s)).collect();
            let lgc: Vec<f64> = a.iter().map(|&v| ln_gamma(v)).collect();
            (asum, lga, lgc)
        })
        .collect();
    let parts = par_chunks(d.u, |_, s0, s1| {
        let mut out = vec![0.0; ns * nr];
        for u in s0..s1 {
            let t = &n[u * k..(u + 1) * k];
            for i in 0..nr {
                let x = d.x[u * nr + i];
                if x == 0.0 {
                    continue;
                }
                for (s, a) in alphas.iter().enumerate() {
                    let (asum, lga, lgc) = &consts[s];
                    let mut v = lga[i] - ln_gamma(asum[i] + x);
                    for j in 0..nc {
                        let cell = t[i * nc + j];
                        if cell > 0 {
                            v += ln_gamma(a[i * nc + j] + cell as f64) - lgc[i * nc + j];
                        }
                    }
                    out[s * nr + i] += v;
                }
            }
        }
        out
    });
    let mut tot = vec![vec![0.0; nr]; ns];
    for p in parts {
        for s in 0..ns {
            for i in 0..nr {
                tot[s][i] += p[s * nr + i];
            }
        }
    }
    tot
}

/// Slice-sampler sweeps over α per Gibbs sweep (α | n is cheap to evaluate: see [`cell_stats`]).
const ALPHA_REPEATS: usize = 1;

/// Nonzero entries `(value, count)` of a histogram.
fn compress(h: &[u64]) -> Vec<(f64, f64)> {
    h.iter()
        .enumerate()
        .skip(1)
        .filter(|(_, &c)| c > 0)
        .map(|(v, &c)| (v as f64, c as f64))
        .collect()
}

/// Per cell `q = r * C + c`, the distinct nonzero values of `n_urc` over units with their counts.
fn cell_stats(d: &Data, n: &[u32], max_x: &[u64]) -> Vec<Vec<(f64, f64)>> {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    (0..k)
        .into_par_iter()
        .map(|q| {
            let mut h = vec![0u64; max_x[q / nc] as usize + 1];
            for t in n.chunks_exact(k) {
                h[t[q] as usize] += 1;
            }
            compress(&h)
        })
        .collect()
}

/// `Σ count · (lnΓ(a + v) − lnΓ(a))` over a value histogram.
fn lg_sum(stats: &[(f64, f64)], a: f64) -> f64 {
    let lga = ln_gamma(a);
    stats
        .iter()
        .map(|&(v, c)| c * (ln_gamma(a + v) - lga))
        .sum()
}

/// Reference (test only; the sampler caches the same terms per column): log conditional density
/// of row `i`'s `θ = ln α` given the unit tables: Dirichlet-multinomial
/// likelihood, Gamma(λ₁, λ₂) prior, log-scale Jacobian.
#[cfg(test)]
fn alpha_row_logpost(
    al: &[f64],
    cells: &[Vec<(f64, f64)>],
    tot: &[(f64, f64)],
    cfg: &BayesConfig,
) -> f64 {
    let asum: f64 = al.iter().sum();
    let mut v = -lg_sum(tot, asum);
    for (c, &a) in al.iter().enumerate() {
        v += lg_sum(&cells[c], a) + cfg.lambda1 * a.ln() - cfg.lambda2 * a;
    }
    v
}

/// One slice-sampling update of row `i`'s α along each column coordinate of `ln α` and along the
/// common direction (the concentration), with stepping out. Widths adapt during warm-up only.
#[allow(clippy::too_many_arguments)]
fn alpha_row_update(
    nc: usize,
    al: &mut [f64],
    cells: &[Vec<(f64, f64)>],
    tot: &[(f64, f64)],
    cfg: &BayesConfig,
    widths: &mut [f64],
    adapt: bool,
    rng: &mut ChaCha8Rng,
) {
    let clampa = |t: f64| t.exp().clamp(1e-8, 1e8);
    let cell_term =
        |c: usize, a: f64| lg_sum(&cells[c], a) + cfg.lambda1 * a.ln() - cfg.lambda2 * a;
    let mut theta: Vec<f64> = al.iter().map(|v| v.ln()).collect();
    // Cached per-column terms: a coordinate move only re-evaluates its own column and the total.
    let mut terms: Vec<f64> = (0..nc).map(|c| cell_term(c, clampa(theta[c]))).collect();
    let full = |theta: &[f64], terms: &mut Vec<f64>| -> f64 {
        let a: Vec<f64> = theta.iter().map(|&t| clampa(t)).collect();
        for c in 0..nc {
            terms[c] = cell_term(c, a[c]);
        }
        terms.iter().sum::<f64>() - lg_sum(tot, a.iter().sum())
    };
    let mut cur = full(&theta, &mut terms);
    let mut scratch = terms.clone();
    for dir in 0..=nc {
        // Direction `dir < nc`: coordinate `dir`; `dir == nc`: all coordinates together.
        let w = widths[dir];
        let eval_at = |theta: &[f64], terms: &[f64], scratch: &mut Vec<f64>, sh: f64| -> f64 {
            if dir == nc {
                let moved: Vec<f64> = theta.iter().map(|t| t + sh).collect();
                full(&moved, scratch)
            } else {
                let a_new = clampa(theta[dir] + sh);
                let asum: f64 = (0..nc)
                    .map(|c| if c == dir { a_new } else { clampa(theta[c]) })
                    .sum();
                let others: f64 = (0..nc).filter(|&c| c != dir).map(|c| terms[c]).sum();
                others + cell_term(dir, a_new) - lg_sum(tot, asum)
            }
        };
        let level = cur + rng.gen::<f64>().ln();
        let mut lo = -w * rng.gen::<f64>();
        let mut hi = lo + w;
        let mut steps = 0;
        while steps < 60 && eval_at(&theta, &terms, &mut scratch, lo) > level {
            lo -= w;
            steps += 1;
        }
        steps = 0;
        while steps < 60 && eval_at(&theta, &terms, &mut scratch, hi) > level {
            hi += w;
            steps += 1;
        }
        let mut shift = 0.0;
        for _ in 0..200 {
            let sh = lo + (hi - lo) * rng.gen::<f64>();
            let v = eval_at(&theta, &terms, &mut scratch, sh);
            if v > level {
                for (c, t) in theta.iter_mut().enumerate() {
                    if dir == nc || c == dir {
                        *t += sh;
                    }
                }
                cur = full(&theta, &mut terms);
                shift = sh;
                break;
            }
            if sh < 0.0 {
                lo = sh;
            } else {
                hi = sh;
            }
        }
        if adapt {
            widths[dir] = (0.8 * widths[dir] + 0.2 * (3.0 * shift.abs())).clamp(1e-4, 5.0);
        }
    }
    for (a, t) in al.iter_mut().zip(&theta) {
        *a = clampa(*t);
    }
}

/// One chain. Returns the recorded aggregate cells per sweep (`draws[s][k]`), the mean unit tables
/// (if requested) and the mean α.
fn run_chain(
    d: &Data,
    init: &[f64],
    cfg: &BayesConfig,
    seed: u64,
    chain: usize,
    keep_units: bool,
) -> (Vec<Vec<f64>>, Option<Vec<f64>>, Vec<f64>) {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let mut n = vec![0u32; d.u * k];
    n.par_chunks_mut(k).enumerate().for_each(|(u, out)| {
        round_table(
            &init[u * k..(u + 1) * k],
            &d.xi[u * nr..(u + 1) * nr],
            &d.yi[u * nc..(u + 1) * nc],
            out,
        )
    });
    let mut unit_sum = if keep_units {
        Some(vec![0.0f64; d.u * k])
    } else {
        None
    };
    let mut alpha = moment_alpha(d, &n);
    let mut alpha_sum = vec![0.0; k];
    let max_x: Vec<u64> = (0..nr)
        .map(|i| (0..d.u).map(|u| d.xi[u * nr + i]).max().unwrap_or(0))
        .collect();
    let row_stats: Vec<Vec<(f64, f64)>> = (0..nr)
        .map(|i| {
            let mut h = vec![0u64; max_x[i] as usize + 1];
            for u in 0..d.u {
                h[d.xi[u * nr + i] as usize] += 1;
            }
            compress(&h)
        })
        .collect();
    let mut widths = vec![0.5f64; nr * (nc + 1)];
    let moves = if cfg.moves_per_unit == 0 {
        (nr - 1) * (nc - 1)
    } else {
        cfg.moves_per_unit
    };
    let thin = cfg.thin.max(1);
    let total = cfg.warmup + cfg.samples * thin;
    let mut draws = Vec::with_capacity(cfg.samples);
    let mut arng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[chain as u64, u64::MAX]));
    for it in 0..total {
        let recording = it >= cfg.warmup && (it - cfg.warmup) % thin == thin - 1;
        let alpha_ref = &alpha;
        let work = |ci: usize, chunk: &mut [u32], sums: Option<&mut [f64]>| -> Vec<f64> {
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(seed, &[chain as u64, it as u64, ci as u64]));
            let mut cells = vec![0.0; k];
            let mut buf = Vec::with_capacity(64);
            let mut rows = [0usize; MAX_DIM];
            let mut cols = [0usize; MAX_DIM];
            let u0 = ci * CHUNK;
            let mut sums = sums;
            for (off, t) in chunk.chunks_mut(k).enumerate() {
                let u = u0 + off;
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
                        let (p11, p12, p21, p22) =
                            (i1 * nc + j1, i1 * nc + j2, i2 * nc + j1, i2 * nc + j2);
                        let al = [
                            alpha_ref[p11],
                            alpha_ref[p12],
                            alpha_ref[p21],
                            alpha_ref[p22],
                        ];
                        let sh = dm_shift(
                            t[p11] as i64,
                            t[p12] as i64,
                            t[p21] as i64,
                            t[p22] as i64,
                            al,
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
                for (c, &v) in cells.iter_mut().zip(t.iter()) {
                    *c += v as f64;
                }
                if let Some(s) = sums.as_deref_mut() {
                    for (acc, &v) in s[off * k..(off + 1) * k].iter_mut().zip(t.iter()) {
                        *acc += v as f64;
                    }
                }
            }
            cells
        };
        // 1. n | alpha (beta integrated out).
        let parts: Vec<Vec<f64>> = match (unit_sum.as_mut(), recording) {
            (Some(us), true) => n
                .par_chunks_mut(CHUNK * k)
                .zip(us.par_chunks_mut(CHUNK * k))
                .enumerate()
                .map(|(ci, (chunk, s))| work(ci, chunk, Some(s)))
                .collect(),
            _ => n
                .par_chunks_mut(CHUNK * k)
                .enumerate()
                .map(|(ci, chunk)| work(ci, chunk, None))
                .collect(),
        };
        let mut cells = vec![0.0; k];
        for p in parts {
            for q in 0..k {
                cells[q] += p[q];
            }
        }
        // 2. alpha | n: slice sampling in log α from sufficient statistics (value histograms of
        //    the unit cells), so each evaluation costs O(distinct values), not O(units).
        let stats = cell_stats(d, &n, &max_x);
        for _ in 0..ALPHA_REPEATS {
            for i in 0..nr {
                alpha_row_update(
                    nc,
                    &mut alpha[i * nc..(i + 1) * nc],
                    &stats[i * nc..(i + 1) * nc],
                    &row_stats[i],
                    cfg,
                    &mut widths[i * (nc + 1)..(i + 1) * (nc + 1)],
                    it < cfg.warmup,
                    &mut arng,
                );
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

/// Runs `cfg.chains` chains (one after another, each parallel over units). Chain 0, 2, ... start from
/// the tslphom unit tables of `p_start`; chains 1, 3, ... from the independence tables
/// `x_r y_c / N` (dispersed starts, so R-hat can detect non-convergence).
pub(crate) fn fit(
    d: &Data,
    p_start: &[f64],
    cfg: &BayesConfig,
    seed: u64,
    keep_units: bool,
) -> BayesFit {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let chains = cfg.chains.max(1);
    let (lp_tables, _) = (
        lp::aggregate_units(d, p_start, true).1.unwrap_or_default(),
        (),
    );
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
        let (draws, units, alpha) = run_chain(d, init, cfg, seed, ch, keep_units);
        if let Some(us) = units {
            match unit_acc.as_mut() {
                Some(acc) => acc.iter_mut().zip(&us).for_each(|(a, b)| *a += b),
                None => unit_acc = Some(us),
            }
        }
        alpha_acc
            .iter_mut()
            .zip(&alpha)
            .for_each(|(a, b)| *a += b / chains as f64);
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
            .map(|c| {
                c.iter()
                    .map(|dr| if rt > 0.0 { dr[q] / rt } else { 0.0 })
                    .collect()
            })
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
    BayesFit {
        votes,
        p,
        lower,
        upper,
        rhat,
        ess,
        draws_per_chain: nd,
        units: unit_acc,
        alpha: alpha_acc,
    }
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

    fn check_dm(a: i64, b: i64, c: i64, d: i64, al: [f64; 4], seed: u64) {
        let lo = -a.min(d);
        let hi = b.min(c);
        let lf = |al: f64, n: i64| ln_gamma(al + n as f64) - ln_gamma(n as f64 + 1.0);
        let logp: Vec<f64> = (lo..=hi)
            .map(|k| lf(al[0], a + k) + lf(al[1], b - k) + lf(al[2], c - k) + lf(al[3], d + k))
            .collect();
        let m = logp.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logp.iter().map(|l| (l - m).exp()).sum();
        let exact: Vec<f64> = logp.iter().map(|l| (l - m).exp() / z).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut buf = Vec::new();
        let n = 100_000;
        let mut counts = vec![0usize; exact.len()];
        for _ in 0..n {
            let k = dm_shift(a, b, c, d, al, &mut rng, &mut buf);
            assert!(k >= lo && k <= hi);
            counts[(k - lo) as usize] += 1;
        }
        for (i, &e) in exact.iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            let tol = 4.5 * (e * (1.0 - e) / n as f64).sqrt() + 2e-4;
            assert!(
                (f - e).abs() < tol,
                "k={} f={f} e={e} al={al:?}",
                lo + i as i64
            );
        }
    }

    #[test]
    fn sufficient_statistics_match_direct_likelihood() {
        let m = crate::input::Margins {
            unit_ids: (0..5).map(|u| u.to_string()).collect(),
            rows: vec!["a".into(), "b".into()],
            cols: vec!["x".into(), "y".into(), "z".into()],
            row_counts: vec![vec![5, 7], vec![0, 4], vec![9, 1], vec![3, 3], vec![6, 0]],
            col_counts: vec![
                vec![4, 4, 4],
                vec![1, 1, 2],
                vec![2, 5, 3],
                vec![2, 2, 2],
                vec![1, 2, 3],
            ],
        };
        let d = Data::new(&m);
        let mut n = vec![0u32; d.u * 6];
        for u in 0..d.u {
            let t = vec![0.0; 6];
            round_table(
                &t,
                &d.xi[u * 2..u * 2 + 2],
                &d.yi[u * 3..u * 3 + 3],
                &mut n[u * 6..u * 6 + 6],
            );
        }
        let max_x = [9u64, 7];
        let stats = cell_stats(&d, &n, &max_x);
        let cfg = BayesConfig {
            lambda1: 1.0,
            lambda2: 0.0,
            ..BayesConfig::default()
        };
        let a1 = [0.7, 2.0, 1.3, 0.4, 5.0, 3.0];
        let a2 = [1.9, 0.5, 0.8, 2.4, 1.0, 0.2];
        let direct = dm_loglik(&d, &n, &[&a1, &a2]);
        for i in 0..2 {
            let mut h = vec![0u64; 10];
            for u in 0..d.u {
                h[d.xi[u * 2 + i] as usize] += 1;
            }
            let tot = compress(&h);
            // lambda1 = 1, lambda2 = 0: prior + Jacobian term is Σ ln α.
            let f = |a: &[f64]| {
                alpha_row_logpost(&a[i * 3..i * 3 + 3], &stats[i * 3..i * 3 + 3], &tot, &cfg)
                    - a[i * 3..i * 3 + 3].iter().map(|v| v.ln()).sum::<f64>()
            };
            let lhs = f(&a1) - f(&a2);
            let rhs = direct[0][i] - direct[1][i];
            assert!((lhs - rhs).abs() < 1e-9, "row {i}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn dm_shift_matches_exact_law() {
        // Log-concave case (all α >= 1).
        check_dm(3, 4, 5, 2, [2.0, 1.5, 3.0, 1.0], 3);
        // α < 1: mass piles up at the edges (bimodal law).
        check_dm(6, 5, 4, 7, [0.2, 0.3, 0.1, 0.5], 4);
        // Larger counts.
        check_dm(40, 70, 55, 30, [5.0, 20.0, 0.7, 3.0], 5);
    }
}

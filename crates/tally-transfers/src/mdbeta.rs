//! **Experimental, not wired into `md-bayes`** (see README, "md-bayes: the non-centred
//! experiment"): on the synthetic elections it mixes better than the collapsed sampler of
//! `bayes.rs` but still does not converge, and on senc it mixes worse, so `bayes::fit` keeps the
//! collapsed sampler. Kept, with tests, as the starting point for the next attempt.
//!
//! Non-collapsed sampler for the multinomial-Dirichlet model, with the unit tables integrated
//! out through the Rosen et al. (2001) likelihood.
//!
//! Model, unit `u`: `y_u ~ Multinomial(N_u, θ_u)`, `θ_uc = Σ_r (x_ur / N_u) β_urc`,
//! `β_ur ~ Dirichlet(α_r)`, `α_rc ~ Gamma(λ₁, λ₂)`. State per chain: `α` and `ln β`. One sweep:
//! 1. per unit (parallel over fixed chunks, one ChaCha8 stream per chunk):
//!    a. data augmentation: each column's voters are assigned to rows,
//!    `z_u·c ~ Multinomial(y_uc, ∝ x_ur β_urc)`, then `β_ur ~ Dirichlet(α_r + z_ur·)` (drawn in
//!    log space so that tiny shapes do not underflow);
//!    b. ridge moves: random 2x2 shifts `±δ/x_r1`, `∓δ/x_r2` of β that leave `θ_u` (hence the
//!    likelihood) unchanged, slice-sampled under the Dirichlet prior over their whole feasible
//!    range (the directions the unit's data do not identify, which step a only crawls along);
//! 2. `α_r | β` by slice sampling on `ln α_r` from the sufficient statistics `S_rc = Σ_u ln β_urc`
//!    (O(C) per evaluation);
//! 3. non-centred joint moves of `(α_r, β_·r)`: every unit draws the auxiliary Gamma total
//!    `T_ur ~ Gamma(A_r)` (independent of β given α), so `G_urc = T_ur β_urc ~ Gamma(α_rc)`
//!    independently; a log random walk `α_r → α'_r` (one coordinate, or all) carries each
//!    `ln G_urc` by the affine map sending the mean/sd of `ln Gamma(α_rc)` to those of
//!    `ln Gamma(α'_rc)` (digamma / sqrt of trigamma ratio). The reverse map is its inverse, so this
//!    is a Metropolis–Hastings move with Jacobian `Π_c s_c G'_c / G_c`; its ratio includes the
//!    likelihood of every unit. Units keep their position relative to the population
//!    distribution while it moves, which the centred steps 1–2 cannot do.
//!
//! 4. all-rows joint moves: the same non-centred map for every row at once, proposing
//!    `ln α' = ln α + f L ε` with `L` the Cholesky factor of the covariance of `ln α` over warm-up
//!    (recomputed every 25 sweeps; scale `f` adapted to 25% acceptance during warm-up only). This
//!    is the move along the cross-row ridge of ecological regression; one pass per proposal.
//!
//! The reported draw is the expected aggregate table `Σ_u x_ur β_urc` (row margins exact).

#![allow(dead_code)]

use crate::bayes::BayesConfig;
use crate::data::{derive_seed, ln_gamma, par_chunks, Data, CHUNK, MAX_DIM};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Gamma, StandardNormal};
use rayon::prelude::*;

/// Rounds of joint (α_r, β_·r) proposals per row per sweep (each round: every coordinate, then all).
const JOINT_MOVES: usize = 1;
/// Whether to run the all-rows joint move (experiment).
const ALL_ROWS: bool = true;
/// All-rows proposals per sweep.
const ALL_MOVES: usize = 20;

/// Empirical covariance of the rows of `h`.
fn cov(h: &[Vec<f64>]) -> Vec<f64> {
    let k = h[0].len();
    let n = h.len() as f64;
    let mean: Vec<f64> = (0..k)
        .map(|q| h.iter().map(|v| v[q]).sum::<f64>() / n)
        .collect();
    let mut c = vec![0.0; k * k];
    for v in h {
        for a in 0..k {
            for b in 0..=a {
                c[a * k + b] += (v[a] - mean[a]) * (v[b] - mean[b]) / (n - 1.0);
            }
        }
    }
    for a in 0..k {
        for b in 0..a {
            c[b * k + a] = c[a * k + b];
        }
    }
    c
}

/// Lower Cholesky factor of `c + 1e-6 I` (row-major), `None` if not positive definite.
fn cholesky(c: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut s = c[i * k + j] + if i == j { 1e-6 } else { 0.0 };
            for p in 0..j {
                s -= l[i * k + p] * l[j * k + p];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    Some(l)
}

/// Floor of stored `ln β` (keeps logs finite; reached only by negligible proportions).
const LN_FLOOR: f64 = -700.0;

/// Digamma for `x > 0` (shift to x >= 6, asymptotic series).
pub(crate) fn digamma(x: f64) -> f64 {
    let mut x = x;
    let mut r = 0.0;
    while x < 6.0 {
        r -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + x.ln()
        - 0.5 / x
        - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))))
}

/// `ln G` for `G ~ Gamma(shape, 1)`; for shape < 1 via `G = G₁ U^(1/shape)`, `G₁ ~ Gamma(shape + 1)`.
fn ln_gamma_draw(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    if shape >= 1.0 {
        Gamma::new(shape, 1.0).unwrap().sample(rng).max(1e-300).ln()
    } else {
        let g = Gamma::new(shape + 1.0, 1.0)
            .unwrap()
            .sample(rng)
            .max(1e-300)
            .ln();
        g + rng.gen::<f64>().max(1e-300).ln() / shape
    }
}

/// Log conditional of row α given the sufficient statistics (`u` units, `s[c] = Σ ln β_uc`), on
/// the `ln α` scale (Gamma(λ₁, λ₂) prior plus log Jacobian).
fn alpha_logpost(a: &[f64], s: &[f64], u: f64, cfg: &BayesConfig) -> f64 {
    let asum: f64 = a.iter().sum();
    let mut v = u * ln_gamma(asum);
    for (c, &ac) in a.iter().enumerate() {
        v += -u * ln_gamma(ac) + (ac - 1.0) * s[c] + cfg.lambda1 * ac.ln() - cfg.lambda2 * ac;
    }
    v
}

/// Slice sampling on `ln α_r` along each coordinate and the common direction (stepping out).
fn alpha_slice(
    al: &mut [f64],
    s: &[f64],
    u: f64,
    cfg: &BayesConfig,
    widths: &mut [f64],
    adapt: bool,
    rng: &mut ChaCha8Rng,
) {
    let nc = al.len();
    let mut th: Vec<f64> = al.iter().map(|v| v.ln()).collect();
    let eval = |th: &[f64]| -> f64 {
        let a: Vec<f64> = th.iter().map(|t| t.exp().clamp(1e-8, 1e8)).collect();
        alpha_logpost(&a, s, u, cfg)
    };
    let mut cur = eval(&th);
    let mut moved = th.clone();
    for dir in 0..=nc {
        let w = widths[dir];
        let at = |sh: f64, moved: &mut Vec<f64>| -> f64 {
            for (c, m) in moved.iter_mut().enumerate() {
                *m = th[c] + if dir == nc || c == dir { sh } else { 0.0 };
            }
            eval(moved)
        };
        let level = cur + rng.gen::<f64>().max(1e-300).ln();
        let mut lo = -w * rng.gen::<f64>();
        let mut hi = lo + w;
        let mut steps = 0;
        while steps < 60 && at(lo, &mut moved) > level {
            lo -= w;
            steps += 1;
        }
        steps = 0;
        while steps < 60 && at(hi, &mut moved) > level {
            hi += w;
            steps += 1;
        }
        let mut shift = 0.0;
        for _ in 0..200 {
            let sh = lo + (hi - lo) * rng.gen::<f64>();
            let v = at(sh, &mut moved);
            if v > level {
                th.copy_from_slice(&moved);
                cur = v;
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
    for (a, t) in al.iter_mut().zip(&th) {
        *a = t.exp().clamp(1e-8, 1e8);
    }
}

/// Trigamma for `x > 0` (shift to x >= 6, asymptotic series).
pub(crate) fn trigamma(x: f64) -> f64 {
    let mut x = x;
    let mut r = 0.0;
    while x < 6.0 {
        r += 1.0 / (x * x);
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + 1.0 / x + 0.5 * f + f / x * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f / 30.0)))
}

pub(crate) struct ChainOut {
    pub draws: Vec<Vec<f64>>,
    pub units: Option<Vec<f64>>,
    pub alpha: Vec<f64>,
    /// Acceptance rate of the joint moves after warm-up.
    pub joint_acc: f64,
}

/// One chain from the unit tables `init` (`u * R * C`, real, with the unit margins).
pub(crate) fn run_chain(
    d: &Data,
    init: &[f64],
    cfg: &BayesConfig,
    seed: u64,
    chain: usize,
    keep_units: bool,
) -> ChainOut {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let uf = d.u as f64;
    // Initial β: smoothed row proportions of the start tables (global row shares for empty rows).
    let mut glob = vec![0.0; k];
    for u in 0..d.u {
        for q in 0..k {
            glob[q] += init[u * k + q];
        }
    }
    for i in 0..nr {
        let t: f64 = glob[i * nc..(i + 1) * nc].iter().sum();
        for j in 0..nc {
            glob[i * nc + j] = (glob[i * nc + j] + 1.0) / (t + nc as f64);
        }
    }
    let mut lb = vec![0.0f64; d.u * k];
    lb.par_chunks_mut(k).enumerate().for_each(|(u, out)| {
        for i in 0..nr {
            let x = d.x[u * nr + i];
            for j in 0..nc {
                let q = i * nc + j;
                out[q] = if x > 0.0 {
                    ((init[u * k + q] + 0.5) / (x + 0.5 * nc as f64)).ln()
                } else {
                    glob[q].ln()
                };
            }
        }
    });
    // α by moments of the unit proportions (rows with at least 20 voters).
    let mut alpha = vec![1.0; k];
    for i in 0..nr {
        let (mut w, mut m1, mut m2) = (0.0, vec![0.0; nc], vec![0.0; nc]);
        for u in 0..d.u {
            if d.x[u * nr + i] >= 20.0 {
                w += 1.0;
                for j in 0..nc {
                    let b = lb[u * k + i * nc + j].exp();
                    m1[j] += b;
                    m2[j] += b * b;
                }
            }
        }
        let mut conc = 20.0;
        if w >= 2.0 {
            let mut acc = 0.0;
            for j in 0..nc {
                let mu = m1[j] / w;
                let var = (m2[j] / w - mu * mu).max(1e-9);
                acc += (mu * (1.0 - mu) / var - 1.0).clamp(1.0, 1e4);
            }
            conc = acc / nc as f64;
        }
        for j in 0..nc {
            alpha[i * nc + j] = (conc * glob[i * nc + j]).max(1e-2);
        }
    }

    let cycles = 1;
    let ridge = if cfg.moves_per_unit == 0 {
        2 * (nr - 1) * (nc - 1)
    } else {
        cfg.moves_per_unit
    };
    let thin = cfg.thin.max(1);
    let total = cfg.warmup + cfg.samples * thin;
    let mut widths = vec![0.5f64; nr * (nc + 1)];
    let mut sig = vec![0.05f64; nr * (nc + 1)];
    let mut arng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[chain as u64, u64::MAX]));
    let mut draws = Vec::with_capacity(cfg.samples);
    let mut alpha_sum = vec![0.0; k];
    let mut unit_sum = keep_units.then(|| vec![0.0f64; d.u * k]);
    let mut scratch = vec![0.0f64; d.u * nc];
    let (mut acc_n, mut acc_k) = (0usize, 0usize);
    // All-rows joint move: Gaussian random walk on ln α with the warm-up covariance.
    let mut hist: Vec<Vec<f64>> = Vec::new();
    let mut chol: Option<Vec<f64>> = None;
    let mut all_scale = 0.5f64;
    let mut all_scratch = vec![0.0f64; d.u * k];

    for it in 0..total {
        let warm = it < cfg.warmup;
        let recording = !warm && (it - cfg.warmup) % thin == thin - 1;
        // 1. β | α, y (parallel, per-chunk streams); returns Σ_u ln β per cell.
        let alpha_ref = &alpha;
        let parts: Vec<Vec<f64>> = lb
            .par_chunks_mut(CHUNK * k)
            .enumerate()
            .map(|(ci, chunk)| {
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                    seed,
                    &[chain as u64, it as u64, ci as u64],
                ));
                let mut sums = vec![0.0; k];
                let mut beta = [0.0f64; MAX_DIM * 4];
                let mut z = [0u64; MAX_DIM * 4];
                let mut lg = [0.0f64; MAX_DIM];
                let mut big_b = vec![0.0f64; if k > MAX_DIM * 4 { k } else { 0 }];
                let mut big_z = vec![0u64; if k > MAX_DIM * 4 { k } else { 0 }];
                for (off, t) in chunk.chunks_mut(k).enumerate() {
                    let u = ci * CHUNK + off;
                    let x = &d.x[u * nr..(u + 1) * nr];
                    let y = &d.yi[u * nc..(u + 1) * nc];
                    let (bb, zz): (&mut [f64], &mut [u64]) = if k > MAX_DIM * 4 {
                        (&mut big_b[..], &mut big_z[..])
                    } else {
                        (&mut beta[..k], &mut z[..k])
                    };
                    for _ in 0..cycles {
                        for q in 0..k {
                            bb[q] = t[q].exp();
                        }
                        zz.iter_mut().for_each(|v| *v = 0);
                        for j in 0..nc {
                            let mut n = y[j];
                            if n == 0 {
                                continue;
                            }
                            let mut rem: f64 = (0..nr).map(|i| x[i] * bb[i * nc + j]).sum();
                            let last = (0..nr).rev().find(|&i| x[i] > 0.0).unwrap_or(0);
                            for i in 0..nr {
                                if x[i] <= 0.0 {
                                    continue;
                                }
                                if i == last || n == 0 {
                                    zz[i * nc + j] += n;
                                    break;
                                }
                                let w = x[i] * bb[i * nc + j];
                                let p = if rem > 0.0 {
                                    (w / rem).clamp(0.0, 1.0)
                                } else {
                                    0.0
                                };
                                let kk = if p >= 1.0 {
                                    n
                                } else if p <= 0.0 {
                                    0
                                } else {
                                    Binomial::new(n, p).unwrap().sample(&mut rng)
                                };
                                zz[i * nc + j] += kk;
                                n -= kk;
                                rem -= w;
                            }
                        }
                        for i in 0..nr {
                            let mut mx = f64::NEG_INFINITY;
                            for j in 0..nc {
                                let q = i * nc + j;
                                lg[j] = ln_gamma_draw(alpha_ref[q] + zz[q] as f64, &mut rng);
                                mx = mx.max(lg[j]);
                            }
                            let zsum: f64 =
                                lg[..nc].iter().map(|v| (v - mx).exp()).sum::<f64>().ln() + mx;
                            for j in 0..nc {
                                t[i * nc + j] = (lg[j] - zsum).max(LN_FLOOR);
                            }
                        }
                    }
                    // Ridge moves: 2x2 shifts of β that leave θ_u (hence the likelihood) unchanged,
                    // slice-sampled under the Dirichlet prior over their whole feasible range.
                    let mut act = [0usize; MAX_DIM];
                    let mut na = 0;
                    for i in 0..nr {
                        if x[i] > 0.0 {
                            act[na] = i;
                            na += 1;
                        }
                    }
                    if na >= 2 && nc >= 2 && ridge > 0 {
                        for q in 0..k {
                            bb[q] = t[q].exp();
                        }
                        for _ in 0..ridge {
                            let i1 = act[rng.gen_range(0..na)];
                            let mut i2 = act[rng.gen_range(0..na - 1)];
                            if i2 == i1 {
                                i2 = act[na - 1];
                            }
                            let j1 = rng.gen_range(0..nc);
                            let mut j2 = rng.gen_range(0..nc - 1);
                            if j2 == j1 {
                                j2 = nc - 1;
                            }
                            let q = [i1 * nc + j1, i1 * nc + j2, i2 * nc + j1, i2 * nc + j2];
                            let (w1, w2) = (1.0 / x[i1], 1.0 / x[i2]);
                            let dirs = [w1, -w1, -w2, w2];
                            let mut lo = f64::NEG_INFINITY;
                            let mut hi = f64::INFINITY;
                            for e in 0..4 {
                                let lim = -bb[q[e]] / dirs[e];
                                if dirs[e] > 0.0 {
                                    lo = lo.max(lim);
                                } else {
                                    hi = hi.min(lim);
                                }
                            }
                            let f = |dl: f64| -> f64 {
                                (0..4)
                                    .map(|e| {
                                        (alpha_ref[q[e]] - 1.0)
                                            * (bb[q[e]] + dirs[e] * dl).max(1e-300).ln()
                                    })
                                    .sum()
                            };
                            let level = f(0.0) + rng.gen::<f64>().max(1e-300).ln();
                            let mut chosen = 0.0;
                            for _ in 0..100 {
                                let dl = lo + (hi - lo) * rng.gen::<f64>();
                                if f(dl) > level {
                                    chosen = dl;
                                    break;
                                }
                                if dl < 0.0 {
                                    lo = dl;
                                } else {
                                    hi = dl;
                                }
                            }
                            for e in 0..4 {
                                bb[q[e]] = (bb[q[e]] + dirs[e] * chosen).max(0.0);
                            }
                        }
                        for q in 0..k {
                            t[q] = bb[q].max(1e-300).ln().max(LN_FLOOR);
                        }
                    }
                    for (s, &v) in sums.iter_mut().zip(t.iter()) {
                        *s += v;
                    }
                }
                sums
            })
            .collect();
        let mut s_tot = vec![0.0; k];
        for p in parts {
            for q in 0..k {
                s_tot[q] += p[q];
            }
        }
        // 2. α | β (slice sampling from the sufficient statistics).
        for i in 0..nr {
            alpha_slice(
                &mut alpha[i * nc..(i + 1) * nc],
                &s_tot[i * nc..(i + 1) * nc],
                uf,
                cfg,
                &mut widths[i * (nc + 1)..(i + 1) * (nc + 1)],
                warm,
                &mut arng,
            );
        }
        // 3. Joint moves (α_r, β_·r).
        for i in 0..nr {
            for mv in 0..JOINT_MOVES * (nc + 1) {
                // Direction: one coordinate of ln α_r, or all of them (dir == nc).
                let dir = mv % (nc + 1);
                let sd = i * (nc + 1) + dir;
                let a: Vec<f64> = alpha[i * nc..(i + 1) * nc].to_vec();
                let a2: Vec<f64> = a
                    .iter()
                    .enumerate()
                    .map(|(c, &v)| {
                        if dir == nc || dir == c {
                            let e: f64 = arng.sample(StandardNormal);
                            (v * (sig[sd] * e).exp()).clamp(1e-8, 1e8)
                        } else {
                            v
                        }
                    })
                    .collect();
                let asum: f64 = a.iter().sum();
                let m: Vec<f64> = a.iter().map(|&v| digamma(v)).collect();
                let m2: Vec<f64> = a2.iter().map(|&v| digamma(v)).collect();
                let sc: Vec<f64> = a
                    .iter()
                    .zip(&a2)
                    .map(|(&v, &w)| (trigamma(w) / trigamma(v)).sqrt())
                    .collect();
                let mut delta = 0.0;
                for c in 0..nc {
                    delta += cfg.lambda1 * (a2[c] / a[c]).ln() - cfg.lambda2 * (a2[c] - a[c]);
                    delta += uf * (ln_gamma(a[c]) - ln_gamma(a2[c]) + sc[c].ln());
                }
                let lb_ref = &lb;
                let mv_seed = derive_seed(
                    seed,
                    &[
                        chain as u64,
                        it as u64,
                        u64::MAX - 1 - (i * JOINT_MOVES + mv) as u64,
                    ],
                );
                let part: Vec<f64> = scratch
                    .par_chunks_mut(CHUNK * nc)
                    .enumerate()
                    .map(|(ci, out)| {
                        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(mv_seed, &[ci as u64]));
                        let mut acc = 0.0;
                        for (off, o) in out.chunks_mut(nc).enumerate() {
                            let u = ci * CHUNK + off;
                            let t = &lb_ref[u * k..(u + 1) * k];
                            let row = &t[i * nc..(i + 1) * nc];
                            // Auxiliary Gamma total (independent of β given α): G = T β.
                            let lt = ln_gamma_draw(asum, &mut rng);
                            let mut mx = f64::NEG_INFINITY;
                            for c in 0..nc {
                                let lg = lt + row[c];
                                let lg2 = sc[c] * (lg - m[c]) + m2[c];
                                acc += a2[c] * lg2 - lg2.exp() - a[c] * lg + lg.exp();
                                o[c] = lg2;
                                mx = mx.max(lg2);
                            }
                            let z: f64 = o.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() + mx;
                            for v in o.iter_mut() {
                                *v = (*v - z).max(LN_FLOOR);
                            }
                            let x = &d.x[u * nr..(u + 1) * nr];
                            if x[i] > 0.0 {
                                let y = &d.y[u * nc..(u + 1) * nc];
                                for c in 0..nc {
                                    if y[c] == 0.0 {
                                        continue;
                                    }
                                    let th: f64 = (0..nr).map(|r| x[r] * t[r * nc + c].exp()).sum();
                                    let th2 = th + x[i] * (o[c].exp() - row[c].exp());
                                    acc += y[c] * (th2.max(1e-300) / th.max(1e-300)).ln();
                                }
                            }
                        }
                        acc
                    })
                    .collect();
                delta += part.iter().sum::<f64>();
                let accept = delta >= 0.0 || arng.gen::<f64>() < delta.exp();
                if accept {
                    alpha[i * nc..(i + 1) * nc].copy_from_slice(&a2);
                    let sc = &scratch;
                    lb.par_chunks_mut(k).enumerate().for_each(|(u, t)| {
                        t[i * nc..(i + 1) * nc].copy_from_slice(&sc[u * nc..(u + 1) * nc]);
                    });
                }
                if warm {
                    let g = 1.0 / (1.0 + it as f64 / 20.0).sqrt();
                    sig[sd] = (sig[sd] * (g * (accept as u8 as f64 - 0.3)).exp()).clamp(1e-4, 3.0);
                } else {
                    acc_n += 1;
                    acc_k += accept as usize;
                }
            }
        }
        if ALL_ROWS {
            let la: Vec<f64> = alpha.iter().map(|v| v.ln()).collect();
            // Warm-up history of ln α (its last three quarters) for the proposal covariance.
            if warm && it >= cfg.warmup / 4 {
                hist.push(la.clone());
                if hist.len() >= 2 * k && hist.len().is_multiple_of(25) {
                    chol = cholesky(&cov(&hist), k);
                }
            }
            for all_mv in 0..ALL_MOVES {
                let la: Vec<f64> = alpha.iter().map(|v| v.ln()).collect();
                if let Some(l) = chol.as_ref() {
                    let e: Vec<f64> = (0..k).map(|_| arng.sample(StandardNormal)).collect();
                    let f = all_scale * 2.38 / (k as f64).sqrt();
                    let a = alpha.clone();
                    let a2: Vec<f64> = (0..k)
                        .map(|q| {
                            let step: f64 = (0..=q).map(|j| l[q * k + j] * e[j]).sum();
                            (la[q] + f * step).exp().clamp(1e-8, 1e8)
                        })
                        .collect();
                    let asum: Vec<f64> = (0..nr)
                        .map(|i| a[i * nc..(i + 1) * nc].iter().sum())
                        .collect();
                    let m: Vec<f64> = a.iter().map(|&v| digamma(v)).collect();
                    let m2: Vec<f64> = a2.iter().map(|&v| digamma(v)).collect();
                    let sc: Vec<f64> = a
                        .iter()
                        .zip(&a2)
                        .map(|(&v, &w)| (trigamma(w) / trigamma(v)).sqrt())
                        .collect();
                    let mut delta = 0.0;
                    for q in 0..k {
                        delta += cfg.lambda1 * (a2[q] / a[q]).ln() - cfg.lambda2 * (a2[q] - a[q]);
                        delta += uf * (ln_gamma(a[q]) - ln_gamma(a2[q]) + sc[q].ln());
                    }
                    let lb_ref = &lb;
                    let mv_seed = derive_seed(
                        seed,
                        &[chain as u64, it as u64, u64::MAX - 4096 - all_mv as u64],
                    );
                    let part: Vec<f64> = all_scratch
                        .par_chunks_mut(CHUNK * k)
                        .enumerate()
                        .map(|(ci, out)| {
                            let mut rng =
                                ChaCha8Rng::seed_from_u64(derive_seed(mv_seed, &[ci as u64]));
                            let mut acc = 0.0;
                            for (off, o) in out.chunks_mut(k).enumerate() {
                                let u = ci * CHUNK + off;
                                let t = &lb_ref[u * k..(u + 1) * k];
                                for i in 0..nr {
                                    let lt = ln_gamma_draw(asum[i], &mut rng);
                                    let mut mx = f64::NEG_INFINITY;
                                    for c in 0..nc {
                                        let q = i * nc + c;
                                        let lg = lt + t[q];
                                        let lg2 = sc[q] * (lg - m[q]) + m2[q];
                                        acc += a2[q] * lg2 - lg2.exp() - a[q] * lg + lg.exp();
                                        o[q] = lg2;
                                        mx = mx.max(lg2);
                                    }
                                    let row = &mut o[i * nc..(i + 1) * nc];
                                    let z: f64 =
                                        row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() + mx;
                                    for v in row.iter_mut() {
                                        *v = (*v - z).max(LN_FLOOR);
                                    }
                                }
                                let x = &d.x[u * nr..(u + 1) * nr];
                                let y = &d.y[u * nc..(u + 1) * nc];
                                for c in 0..nc {
                                    if y[c] == 0.0 {
                                        continue;
                                    }
                                    let th: f64 = (0..nr).map(|r| x[r] * t[r * nc + c].exp()).sum();
                                    let th2: f64 =
                                        (0..nr).map(|r| x[r] * o[r * nc + c].exp()).sum();
                                    acc += y[c] * (th2.max(1e-300) / th.max(1e-300)).ln();
                                }
                            }
                            acc
                        })
                        .collect();
                    delta += part.iter().sum::<f64>();
                    let accept = delta >= 0.0 || arng.gen::<f64>() < delta.exp();
                    if accept {
                        alpha.copy_from_slice(&a2);
                        lb.copy_from_slice(&all_scratch);
                    }
                    if warm {
                        let g = 1.0 / (1.0 + it as f64 / 20.0).sqrt();
                        all_scale =
                            (all_scale * (g * (accept as u8 as f64 - 0.25)).exp()).clamp(1e-3, 3.0);
                    }
                }
            }
        }
        if recording {
            let parts: Vec<Vec<f64>> = par_chunks(d.u, |_, a, b| {
                let mut agg = vec![0.0; k];
                for u in a..b {
                    for q in 0..k {
                        agg[q] += d.x[u * nr + q / nc] * lb[u * k + q].exp();
                    }
                }
                agg
            });
            let mut cells = vec![0.0; k];
            for p in parts {
                for q in 0..k {
                    cells[q] += p[q];
                }
            }
            if let Some(us) = unit_sum.as_mut() {
                us.par_chunks_mut(k).enumerate().for_each(|(u, s)| {
                    for q in 0..k {
                        s[q] += d.x[u * nr + q / nc] * lb[u * k + q].exp();
                    }
                });
            }
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
    ChainOut {
        draws,
        units: unit_sum,
        alpha: alpha_sum,
        joint_acc: if acc_n > 0 {
            acc_k as f64 / acc_n as f64
        } else {
            f64::NAN
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Margins;

    /// 2 x 2, 200 units with varying row mixes, homogeneous planted transfers.
    fn planted() -> (Data, [f64; 4]) {
        let p = [0.8, 0.2, 0.3, 0.7];
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut m = Margins {
            unit_ids: vec![],
            rows: vec!["a".into(), "b".into()],
            cols: vec!["x".into(), "y".into()],
            row_counts: vec![],
            col_counts: vec![],
        };
        for u in 0..200 {
            let x0: u64 = rng.gen_range(20..200);
            let x1: u64 = rng.gen_range(20..200);
            let k0 = Binomial::new(x0, p[0]).unwrap().sample(&mut rng);
            let k1 = Binomial::new(x1, p[2]).unwrap().sample(&mut rng);
            m.unit_ids.push(u.to_string());
            m.row_counts.push(vec![x0, x1]);
            m.col_counts.push(vec![k0 + k1, x0 + x1 - k0 - k1]);
        }
        (Data::new(&m), p)
    }

    #[test]
    fn recovers_planted_table_deterministically() {
        let (d, p) = planted();
        // Start from the independence tables (far from the truth: both rows look alike).
        let init: Vec<f64> = (0..d.u)
            .flat_map(|u| {
                let (x, y) = (d.xu(u).to_vec(), d.yu(u).to_vec());
                let n: f64 = x.iter().sum();
                (0..4).map(move |q| x[q / 2] * y[q % 2] / n)
            })
            .collect();
        let cfg = BayesConfig {
            warmup: 100,
            samples: 100,
            ..BayesConfig::default()
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run_chain(&d, &init, &cfg, 3, 0, false))
        };
        let a = run(1);
        let b = run(2);
        assert_eq!(a.draws, b.draws, "thread count changed the draws");
        assert_eq!(a.draws.len(), 100);
        assert!(a.joint_acc > 0.05 && a.joint_acc < 0.95, "{}", a.joint_acc);
        let nd = a.draws.len() as f64;
        for q in 0..4 {
            let mean: f64 = a.draws.iter().map(|dr| dr[q]).sum::<f64>() / nd;
            let est = mean / d.row_tot[q / 2];
            assert!((est - p[q]).abs() < 0.05, "cell {q}: {est} vs {}", p[q]);
        }
        // Row margins are exact in every draw.
        for dr in &a.draws {
            assert!((dr[0] + dr[1] - d.row_tot[0]).abs() < 1e-6 * d.row_tot[0]);
        }
    }

    #[test]
    fn digamma_matches_differences_of_ln_gamma() {
        for &x in &[0.05, 0.7, 1.0, 3.3, 12.0, 250.0] {
            let h = 1e-5;
            let num = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - num).abs() < 1e-6, "x={x}");
        }
        assert!((digamma(1.0) + 0.5772156649015329).abs() < 1e-9);
        for &x in &[0.05, 0.7, 1.0, 3.3, 12.0, 250.0] {
            let h = 1e-5;
            let num = (digamma(x + h) - digamma(x - h)) / (2.0 * h);
            assert!((trigamma(x) - num).abs() < 1e-5 * trigamma(x), "x={x}");
        }
    }
}

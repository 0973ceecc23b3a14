//! Integer-percentage test (after Kobak, Shpilkin & Pshenichnikov, 2016).
//!
//! A station is an *integer hit* when its turnout or its leader's share, in percent, lies within
//! ±0.05 points of a whole number from 1 to 99. The statistic is the number of hits among stations
//! with at least `min_voters` ballots cast (turnout checked only when <= 99%, share only when <= 99%).
//!
//! Null model: each station's counts are redrawn binomially with the observed proportions
//! (cast ~ Bin(registered, turnout), leader ~ Bin(valid, share), independently). Under that null the
//! stations' hits are independent Bernoulli variables whose probabilities we compute *exactly* by
//! summing the binomial probabilities of the counts that land in a window. The Monte Carlo then
//! draws one uniform number per station and replicate, which has the same distribution as drawing
//! the binomial counts and testing the windows, at a fraction of the cost and without allocation in
//! the inner loop.

use crate::util::{rng_for, stream, LnFactTable};
use rand::RngCore;
use rayon::prelude::*;

/// Half-width of the window around a whole percent, in percentage points (fixed by the method).
pub const WINDOW_POINTS: f64 = 0.05;

/// True when k/n in percent is within ±0.05 points of a whole percent 1..=99 (exact integer arithmetic).
#[inline]
pub fn integer_hit(k: u64, n: u64) -> bool {
    if n == 0 || k > n {
        return false;
    }
    let k = k as u128;
    let n = n as u128;
    let j = (200 * k + n) / (2 * n); // nearest whole percent, halves up
    if j == 0 || j >= 100 {
        return false;
    }
    let a = 2000 * k;
    let b = 20 * j * n;
    let diff = a.abs_diff(b);
    diff <= n
}

/// Probability that Bin(n, k/n) lands in an integer window (whole percents 1..=99).
pub(crate) fn hit_probability(k: u64, n: u64, lf: &LnFactTable) -> f64 {
    if n == 0 || k == 0 || k >= n {
        return 0.0;
    }
    let nf = n as f64;
    let p = k as f64 / nf;
    let q = 1.0 - p;
    let lp = p.ln();
    let lq = q.ln();
    let lnn = lf.get(n);
    let sd = (nf * p * q).sqrt();
    let lo_k = (nf * p - 10.0 * sd - 1.0).max(0.0);
    let hi_k = (nf * p + 10.0 * sd + 1.0).min(nf);
    let j_lo = ((lo_k / nf) * 100.0).floor().max(1.0) as u64;
    let j_hi = ((hi_k / nf) * 100.0).ceil().min(99.0) as u64;
    let mut total = 0.0;
    for j in j_lo..=j_hi {
        // k in window  <=>  |2000 k - 20 j n| <= n  <=>  n(20j-1)/2000 <= k <= n(20j+1)/2000
        let lo_num = n * (20 * j - 1);
        let kmin = lo_num.div_ceil(2000);
        let kmax = n * (20 * j + 1) / 2000;
        for kk in kmin..=kmax.min(n) {
            let lpmf = lnn - lf.get(kk) - lf.get(n - kk) + kk as f64 * lp + (n - kk) as f64 * lq;
            total += lpmf.exp();
        }
    }
    total.min(1.0)
}

/// One station's contribution to the test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntegerStation {
    /// (cast, registered) when the turnout criterion applies.
    pub turnout: Option<(u64, u64)>,
    /// (leader, valid) when the share criterion applies.
    pub share: Option<(u64, u64)>,
    /// Group index (0 when there are no groups).
    pub group: u32,
}

/// Raw outcome of the test, before it is dressed for the report.
#[derive(Debug, Clone)]
pub(crate) struct IntegerOutcome {
    pub tested: usize,
    pub observed: u64,
    pub observed_turnout: u64,
    pub observed_share: u64,
    pub expected_exact: f64,
    pub expected_turnout: f64,
    pub expected_share: f64,
    pub mc_mean: f64,
    pub mc_sd: f64,
    pub mc_ge: u64,
    pub reps: usize,
    /// Per group: (tested, observed, exact expectation, mc mean, mc sd, replicates >= observed).
    pub groups: Vec<GroupIntegerOutcome>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupIntegerOutcome {
    pub tested: usize,
    pub observed: u64,
    pub expected_exact: f64,
    pub mc_mean: f64,
    pub mc_sd: f64,
    pub mc_ge: u64,
}

/// Runs the test on the given stations with `reps` Monte Carlo replicates.
pub(crate) fn run(
    stations: &[IntegerStation],
    n_groups: usize,
    reps: usize,
    seed: u64,
) -> IntegerOutcome {
    let max_n = stations
        .iter()
        .flat_map(|s| [s.turnout.map(|t| t.1), s.share.map(|t| t.1)])
        .flatten()
        .max()
        .unwrap_or(0);
    let lf = LnFactTable::new(max_n.min(2_000_000));
    let n_groups = n_groups.max(1);

    // Exact per-station hit probabilities, in parallel (pure per station).
    let probs: Vec<(f64, f64)> = stations
        .par_iter()
        .map(|s| {
            let pt = s.turnout.map_or(0.0, |(k, n)| hit_probability(k, n, &lf));
            let ps = s.share.map_or(0.0, |(k, n)| hit_probability(k, n, &lf));
            (pt, ps)
        })
        .collect();

    let mut observed = 0u64;
    let mut observed_turnout = 0u64;
    let mut observed_share = 0u64;
    let mut groups = vec![GroupIntegerOutcome::default(); n_groups];
    // Stations that can hit under the null: threshold on a 32-bit uniform, and group.
    let mut active: Vec<(u64, u32)> = Vec::with_capacity(stations.len());
    let (mut expected_exact, mut expected_turnout, mut expected_share) = (0.0, 0.0, 0.0);
    for (s, &(pt, ps)) in stations.iter().zip(&probs) {
        let ht = s.turnout.is_some_and(|(k, n)| integer_hit(k, n));
        let hs = s.share.is_some_and(|(k, n)| integer_hit(k, n));
        observed_turnout += ht as u64;
        observed_share += hs as u64;
        let hit = ht || hs;
        observed += hit as u64;
        let g = &mut groups[s.group as usize];
        g.tested += 1;
        g.observed += hit as u64;
        let p = 1.0 - (1.0 - pt) * (1.0 - ps);
        g.expected_exact += p;
        expected_exact += p;
        expected_turnout += pt;
        expected_share += ps;
        if p > 0.0 {
            let thr = ((p * 4_294_967_296.0).round() as u64).min(1 << 32);
            active.push((thr, s.group));
        }
    }

    // Monte Carlo: one generator per replicate, derived from the seed.
    struct Acc {
        sum: u64,
        sumsq: u128,
        ge: u64,
        gsum: Vec<u64>,
        gsumsq: Vec<u64>,
        gge: Vec<u64>,
    }
    let new_acc = || Acc {
        sum: 0,
        sumsq: 0,
        ge: 0,
        gsum: vec![0; n_groups],
        gsumsq: vec![0; n_groups],
        gge: vec![0; n_groups],
    };
    let group_obs: Vec<u64> = groups.iter().map(|g| g.observed).collect();
    let track_groups = n_groups > 1;
    let acc = (0..reps)
        .into_par_iter()
        .fold(
            || {
                (
                    new_acc(),
                    vec![0u64; if track_groups { n_groups } else { 0 }],
                )
            },
            |(mut acc, mut gcount), r| {
                let mut rng = rng_for(seed, stream::INTEGER_MC, r as u64);
                let mut count = 0u64;
                if track_groups {
                    gcount.iter_mut().for_each(|c| *c = 0);
                    for &(thr, g) in &active {
                        let hit = ((rng.next_u32() as u64) < thr) as u64;
                        count += hit;
                        gcount[g as usize] += hit;
                    }
                    for (gi, &c) in gcount.iter().enumerate() {
                        acc.gsum[gi] += c;
                        acc.gsumsq[gi] += c * c;
                        acc.gge[gi] += (c >= group_obs[gi]) as u64;
                    }
                } else {
                    for &(thr, _) in &active {
                        count += ((rng.next_u32() as u64) < thr) as u64;
                    }
                }
                acc.sum += count;
                acc.sumsq += (count as u128) * (count as u128);
                acc.ge += (count >= observed) as u64;
                (acc, gcount)
            },
        )
        .map(|(a, _)| a)
        .reduce(new_acc, |mut a, b| {
            a.sum += b.sum;
            a.sumsq += b.sumsq;
            a.ge += b.ge;
            for gi in 0..n_groups {
                a.gsum[gi] += b.gsum[gi];
                a.gsumsq[gi] += b.gsumsq[gi];
                a.gge[gi] += b.gge[gi];
            }
            a
        });

    let mean_sd = |sum: f64, sumsq: f64| -> (f64, f64) {
        if reps == 0 {
            return (f64::NAN, f64::NAN);
        }
        let r = reps as f64;
        let mean = sum / r;
        let var = if reps > 1 {
            ((sumsq - r * mean * mean) / (r - 1.0)).max(0.0)
        } else {
            0.0
        };
        (mean, var.sqrt())
    };
    let (mc_mean, mc_sd) = mean_sd(acc.sum as f64, acc.sumsq as f64);
    if track_groups {
        for (gi, g) in groups.iter_mut().enumerate() {
            let (m, s) = mean_sd(acc.gsum[gi] as f64, acc.gsumsq[gi] as f64);
            g.mc_mean = m;
            g.mc_sd = s;
            g.mc_ge = acc.gge[gi];
        }
    } else {
        groups[0].mc_mean = mc_mean;
        groups[0].mc_sd = mc_sd;
        groups[0].mc_ge = acc.ge;
    }
    IntegerOutcome {
        tested: stations.len(),
        observed,
        observed_turnout,
        observed_share,
        expected_exact,
        expected_turnout,
        expected_share,
        mc_mean,
        mc_sd,
        mc_ge: acc.ge,
        reps,
        groups,
    }
}

/// Monte Carlo p-value with the usual +1 correction: (1 + #{sim >= obs}) / (1 + reps).
pub(crate) fn mc_p_value(ge: u64, reps: usize) -> f64 {
    (1.0 + ge as f64) / (1.0 + reps as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution};

    #[test]
    fn hit_windows_are_exact() {
        assert!(integer_hit(50, 100)); // 50.00%
        assert!(integer_hit(1000, 2000)); // 50.00%
        assert!(integer_hit(5001, 10000)); // 50.01%
        assert!(integer_hit(5005, 10000)); // 50.05% exactly at the boundary: inside
        assert!(!integer_hit(5006, 10000)); // 50.06%
        assert!(!integer_hit(100, 100)); // 100% excluded
        assert!(!integer_hit(0, 100)); // 0% excluded
        assert!(integer_hit(99, 100));
        assert!(!integer_hit(333, 1000)); // 33.3%
    }

    #[test]
    fn boundary_of_two_thousand() {
        // 1001/2000 = 50.05% exactly: |2000*1001 - 20*50*2000| = 2000 <= 2000 -> inside.
        let k = 1001u64;
        let n = 2000u64;
        let inside = (2000 * k).abs_diff(20 * 50 * n) <= n;
        assert!(inside);
        assert!(integer_hit(k, n));
        assert!(!integer_hit(1002, 2000)); // 50.10%
    }

    #[test]
    fn hit_probability_matches_simulation() {
        let lf = LnFactTable::new(5000);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for &(k, n) in &[(1234u64, 2000u64), (70, 150), (3001, 4500), (450, 600)] {
            let p = hit_probability(k, n, &lf);
            let b = Binomial::new(n, k as f64 / n as f64).unwrap();
            let draws = 40_000;
            let hits = (0..draws)
                .filter(|_| integer_hit(b.sample(&mut rng), n))
                .count();
            let freq = hits as f64 / draws as f64;
            let se = (p * (1.0 - p) / draws as f64).sqrt();
            assert!(
                (freq - p).abs() < 5.0 * se + 1e-4,
                "k={k} n={n}: exact {p} vs simulated {freq}"
            );
        }
    }
}

//! Shape of the turnout and share distributions, their correlation, and a Shpilkin-type
//! excess-vote estimate.

use crate::util::{moments, percentile_interval, rng_for, sample_sd, stream, weighted_corr};
use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

/// Shape statistics of one distribution over stations (each station counts once).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DistStats {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub skewness: f64,
    pub excess_kurtosis: f64,
    /// Sarle's bimodality coefficient (g^2 + 1) / (k + 3(n-1)^2/((n-2)(n-3))); values above
    /// 5/9 ≈ 0.555 are what a uniform distribution gives and suggest more than one mode.
    pub bimodality_coefficient: f64,
    /// Locations of the prominent modes of a smoothed 1-point histogram (prominence >= 5% of the
    /// highest peak), lowest first.
    pub modes: Vec<f64>,
}

/// Bimodality coefficient from sample skewness and excess kurtosis.
pub(crate) fn bimodality_coefficient(skew: f64, excess_kurt: f64, n: usize) -> f64 {
    if n < 4 {
        return f64::NAN;
    }
    let nf = n as f64;
    // Small-sample corrected skewness and kurtosis.
    let g = skew * (nf * (nf - 1.0)).sqrt() / (nf - 2.0);
    let k = ((nf + 1.0) * excess_kurt + 6.0) * (nf - 1.0) / ((nf - 2.0) * (nf - 3.0));
    (g * g + 1.0) / (k + 3.0 * (nf - 1.0) * (nf - 1.0) / ((nf - 2.0) * (nf - 3.0)))
}

/// Prominent modes of values in [0, 1]: Gaussian-smoothed (2 points) histogram with 1-point bins.
pub(crate) fn modes(values: &[f64]) -> Vec<f64> {
    const B: usize = 100;
    let mut h = [0f64; B];
    for &v in values {
        h[crate::fingerprint::bin(v)] += 1.0;
    }
    let kernel: Vec<f64> = (-6i32..=6)
        .map(|d| (-0.5 * (d as f64 / 2.0).powi(2)).exp())
        .collect();
    let mut s = [0f64; B];
    for (i, si) in s.iter_mut().enumerate() {
        let (mut acc, mut w) = (0.0, 0.0);
        for (k, kw) in kernel.iter().enumerate() {
            let j = i as i32 + k as i32 - 6;
            if (0..B as i32).contains(&j) {
                acc += kw * h[j as usize];
                w += kw;
            }
        }
        *si = acc / w;
    }
    let max = s.iter().cloned().fold(0.0, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..B {
        let left_ok = i == 0 || s[i] > s[i - 1];
        let right_ok = i == B - 1 || s[i] >= s[i + 1];
        if !(left_ok && right_ok) {
            continue;
        }
        // Prominence: height above the higher of the two lowest points reached before a higher peak.
        let mut lmin = s[i];
        let mut j = i;
        while j > 0 && s[j - 1] <= s[i] {
            j -= 1;
            lmin = lmin.min(s[j]);
        }
        let lmin = if j == 0 { 0.0f64.max(lmin) } else { lmin };
        let mut rmin = s[i];
        let mut j = i;
        while j + 1 < B && s[j + 1] <= s[i] {
            j += 1;
            rmin = rmin.min(s[j]);
        }
        let prominence = s[i] - lmin.max(rmin);
        if prominence >= 0.05 * max {
            out.push((i as f64 + 0.5) / B as f64);
        }
    }
    out
}

pub(crate) fn dist_stats(values: &[f64]) -> DistStats {
    let m = moments(values);
    DistStats {
        n: m.n,
        mean: m.mean,
        sd: m.sd,
        skewness: m.skewness,
        excess_kurtosis: m.excess_kurtosis,
        bimodality_coefficient: bimodality_coefficient(m.skewness, m.excess_kurtosis, m.n),
        modes: modes(values),
    }
}

/// Distribution section of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DistributionReport {
    pub turnout: DistStats,
    pub leader_share: DistStats,
    /// Pearson correlation of turnout and leader share across stations, weighted by ballots cast.
    pub turnout_share_correlation: f64,
}

pub(crate) fn run(turnout: &[f64], share: &[f64], weights: &[f64]) -> DistributionReport {
    DistributionReport {
        turnout: dist_stats(turnout),
        leader_share: dist_stats(share),
        turnout_share_correlation: weighted_corr(turnout, share, weights),
    }
}

/// Shpilkin-type excess-vote estimate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExcessVotes {
    pub method: String,
    /// The assumptions under which `estimate` means "votes in excess"; printed in the report.
    pub assumptions: Vec<String>,
    /// Turnout mode (voter-weighted, below 95%) used as the threshold between bulk and high-turnout stations.
    pub turnout_threshold: f64,
    /// Leader's share of valid votes in the bulk (stations at or below the threshold).
    pub bulk_leader_share: f64,
    /// Stations above the threshold.
    pub stations_above: usize,
    /// Leader's votes above the threshold, observed.
    pub leader_votes_above: u64,
    /// Observed minus counterfactual leader votes above the threshold (can be negative).
    pub estimate: f64,
    /// Bootstrap percentile interval over stations (threshold held fixed).
    pub ci: [f64; 2],
    /// Bootstrap standard error.
    pub se: f64,
    /// Leader's share of valid votes, observed, and with the excess removed from leader and valid.
    pub observed_leader_share: f64,
    pub counterfactual_leader_share: f64,
    /// Estimate as a fraction of all valid votes.
    pub fraction_of_valid: f64,
}

pub(crate) const EXCESS_METHOD: &str =
    "Shpilkin-type: leader votes at stations above the turnout mode minus the votes the leader would have \
     if those stations had the leader's share of the low-turnout bulk, with their opponents' votes as counted";

pub(crate) fn excess_assumptions() -> Vec<String> {
    vec![
        "Stations at or below the modal turnout are taken as the reference ('bulk'); their leader share is \
         taken as what every station would show without extra ballots."
            .to_string(),
        "Opponents' votes at high-turnout stations are taken as genuine; all extra turnout is attributed to \
         the leader."
            .to_string(),
        "Genuine differences between places (e.g. rural areas with both higher turnout and higher support for \
         the leader) are indistinguishable from added ballots under these assumptions, so the estimate is an \
         upper-style scenario figure, not a count of falsified ballots."
            .to_string(),
    ]
}

/// Per-station inputs for the excess estimate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExcessStation {
    pub turnout: f64,
    pub leader: u64,
    pub valid: u64,
    pub registered: u64,
}

/// Voter-weighted turnout mode (0.5-point bins, smoothed over ±1 point), below 95%.
pub(crate) fn turnout_mode(stations: &[ExcessStation]) -> f64 {
    const B: usize = 200;
    let mut h = [0f64; B];
    for s in stations {
        let b = ((s.turnout * B as f64).floor() as usize).min(B - 1);
        h[b] += s.registered as f64 * s.turnout;
    }
    let mut best = 0usize;
    let mut best_v = -1.0;
    for i in 0..190usize {
        let lo = i.saturating_sub(2);
        let hi = (i + 2).min(B - 1);
        let v: f64 = h[lo..=hi].iter().sum();
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    (best as f64 + 1.0) / B as f64 // upper edge of the modal bin
}

/// (estimate, bulk share, stations above, leader above) for a threshold.
pub(crate) fn excess_point(
    stations: &[ExcessStation],
    idx: impl Iterator<Item = usize>,
    threshold: f64,
) -> (f64, f64, usize, u64) {
    let (mut bl, mut bv, mut hl, mut hv, mut above) = (0u64, 0u64, 0u64, 0u64, 0usize);
    for i in idx {
        let s = &stations[i];
        if s.turnout <= threshold {
            bl += s.leader;
            bv += s.valid;
        } else {
            hl += s.leader;
            hv += s.valid;
            above += 1;
        }
    }
    if bv == 0 || bl >= bv {
        return (f64::NAN, f64::NAN, above, hl);
    }
    let s0 = bl as f64 / bv as f64;
    let opp = (hv - hl) as f64;
    let expected = opp * s0 / (1.0 - s0);
    (hl as f64 - expected, s0, above, hl)
}

pub(crate) fn excess_votes(
    stations: &[ExcessStation],
    reps: usize,
    level: f64,
    seed: u64,
) -> ExcessVotes {
    let threshold = turnout_mode(stations);
    let (estimate, s0, above, hl) = excess_point(stations, 0..stations.len(), threshold);
    let n = stations.len();
    let boots: Vec<f64> = (0..reps)
        .into_par_iter()
        .map(|r| {
            let mut rng = rng_for(seed, stream::EXCESS_BOOT, r as u64);
            let (mut bl, mut bv, mut hl, mut hv) = (0u64, 0u64, 0u64, 0u64);
            for _ in 0..n {
                let s = &stations[rng.gen_range(0..n)];
                if s.turnout <= threshold {
                    bl += s.leader;
                    bv += s.valid;
                } else {
                    hl += s.leader;
                    hv += s.valid;
                }
            }
            if bv == 0 || bl >= bv {
                return f64::NAN;
            }
            let s0 = bl as f64 / bv as f64;
            hl as f64 - (hv - hl) as f64 * s0 / (1.0 - s0)
        })
        .collect();
    let total_l: u64 = stations.iter().map(|s| s.leader).sum();
    let total_v: u64 = stations.iter().map(|s| s.valid).sum();
    let obs_share = if total_v > 0 {
        total_l as f64 / total_v as f64
    } else {
        f64::NAN
    };
    let cf = (total_l as f64 - estimate) / (total_v as f64 - estimate);
    let finite: Vec<f64> = boots.iter().copied().filter(|x| x.is_finite()).collect();
    ExcessVotes {
        method: EXCESS_METHOD.to_string(),
        assumptions: excess_assumptions(),
        turnout_threshold: threshold,
        bulk_leader_share: s0,
        stations_above: above,
        leader_votes_above: hl,
        estimate,
        ci: percentile_interval(&boots, level),
        se: sample_sd(&finite),
        observed_leader_share: obs_share,
        counterfactual_leader_share: cf,
        fraction_of_valid: estimate / total_v as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bimodality_coefficient_separates_shapes() {
        // Two well separated clusters vs one.
        let two: Vec<f64> = (0..2000)
            .map(|i| if i % 2 == 0 { 0.3 } else { 0.7 } + (i % 7) as f64 * 0.001)
            .collect();
        let one: Vec<f64> = (0..2000)
            .map(|i| 0.5 + ((i * 37 % 101) as f64 - 50.0) * 0.001 * ((i % 3) as f64))
            .collect();
        let s2 = dist_stats(&two);
        let s1 = dist_stats(&one);
        assert!(
            s2.bimodality_coefficient > 0.555,
            "{}",
            s2.bimodality_coefficient
        );
        assert_eq!(s2.modes.len(), 2, "{:?}", s2.modes);
        assert!(s1.modes.len() == 1, "{:?}", s1.modes);
    }

    #[test]
    fn excess_is_zero_when_share_does_not_depend_on_turnout() {
        let st: Vec<ExcessStation> = (0..1000)
            .map(|i| {
                let reg = 1000u64;
                let cast = 400 + (i % 400) as u64;
                ExcessStation {
                    turnout: cast as f64 / reg as f64,
                    leader: cast / 2,
                    valid: cast,
                    registered: reg,
                }
            })
            .collect();
        let e = excess_votes(&st, 50, 0.95, 1);
        assert!(e.estimate.abs() < 300.0, "{}", e.estimate);
        assert!((e.bulk_leader_share - 0.5).abs() < 0.01);
    }

    #[test]
    fn excess_recovers_added_ballots() {
        // Bulk: turnout 50%, share 40%. High stations: 200 extra leader ballots each.
        let mut st = Vec::new();
        for i in 0..2000u64 {
            let reg = 1000;
            let cast = 480 + i % 41;
            let leader = cast * 2 / 5;
            st.push(ExcessStation {
                turnout: cast as f64 / reg as f64,
                leader,
                valid: cast,
                registered: reg,
            });
        }
        for i in 0..300u64 {
            let reg = 1000;
            let cast = 500 + i % 11;
            let leader = cast * 2 / 5 + 200;
            st.push(ExcessStation {
                turnout: (cast + 200) as f64 / reg as f64,
                leader,
                valid: cast + 200,
                registered: reg,
            });
        }
        let e = excess_votes(&st, 50, 0.95, 1);
        let truth = 300.0 * 200.0;
        assert!(
            (e.estimate - truth).abs() < 0.1 * truth,
            "{} vs {truth}",
            e.estimate
        );
    }
}

//! Digit tests (Mebane's second-digit Benford mean and 0/5 shares; Beber & Scacco's last digit).
//!
//! Every statistic here is a mean of a per-station value that takes one of a few values (a digit,
//! or 0/1). A nonparametric bootstrap that resamples stations is therefore exactly a multinomial
//! draw of the digit frequencies, which is what we do (sequential binomial draws): same
//! distribution as resampling stations, at a cost independent of the number of stations.

use crate::util::{percentile_interval, rng_for, sample_sd, stream};
use rand::Rng;
use rand_distr::{Binomial, Distribution};
use rayon::prelude::*;
use serde::Serialize;
use tally_model::StoredCount;

/// Expected mean of the second significant digit under Benford's law.
pub const BENFORD_SECOND_DIGIT_MEAN: f64 = 4.187;
/// Expected mean of a uniformly distributed last digit.
pub const UNIFORM_LAST_DIGIT_MEAN: f64 = 4.5;
/// Expected share of last digits 0 or 5 under uniformity.
pub const UNIFORM_05_SHARE: f64 = 0.2;
/// Counts below this are left out of the digit tests (one-digit numbers have no second digit and
/// small counts do not have uniform last digits).
pub const MIN_COUNT: u64 = 10;
/// Stations with fewer valid votes than this are left out of the percentage test (P05s).
pub const MIN_VALID_FOR_PERCENT: u64 = 100;

/// One digit statistic with its bootstrap interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DigitStat {
    /// Number of counts (or stations) that entered the statistic.
    pub n: usize,
    /// The statistic.
    pub value: f64,
    /// Its value under the reference distribution.
    pub expected: f64,
    /// Bootstrap percentile interval at `ci_level`.
    pub ci: [f64; 2],
    /// Bootstrap standard error.
    pub se: f64,
    /// True when `expected` lies outside `ci`.
    pub outside_ci: bool,
}

/// Digit tests for one candidate. Field names are part of the JSON schema.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DigitTest {
    pub candidate: String,
    /// Mean second significant digit of the candidate's station counts (counts >= 10); Benford: 4.187.
    pub second_digit_mean: f64,
    /// Mean last digit of the candidate's station counts (counts >= 10); uniform: 4.5.
    pub last_digit_mean: f64,
    /// Share of counts (>= 10) ending in 0 or 5; uniform: 0.2.
    pub c05s: f64,
    /// Share of stations (valid >= 100, votes > 0) whose rounded percentage ends in 0 or 5; 0.2 only
    /// approximately (small percentages have few possible last digits).
    pub p05s: f64,
    /// The four statistics with sample sizes, bootstrap intervals and standard errors.
    pub second_digit: DigitStat,
    pub last_digit: DigitStat,
    pub c05: DigitStat,
    pub p05: DigitStat,
}

fn second_digit(mut x: u64) -> Option<usize> {
    if x < 10 {
        return None;
    }
    while x >= 100 {
        x /= 10;
    }
    Some((x % 10) as usize)
}

/// Rounded whole percent of `k` out of `n` (halves up), in integer arithmetic.
fn rounded_percent(k: u64, n: u64) -> u64 {
    (200 * k as u128 + n as u128).div_euclid(2 * n as u128) as u64
}

/// Draws a multinomial vector of `n` trials with probabilities `freq / n` into `out`.
pub(crate) fn multinomial<R: Rng>(rng: &mut R, n: u64, freq: &[u64], out: &mut [u64]) {
    let mut remaining_n = n;
    let mut remaining_mass: u64 = freq.iter().sum();
    for (i, &f) in freq.iter().enumerate() {
        if remaining_n == 0 || remaining_mass == 0 {
            out[i] = 0;
            continue;
        }
        if f == remaining_mass {
            out[i] = remaining_n;
            remaining_n = 0;
            remaining_mass = 0;
            continue;
        }
        let p = f as f64 / remaining_mass as f64;
        let draw = if f == 0 {
            0
        } else {
            Binomial::new(remaining_n, p)
                .map(|b| b.sample(rng))
                .unwrap_or(0)
        };
        out[i] = draw;
        remaining_n -= draw;
        remaining_mass -= f;
    }
}

fn stat_from(
    freq: &[u64],
    value_of: impl Fn(&[u64]) -> f64,
    expected: f64,
    reps: usize,
    level: f64,
    seed: u64,
    index: u64,
) -> DigitStat {
    let n: u64 = freq.iter().sum();
    let value = if n == 0 { f64::NAN } else { value_of(freq) };
    let mut rng = rng_for(seed, stream::DIGITS, index);
    let mut buf = vec![0u64; freq.len()];
    let mut reps_v = Vec::with_capacity(reps);
    if n > 0 {
        for _ in 0..reps {
            multinomial(&mut rng, n, freq, &mut buf);
            reps_v.push(value_of(&buf));
        }
    }
    let ci = percentile_interval(&reps_v, level);
    DigitStat {
        n: n as usize,
        value,
        expected,
        ci,
        se: sample_sd(&reps_v),
        outside_ci: ci[0].is_finite() && (expected < ci[0] || expected > ci[1]),
    }
}

fn digit_mean(freq: &[u64]) -> f64 {
    let n: u64 = freq.iter().sum();
    let s: u64 = freq.iter().enumerate().map(|(d, &c)| d as u64 * c).sum();
    s as f64 / n as f64
}

fn share_05(freq: &[u64]) -> f64 {
    let n: u64 = freq.iter().sum();
    (freq[0] + freq[5]) as f64 / n as f64
}

fn share_first(freq: &[u64]) -> f64 {
    let n: u64 = freq.iter().sum();
    freq[0] as f64 / n as f64
}

/// Digit tests for each candidate over the given stations (indices into the columns; `votes` is
/// row-major, one entry per candidate and station, as in `tally_model::Stations::votes`).
pub(crate) fn run(
    candidates: &[String],
    votes: &[StoredCount],
    valid: &[StoredCount],
    stations: &[usize],
    reps: usize,
    level: f64,
    seed: u64,
) -> Vec<DigitTest> {
    (0..candidates.len())
        .into_par_iter()
        .map(|c| {
            let mut second = [0u64; 10];
            let mut last = [0u64; 10];
            let mut p05 = [0u64; 2]; // [ends in 0/5, other]
            for &s in stations {
                let x = u64::from(votes[s * candidates.len() + c]);
                if x >= MIN_COUNT {
                    if let Some(d) = second_digit(x) {
                        second[d] += 1;
                    }
                    last[(x % 10) as usize] += 1;
                }
                let n = u64::from(valid[s]);
                if n >= MIN_VALID_FOR_PERCENT && x > 0 && x <= n {
                    let pct = rounded_percent(x, n);
                    if pct.is_multiple_of(5) {
                        p05[0] += 1;
                    } else {
                        p05[1] += 1;
                    }
                }
            }
            let base = c as u64 * 4;
            let second_digit = stat_from(
                &second,
                digit_mean,
                BENFORD_SECOND_DIGIT_MEAN,
                reps,
                level,
                seed,
                base,
            );
            let last_digit = stat_from(
                &last,
                digit_mean,
                UNIFORM_LAST_DIGIT_MEAN,
                reps,
                level,
                seed,
                base + 1,
            );
            let c05 = stat_from(
                &last,
                share_05,
                UNIFORM_05_SHARE,
                reps,
                level,
                seed,
                base + 2,
            );
            let p05 = stat_from(
                &p05,
                share_first,
                UNIFORM_05_SHARE,
                reps,
                level,
                seed,
                base + 3,
            );
            DigitTest {
                candidate: candidates[c].clone(),
                second_digit_mean: second_digit.value,
                last_digit_mean: last_digit.value,
                c05s: c05.value,
                p05s: p05.value,
                second_digit,
                last_digit,
                c05,
                p05,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_extracted() {
        assert_eq!(second_digit(9), None);
        assert_eq!(second_digit(10), Some(0));
        assert_eq!(second_digit(47), Some(7));
        assert_eq!(second_digit(1234), Some(2));
        assert_eq!(rounded_percent(1, 200), 1); // 0.5% rounds up
        assert_eq!(rounded_percent(1, 201), 0);
        assert_eq!(rounded_percent(2, 3), 67);
    }

    #[test]
    fn bootstrap_interval_covers_truth_for_uniform_digits() {
        // Counts 10..=10_009: last digits exactly uniform, so the mean is 4.5 exactly.
        let n = 10_000usize;
        // One candidate: the row-major votes column is the candidate's column.
        let votes: Vec<StoredCount> = (0..n as StoredCount).map(|i| 10 + i).collect();
        let valid = vec![1_000_000 as StoredCount; n];
        let stations: Vec<usize> = (0..n).collect();
        let r = run(&["a".to_string()], &votes, &valid, &stations, 400, 0.95, 1);
        let t = &r[0];
        assert!((t.last_digit_mean - 4.5).abs() < 1e-12);
        assert!((t.c05s - 0.2).abs() < 1e-12);
        assert!(t.last_digit.ci[0] < 4.5 && t.last_digit.ci[1] > 4.5);
        // Bootstrap SE of a mean of uniform digits: sqrt(8.25 / n).
        let se = (8.25f64 / n as f64).sqrt();
        assert!(
            (t.last_digit.se / se - 1.0).abs() < 0.15,
            "{}",
            t.last_digit.se
        );
        assert!(!t.last_digit.outside_ci);
    }

    #[test]
    fn rounded_counts_are_detected() {
        // All counts multiples of 5: C05s = 1, far outside the interval around 0.2.
        let n = 2_000usize;
        let votes: Vec<StoredCount> = (0..n as StoredCount).map(|i| 50 + 5 * (i % 300)).collect();
        let valid = vec![5_000 as StoredCount; n];
        let stations: Vec<usize> = (0..n).collect();
        let r = run(&["a".to_string()], &votes, &valid, &stations, 200, 0.95, 9);
        assert!((r[0].c05s - 1.0).abs() < 1e-12);
        assert!(r[0].c05.outside_ci);
    }
}

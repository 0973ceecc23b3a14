//! Small numeric helpers: seeding, special functions, moments. Pure and deterministic.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Stream identifiers: each analysis draws from its own family of generators, so adding or
/// changing one analysis never changes the random numbers of another.
pub(crate) mod stream {
    pub const INTEGER_MC: u64 = 1;
    pub const DIGITS: u64 = 2;
    pub const FIT_BOOT: u64 = 3;
    pub const EXCESS_BOOT: u64 = 4;
}

/// SplitMix64 finaliser: a bijective mixer of 64-bit values.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of replicate `index` of analysis `stream`, derived from the user's seed only:
/// the result does not depend on which thread runs the replicate.
pub(crate) fn rng_for(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let s = mix64(mix64(seed ^ mix64(stream)) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    ChaCha8Rng::seed_from_u64(s)
}

/// ln(n!) : exact sums below 256, a Stirling series above (relative error < 1e-15).
pub(crate) fn ln_factorial(n: u64) -> f64 {
    if n < 256 {
        let mut s = 0.0f64;
        for k in 2..=n {
            s += (k as f64).ln();
        }
        s
    } else {
        let x = n as f64 + 1.0; // ln Gamma(x)
        let inv = 1.0 / x;
        let inv2 = inv * inv;
        (x - 0.5) * x.ln() - x
            + 0.5 * (2.0 * std::f64::consts::PI).ln()
            + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)))
    }
}

/// Table of ln(k!) for k = 0..=n, for repeated lookups.
pub(crate) struct LnFactTable {
    table: Vec<f64>,
}

impl LnFactTable {
    pub(crate) fn new(n: u64) -> Self {
        let mut table = Vec::with_capacity(n as usize + 1);
        let mut acc = 0.0f64;
        table.push(0.0);
        for k in 1..=n {
            if k < 100_000 {
                acc += (k as f64).ln();
                table.push(acc);
            } else {
                table.push(ln_factorial(k));
            }
        }
        LnFactTable { table }
    }

    #[inline]
    pub(crate) fn get(&self, k: u64) -> f64 {
        match self.table.get(k as usize) {
            Some(v) => *v,
            None => ln_factorial(k),
        }
    }
}

/// The error function, by its Taylor series near zero and a continued fraction of erfc in the tails.
pub(crate) fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = x * x;
        let mut term = x; // (-1)^n x^(2n+1)/n!
        let mut sum = x;
        let mut n = 0.0f64;
        for _ in 0..300 {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        1.0 - erfc_tail(x)
    }
}

/// erfc(x) for x >= 2.5 by a Lentz-evaluated continued fraction.
fn erfc_tail(x: f64) -> f64 {
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0f64;
    for k in 1..200 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// Standard normal distribution function.
pub(crate) fn norm_cdf(z: f64) -> f64 {
    if z < -2.5 * std::f64::consts::SQRT_2 {
        0.5 * erfc_tail(-z / std::f64::consts::SQRT_2)
    } else {
        0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
    }
}

/// Standard normal quantile by bisection on [`norm_cdf`] (tests only).
#[cfg(test)]
pub(crate) fn norm_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-12.0f64, 12.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Weighted mean, standard deviation, skewness and excess kurtosis (population moments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub skewness: f64,
    pub excess_kurtosis: f64,
}

pub(crate) fn moments(values: &[f64]) -> Moments {
    let n = values.len();
    if n == 0 {
        return Moments {
            n,
            mean: f64::NAN,
            sd: f64::NAN,
            skewness: f64::NAN,
            excess_kurtosis: f64::NAN,
        };
    }
    let nf = n as f64;
    let mean = values.iter().sum::<f64>() / nf;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &v in values {
        let d = v - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    m2 /= nf;
    m3 /= nf;
    m4 /= nf;
    let sd = m2.sqrt();
    let (skewness, excess_kurtosis) = if m2 > 0.0 {
        (m3 / (m2 * sd), m4 / (m2 * m2) - 3.0)
    } else {
        (0.0, 0.0)
    };
    Moments {
        n,
        mean,
        sd,
        skewness,
        excess_kurtosis,
    }
}

/// Weighted Pearson correlation.
pub(crate) fn weighted_corr(x: &[f64], y: &[f64], w: &[f64]) -> f64 {
    let sw: f64 = w.iter().sum();
    if sw <= 0.0 {
        return f64::NAN;
    }
    let mx = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
    let my = y.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for i in 0..x.len() {
        let dx = x[i] - mx;
        let dy = y[i] - my;
        sxx += w[i] * dx * dx;
        syy += w[i] * dy * dy;
        sxy += w[i] * dx * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Empirical quantile (linear interpolation) of an already sorted slice.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

/// Percentile interval [q, 1-q] of replicate values (NaNs dropped).
pub(crate) fn percentile_interval(values: &[f64], level: f64) -> [f64; 2] {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = (1.0 - level) / 2.0;
    [quantile_sorted(&v, q), quantile_sorted(&v, 1.0 - q)]
}

/// Sample standard deviation.
pub(crate) fn sample_sd(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return f64::NAN;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// Rounds to `digits` decimals, for stable human-facing numbers.
pub(crate) fn round_to(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_normal_are_accurate() {
        // Reference values of erf.
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-13);
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-13);
        assert!((erf(2.0) - 0.995_322_265_018_952_7).abs() < 1e-13);
        assert!((erf(3.0) - 0.999_977_909_503_001_4).abs() < 1e-13);
        assert!((norm_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
        assert!((norm_cdf(-6.0) - 9.865_876_450_377e-10).abs() < 1e-18);
        assert!((norm_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((norm_quantile(0.5)).abs() < 1e-10);
    }

    #[test]
    fn ln_factorial_matches_sum() {
        let direct: f64 = (2..=1000u64).map(|k| (k as f64).ln()).sum();
        assert!((ln_factorial(1000) - direct).abs() < 1e-8);
        let t = LnFactTable::new(2000);
        assert!((t.get(1000) - direct).abs() < 1e-8);
        assert!((t.get(300) - ln_factorial(300)).abs() < 1e-9);
    }

    #[test]
    fn seeds_are_distinct_per_stream_and_index() {
        use rand::RngCore;
        let a = rng_for(7, 1, 0).next_u64();
        let b = rng_for(7, 1, 1).next_u64();
        let c = rng_for(7, 2, 0).next_u64();
        let d = rng_for(7, 1, 0).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, d);
    }

    #[test]
    fn moments_of_symmetric_data() {
        let m = moments(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((m.mean - 3.0).abs() < 1e-12);
        assert!(m.skewness.abs() < 1e-12);
        assert!((m.excess_kurtosis - (-1.3)).abs() < 1e-12);
    }
}

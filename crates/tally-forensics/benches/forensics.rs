//! Plain timing of `analyse` (all tests, 1,000 Monte Carlo replicates, bootstrap intervals) on
//! russia2018 when present (else a synthetic election of 100,000 stations), next to the "raw floor":
//! one plain pass over the data counting the observed integer-percentage stations.
//!
//! Run: `cargo bench --bench forensics` (release profile).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;
use tally_forensics::{analyse, integer::integer_hit, ForensicsOptions};
use tally_model::Round;

/// Every station of these test rounds is counted with registered, cast and valid present, so the
/// floor reads the columns directly.
fn raw_floor(d: &Round, leader: usize) -> u64 {
    let st = &d.stations;
    let k = d.candidates.len();
    let mut n = 0u64;
    for s in 0..d.len() {
        let l = u64::from(st.votes[s * k + leader]);
        let (reg, cast, valid) = (
            u64::from(st.registered[s]),
            u64::from(st.cast[s]),
            u64::from(st.valid[s]),
        );
        if reg == 0 || cast < 100 {
            continue;
        }
        let t = 100 * cast <= 99 * reg && integer_hit(cast, reg);
        let v = valid > 0 && 100 * l <= 99 * valid && integer_hit(l, valid);
        n += (t || v) as u64;
    }
    n
}

fn most_votes(d: &Round) -> usize {
    let k = d.candidates.len();
    let mut totals = vec![0u64; k];
    for (i, v) in d.stations.votes.iter().enumerate() {
        totals[i % k] += u64::from(*v);
    }
    // The first candidate on ties, as `analyse` does.
    (0..k).fold(0, |best, c| if totals[c] > totals[best] { c } else { best })
}

fn main() {
    let (name, data, group_level) = match common::load_russia() {
        Some(d) => ("russia2018", d, Some(1)),
        None => {
            eprintln!("russia2018 not found; using a synthetic election of 100,000 stations");
            (
                "synthetic 100k",
                common::synth(100_000, 1, vec![]),
                common::SYNTH_GROUP_LEVEL,
            )
        }
    };
    // The leader the analysis would pick (most votes), named when it is Putin.
    let leader = data
        .candidate_index("putin")
        .unwrap_or_else(|| most_votes(&data));
    let opts = ForensicsOptions {
        leader: Some(leader),
        seed: 1,
        group_level,
        ..Default::default()
    };
    // Floor: best of 5 passes.
    let mut floor = f64::INFINITY;
    let mut count = 0;
    for _ in 0..5 {
        let t = Instant::now();
        count = black_box(raw_floor(black_box(&data), leader));
        floor = floor.min(t.elapsed().as_secs_f64());
    }
    // Full analysis: best of 3 runs.
    let mut best = f64::INFINITY;
    let mut report = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = analyse(black_box(&data), &opts);
        best = best.min(t.elapsed().as_secs_f64());
        report = Some(r);
    }
    let r = report.expect("ran");
    assert_eq!(r.integer_test.observed, count);
    let threads = rayon::current_num_threads();
    println!(
        "{name}: {} stations, {threads} threads, mc_reps {}, bootstrap_reps {}",
        data.len(),
        opts.mc_reps,
        opts.bootstrap_reps
    );
    println!(
        "raw floor (one pass, observed integer count = {count}): {:.3} ms",
        floor * 1e3
    );
    println!("analyse (all tests):                       {:.3} s", best);
    println!(
        "ratio analyse / floor:                     {:.0}x",
        best / floor
    );
    let it = &r.integer_test;
    println!(
        "integer test: observed {} expected {:.1} excess {:.1} mc_sd {:.1} p {:.4}",
        it.observed, it.expected, it.excess, it.mc_sd, it.p_value
    );
    if let Some(f) = &r.fingerprint.fit {
        println!(
            "klimek: fi {:.4} {:?} fe {:.5} {:?} alpha {:.3} background {:.4} clean {:?}",
            f.fi, f.fi_ci, f.fe, f.fe_ci, f.alpha, f.background, f.clean
        );
    }
    for d in &r.digits {
        println!(
            "digits {}: 2BL {:.3} {:?} last {:.3} {:?} C05s {:.3} P05s {:.3}",
            d.candidate,
            d.second_digit_mean,
            d.second_digit.ci,
            d.last_digit_mean,
            d.last_digit.ci,
            d.c05s,
            d.p05s
        );
    }
    let e = &r.excess_votes;
    println!(
        "excess votes: {:.0} {:?} threshold {:.3} share {:.4} -> {:.4}",
        e.estimate,
        e.ci,
        e.turnout_threshold,
        e.observed_leader_share,
        e.counterfactual_leader_share
    );
}

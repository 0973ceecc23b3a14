//! Known answers on the Russian presidential election of 2018 (shared/data/russia2018).
//! Skipped, with a message, when the shared data is absent.

mod common;

use tally_forensics::{analyse, plot, ForensicsOptions};

/// Kobak, Shpilkin & Pshenichnikov report about 1,700 excess integer stations for 2018. Our window
/// (±0.05 points), population (>= 100 ballots cast) and null (binomial) follow the paper, but the
/// details of the filters differ slightly, so we accept 1,200–2,300; the excess must also be far
/// outside the null (p at its Monte Carlo floor).
#[test]
fn russia2018_known_answers() {
    let Some(round) = common::load_russia() else {
        eprintln!(
            "SKIP russia2018_known_answers: {} not found",
            common::russia_path().display()
        );
        return;
    };
    assert_eq!(round.len(), 97_699);
    let leader = round.candidate_index("putin").expect("putin");
    let opts = ForensicsOptions {
        leader: Some(leader),
        seed: 2018,
        mc_reps: 200,
        bootstrap_reps: 20,
        group_level: round.tree.level_depth("region"),
        ..Default::default()
    };
    let r = analyse(&round, &opts);
    let it = &r.integer_test;
    eprintln!(
        "integer: observed {} expected {:.1} excess {:.1} sd {:.1} p {}",
        it.observed, it.expected, it.excess, it.mc_sd, it.p_value
    );
    assert!(
        (1_200.0..=2_300.0).contains(&it.excess),
        "excess {}",
        it.excess
    );
    assert!(it.p_value <= 1.0 / 200.0);
    assert_eq!(r.leader, "putin");
    assert!((r.totals.leader_share - 0.7753).abs() < 0.001);
    // Ballots at turnout >= 80% and share >= 80%: a large, visible cloud in 2018.
    assert!(r.fingerprint.voters_turnout80_share80 > 0.1);

    // Plots, for looking at (target dir is git-ignored).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plots-russia2018");
    let files = plot::write_plots(&r, &dir, "Russia 2018, round 1").expect("plots");
    for f in files {
        assert!(std::fs::metadata(&f).unwrap().len() > 10_000);
    }
}

//! Known answers on the Russian presidential election of 2018 (shared/data/russia2018).
//! Skipped, with a message, when the shared data is absent.

mod common;

use tally_forensics::{analyse, ForensicsOptions};

#[test]
fn russia2018_known_answers() {
    let Some(data) = common::load_russia() else {
        eprintln!("SKIP russia2018_known_answers: {} not found", common::russia_path().display());
        return;
    };
    assert_eq!(data.len(), 97_699);
    let leader = data.candidates.iter().position(|c| c == "putin").expect("putin");
    let opts = ForensicsOptions {
        leader: Some(leader),
        seed: 2018,
        mc_reps: 200,
        bootstrap_reps: 20,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let r = analyse(&data, &opts);
    eprintln!("analyse took {:?}", t0.elapsed());
    println!("{}", r.render_text());
    let it = &r.integer_test;
    eprintln!(
        "integer: observed {} expected {:.1} excess {:.1} sd {:.1} p {}",
        it.observed, it.expected, it.excess, it.mc_sd, it.p_value
    );
    if let Some(f) = &r.fingerprint.fit {
        eprintln!("fit: {f:?}");
    }
}

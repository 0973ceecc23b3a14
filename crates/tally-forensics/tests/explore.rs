mod common;
use tally_forensics::{analyse, ForensicsOptions};
use tally_synth::Anomaly;

#[test]
fn explore() {
    let opts = ForensicsOptions { mc_reps: 200, bootstrap_reps: 30, ..Default::default() };
    for (name, an) in [
        ("clean", vec![]),
        ("stuff", vec![Anomaly::Stuffing { incremental: 0.2, extreme: 0.03, alpha: 0.15 }]),
        ("round", vec![Anomaly::Rounding { fraction: 0.02, turnout: false }]),
    ] {
        for seed in 1..3u64 {
            let d = common::synth(10_000, seed, an.clone());
            let r = analyse(&d, &opts);
            let it = &r.integer_test;
            let f = r.fingerprint.fit.as_ref().unwrap();
            eprintln!("{name} seed {seed}: int obs {} exp {:.1} z {:.2} p {:.3} | fi {:.3} {:?} fe {:.4} {:?} alpha {:.3} bg {:.4} clean {:?} | ex {:.0} {:?} | corr {:.3}",
                it.observed, it.expected, it.z, it.p_value, f.fi, f.fi_ci, f.fe, f.fe_ci, f.alpha, f.background, f.clean, r.excess_votes.estimate, r.excess_votes.ci, r.distribution.turnout_share_correlation);
            for dg in &r.digits { eprintln!("   {} 2bl {:.3} {:?} last {:.3} {:?} c05 {:.3} p05 {:.3}", dg.candidate, dg.second_digit_mean, dg.second_digit.ci, dg.last_digit_mean, dg.last_digit.ci, dg.c05s, dg.p05s); }
        }
    }
}

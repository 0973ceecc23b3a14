//! Calibration on synthetic elections from tally-synth: each test stays quiet on clean data at
//! about its nominal rate, and detects a planted anomaly of documented strength.

mod common;

use tally_forensics::{analyse, write_stations_csv, ForensicsOptions};
use tally_synth::Anomaly;

fn fast_opts(seed: u64) -> ForensicsOptions {
    ForensicsOptions {
        seed,
        mc_reps: 200,
        bootstrap_reps: 100,
        klimek_fit: false,
        group_level: common::SYNTH_GROUP_LEVEL,
        ..Default::default()
    }
}

/// Clean elections: the integer test rejects at p < 0.05 about 5% of the time.
/// 24 elections of 5,000 stations; under a calibrated test the number of rejections is
/// Binomial(24, 0.05) (P(>= 5) = 0.7%), and the mean z-score is about 0 (SE 0.2).
#[test]
fn integer_test_is_quiet_on_clean_elections() {
    let mut rejections = 0;
    let mut zsum = 0.0;
    let n = 24;
    for seed in 0..n {
        let d = common::synth(5_000, 100 + seed, vec![]);
        let r = analyse(&d, &fast_opts(seed));
        let it = &r.integer_test;
        assert!((it.expected - it.expected_exact).abs() < 4.0 * it.mc_sd / (200f64).sqrt() + 1.0);
        if it.p_value < 0.05 {
            rejections += 1;
        }
        zsum += it.z;
    }
    let mean_z = zsum / n as f64;
    eprintln!("clean: {rejections}/{n} rejections, mean z {mean_z:.3}");
    assert!(rejections <= 4, "{rejections} rejections out of {n}");
    assert!(mean_z.abs() < 0.6, "mean z {mean_z}");
}

/// Planted rounding of the leader's share to a whole percent at 5% of 10,000 stations is detected
/// (p at its Monte Carlo floor), and the excess does not exceed the number of planted stations.
#[test]
fn integer_test_detects_planted_rounding() {
    for seed in 1..=2u64 {
        let e = tally_synth::generate(&tally_synth::SynthConfig {
            stations: 10_000,
            seed,
            anomalies: vec![Anomaly::Rounding {
                fraction: 0.05,
                turnout: false,
            }],
            ..Default::default()
        });
        let planted = e.planted.len() as f64;
        let d = common::to_round(&e.rounds[0]);
        let r = analyse(&d, &fast_opts(seed));
        let it = &r.integer_test;
        eprintln!(
            "rounding seed {seed}: planted {planted} observed {} expected {:.1} excess {:.1} sd {:.1} p {}",
            it.observed, it.expected, it.excess, it.mc_sd, it.p_value
        );
        assert!(it.p_value <= 0.01, "p {}", it.p_value);
        assert!(it.excess > 4.0 * it.mc_sd);
        assert!(it.excess < planted + 3.0 * it.mc_sd);
    }
}

/// Last-digit mean and C05s: over 12 clean elections x 4 candidates, the reference value falls
/// outside the 95% bootstrap interval in about 5% of cases (we allow 6 of 48 per statistic;
/// P(>= 7 | 5%) = 0.6%).
#[test]
fn digit_tests_are_quiet_on_clean_elections() {
    let (mut out_last, mut out_c05, mut cases) = (0, 0, 0);
    for seed in 0..12u64 {
        let d = common::synth(5_000, 300 + seed, vec![]);
        let r = analyse(&d, &fast_opts(seed));
        for dg in &r.digits {
            cases += 1;
            out_last += dg.last_digit.outside_ci as usize;
            out_c05 += dg.c05.outside_ci as usize;
        }
    }
    eprintln!("digits clean: last digit {out_last}/{cases}, C05s {out_c05}/{cases} outside");
    assert_eq!(cases, 48);
    assert!(out_last <= 6, "{out_last}");
    assert!(out_c05 <= 6, "{out_c05}");
}

/// Counts of the leader rounded to a multiple of 10 at 10% of stations: C05s rises from 0.2 to about
/// 0.28 and its interval excludes 0.2; the last-digit mean falls below 4.5.
#[test]
fn digit_tests_detect_rounded_counts() {
    let mut d = common::synth(5_000, 7, vec![]);
    let k = d.candidates.len();
    let st = &mut d.stations;
    for s in (0..st.ids.len()).step_by(10) {
        let v = st.votes[s * k];
        let r = (v + 5) / 10 * 10;
        st.votes[s * k] = r;
        st.valid[s] = st.valid[s] + r - v;
        st.cast[s] = (st.cast[s] + r).saturating_sub(v).min(st.registered[s]);
    }
    let r = analyse(&d, &fast_opts(7));
    let c1 = &r.digits[0];
    eprintln!("rounded counts: C05s {} {:?}", c1.c05s, c1.c05.ci);
    assert!(c1.c05.outside_ci && c1.c05s > 0.25);
    assert!(c1.last_digit.outside_ci && c1.last_digit_mean < 4.5);
}

/// Klimek fit on synthetic elections (10,000 stations): extreme stuffing fe stays near zero on clean
/// data and is recovered within its interval (± 0.5 point of slack) when 3% of stations are planted.
/// fi is not asserted here: see the crate README (it absorbs non-Gaussian clean shapes).
#[test]
fn klimek_fe_is_quiet_on_clean_data_and_recovers_planted_extreme_stuffing() {
    for seed in 1..=2u64 {
        let opts = ForensicsOptions {
            klimek_fit: true,
            bootstrap_reps: 40,
            ..fast_opts(seed)
        };
        let clean = analyse(&common::synth(10_000, seed, vec![]), &opts);
        let fc = clean.fingerprint.fit.as_ref().expect("fit");
        let e = tally_synth::generate(&tally_synth::SynthConfig {
            stations: 10_000,
            seed,
            anomalies: vec![Anomaly::Stuffing {
                incremental: 0.0,
                extreme: 0.03,
                alpha: 0.1,
            }],
            ..Default::default()
        });
        let planted = e.planted.len() as f64 / 10_000.0;
        let dirty = analyse(&common::to_round(&e.rounds[0]), &opts);
        let fd = dirty.fingerprint.fit.as_ref().expect("fit");
        eprintln!(
            "seed {seed}: clean fe {:.4} {:?} fi {:.3}; planted fe {planted:.4}: fe {:.4} {:?}",
            fc.fe, fc.fe_ci, fc.fi, fd.fe, fd.fe_ci
        );
        assert!(fc.fe < 0.003, "clean fe {}", fc.fe);
        assert!(
            fd.fe_ci[0] - 0.005 <= planted && planted <= fd.fe_ci[1] + 0.005,
            "fe {:?} vs planted {planted}",
            fd.fe_ci
        );
    }
}

/// The excess-vote estimate responds to stuffing: planting incremental + extreme stuffing raises it
/// by roughly the leader's planted gain (added ballots plus votes moved from opponents), within ±50%.
#[test]
fn excess_votes_respond_to_stuffing() {
    let seed = 3;
    let cfg = tally_synth::SynthConfig {
        stations: 10_000,
        seed,
        ..Default::default()
    };
    let clean_e = tally_synth::generate(&cfg);
    let dirty_e = tally_synth::generate(&tally_synth::SynthConfig {
        anomalies: vec![Anomaly::Stuffing {
            incremental: 0.2,
            extreme: 0.03,
            alpha: 0.15,
        }],
        ..cfg.clone()
    });
    let gain: u64 = dirty_e.rounds[0]
        .stations
        .iter()
        .zip(&clean_e.rounds[0].stations)
        .map(|(d, c)| d.votes[0] - c.votes[0])
        .sum();
    let rc = analyse(&common::to_round(&clean_e.rounds[0]), &fast_opts(seed));
    let rd = analyse(&common::to_round(&dirty_e.rounds[0]), &fast_opts(seed));
    let rise = rd.excess_votes.estimate - rc.excess_votes.estimate;
    eprintln!(
        "excess: clean {:.0} dirty {:.0} rise {rise:.0} vs leader's planted gain {gain}",
        rc.excess_votes.estimate, rd.excess_votes.estimate
    );
    assert!(rise > 0.5 * gain as f64 && rise < 1.5 * gain as f64);
    assert!(rd.distribution.turnout_share_correlation > rc.distribution.turnout_share_correlation);
}

/// Extreme stuffing is what the station list's first reason is about: most stations flagged with
/// turnout >= 99% and share >= 95% are planted ones.
#[test]
fn station_list_finds_extreme_stuffing() {
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations: 8_000,
        seed: 4,
        anomalies: vec![Anomaly::Stuffing {
            incremental: 0.0,
            extreme: 0.02,
            alpha: 0.1,
        }],
        ..Default::default()
    });
    let planted: std::collections::HashSet<String> = e
        .planted
        .iter()
        .map(|p| e.rounds[0].stations[p.0].station_id.clone())
        .collect();
    let d = common::to_round(&e.rounds[0]);
    let r = analyse(
        &d,
        &ForensicsOptions {
            max_stations: 10_000,
            ..fast_opts(4)
        },
    );
    let extreme: Vec<_> = r
        .stations
        .iter()
        .filter(|s| {
            s.reasons
                .iter()
                .any(|x| x == "TURNOUT_GE_99_AND_SHARE_GE_95")
        })
        .collect();
    let hits = extreme
        .iter()
        .filter(|s| planted.contains(&s.station_id))
        .count();
    eprintln!(
        "flagged extreme {} of which planted {hits}; planted {}",
        extreme.len(),
        planted.len()
    );
    assert!(!extreme.is_empty());
    assert!(hits as f64 >= 0.9 * extreme.len() as f64);
    assert!(hits as f64 >= 0.5 * planted.len() as f64);
    // Ranked: the first stations carry the strongest reason.
    assert!(r.stations[0].score >= r.stations[r.stations.len() - 1].score);
    let mut csv = Vec::new();
    write_stations_csv(&r, &mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.lines().count(), r.stations.len() + 1);
    assert!(text.starts_with("rank,station_id,group,"));
}

/// Same input and seed give the same bytes, whatever the number of threads.
#[test]
fn output_is_deterministic_across_thread_counts() {
    let d = common::synth(
        3_000,
        9,
        vec![Anomaly::Rounding {
            fraction: 0.05,
            turnout: true,
        }],
    );
    let opts = ForensicsOptions {
        seed: 42,
        mc_reps: 100,
        bootstrap_reps: 10,
        group_level: common::SYNTH_GROUP_LEVEL,
        ..Default::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| analyse(&d, &opts).to_json())
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one, two);
    let other_seed = analyse(
        &d,
        &ForensicsOptions {
            seed: 43,
            ..opts.clone()
        },
    )
    .to_json();
    assert_ne!(one, other_seed);
}

/// The JSON carries every field SCHEMA.md promises.
#[test]
fn json_has_the_documented_fields() {
    let d = common::synth(2_000, 5, vec![]);
    let r = analyse(
        &d,
        &ForensicsOptions {
            mc_reps: 50,
            bootstrap_reps: 10,
            seed: 77,
            group_level: common::SYNTH_GROUP_LEVEL,
            ..Default::default()
        },
    );
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for path in [
        "/integer_test/observed",
        "/integer_test/expected",
        "/integer_test/excess",
        "/integer_test/mc_sd",
        "/integer_test/p_value",
        "/digits/0/candidate",
        "/digits/0/second_digit_mean",
        "/digits/0/last_digit_mean",
        "/fingerprint/fi",
        "/fingerprint/fe",
        "/excess_votes/estimate",
        "/stations",
        "/seed",
        "/schema_version",
        "/coverage/stations_used",
    ] {
        assert!(v.pointer(path).is_some(), "missing {path}");
    }
    assert_eq!(v["seed"], 77);
    assert_eq!(v["digits"].as_array().unwrap().len(), 4);
    assert!(v["stations"].is_array());
}

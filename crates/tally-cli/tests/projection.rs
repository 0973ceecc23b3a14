//! `tally project`, `tally sample` and `tally backtest` end to end, and the calibration of the
//! projection: replays of real elections (the embedded Turkey 2023 runoff always; Poland 2020 when
//! ../shared is present) in random and urban-first orders, over several seeds. The 95% intervals
//! must hold the final shares in at least 93% of replays at every step from 10% in, and no replay
//! may make a wrong call.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

mod run;
use run::{shared, tally};

fn tmp_(name: &str) -> PathBuf {
    run::tmp("projection", name)
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn embedded(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/turkey2023")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// Asserts the calibration goal on a backtest's JSON and returns the lowest coverage seen.
fn assert_calibrated(bt: &Value, what: &str) -> f64 {
    let mut lowest: f64 = 1.0;
    for step in bt["steps"].as_array().unwrap() {
        let reported = step["reported"].as_f64().unwrap();
        let coverage = step["coverage"].as_f64().unwrap();
        assert_eq!(
            step["wrong_calls"].as_u64(),
            Some(0),
            "{what}: a wrong call at {reported}% in"
        );
        if reported >= 10.0 {
            assert!(
                coverage >= 0.93,
                "{what}: coverage {coverage} at {reported}% in is below 93%"
            );
            lowest = lowest.min(coverage);
        }
    }
    eprintln!("{what}: lowest coverage {lowest:.3}");
    lowest
}

fn backtest(args: &[&str]) -> Value {
    let mut all = vec!["backtest", "--format", "json"];
    all.extend_from_slice(args);
    json(&tally(&all))
}

#[test]
fn turkey_runoff_projection_is_calibrated_and_never_calls_wrong() {
    for order in ["urban-first", "random"] {
        for seed in ["1", "2"] {
            let bt = backtest(&["--order", order, "--replays", "100", "--seed", seed]);
            assert_eq!(bt["replays"], 100);
            assert_eq!(bt["method"], "baseline-swing");
            assert_eq!(bt["final_call"]["kind"], "elected");
            assert_calibrated(&bt, &format!("Turkey 2023 r1 -> r2, {order}, seed {seed}"));
        }
    }
}

#[test]
fn poland_runoff_projection_is_calibrated_and_never_calls_wrong() {
    let (Some(r1), Some(r2)) = (
        shared("poland2020/r1.csv.gz"),
        shared("poland2020/r2.csv.gz"),
    ) else {
        return;
    };
    for (order, seed) in [("urban-first", "1"), ("urban-first", "2"), ("random", "1")] {
        let bt = backtest(&[
            "--baseline",
            &r1,
            "--final",
            &r2,
            "--order",
            order,
            "--replays",
            "40",
            "--seed",
            seed,
        ]);
        assert_eq!(bt["stations"], 27227);
        assert_calibrated(&bt, &format!("Poland 2020 r1 -> r2, {order}, seed {seed}"));
    }
}

#[test]
fn first_round_without_baseline_calls_the_runoff_and_never_a_winner() {
    let Some(r1) = shared("poland2020/r1.csv.gz") else {
        return;
    };
    let bt = backtest(&[
        "--final",
        &r1,
        "--order",
        "urban-first",
        "--replays",
        "20",
        "--steps",
        "10,50,90",
    ]);
    assert_eq!(bt["method"], "area");
    assert_eq!(bt["final_call"]["kind"], "runoff");
    assert_calibrated(&bt, "Poland 2020 r1, no baseline");
    for step in bt["steps"].as_array().unwrap() {
        assert_eq!(step["calls_elected"], 0, "nobody passed 50% in round 1");
    }
}

/// The embedded runoff with every other district not yet in (counts emptied), as a file.
fn partial_turkey() -> PathBuf {
    let text = {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(embedded("r2.csv.gz")).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if n == 0 || n % 2 == 0 {
            out.push_str(line);
        } else {
            // round,station_id,province,district,registered,cast,invalid,valid,erdogan,kilicdaroglu
            let cells: Vec<&str> = line.split(',').collect();
            out.push_str(&cells[..5].join(","));
            out.push_str(",,,,,");
        }
        out.push('\n');
    }
    let p = tmp_("tr-r2-partial.csv");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn project_a_partial_count_with_a_baseline() {
    let partial = partial_turkey();
    let p = json(&tally(&[
        "project",
        partial.to_str().unwrap(),
        "--baseline",
        &embedded("r1.csv.gz"),
        "--format",
        "json",
    ]));
    assert_eq!(p["format"], "tally.projection/1");
    assert_eq!(p["method"], "baseline-swing");
    assert_eq!(p["confidence"], 0.95);
    assert_eq!(p["reported"]["stations_total"], 974);
    assert_eq!(p["reported"]["stations"], 487);
    let share = p["reported"]["registered_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 100.0);
    // The final result (52.18% / 47.82%, from the complete count) is inside the intervals.
    let truth = [("erdogan", 52.18), ("kilicdaroglu", 47.82)];
    for (c, (id, t)) in p["candidates"].as_array().unwrap().iter().zip(truth) {
        assert_eq!(c["id"], id);
        let (lo, hi) = (c["lower"].as_f64().unwrap(), c["upper"].as_f64().unwrap());
        assert!(lo <= c["share"].as_f64().unwrap() && c["share"].as_f64().unwrap() <= hi);
        assert!(
            lo - 0.01 <= t && t <= hi + 0.01,
            "{id}: {t} outside {lo}-{hi}"
        );
        assert!(c["votes_lower"].as_u64() <= c["votes"].as_u64());
        assert!(c["share_now"].as_f64().is_some());
    }
    let kind = p["call"]["kind"].as_str().unwrap();
    assert!(["elected", "too-close"].contains(&kind), "{kind}");
    if kind == "elected" {
        assert_eq!(p["call"]["winner"], "erdogan");
    }
    assert!(p["turnout"]["lower"].as_f64() <= p["turnout"]["upper"].as_f64());
    // The table says the same in words.
    let t = tally(&[
        "project",
        partial.to_str().unwrap(),
        "--baseline",
        &embedded("r1.csv.gz"),
    ]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("487 of 974 stations in"), "{text}");
    assert!(text.contains("Baseline and swing"), "{text}");
}

#[test]
fn project_on_a_complete_count_is_the_count() {
    let p = json(&tally(&[
        "project",
        &embedded("r2.csv.gz"),
        "--format",
        "json",
    ]));
    assert_eq!(p["method"], "complete");
    assert_eq!(p["call"]["kind"], "elected");
    assert_eq!(p["call"]["winner"], "erdogan");
    assert_eq!(p["candidates"][0]["votes"], 27834701);
    assert_eq!(p["candidates"][0]["lower"], p["candidates"][0]["upper"]);
}

#[test]
fn bad_confidence_and_unknown_level_are_clear_errors() {
    let o = tally(&["project", &embedded("r2.csv.gz"), "--confidence", "95"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--confidence 95 is not between 0 and 1"),
        "{err}"
    );
    let o = tally(&["project", &embedded("r2.csv.gz"), "--level", "county"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no area level named \"county\""), "{err}");
    assert!(!err.contains("UnknownLevel"), "a Debug value leaked: {err}");
}

#[test]
fn quick_count_from_a_stratified_sample_covers_the_result() {
    // The sample is drawn from the complete runoff; the quick count reads only the sampled
    // stations' counts, so each seed is one quick count. Over 20 seeds the 95% interval must
    // hold the final share at least 17 times (a binomial 95% lower bound of 20 draws).
    let r2 = embedded("r2.csv.gz");
    let mut covered = 0;
    for seed in 1..=20 {
        let sample = tmp_(&format!("sample-{seed}.csv"));
        let o = tally(&[
            "sample",
            &r2,
            "--size",
            "300",
            "--strata",
            "province",
            "--seed",
            &seed.to_string(),
            "--out",
            sample.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&sample).unwrap();
        assert!(text.starts_with("station_id,stratum,stratum_stations\n"));
        assert_eq!(text.lines().count(), 301);
        let p = json(&tally(&[
            "project",
            &r2,
            "--sample",
            sample.to_str().unwrap(),
            "--format",
            "json",
        ]));
        assert_eq!(p["method"], "quick-count");
        assert_eq!(p["sample"]["drawn"], 300);
        assert_eq!(p["sample"]["reported"], 300);
        let c = &p["candidates"][0];
        let (lo, hi) = (c["lower"].as_f64().unwrap(), c["upper"].as_f64().unwrap());
        assert!(
            hi - lo > 0.05,
            "a sample of 300 districts cannot be that sure"
        );
        if lo <= 52.18 && 52.18 <= hi {
            covered += 1;
        }
        if p["call"]["kind"] == "elected" {
            assert_eq!(p["call"]["winner"], "erdogan", "a wrong call");
        }
    }
    assert!(covered >= 17, "covered {covered} of 20");
    // The same seed draws the same sample.
    let (a, b) = (tmp_("same-a.csv"), tmp_("same-b.csv"));
    for p in [&a, &b] {
        tally(&[
            "sample",
            &r2,
            "--size",
            "50",
            "--seed",
            "9",
            "--out",
            p.to_str().unwrap(),
        ]);
    }
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

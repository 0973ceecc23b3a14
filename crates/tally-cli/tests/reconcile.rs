//! `tally reconcile` end to end: a synthetic pair written here, and the Turkey 2023 observers
//! against the official district results (skipped with a message when ../shared is absent).

use std::path::PathBuf;

mod run;
use run::{shared, stdout, tally};

fn tmp_(name: &str) -> PathBuf {
    run::tmp("reconcile", name)
}

const OFFICIAL: &str = "\
round,station_id,region,registered,cast,invalid,valid,a,b,c
1,S1,North,1000,800,10,790,400,300,90
1,S2,North,1000,800,10,790,129,571,90
1,S3,South,1000,800,10,790,400,300,90
1,S4,South,1000,800,10,790,400,300,90
1,=cmd,South,1000,800,10,790,400,300,90
1,S6,South,1000,800,10,790,400,300,90
1,N01,North,1000,800,10,790,400,300,90
1,N02,North,1000,800,10,790,400,300,90
1,N03,North,1000,800,10,790,400,300,90
1,N04,North,1000,800,10,790,400,300,90
1,N05,North,1000,800,10,790,400,300,90
1,N06,North,1000,800,10,790,400,300,90
1,N07,North,1000,800,10,790,400,300,90
1,N08,North,1000,800,10,790,400,300,90
1,N09,North,1000,800,10,790,400,300,90
1,N10,North,1000,800,10,790,400,300,90
1,N11,North,1000,800,10,790,400,300,90
1,N12,North,1000,800,10,790,400,300,90
1,N13,North,1000,800,10,790,400,300,90
1,N14,North,1000,800,10,790,400,300,90
";

// S2: a transposition (129 typed 192, the totals follow); S3: a and b swapped; S4: the typed
// sheet does not add up (E102, held back); =cmd: missing (zeros); S6 absent; S7 only here.
// N01-N14 agree (and let the layout be inferred: most rows add up).
const OTHER: &str = "\
round,station_id,region,registered,cast,invalid,valid,a,b,c
1,S1,North,1000,800,10,790,400,300,90
1,S2,North,1000,863,10,853,192,571,90
1,S3,South,1000,800,10,790,300,400,90
1,S4,South,1000,800,10,790,400,300,91
1,=cmd,South,1000,10,10,0,0,0,0
1,S7,South,1000,800,10,790,400,300,90
1,N01,North,1000,800,10,790,400,300,90
1,N02,North,1000,800,10,790,400,300,90
1,N03,North,1000,800,10,790,400,300,90
1,N04,North,1000,800,10,790,400,300,90
1,N05,North,1000,800,10,790,400,300,90
1,N06,North,1000,800,10,790,400,300,90
1,N07,North,1000,800,10,790,400,300,90
1,N08,North,1000,800,10,790,400,300,90
1,N09,North,1000,800,10,790,400,300,90
1,N10,North,1000,800,10,790,400,300,90
1,N11,North,1000,800,10,790,400,300,90
1,N12,North,1000,800,10,790,400,300,90
1,N13,North,1000,800,10,790,400,300,90
1,N14,North,1000,800,10,790,400,300,90
";

#[test]
fn a_synthetic_pair_is_reconciled_in_every_format() {
    let (a, b) = (tmp_("official.csv"), tmp_("other.csv"));
    std::fs::write(&a, OFFICIAL).unwrap();
    std::fs::write(&b, OTHER).unwrap();
    let (a, b) = (a.to_string_lossy(), b.to_string_lossy());
    let o = tally(&["reconcile", &a, &b, "--format", "json", "--level", "region"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["schema"], "tally.reconcile/1");
    assert_eq!(j["mode"], "stations");
    let s = &j["stations"];
    assert_eq!(s["compared"], 18);
    assert_eq!(s["agree"], 15);
    assert_eq!(s["differ"], 3);
    assert_eq!(
        s["only_official"], 2,
        "S4 held back in the other, S6 absent"
    );
    assert_eq!(s["only_other"], 1);
    let kind_of = |id: &str| {
        j["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["station_id"] == id)
            .map(|d| d["kind"].as_str().unwrap().to_string())
    };
    assert_eq!(kind_of("S2").as_deref(), Some("transposition"));
    assert_eq!(kind_of("S3").as_deref(), Some("swap"));
    assert_eq!(kind_of("=cmd").as_deref(), Some("missing"));
    let s4 = j["one_sided"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["station_id"] == "S4")
        .unwrap();
    assert_eq!(s4["class"], "only_official");
    assert_eq!(s4["status_other"], "quarantined");
    assert!(s4["codes_other"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "E102"));
    // Net over stations counted in both: S2 +63 for a; S3 -100 for a, +100 for b; =cmd -400,
    // -300, -90.
    assert_eq!(j["net"]["a"], 63 - 100 - 400);
    assert_eq!(j["net"]["b"], 100 - 300);
    assert_eq!(j["outcome_official"]["kind"], "runoff");
    assert_eq!(j["flips"], false);
    assert!(j["worst_case"]["votes_at_stake"].as_u64().unwrap() >= 800 * 5);
    assert_eq!(j["areas"].as_array().unwrap().len(), 2);

    let table = tally(&["reconcile", &a, &b, "--level", "region"]);
    let text = stdout(&table);
    assert!(
        text.starts_with("3 of 18 stations compared differ"),
        "the sentence comes first: {text}"
    );
    assert!(text.contains("transposition"));
    assert!(!text.contains("Some("), "no Debug text for people");

    let csv = stdout(&tally(&["reconcile", &a, &b, "--format", "csv"]));
    assert!(csv.starts_with("station_id,area,class,kind"));
    assert!(
        csv.lines().any(|l| l.starts_with("'=cmd,")),
        "formula-like ids are quoted: {csv}"
    );
    assert!(
        csv.contains(",-400,"),
        "signed counts keep their sign: {csv}"
    );

    let out = tmp_("differing.csv");
    let o = tally(&[
        "reconcile",
        &a,
        &b,
        "--stations-csv",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv);
    // Never over an input.
    let o = tally(&["reconcile", &a, &b, "--stations-csv", &b]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(b.as_ref()).unwrap(), OTHER);
}

#[test]
fn turkey_2023_observers_against_the_official_districts() {
    let (Some(official), Some(observers), Some(meta)) = (
        shared("turkey2023/r1.csv.gz"),
        shared("turkey2023-observers/r1-partial.csv.gz"),
        shared("turkey2023/districts-meta.csv.gz"),
    ) else {
        return;
    };
    let o = tally(&[
        "reconcile",
        &official,
        &observers,
        "--boxes",
        &meta,
        "--format",
        "json",
        "--level",
        "province",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["mode"], "aggregated");
    let ag = &j["aggregated"];
    assert_eq!(ag["level"], "district");
    assert_eq!(ag["units_official"], 974);
    // Every observed box lands in an official district (the names are folded, "AMASYA
    // MERKEZ" is Amasya's "Merkez").
    assert_eq!(ag["boxes_observed"], 60_007);
    assert_eq!(ag["unmatched_other"].as_array().unwrap().len(), 0);
    assert!(ag["units_complete"].as_u64().unwrap() >= 1);
    let violations = ag["bound_violations"].as_array().unwrap();
    assert!(!violations.is_empty());
    for v in violations {
        assert!(v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["other"].as_u64() > f["official"].as_u64()));
    }
    assert_eq!(j["outcome_official"]["kind"], "runoff");
    assert_eq!(j["flips"], false);
    // Erdoğan's 27,133,842 of 54,796,040 valid votes: 264,179 short of more than half.
    assert_eq!(j["worst_case"]["votes_to_flip"], 264_179);
    let table = stdout(&tally(&[
        "reconcile",
        &official,
        &observers,
        "--boxes",
        &meta,
    ]));
    assert!(table.contains("the outcome stands"), "{table}");
    assert!(table.find("Bound check") < table.find("Exact comparison"));
}

#[test]
fn synth_writes_an_observer_copy_and_its_truth_that_reconcile_finds() {
    let dir = std::env::temp_dir().join(format!("tally-synth-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().to_string();
    let tally = env!("CARGO_BIN_EXE_tally");
    let out = std::process::Command::new(tally)
        .args([
            "synth",
            "--stations",
            "20000",
            "--seed",
            "3",
            "--out",
            &p("off.csv"),
        ])
        .args(["--observer-copy", &p("obs.csv"), "--truth", &p("truth.csv")])
        .args(["--error-rate", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: std::collections::HashMap<String, String> = std::fs::read_to_string(p("truth.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    // 2% of 20,000 stations.
    assert!((350..=450).contains(&truth.len()), "{}", truth.len());
    let out = std::process::Command::new(tally)
        .args([
            "reconcile",
            &p("off.csv"),
            &p("obs.csv"),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: std::collections::HashMap<String, String> = r["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["station_id"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Nothing is found that was not planted; a planted error that makes the copy's sheet fail
    // validation is reported one-sided with its codes instead of as a difference.
    assert!(found.keys().all(|s| truth.contains_key(s)));
    assert!(
        found.len() * 100 >= truth.len() * 95,
        "{} of {}",
        found.len(),
        truth.len()
    );
    let right = found.iter().filter(|(s, k)| truth[*s] == **k).count();
    assert_eq!(right, found.len(), "every detected kind is the planted one");
    let _ = std::fs::remove_dir_all(&dir);
}

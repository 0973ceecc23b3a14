//! Reconciliation on small hand-made sources, the synthetic test bed (precision and recall per
//! kind over several seeds) and the three flip cases of the issue.

use std::collections::{BTreeMap, HashMap};
use tally_model::{
    saturate, AreaTree, Candidate, Code, Outcome, Round, Rule, SheetStatus, StoredCount, MISSING,
};
use tally_reconcile::{
    observer_copy, reconcile, Check, Class, Kind, Options, PlantConfig, Reconciliation, Side,
};

fn round(number: u8, candidates: &[&str], levels: &[&str]) -> Round {
    Round::new(
        number,
        candidates.iter().map(|c| Candidate::new(c)).collect(),
        vec![],
        AreaTree::new("All", levels.iter().map(|l| l.to_string()).collect()),
    )
}

fn add(r: &mut Round, id: &str, path: &[&str], status: SheetStatus, votes: &[StoredCount]) {
    let leaf = r.tree.leaf(path);
    let valid: StoredCount = votes.iter().sum();
    let (core, votes): ([StoredCount; 4], Vec<StoredCount>) = if status == SheetStatus::Counted {
        ([valid * 2, valid, 0, valid], votes.to_vec())
    } else {
        (
            [valid * 2, MISSING, MISSING, MISSING],
            vec![MISSING; votes.len()],
        )
    };
    r.push(id, leaf, status, 0, core, &votes, &[]);
}

fn run(a: &Round, b: &Round, level: Option<&str>) -> Reconciliation {
    run_with(a, b, level, &HashMap::new(), &HashMap::new(), None)
}

fn run_with(
    a: &Round,
    b: &Round,
    level: Option<&str>,
    codes_a: &HashMap<String, Vec<Code>>,
    codes_b: &HashMap<String, Vec<Code>>,
    boxes: Option<&HashMap<String, u64>>,
) -> Reconciliation {
    let rule = Rule::majority();
    reconcile(
        Side {
            round: a,
            codes: codes_a,
        },
        Side {
            round: b,
            codes: codes_b,
        },
        &Options {
            rule: &rule,
            level,
            boxes,
        },
    )
    .unwrap()
}

#[test]
fn every_station_ends_in_exactly_one_class() {
    let mut a = round(1, &["a", "b", "c"], &["region"]);
    let mut b = round(1, &["c", "a", "b"], &["region"]);
    use SheetStatus::*;
    add(&mut a, "1", &["N"], Counted, &[100, 50, 10]);
    add(&mut a, "2", &["N"], Counted, &[129, 50, 10]);
    add(&mut a, "3", &["S"], Counted, &[80, 90, 10]);
    add(&mut a, "4", &["S"], Missing, &[0, 0, 0]);
    add(&mut a, "5", &["S"], Counted, &[10, 10, 10]);
    // The other source lists the candidates in another order: c, a, b.
    add(&mut b, "1", &["N"], Counted, &[10, 100, 50]);
    add(&mut b, "2", &["N"], Counted, &[10, 192, 50]);
    add(&mut b, "3", &["S"], Quarantined, &[0, 0, 0]);
    add(&mut b, "4", &["S"], Missing, &[0, 0, 0]);
    add(&mut b, "6", &["S"], Counted, &[1, 2, 3]);
    let codes_b: HashMap<String, Vec<Code>> =
        [("3".to_string(), vec![Code::E102])].into_iter().collect();
    let r = run_with(&a, &b, Some("region"), &HashMap::new(), &codes_b, None);
    let s = &r.stations;
    assert_eq!((s.agree, s.differ, s.compared), (1, 1, 2));
    assert_eq!((s.only_official, s.only_other, s.missing_both), (2, 1, 1));
    assert_eq!(
        s.agree + s.differ + s.only_official + s.only_other + s.missing_both,
        6,
        "six distinct ids, one class each"
    );
    assert_eq!(s.flagged_other, 1);
    let d = &r.differences[0];
    assert_eq!(d.station_id, "2");
    assert_eq!(d.kind, Kind::Transposition);
    assert!(d
        .fields
        .iter()
        .any(|f| f.field == "votes.a" && f.official == 129 && f.other == 192));
    assert_eq!(r.net["a"], 63);
    assert_eq!(r.net["b"], 0);
    // The quarantined sheet is kept, one-sided, with its code.
    let q = r.one_sided.iter().find(|o| o.station_id == "3").unwrap();
    assert_eq!(q.class, Class::OnlyOfficial);
    assert_eq!(q.codes_other, vec![Code::E102]);
    assert_eq!(q.status_other, Some(SheetStatus::Quarantined));
    // Totals under the other source: official + net + the other's own sheet "6" (a=2, b=3, c=1).
    assert_eq!(r.totals_official["a"], 319);
    assert_eq!(r.totals_other["a"], 319 + 63 + 2);
    assert_eq!(r.totals_other["c"], 40 + 1);
    let areas = r.areas.as_ref().unwrap();
    assert_eq!(areas.len(), 2);
    let north = areas.iter().find(|x| x.area == "N").unwrap();
    assert_eq!((north.compared, north.differ, north.net["a"]), (2, 1, 63));
    assert!(r.sentence.contains("1 of 2 stations compared differ"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["stations"]["differ"], 1);
    assert_eq!(json["differences"][0]["kind"], "transposition");
    assert_eq!(json["outcome_official"]["kind"], "elected");
    assert_eq!(json["outcome_official"]["winner"], "a");
    assert!(json["worst_case"]["votes_at_stake"].as_u64().unwrap() > 0);
}

#[test]
fn different_candidates_or_rounds_are_refused_in_words() {
    let a = round(1, &["a", "b"], &[]);
    let b = round(1, &["a", "x"], &[]);
    let rule = Rule::majority();
    let none = HashMap::new();
    let opts = Options {
        rule: &rule,
        level: None,
        boxes: None,
    };
    let e = reconcile(
        Side {
            round: &a,
            codes: &none,
        },
        Side {
            round: &b,
            codes: &none,
        },
        &opts,
    )
    .unwrap_err();
    assert!(e.to_string().contains("same candidates"), "{e}");
    let c = round(2, &["a", "b"], &[]);
    let e = reconcile(
        Side {
            round: &a,
            codes: &none,
        },
        Side {
            round: &c,
            codes: &none,
        },
        &opts,
    )
    .unwrap_err();
    assert!(e.to_string().contains("different rounds"), "{e}");
}

#[test]
fn coarser_official_results_are_compared_exactly_or_by_the_bound() {
    use SheetStatus::*;
    let mut a = round(1, &["a", "b"], &["province", "district"]);
    add(&mut a, "D1", &["Adana", "Çukurova"], Counted, &[300, 200]);
    add(&mut a, "D2", &["Adana", "Aladağ"], Counted, &[100, 100]);
    add(&mut a, "D3", &["Adıyaman", "Merkez"], Counted, &[50, 60]);
    add(&mut a, "D4", &["Ankara", "Çankaya"], Counted, &[500, 500]);
    add(&mut a, "D5", &["Amasya", "Merkez"], Counted, &[10, 10]);
    let mut b = round(1, &["a", "b"], &["city", "district", "school"]);
    // D1: both boxes observed, sums agree.
    add(
        &mut b,
        "x1",
        &["ADANA", "ÇUKUROVA", "s1"],
        Counted,
        &[200, 150],
    );
    add(
        &mut b,
        "x2",
        &["ADANA", "ÇUKUROVA", "s2"],
        Counted,
        &[100, 50],
    );
    // D2: complete (the third box has no result), differs.
    add(
        &mut b,
        "x3",
        &["ADANA", "ALADAĞ", "s1"],
        Counted,
        &[100, 91],
    );
    add(&mut b, "x4", &["ADANA", "ALADAĞ", "s2"], Counted, &[0, 0]);
    add(&mut b, "x5", &["ADANA", "ALADAĞ", "s3"], Missing, &[0, 0]);
    // D3: partial, but the observers count more for b than the official total: a violation.
    add(
        &mut b,
        "x6",
        &["ADIYAMAN", "MERKEZ", "s1"],
        Counted,
        &[20, 61],
    );
    // The central district, named after its province by the observers.
    add(
        &mut b,
        "x8",
        &["AMASYA", "AMASYA MERKEZ", "s1"],
        Counted,
        &[10, 10],
    );
    // An area the official results do not name.
    add(&mut b, "x7", &["ADANA", "NOWHERE", "s1"], Counted, &[1, 1]);
    let boxes: HashMap<String, u64> = [("D1", 2), ("D2", 2), ("D3", 5), ("D4", 900), ("D5", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let none = HashMap::new();
    let r = run_with(&a, &b, Some("province"), &none, &none, Some(&boxes));
    assert_eq!(r.mode, "aggregated");
    let ag = r.aggregated.as_ref().unwrap();
    assert_eq!(ag.units_observed, 4);
    assert_eq!(ag.units_complete, 3);
    assert_eq!(ag.units_partial, 1);
    assert_eq!(ag.unmatched_other, vec!["ADANA/NOWHERE".to_string()]);
    assert_eq!(ag.bound_violations.len(), 1);
    assert_eq!(ag.bound_violations[0].station_id, "D3");
    assert_eq!(ag.bound_violations[0].fields[0].field, "votes.b");
    let check = |id: &str| ag.units.iter().find(|u| u.station_id == id).unwrap().check;
    assert_eq!(check("D1"), Check::ExactAgree);
    assert_eq!(check("D5"), Check::ExactAgree);
    let complete: Vec<&str> = ag
        .units
        .iter()
        .filter(|u| u.complete)
        .map(|u| u.station_id.as_str())
        .collect();
    assert_eq!(complete, vec!["D1", "D2", "D5"]);
    assert_eq!(check("D2"), Check::ExactDiffer);
    assert_eq!(check("D3"), Check::BoundViolated);
    assert!(
        ag.units.iter().all(|u| u.station_id != "D4"),
        "not observed"
    );
    assert_eq!(ag.boxes_known, Some(910));
    assert_eq!(ag.boxes_observed, 2 + 2 + 1 + 1);
    assert_eq!((r.stations.agree, r.stations.differ), (2, 1));
    assert_eq!(r.stations.only_official, 1);
    // Only the complete units count in the net: D2's observers have 9 fewer for b.
    assert_eq!(r.differences.len(), 1);
    assert_eq!(r.differences[0].station_id, "D2");
    assert_eq!((r.net["a"], r.net["b"]), (0, -9));
    assert!(r.sentence.contains("observers counted more votes"));
}

/// A synthetic round: `n` stations over 20 regions, four candidates with heterogeneous counts.
fn synthetic(n: usize, seed: u64) -> Round {
    let mut r = round(1, &["c1", "c2", "c3", "c4"], &["region"]);
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for i in 0..n {
        let region = format!("R{}", i % 20);
        let v = [50 + next(400), 30 + next(350), next(120), next(40)].map(saturate);
        add(
            &mut r,
            &format!("S{i:06}"),
            &[&region],
            SheetStatus::Counted,
            &v,
        );
    }
    r
}

#[test]
fn planted_errors_are_found_and_classified() {
    // Precision and recall per kind over five seeds, 20,000 stations each, 5% planted.
    let mut planted: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut found: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut right: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut detected_total = 0u64;
    let mut truth_total = 0u64;
    for seed in 1..=5u64 {
        let a = synthetic(20_000, seed);
        let cfg = PlantConfig {
            seed,
            ..PlantConfig::default()
        };
        let (b, truth) = observer_copy(&a, &cfg);
        let again = observer_copy(&a, &cfg);
        assert_eq!(again.1, truth, "the copy is deterministic");
        let r = run(&a, &b, None);
        let truth_of: HashMap<&str, Kind> = truth
            .iter()
            .map(|t| (t.station_id.as_str(), t.kind))
            .collect();
        truth_total += truth.len() as u64;
        detected_total += r.stations.differ;
        for t in &truth {
            *planted.entry(t.kind).or_default() += 1;
        }
        for d in &r.differences {
            *found.entry(d.kind).or_default() += 1;
            if truth_of.get(d.station_id.as_str()) == Some(&d.kind) {
                *right.entry(d.kind).or_default() += 1;
            }
        }
        // Every planted station differs, and nothing else does.
        assert_eq!(r.stations.differ, truth.len() as u64);
        assert_eq!(r.stations.agree, 20_000 - truth.len() as u64);
    }
    assert_eq!(detected_total, truth_total);
    println!("| kind | planted | classified as kind | correct | precision | recall |");
    println!("|---|---:|---:|---:|---:|---:|");
    for k in Kind::ALL {
        let (p, f, c) = (
            planted.get(&k).copied().unwrap_or(0),
            found.get(&k).copied().unwrap_or(0),
            right.get(&k).copied().unwrap_or(0),
        );
        let precision = c as f64 / f.max(1) as f64;
        let recall = c as f64 / p.max(1) as f64;
        println!(
            "| {k} | {p} | {f} | {c} | {:.3} | {:.3} |",
            precision, recall
        );
        assert!(p > 100, "{k}: only {p} planted");
        assert!(precision >= 0.85, "{k}: precision {precision}");
        assert!(recall >= 0.85, "{k}: recall {recall}");
    }
}

/// Round 1 where c1 has exactly 49.6% of valid votes and trails c2 at half the stations.
fn leader_at_49_6() -> Round {
    let mut r = round(1, &["c1", "c2", "c3", "c4"], &["region"]);
    for i in 0..1000 {
        let v: [StoredCount; 4] = if i % 2 == 0 {
            [400, 450, 100, 50]
        } else {
            [592, 150, 200, 58]
        };
        add(
            &mut r,
            &format!("S{i:04}"),
            &["R"],
            SheetStatus::Counted,
            &v,
        );
    }
    r
}

#[test]
fn a_copy_that_pushes_a_49_6_leader_over_half_flips_round_1() {
    let a = leader_at_49_6();
    let total: u64 = (0..a.len())
        .map(|i| a.votes_of(i).iter().map(|&v| u64::from(v)).sum::<u64>())
        .sum();
    let c1: u64 = (0..a.len()).map(|i| u64::from(a.votes_of(i)[0])).sum();
    assert_eq!(c1 * 1000, total * 496, "exactly 49.6%");
    let (b, truth) = observer_copy(
        &a,
        &PlantConfig {
            rate_per_million: 500_000,
            kinds: vec![Kind::Swap],
            seed: 3,
            favour: Some(0),
        },
    );
    assert!(truth.len() > 100);
    let r = run(&a, &b, None);
    assert!(matches!(r.outcome_official, Outcome::Runoff { .. }));
    assert!(r.flips, "{}", r.sentence);
    assert_eq!(r.flipped, vec!["decided_in_round_1"]);
    assert!(r.worst_case.could_flip);
    // c1 needs 4,001 more of the 1,000,000 valid votes to pass 50%.
    assert_eq!(r.worst_case.votes_to_flip, Some(4_001));
    assert!(
        r.sentence.contains("the outcome would change"),
        "{}",
        r.sentence
    );
}

#[test]
fn a_copy_whose_differences_exceed_a_narrow_margin_flips_the_winner() {
    let mut a = round(2, &["a", "b"], &["region"]);
    for i in 0..1000 {
        add(
            &mut a,
            &format!("S{i:04}"),
            &["R"],
            SheetStatus::Counted,
            &[503, 497],
        );
    }
    let (b, _) = observer_copy(
        &a,
        &PlantConfig {
            rate_per_million: 600_000,
            kinds: vec![Kind::Swap],
            seed: 9,
            favour: Some(1),
        },
    );
    let r = run(&a, &b, None);
    assert!(r.flips, "{}", r.sentence);
    assert_eq!(r.flipped, vec!["winner"]);
    assert!(r.lead_other < 0);
}

#[test]
fn scattered_errors_on_a_wide_margin_do_not_flip() {
    let mut a = round(2, &["a", "b"], &["region"]);
    for i in 0..1000 {
        add(
            &mut a,
            &format!("S{i:04}"),
            &["R"],
            SheetStatus::Counted,
            &[600, 400],
        );
    }
    let (b, truth) = observer_copy(&a, &PlantConfig::default());
    assert!(!truth.is_empty());
    let r = run(&a, &b, None);
    assert!(!r.flips, "{}", r.sentence);
    assert!(!r.worst_case.could_flip);
    assert_eq!(r.worst_case.votes_to_flip, Some(100_000));
    assert!(r.sentence.contains("the outcome stands"), "{}", r.sentence);
}

#[test]
fn areas_rank_a_cluster_above_scattered_errors() {
    let a = synthetic(4_000, 11);
    let (mut b, _) = observer_copy(
        &a,
        &PlantConfig {
            rate_per_million: 20_000,
            ..PlantConfig::default()
        },
    );
    // Region R7 (every 20th station from 7): a systematic error at every station.
    let k = 4;
    for i in (7..4_000).step_by(20) {
        b.stations.votes[i * k] += 11;
        b.stations.valid[i] += 11;
        b.stations.cast[i] += 11;
    }
    let r = run(&a, &b, Some("region"));
    let areas = r.areas.unwrap();
    assert_eq!(areas[0].area, "R7");
    assert!(areas[0].excess_z > 5.0);
    assert!(areas[1].excess_z < areas[0].excess_z / 2.0);
}

#[test]
fn a_source_against_itself_agrees_everywhere() {
    let a = synthetic(500, 2);
    let r = run(&a, &a, Some("region"));
    assert_eq!((r.stations.agree, r.stations.differ), (500, 0));
    assert!(r.differences.is_empty() && r.one_sided.is_empty());
    assert!(r.net.values().all(|&v| v == 0));
    assert_eq!(r.outcome_official, r.outcome_other);
    assert_eq!(r.worst_case.votes_at_stake, 0);
    assert!(!r.worst_case.could_flip);
    assert!(r.sentence.contains("would stay"), "{}", r.sentence);
}

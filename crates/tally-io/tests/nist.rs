//! NIST SP 1500-100 v2 reports: CSV -> NIST -> Tally gives the CSV's results (the embedded
//! Turkish election; Poland 2020 from ../shared, skipped with a message when absent), NIST ->
//! CSV -> NIST keeps every count, the written document validates against the schema (with
//! Python's `jsonschema`, skipped with a message when absent), and hand-written reports with the
//! awkward parts: several contests, counts split by type, missing units, unsupported contests.

use std::path::{Path, PathBuf};
use tally_io::{import_bytes, ElectionDef, FileImport, ImportOptions, ImportedRound};
use tally_model::nist::{nist_report, ElectionReport, NistMeta};
use tally_model::report::{results_report, CountedRound, ReportScope};
use tally_model::{count, Code, Rule, SheetStatus, Totals};

const META: NistMeta<'static> = NistMeta {
    generated: "2026-12-02T02:00:00Z",
    election_date: None,
    certified: false,
    issuer: "Tally tests",
    projected_winners: &[],
};

fn crate_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn shared(rel: &str) -> Option<PathBuf> {
    let p = crate_path("../../../shared/data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} not present (../shared/data is optional)",
            p.display()
        );
        None
    }
}

fn read(path: &Path, round: u8, def: Option<&ElectionDef>) -> Vec<ImportedRound> {
    let bytes = std::fs::read(path).expect("reads");
    let opts = ImportOptions {
        definition: def,
        default_round: round,
        ..ImportOptions::default()
    };
    import_bytes(&bytes, &path.to_string_lossy(), &opts)
        .expect("imports")
        .rounds
}

fn totals(rounds: &[ImportedRound]) -> Vec<Vec<Totals>> {
    rounds.iter().map(|r| count(&r.round)).collect()
}

fn counted<'a>(rounds: &'a [ImportedRound], t: &'a [Vec<Totals>]) -> Vec<CountedRound<'a>> {
    rounds
        .iter()
        .zip(t)
        .map(|(r, t)| CountedRound {
            round: &r.round,
            totals: t,
            sheets: r.stats,
        })
        .collect()
}

fn nist_of(rounds: &[ImportedRound], rule: &Rule) -> ElectionReport {
    let t = totals(rounds);
    nist_report("Test election", rule, &counted(rounds, &t), &META)
}

/// The tally.results/1 document of the rounds, with the areas of `level`, as JSON.
fn results_json(rounds: &[ImportedRound], rule: &Rule, level: Option<&str>) -> serde_json::Value {
    let t = totals(rounds);
    let scope = ReportScope {
        level,
        ..ReportScope::default()
    };
    let rep =
        results_report("Test election", rule, &counted(rounds, &t), None, &scope).expect("report");
    serde_json::to_value(&rep).expect("json")
}

fn import_json(text: &[u8]) -> Result<FileImport, tally_io::ImportError> {
    import_bytes(text, "report.json", &ImportOptions::default())
}

/// Through the import entry point, as every command reads a file (detected by content; the
/// contest chosen by `ImportOptions::contest`, the command line's `--contest`).
fn nist(text: &str, contest: Option<&str>) -> Result<FileImport, tally_io::ImportError> {
    let opts = ImportOptions {
        contest,
        ..ImportOptions::default()
    };
    tally_io::import_bytes(text.as_bytes(), "hand.json", &opts)
}

fn add_up(r: &ImportedRound) {
    let s = r.stats;
    assert_eq!(
        s.rows,
        s.accepted + s.quarantined + s.missing + s.duplicates,
        "{s:?}"
    );
}

/// Validates a document against the schema copied into docs/schema, with Python's jsonschema;
/// false (with a message) when Python or the package is absent.
fn validates(doc: &[u8], name: &str) -> bool {
    let schema = crate_path("../../docs/schema/nist-sp-1500-100-v2.schema.json");
    let dir = std::env::temp_dir().join(format!("tally-nist-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("report.json");
    std::fs::write(&file, doc).expect("writes");
    let script = "import json,sys\ntry:\n import jsonschema\nexcept ImportError:\n sys.exit(3)\ns=json.load(open(sys.argv[1]))\nd=json.load(open(sys.argv[2]))\nerrs=list(jsonschema.Draft4Validator(s).iter_errors(d))\nfor e in errs[:5]: print(list(e.path), e.message[:300])\nsys.exit(1 if errs else 0)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(&file)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Err(_) => {
            eprintln!("skipped schema validation: python3 is not installed");
            false
        }
        Ok(o) if o.status.code() == Some(3) => {
            eprintln!(
                "skipped schema validation: the Python package jsonschema is not installed (pip install jsonschema)"
            );
            false
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "the report does not validate against the NIST schema:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
    }
}

/// The rounds as Tally's uniform CSV (one text per round).
fn to_csv(rounds: &[ImportedRound]) -> Vec<String> {
    rounds
        .iter()
        .map(|ir| {
            let r = &ir.round;
            let mut out = String::new();
            let mut head = vec!["station_id".to_string()];
            head.extend(r.tree.levels.iter().cloned());
            head.extend(["registered", "cast", "invalid", "valid"].map(String::from));
            head.extend(r.candidates.iter().map(|c| c.id.clone()));
            head.extend(r.extra_lines.iter().cloned());
            out.push_str(&head.join(","));
            out.push('\n');
            let cell = |v: tally_model::StoredCount| {
                if v == tally_model::MISSING {
                    String::new()
                } else {
                    v.to_string()
                }
            };
            let s = &r.stations;
            for i in 0..r.len() {
                let mut row = vec![s.ids[i].to_string()];
                row.extend(r.tree.path(s.area[i]).iter().map(|p| p.to_string()));
                row.extend([s.registered[i], s.cast[i], s.invalid[i], s.valid[i]].map(cell));
                row.extend(r.votes_of(i).iter().map(|&v| cell(v)));
                row.extend(r.extra_of(i).iter().map(|&v| cell(v)));
                out.push_str(&row.join(","));
                out.push('\n');
            }
            out
        })
        .collect()
}

/// The writer of the command line (`tally_io::nist::to_json`, by hand) gives serde's bytes.
fn same_bytes(rep: &ElectionReport, serde: &[u8]) {
    let mut expected = serde.to_vec();
    expected.push(b'\n');
    assert!(
        tally_io::nist::to_json(rep) == expected,
        "to_json and serde_json differ"
    );
}

/// CSV -> NIST -> Tally gives the same results document (totals, shares, outcome, progress,
/// sheets, extra lines, every area of `level`), the report validates, and NIST -> Tally -> NIST
/// and NIST -> CSV -> NIST give the same report byte for byte.
fn round_trip(csv_rounds: Vec<ImportedRound>, rule: &Rule, level: &str, name: Option<&str>) {
    let rep = nist_of(&csv_rounds, rule);
    let doc = serde_json::to_vec(&rep).expect("json");
    same_bytes(&rep, &doc);
    if let Some(name) = name {
        validates(&doc, name);
    }
    let back = import_json(&doc).expect("reads the report back");
    assert_eq!(back.rounds.len(), csv_rounds.len());
    for r in &back.rounds {
        add_up(r);
        assert!(r.quarantine.is_empty());
    }
    let a = results_json(&csv_rounds, rule, Some(level));
    let b = results_json(&back.rounds, rule, Some(level));
    assert_eq!(a["rounds"], b["rounds"]);
    let again = serde_json::to_vec(&nist_of(&back.rounds, rule)).expect("json");
    assert!(doc == again, "NIST -> Tally -> NIST changed the report");
    let mut from_csv = Vec::new();
    for (i, text) in to_csv(&back.rounds).iter().enumerate() {
        let opts = ImportOptions {
            default_round: i as u8 + 1,
            ..ImportOptions::default()
        };
        let f = import_bytes(text.as_bytes(), "back.csv", &opts).expect("reads the CSV");
        from_csv.extend(f.rounds);
    }
    // A CSV without an election definition has no display names: names are not counts.
    for (r, b) in from_csv.iter_mut().zip(&back.rounds) {
        r.round.candidates = b.round.candidates.clone();
    }
    let third = serde_json::to_vec(&nist_of(&from_csv, rule)).expect("json");
    assert!(doc == third, "NIST -> CSV -> NIST changed the report");
}

fn turkey() -> (Vec<ImportedRound>, Vec<ImportedRound>, Rule) {
    let dir = crate_path("../tally-cli/data/turkey2023");
    let def = ElectionDef::load(&dir.join("election.toml").to_string_lossy()).expect("def");
    let r1 = read(&dir.join("r1.csv.gz"), 1, Some(&def));
    let r2 = read(&dir.join("r2.csv.gz"), 2, Some(&def));
    (r1, r2, def.rule("def").expect("rule"))
}

#[test]
fn turkey_csv_to_nist_and_back_gives_the_same_results() {
    let (mut rounds, r2, rule) = turkey();
    rounds.extend(r2);
    round_trip(rounds, &rule, "district", Some("turkey"));
}

#[test]
fn poland_2020_both_rounds_csv_to_nist_and_back() {
    let (Some(r1), Some(r2)) = (
        shared("poland2020/r1.csv.gz"),
        shared("poland2020/r2.csv.gz"),
    ) else {
        return;
    };
    let mut rounds = read(&r1, 1, None);
    rounds.extend(read(&r2, 2, None));
    // Python's jsonschema takes minutes on this 110 MB document: validated when asked
    // (TALLY_NIST_VALIDATE_LARGE=1), as `tally results ... --format nist` was for docs/nist.md.
    let large = std::env::var_os("TALLY_NIST_VALIDATE_LARGE").is_some();
    if !large {
        eprintln!(
            "schema validation of the Poland report skipped: set TALLY_NIST_VALIDATE_LARGE=1"
        );
    }
    round_trip(
        rounds,
        &Rule::majority(),
        "powiat",
        large.then_some("poland"),
    );
}

const HAND: &str = r#"{
  "@type": "ElectionResults.ElectionReport",
  "Format": "precinct-level", "GeneratedDate": "2024-11-06T03:00:00Z", "Issuer": "County",
  "IssuerAbbreviation": "C", "SequenceStart": 1, "SequenceEnd": 1, "Status": "unofficial-partial",
  "VendorApplicationId": "hand",
  "GpUnit": [
    {"@id": "county", "@type": "ElectionResults.ReportingUnit", "Type": "county",
     "ComposingGpUnitIds": ["town-a", "town-b"]},
    {"@id": "town-a", "@type": "ElectionResults.ReportingUnit", "Type": "town", "ComposingGpUnitIds": ["p1", "p2"]},
    {"@id": "town-b", "@type": "ElectionResults.ReportingUnit", "Type": "town", "ComposingGpUnitIds": ["p3"]},
    {"@id": "p1", "@type": "ElectionResults.ReportingUnit", "Type": "precinct", "VotersRegistered": 1000},
    {"@id": "p2", "@type": "ElectionResults.ReportingUnit", "Type": "precinct", "VotersRegistered": 500},
    {"@id": "p3", "@type": "ElectionResults.ReportingUnit", "Type": "precinct", "VotersRegistered": 800}
  ],
  "Election": [{
    "@type": "ElectionResults.Election", "ElectionScopeId": "county", "Type": "general",
    "StartDate": "2024-11-05", "EndDate": "2024-11-05",
    "Candidate": [
      {"@id": "ann", "@type": "ElectionResults.Candidate", "BallotName": {"@type": "ElectionResults.InternationalizedText", "Text": [{"@type": "ElectionResults.LanguageString", "Content": "Ann", "Language": "en"}]}},
      {"@id": "bob", "@type": "ElectionResults.Candidate", "BallotName": {"@type": "ElectionResults.InternationalizedText", "Text": [{"@type": "ElectionResults.LanguageString", "Content": "Bob", "Language": "en"}]}},
      {"@id": "cy", "@type": "ElectionResults.Candidate"},
      {"@id": "dee", "@type": "ElectionResults.Candidate"}
    ],
    "BallotCounts": [
      {"@type": "ElectionResults.BallotCounts", "GpUnitId": "p1", "Type": "election-day", "BallotsCast": 500, "BallotsRejected": 10},
      {"@type": "ElectionResults.BallotCounts", "GpUnitId": "p1", "Type": "absentee", "BallotsCast": 100, "BallotsRejected": 0}
    ],
    "Contest": [
      {"@id": "mayor", "@type": "ElectionResults.CandidateContest", "Name": "Mayor", "ElectionDistrictId": "county", "VotesAllowed": 1,
       "ContestSelection": [
         {"@id": "s-ann", "@type": "ElectionResults.CandidateSelection", "CandidateIds": ["ann"], "VoteCounts": [
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p1", "Type": "election-day", "Count": 300},
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p1", "Type": "absentee", "Count": 60.0},
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p3", "Type": "total", "Count": 400}]},
         {"@id": "s-bob", "@type": "ElectionResults.CandidateSelection", "CandidateIds": ["bob"], "VoteCounts": [
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p1", "Type": "election-day", "Count": 190},
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p1", "Type": "absentee", "Count": 40},
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p3", "Type": "total", "Count": 100}]}
       ]},
      {"@id": "sheriff", "@type": "ElectionResults.CandidateContest", "Name": "Sheriff", "ElectionDistrictId": "county", "VotesAllowed": 1,
       "ContestSelection": [
         {"@id": "s-cy", "@type": "ElectionResults.CandidateSelection", "CandidateIds": ["cy"], "VoteCounts": [
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p2", "Type": "total", "Count": 7},
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "nowhere", "Type": "total", "Count": 5}]},
         {"@id": "s-dee", "@type": "ElectionResults.CandidateSelection", "CandidateIds": ["dee"], "VoteCounts": [
            {"@type": "ElectionResults.VoteCounts", "GpUnitId": "p2", "Type": "total", "Count": -3}]}
       ]},
      {"@id": "prop-1", "@type": "ElectionResults.BallotMeasureContest", "Name": "Proposition 1", "ElectionDistrictId": "county"}
    ]
  }]
}"#;

#[test]
fn several_contests_are_listed_and_one_can_be_chosen() {
    let err = import_json(HAND.as_bytes()).expect_err("two candidate contests");
    assert_eq!(err.code, Code::F012);
    let text = err.to_string();
    assert!(
        text.contains("mayor (Mayor") && text.contains("sheriff (Sheriff"),
        "{text}"
    );
    let f = nist(HAND, Some("mayor")).expect("mayor");
    assert_eq!(f.rounds.len(), 1);
    let r = &f.rounds[0];
    add_up(r);
    // p1: counts split by type (election-day + absentee) summed; p2: no result; p3: votes only.
    assert_eq!((r.stats.accepted, r.stats.missing), (2, 1));
    assert_eq!(r.round.stations.ids, vec!["p1", "p2", "p3"]);
    assert_eq!(r.round.votes_of(0), &[360, 230]);
    let s = &r.round.stations;
    assert_eq!([s.cast[0], s.invalid[0], s.valid[0]], [600, 10, 590]);
    assert_eq!(s.status[1], SheetStatus::Missing);
    assert_eq!(s.registered[1], 500);
    let t = count(&r.round);
    assert_eq!(t[0].votes, vec![760, 330]);
    assert_eq!((t[0].stations_counted, t[0].stations_known), (2, 3));
    assert_eq!(r.round.tree.levels, vec!["town"]);
    assert_eq!(r.round.tree.path_string(s.area[2]), "town-b");
    assert_eq!(r.round.candidates[0].name, "Ann");
    assert!(
        f.layout
            .notes
            .iter()
            .any(|n| n.contains("no total counts at 1 units") && n.contains("election-day")),
        "{:?}",
        f.layout.notes
    );
    // The contests not read are named, never dropped silently.
    let ignored: Vec<&str> = f.layout.ignored.iter().map(|(_, w)| w.as_str()).collect();
    assert!(
        ignored.iter().any(|w| w.contains("ballot measure")),
        "{ignored:?}"
    );
    assert!(ignored.iter().any(|w| w.contains("Sheriff")), "{ignored:?}");
}

#[test]
fn bad_counts_and_unknown_units_are_quarantined_with_their_codes() {
    let f = nist(HAND, Some("sheriff")).expect("sheriff");
    let r = &f.rounds[0];
    add_up(r);
    let codes: Vec<(String, Code)> = r
        .quarantine
        .iter()
        .flat_map(|q| q.codes.iter().map(move |c| (q.station.clone(), *c)))
        .collect();
    assert!(codes.contains(&("p2".into(), Code::E101)), "{codes:?}");
    assert!(codes.contains(&("nowhere".into(), Code::E106)), "{codes:?}");
    // p1 has ballot counts but no vote for this contest: incomplete.
    assert!(codes.contains(&("p1".into(), Code::E110)), "{codes:?}");
    assert_eq!(r.stats.quarantined, 3);
    // p2 is the 5th unit of GpUnit: its "line".
    assert!(r.issues.iter().any(|i| i.line == 5 && i.code == Code::E101));
}

#[test]
fn unsupported_contests_are_refused_with_a_code() {
    let parties = HAND.replace(
        "ElectionResults.CandidateContest",
        "ElectionResults.PartyContest",
    );
    let err = import_json(parties.as_bytes()).expect_err("no candidate contest");
    assert_eq!(err.code, Code::F011);
    assert!(err.to_string().contains("prop-1 (ballot measure)"), "{err}");
    let rcv = HAND.replace(
        r#""Name": "Mayor", "ElectionDistrictId""#,
        r#""Name": "Mayor", "VoteVariation": "rcv", "ElectionDistrictId""#,
    );
    assert_eq!(nist(&rcv, Some("mayor")).unwrap_err().code, Code::F011);
    assert_eq!(nist(HAND, Some("prop-1")).unwrap_err().code, Code::F011);
    assert_eq!(nist(HAND, Some("nope")).unwrap_err().code, Code::F012);
    let err = import_json(b"{\"@type\": \"ElectionResults.ElectionReport\", ").expect_err("cut");
    assert_eq!(err.code, Code::F010);
    let err = import_json(b"{\"a\": 1}").expect_err("other json");
    assert_eq!(err.code, Code::F010);
}

#[test]
fn a_station_twice_is_a_duplicate_as_in_a_csv() {
    // p3 and p3b carry the same station id (ExternalIdentifier) with different numbers: both are
    // held back (E105).
    let twice = HAND
        .replace(
            r#""ComposingGpUnitIds": ["p3"]"#,
            r#""ComposingGpUnitIds": ["p3", "p3b"]"#,
        )
        .replace(
            r#"{"@id": "p3", "@type""#,
            r#"{"@id": "p3b", "@type": "ElectionResults.ReportingUnit", "Type": "precinct", "VotersRegistered": 800, "ExternalIdentifier": [{"@type": "ElectionResults.ExternalIdentifier", "Type": "local-level", "Value": "p3"}]},
    {"@id": "p3", "@type""#,
        );
    let f = nist(&twice, Some("mayor")).expect("reads");
    let r = &f.rounds[0];
    add_up(r);
    assert_eq!(r.stats.quarantined, 2);
    assert!(r.issues.iter().any(|i| i.code == Code::E105));
}

#[test]
fn partial_certified_and_candidate_status() {
    let (mut rounds, _, rule) = turkey();
    let rep = nist_of(&rounds, &rule);
    assert_eq!(rep.status, "unofficial-complete");
    let st: Vec<Option<&str>> = rep.election[0]
        .candidate
        .iter()
        .map(|c| c.post_election_status.as_deref())
        .collect();
    assert_eq!(
        st,
        vec![
            Some("advanced-to-runoff"),
            Some("advanced-to-runoff"),
            Some("defeated"),
            Some("defeated")
        ]
    );
    // One station without result: partial, and no candidate status yet.
    rounds[0].round.stations.status[0] = SheetStatus::Missing;
    let rep = nist_of(&rounds, &rule);
    assert_eq!(rep.status, "unofficial-partial");
    assert!(rep.election[0]
        .candidate
        .iter()
        .all(|c| c.post_election_status.is_none()));
    let t = totals(&rounds);
    // Still partial, with a projection that calls the round for erdogan: projected-winner.
    let winners = [(1u8, "erdogan".to_string())];
    let projected = NistMeta {
        projected_winners: &winners,
        ..META
    };
    let rep = nist_report("x", &rule, &counted(&rounds, &t), &projected);
    let r1: Vec<Option<&str>> = rep.election[0]
        .candidate
        .iter()
        .map(|c| c.post_election_status.as_deref())
        .collect();
    assert_eq!(r1, vec![Some("projected-winner"), None, None, None]);
    validates(&serde_json::to_vec(&rep).expect("json"), "projected-winner");
    let meta = NistMeta {
        certified: true,
        ..META
    };
    let rep = nist_report("x", &rule, &counted(&rounds, &t), &meta);
    assert_eq!(rep.status, "certified");
    validates(&serde_json::to_vec(&rep).expect("json"), "certified");
}

#[test]
fn the_writer_escapes_and_keeps_what_serde_keeps() {
    let (mut rounds, r2, rule) = turkey();
    rounds.extend(r2);
    // Texts that need escapes, a station without result, and every optional member.
    rounds[0].round.candidates[0].name = "A \"quoted\" name\\ with\ta tab\u{1}".into();
    rounds[0].round.stations.status[1] = SheetStatus::Missing;
    let t = totals(&rounds);
    let winners = [(1u8, "erdogan".to_string())];
    let meta = NistMeta {
        projected_winners: &winners,
        election_date: Some("2023-05-14"),
        ..META
    };
    let mut rep = nist_report("Se\u{e7}im \"2023\"\n", &rule, &counted(&rounds, &t), &meta);
    // A count that is not one, as a reader may meet (written as the number it was).
    rep.gp_unit[0].voters_registered = Some(tally_model::nist::Count(Err(
        tally_model::nist::BadNumber(-1.5),
    )));
    rep.election[0].contest[0].contest_selection[0].vote_counts[0].round = Some(2);
    rep.election[0].contest[0].contest_selection[0].vote_counts[0].other_type = Some("x".into());
    rep.election[0].ballot_counts[0].other_type = Some("extra:blank".into());
    rep.election[0].contest[0].other_vote_variation = Some("a rule in words".into());
    rep.notes = None;
    same_bytes(&rep, &serde_json::to_vec(&rep).expect("json"));
}

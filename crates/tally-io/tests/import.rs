//! Import: every validation code on a file with planted errors, every file-level error, layout
//! inference on the shared real data sets.

use std::collections::HashSet;
use tally_io::{import_bytes, ElectionDef, ImportError, ImportOptions};
use tally_model::{Code, SheetStatus};

const PLANTED: &str = include_str!("data/planted.csv");

fn import(text: &str, opts: &ImportOptions<'_>) -> Result<tally_io::FileImport, ImportError> {
    import_bytes(text.as_bytes(), "test.csv", opts)
}

#[test]
fn planted_errors_give_exactly_their_codes_on_their_lines() {
    let registry: HashSet<String> = PLANTED
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|id| *id != "S18")
        .map(String::from)
        .collect();
    let opts = ImportOptions {
        registry: Some(&registry),
        ..ImportOptions::default()
    };
    let f = import(PLANTED, &opts).expect("imports");
    assert_eq!(f.rounds.len(), 1);
    let r = &f.rounds[0];
    let mut got: Vec<(u64, Code)> = r.issues.iter().map(|i| (i.line, i.code)).collect();
    got.sort();
    let expected = vec![
        (3, Code::E101),
        (4, Code::E101),
        (5, Code::E102),
        (6, Code::E103),
        (7, Code::E104),
        (8, Code::E105),
        (9, Code::E105),
        (11, Code::W207),
        (12, Code::E108),
        (13, Code::E109),
        (14, Code::E110),
        (15, Code::W201),
        (16, Code::W202),
        (17, Code::W203),
        (18, Code::W204),
        (19, Code::W206),
        (20, Code::W208),
        (22, Code::E106),
    ];
    assert_eq!(got, expected);
    // Every row is accounted for.
    let s = r.stats;
    let rows = PLANTED.lines().count() as u64 - 1;
    assert_eq!(s.rows, rows);
    assert_eq!(s.accepted + s.quarantined + s.missing + s.duplicates, rows);
    assert_eq!(s.quarantined, 11);
    assert_eq!(s.missing, 1);
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.with_warnings, 6);
    // The quarantine keeps each rejected row with its reason and its original text.
    assert_eq!(r.quarantine.len(), 11);
    let q3 = r.quarantine.iter().find(|q| q.line == 3).unwrap();
    assert_eq!(q3.station, "S02");
    assert!(
        q3.reasons[0].contains("cast '-5' is negative"),
        "{:?}",
        q3.reasons
    );
    assert!(q3.raw.starts_with("1,S02,North,Alpha,1000,-5"));
    let q12 = r.quarantine.iter().find(|q| q.line == 12).unwrap();
    assert!(q12.reasons[0].contains("7 fields, the header has 11"));
    // Quarantined stations are known (progress) but not counted; W208 filled the implied zero.
    let round = &r.round;
    let i = round.stations.ids.iter().position(|s| s == "S04").unwrap();
    assert_eq!(round.stations.status[i], SheetStatus::Quarantined);
    let i = round.stations.ids.iter().position(|s| s == "S16").unwrap();
    assert_eq!(round.votes_of(i), &[300, 190, 0]);
    assert_eq!(round.stations.ids.iter().filter(|s| *s == "S07").count(), 1);
    assert_eq!(round.stations.ids.iter().filter(|s| *s == "S08").count(), 1);
}

#[test]
fn e107_a_count_column_the_definition_does_not_know() {
    let def = ElectionDef::parse(
        "[[candidates]]\nid = \"a\"\n[[candidates]]\nid = \"b\"\n",
        "d.toml",
    )
    .unwrap();
    let opts = ImportOptions {
        definition: Some(&def),
        ..ImportOptions::default()
    };
    let e = import(PLANTED, &opts).unwrap_err();
    assert_eq!(e.code, Code::E107);
    assert!(e.detail.contains("'c'"), "{}", e.detail);
}

#[test]
fn file_level_errors_are_clear_and_coded() {
    let o = ImportOptions::default();
    assert_eq!(import("", &o).unwrap_err().code, Code::F002);
    assert_eq!(
        import("station_id,valid,a\n", &o).unwrap_err().code,
        Code::F002
    );
    assert_eq!(
        import("station_id,valid,a,a\n1,2,1,1\n", &o)
            .unwrap_err()
            .code,
        Code::F003
    );
    assert_eq!(
        import("name,valid,a\nx,1,1\n", &o).unwrap_err().code,
        Code::F004
    );
    let mut bad = b"station_id,valid,\xff\xfe\n".to_vec();
    bad.extend_from_slice(b"1,2,2\n");
    assert_eq!(
        import_bytes(&bad, "bad.csv", &o).unwrap_err().code,
        Code::F005
    );
    // Two columns, neither adds up to valid: the candidates cannot be inferred.
    let e = import("station_id,valid,x,y\n1,10,3,4\n2,10,5,6\n3,7,1,1\n", &o).unwrap_err();
    assert_eq!(e.code, Code::F006);
    assert!(e.to_string().contains("election definition"));
    let e = tally_io::import_path("/nonexistent/file.csv", &o).unwrap_err();
    assert_eq!(e.code, Code::F001);
    assert!(e.to_string().contains("/nonexistent/file.csv"));
    let e = import_bytes(b"\x1f\x8b\x08\x00garbage", "x.csv.gz", &o).unwrap_err();
    assert_eq!(e.code, Code::F001);
    let def = ElectionDef::parse("[columns]\nareas = [\"nowhere\"]\n", "d.toml").unwrap();
    let e = import(
        PLANTED,
        &ImportOptions {
            definition: Some(&def),
            ..o.clone()
        },
    )
    .unwrap_err();
    assert_eq!(e.code, Code::F007);
}

#[test]
fn invalid_utf8_in_a_row_is_quarantined_not_fatal() {
    let mut data = b"station_id,region,valid,a,b\n1,N,3,1,2\n".to_vec();
    data.extend_from_slice(b"2,\xff,3,1,2\n3,N,3,2,1\n");
    let f = import_bytes(&data, "u.csv", &ImportOptions::default()).unwrap();
    let r = &f.rounds[0];
    assert_eq!(r.stats.accepted, 2);
    assert_eq!(r.stats.quarantined, 1);
    assert_eq!(r.issues[0].code, Code::E108);
    assert_eq!(r.issues[0].line, 3);
}

#[test]
fn gzip_input_and_bom_are_read() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"\xEF\xBB\xBFstation_id,valid,a,b\n1,3,1,2\n")
        .unwrap();
    let gz = enc.finish().unwrap();
    let data = tally_io::decode(gz, "x.gz").unwrap();
    let f = import_bytes(&data, "x.gz", &ImportOptions::default()).unwrap();
    assert_eq!(f.layout.header[f.layout.station], "station_id");
    assert_eq!(f.rounds[0].round.votes_of(0), &[1, 2]);
}

#[test]
fn a_two_round_file_gives_two_rounds_with_their_own_candidates() {
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations: 2000,
        candidates: 5,
        seed: 4,
        rounds: 2,
        ..Default::default()
    });
    let mut buf = Vec::new();
    tally_synth::write_csv(&e, &mut buf).unwrap();
    let f = import_bytes(&buf, "synth.csv", &ImportOptions::default()).unwrap();
    assert_eq!(
        f.layout.level_names(),
        vec!["region", "district", "commune"]
    );
    assert_eq!(f.rounds.len(), 2);
    let (r1, r2) = (&f.rounds[0], &f.rounds[1]);
    assert_eq!(r1.round.candidates.len(), 5);
    assert_eq!(r2.round.candidates.len(), 2);
    assert_eq!(r1.stats.accepted + r1.stats.quarantined, 2000);
    assert_eq!(r2.stats.quarantined, 0);
    assert!(r2
        .issues
        .iter()
        .all(|i| i.code.severity() != tally_model::Severity::Error));
    // Counting the import gives the generator's exact totals.
    for (imp, truth) in [(r1, &e.rounds[0]), (r2, &e.rounds[1])] {
        let t = tally_model::count(&imp.round);
        for (c, name) in imp.round.candidates.iter().enumerate() {
            let j = truth.candidates.iter().position(|x| *x == name.id).unwrap();
            let expected: u64 = truth.stations.iter().map(|s| s.votes[j]).sum();
            assert_eq!(t[0].votes[c], expected);
        }
    }
}

fn shared(path: &str) -> Option<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(path);
    match std::fs::read(&p) {
        Ok(b) => Some(tally_io::decode(b, path).unwrap()),
        Err(_) => {
            eprintln!(
                "skipped: {} not present (../shared/data is optional)",
                p.display()
            );
            None
        }
    }
}

#[test]
fn every_shared_data_set_is_read_and_its_layout_inferred() {
    let cases: [(&str, &[&str], usize, &[&str]); 6] = [
        (
            "poland2020/r1.csv.gz",
            &["voivodeship", "powiat", "gmina"],
            11,
            &[
                "ballots_issued",
                "invalid_ballots",
                "invalid_votes",
                "postal_packages_sent",
                "postal_envelopes_in_box",
            ],
        ),
        (
            "poland2020/r2.csv.gz",
            &["voivodeship", "powiat", "gmina"],
            2,
            &[
                "ballots_issued",
                "invalid_ballots",
                "invalid_votes",
                "postal_packages_sent",
                "postal_envelopes_in_box",
            ],
        ),
        ("turkey2023/r1.csv.gz", &["province", "district"], 4, &[]),
        ("turkey2023/r2.csv.gz", &["province", "district"], 2, &[]),
        (
            "turkey2023-observers/r1-partial.csv.gz",
            &["city", "district", "school"],
            4,
            &[],
        ),
        (
            "russia2018/r1.csv.gz",
            &["region", "tik"],
            8,
            &["ballots_issued", "ballots_portable"],
        ),
    ];
    for (path, levels, k, extra) in cases {
        let Some(data) = shared(path) else { return };
        let f =
            import_bytes(&data, path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.layout.level_names(), levels.to_vec(), "{path}");
        assert_eq!(f.layout.candidates.len(), k, "{path}");
        assert_eq!(f.layout.extra_names(), extra.to_vec(), "{path}");
        let r = &f.rounds[0];
        assert_eq!(
            r.stats.quarantined,
            0,
            "{path}: {:?}",
            r.issues
                .iter()
                .find(|i| i.code.severity() == tally_model::Severity::Error)
        );
        assert_eq!(r.stats.accepted + r.stats.missing, r.stats.rows, "{path}");
    }
    let Some(obs) = shared("turkey2023-observers/r1-partial.csv.gz") else {
        return;
    };
    let f = import_bytes(&obs, "obs", &ImportOptions::default()).unwrap();
    assert!(f
        .layout
        .notes
        .iter()
        .any(|n| n.starts_with("cannot decide whether 'neighbourhood'")));
    assert_eq!(f.rounds[0].stats.missing, 83_462 - 60_007);
}

#[test]
fn quoted_fields_with_newlines_keep_true_line_numbers_across_chunks() {
    // 6,000 rows (several chunks); every 10th area name holds a quoted newline, so line numbers
    // run ahead of row numbers. Row 4,321 breaks E102.
    let mut text = String::from("station_id,region,valid,a,b\n");
    let mut line = 2u64;
    let mut bad_line = 0;
    for i in 0..6000u64 {
        let region = if i % 10 == 0 {
            "\"North,\nEast\""
        } else {
            "\"South\""
        };
        let b = if i == 4321 { 9 } else { 10 };
        if i == 4321 {
            bad_line = line;
        }
        text.push_str(&format!("s{i},{region},30,20,{b}\n"));
        line += if i % 10 == 0 { 2 } else { 1 };
    }
    let f = import(&text, &ImportOptions::default()).unwrap();
    let r = &f.rounds[0];
    assert_eq!(r.stats.rows, 6000);
    assert_eq!(r.stats.quarantined, 1);
    assert_eq!(r.issues.len(), 1);
    assert_eq!((r.issues[0].line, r.issues[0].code), (bad_line, Code::E102));
    assert_eq!(r.issues[0].station, "s4321");
    assert_eq!(r.round.tree.levels, vec!["region"]);
    assert!(r.round.tree.find("North,\nEast").is_some());
}

#[test]
fn a_status_column_decides_what_is_counted() {
    let text = "station_id,region,status,registered,cast,invalid,valid,a,b\n\
                S1,North,counted,100,80,0,80,50,30\n\
                S2,North,Annulled,100,90,0,90,80,10\n\
                S3,South,NOT_INSTALLED,100,,,,,\n\
                S4,South,pending,100,,,,,\n\
                S5,South,weird,100,70,0,70,40,30\n\
                S6,South,,100,60,0,60,30,30\n";
    let f = import(text, &ImportOptions::default()).expect("imports");
    let r = &f.rounds[0];
    let st = &r.round.stations.status;
    assert_eq!(
        st,
        &vec![
            SheetStatus::Counted,
            SheetStatus::Annulled,
            SheetStatus::NotInstalled,
            SheetStatus::Missing,
            SheetStatus::Quarantined,
            SheetStatus::Counted,
        ]
    );
    let codes: Vec<(u64, Code)> = r.issues.iter().map(|i| (i.line, i.code)).collect();
    assert_eq!(codes, vec![(3, Code::W209), (6, Code::E111)]);
    // The annulled sheet's 80 votes for a are not counted.
    let t = tally_model::count(&r.round);
    assert_eq!(t[0].votes, vec![80, 60]);
    assert_eq!(t[0].stations_known, 6);
    assert_eq!(t[0].stations_counted, 2);
    assert_eq!(r.stats.accepted + r.stats.quarantined + r.stats.missing, 6);
    assert_eq!(r.quarantine.len(), 1);
    assert!(r.quarantine[0].raw.contains("weird"));
}

#[test]
fn status_values_can_be_named_in_the_definition() {
    let def = ElectionDef::parse(
        "[columns]\nstatus = \"estado\"\n[status]\npending = [\"observada\"]\n",
        "def.toml",
    )
    .expect("definition");
    let text = "station_id,estado,registered,cast,invalid,valid,a,b\n\
                S1,Observada,100,80,0,80,50,30\n\
                S2,contabilizada,100,80,0,80,50,30\n";
    let opts = ImportOptions {
        definition: Some(&def),
        ..ImportOptions::default()
    };
    let f = import(text, &opts).expect("imports");
    let st = &f.rounds[0].round.stations.status;
    assert_eq!(st, &vec![SheetStatus::Missing, SheetStatus::Counted]);
}

#[test]
fn a_contested_line_is_not_taken_for_a_candidate() {
    // `contested` is 0 in a final file, so a, b, contested adds up as well as a, b.
    let text = "station_id,registered,cast,invalid,valid,a,b,contested\n\
                S1,100,80,0,80,50,30,0\n\
                S2,100,90,0,90,80,10,0\n\
                S3,100,70,0,70,40,30,0\n";
    let f = import(text, &ImportOptions::default()).expect("imports");
    let r = &f.rounds[0].round;
    let ids: Vec<&str> = r.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert_eq!(r.extra_lines, vec!["contested".to_string()]);
    // A column of zeros with no telling name stays a candidate, and the notes say so.
    let text = text.replace("contested", "c").replace("valid,a", "valid,z");
    let text = text.replace("S1,100,80,0,80,50", "S1,100,80,0,80,0,50");
    let text = text.replace("S2,100,90,0,90,80", "S2,100,90,0,90,0,80");
    let text = text.replace("S3,100,70,0,70,40", "S3,100,70,0,70,0,40");
    let text = text.replace("z,b", "z,a,b");
    let f = import(&text, &ImportOptions::default()).expect("imports");
    let r = &f.rounds[0].round;
    assert_eq!(r.candidates.len(), 4);
    assert!(
        f.layout.notes.iter().any(|n| n.starts_with("unsure: 'z'")),
        "{:?}",
        f.layout.notes
    );
}

#[test]
fn conflicting_duplicates_keep_their_raw_text() {
    let f = import(PLANTED, &ImportOptions::default()).expect("imports");
    let q = &f.rounds[0].quarantine;
    let q8 = q.iter().find(|q| q.line == 8).expect("line 8 quarantined");
    let q9 = q.iter().find(|q| q.line == 9).expect("line 9 quarantined");
    assert_eq!(q8.codes, vec![Code::E105]);
    assert_eq!(q8.raw, "1,S07,North,Beta,1000,700,20,680,400,200,80");
    assert_eq!(q9.raw, "1,S07,North,Beta,1000,700,20,680,401,199,80");
    // A record with a quoted newline before it does not shift the text found.
    let text = "station_id,region,registered,cast,invalid,valid,a,b\n\
                S1,\"North\nside\",100,80,0,80,50,30\n\
                S2,South,100,80,0,80,50,30\n\
                S2,South,100,80,0,80,40,40\n";
    let f = import(text, &ImportOptions::default()).expect("imports");
    let raws: Vec<&str> = f.rounds[0]
        .quarantine
        .iter()
        .map(|q| q.raw.as_str())
        .collect();
    assert_eq!(
        raws,
        vec!["S2,South,100,80,0,80,50,30", "S2,South,100,80,0,80,40,40"]
    );
}

#[test]
fn many_conflicting_duplicates_are_handled_in_one_pass() {
    // 40,000 rows, every station twice with other numbers: each row E105, each kept with its
    // text (this took seconds per ten thousand rows when each conflict scanned the quarantine).
    let mut text = String::from("station_id,registered,cast,invalid,valid,a,b\n");
    for i in 0..20_000 {
        text.push_str(&format!("S{i},100,80,0,80,50,30\nS{i},100,80,0,80,40,40\n"));
    }
    let f = import(&text, &ImportOptions::default()).expect("imports");
    let r = &f.rounds[0];
    assert_eq!(r.quarantine.len(), 40_000);
    assert!(r
        .quarantine
        .iter()
        .all(|q| q.codes == vec![Code::E105] && !q.raw.is_empty()));
    assert_eq!(r.stats.quarantined, 40_000);
    assert_eq!(r.round.len(), 20_000);
}

#[test]
fn absurd_widths_are_refused_and_wide_files_infer_quickly() {
    // 20,000 columns: F009, at once.
    let header: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    let text = format!(
        "station_id,{}\nS1,{}\n",
        header.join(","),
        vec!["1"; 20_000].join(",")
    );
    let err = import(&text, &ImportOptions::default()).unwrap_err();
    assert_eq!(err.code, Code::F009);
    // 2,000 candidate columns and 50 rows: inferred (this took 80 s when every run of columns
    // was summed on every row).
    let k = 2_000;
    let names: Vec<String> = (0..k).map(|i| format!("p{i}")).collect();
    let mut text = format!(
        "station_id,registered,cast,invalid,valid,{}\n",
        names.join(",")
    );
    for s in 0..50 {
        let votes: Vec<String> = (0..k).map(|j| ((s + j) % 3).to_string()).collect();
        let valid: usize = (0..k).map(|j| (s + j) % 3).sum();
        text.push_str(&format!(
            "S{s},9000,{valid},0,{valid},{}\n",
            votes.join(",")
        ));
    }
    let f = import(&text, &ImportOptions::default()).expect("imports");
    assert_eq!(f.rounds[0].round.candidates.len(), k);
    assert_eq!(f.rounds[0].stats.accepted, 50);
}

#[test]
fn unicode_variants_of_one_id_are_one_station() {
    // "Çankaya-1" as NFC, as NFD, with fullwidth digit and with a zero-width space.
    let text = "station_id,registered,cast,invalid,valid,a,b\n\
                \u{C7}ankaya-1,100,80,0,80,50,30\n\
                C\u{327}ankaya-1,100,80,0,80,50,30\n\
                \u{C7}ankaya-\u{FF11},100,80,0,80,50,30\n\
                \u{C7}ankaya\u{200B}-1,100,80,0,80,50,30\n\
                S2,100,80,0,80,40,40\n";
    let f = import(text, &ImportOptions::default()).expect("imports");
    let r = &f.rounds[0];
    assert_eq!(r.round.len(), 2);
    assert_eq!(&r.round.stations.ids[0], "\u{C7}ankaya-1");
    let codes: Vec<(u64, Code)> = r.issues.iter().map(|i| (i.line, i.code)).collect();
    for line in 3..=5 {
        assert!(codes.contains(&(line, Code::W210)), "{codes:?}");
        assert!(codes.contains(&(line, Code::W207)), "{codes:?}");
    }
    assert_eq!(r.stats.duplicates, 3);
}

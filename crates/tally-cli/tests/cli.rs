//! The `tally` binary end to end: the embedded default, the shared real data sets (skipped
//! with a message when ../shared is absent), exit codes, the quarantine file, synth.

use std::path::PathBuf;
use std::process::Command;

mod run;
use run::{shared, stdout, tally};

fn tmp_(name: &str) -> PathBuf {
    run::tmp("cli", name)
}

#[test]
fn the_default_command_tells_the_turkish_2023_story() {
    let o = tally(&["results"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&o);
    for needle in [
        "Recep Tayyip Erdoğan  27,133,842  49.52%",
        "Kemal Kılıçdaroğlu    24,595,176  44.88%",
        "Sinan Oğan             2,831,239   5.17%",
        "Muharrem İnce            235,783   0.43%",
        "No candidate has more than 50% of valid votes: runoff between Recep Tayyip Erdoğan and Kemal Kılıçdaroğlu.",
        "Recep Tayyip Erdoğan  27,834,701  52.18%",
        "Kemal Kılıçdaroğlu    25,504,734  47.82%",
        "Recep Tayyip Erdoğan is elected with 52.18% of valid votes.",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
}

#[test]
fn json_has_the_documented_fields() {
    let o = tally(&["results", "--format", "json", "--level", "province"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "tally.results/1");
    let r1 = &v["rounds"][0];
    assert_eq!(r1["round"], 1);
    assert_eq!(r1["totals"]["valid"], 54_796_040);
    assert_eq!(r1["outcome"]["kind"], "runoff");
    assert_eq!(r1["outcome"]["runoff"][0], "erdogan");
    assert_eq!(r1["sheets"]["accepted"], 974);
    assert_eq!(r1["sheets"]["quarantined"], 0);
    assert_eq!(
        r1["areas"].as_array().unwrap().len(),
        82,
        "81 provinces and the abroad row"
    );
    let share = r1["candidates"][0]["share"].as_f64().unwrap();
    assert!((share - 100.0 * 27_133_842.0 / 54_796_040.0).abs() < 1e-9);
    let r2 = &v["rounds"][1];
    assert_eq!(r2["outcome"]["kind"], "elected");
    assert_eq!(r2["outcome"]["winner"], "erdogan");
}

#[test]
fn area_and_csv_output() {
    let o = tally(&["results", "--area", "Ankara", "--format", "csv"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.starts_with("round,area,level,registered"));
    assert!(s
        .lines()
        .any(|l| l.starts_with("1,Ankara,,") && l.contains(",kilicdaroglu,")));
    let o = tally(&["results", "--level", "nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the levels are province, district"));
}

#[test]
fn poland_2020_official_shares_and_outcomes() {
    let (Some(r1), Some(r2)) = (
        shared("poland2020/r1.csv.gz"),
        shared("poland2020/r2.csv.gz"),
    ) else {
        return;
    };
    let o = tally(&["results", &r1, &r2, "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let share = |round: usize, id: &str| -> f64 {
        let c = v["rounds"][round]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone();
        (c["share"].as_f64().unwrap() * 100.0).round() / 100.0
    };
    assert_eq!(share(0, "duda"), 43.50);
    assert_eq!(share(0, "trzaskowski"), 30.46);
    assert_eq!(share(0, "holownia"), 13.87);
    assert_eq!(share(0, "bosak"), 6.78);
    assert_eq!(v["rounds"][0]["outcome"]["kind"], "runoff");
    assert_eq!(
        v["rounds"][0]["outcome"]["runoff"],
        serde_json::json!(["duda", "trzaskowski"])
    );
    assert_eq!(share(1, "duda"), 51.03);
    assert_eq!(share(1, "trzaskowski"), 48.97);
    assert_eq!(v["rounds"][1]["outcome"]["kind"], "elected");
    assert_eq!(v["rounds"][1]["outcome"]["winner"], "duda");
    // 4 abroad stations without counts; 1 station only in round 1, 3 only in round 2.
    assert_eq!(v["rounds"][0]["sheets"]["missing"], 4);
    assert_eq!(v["matching"]["only_in_round1"].as_array().unwrap().len(), 1);
    assert_eq!(v["matching"]["only_in_round2"].as_array().unwrap().len(), 3);
}

#[test]
fn turkey_and_russia_shared_totals() {
    if let (Some(r1), Some(r2)) = (
        shared("turkey2023/r1.csv.gz"),
        shared("turkey2023/r2.csv.gz"),
    ) {
        let o = tally(&["results", &r1, &r2, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["rounds"][0]["candidates"][2]["votes"], 2_831_239);
        assert_eq!(v["rounds"][1]["candidates"][0]["votes"], 27_834_701);
    }
    if let Some(ru) = shared("russia2018/r1.csv.gz") {
        let o = tally(&["results", &ru, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = &v["rounds"][0];
        assert_eq!(r["totals"]["registered"], 109_008_428u64);
        // Published as a share of cast (valid + invalid): Putin 76.69%.
        let putin = r["candidates"][0]["votes"].as_f64().unwrap();
        let cast = r["totals"]["cast"].as_f64().unwrap();
        assert_eq!((10000.0 * putin / cast).round() / 100.0, 76.69);
        assert_eq!(r["outcome"]["kind"], "elected");
    }
}

#[test]
fn planted_errors_strict_mode_and_the_quarantine_file() {
    let planted =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tally-io/tests/data/planted.csv");
    let planted = planted.to_string_lossy();
    let q = tmp_("quarantine.csv");
    let o = tally(&[
        "results",
        &planted,
        "--quarantine",
        q.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("61 sheets: 49 accepted (6 with warnings), 10 quarantined, 1 without result (missing), 1 identical duplicates counted once"), "{err}");
    let text = std::fs::read_to_string(&q).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "file,line,station_id,codes,reasons,row");
    assert_eq!(lines.len(), 1 + 10);
    assert!(text.contains("E104"));
    let o = tally(&["results", &planted, "--strict"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn malformed_files_fail_cleanly() {
    let empty = tmp_("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let o = tally(&["results", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("F002") && err.contains("empty.csv"), "{err}");
    assert!(!err.contains("panicked"));
    let dup = tmp_("dup.csv");
    std::fs::write(&dup, "station_id,valid,a,a\n1,2,1,1\n").unwrap();
    let o = tally(&["results", dup.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("F003"));
    let o = tally(&["results", "/no/such/file.csv"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("F001"));
}

#[test]
fn synth_is_deterministic_and_reads_back() {
    let a = tally(&["synth", "--stations", "300", "--seed", "5", "--rounds", "2"]);
    let b = tally(&["synth", "--stations", "300", "--seed", "5", "--rounds", "2"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let c = tally(&["synth", "--stations", "300", "--seed", "6", "--rounds", "2"]);
    assert_ne!(a.stdout, c.stdout);
    let f = tmp_("synth.csv");
    std::fs::write(&f, &a.stdout).unwrap();
    let o = tally(&["results", f.to_str().unwrap(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(v["rounds"][1]["candidates"].as_array().unwrap().len(), 2);
    let o = tally(&["synth", "--stuffing", "0.5,0.6,0.1"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn codes_lists_every_code() {
    let s = stdout(&tally(&["codes"]));
    for c in tally_model::Code::ALL {
        assert!(s.contains(c.as_str()), "{c}");
    }
}

#[test]
fn forensics_on_a_planted_synthetic_election() {
    let f = tmp_("planted.csv");
    let o = tally(&[
        "synth",
        "--stations",
        "20000",
        "--seed",
        "3",
        "--rounding",
        "0.1",
        "--stuffing",
        "0.0,0.03,0.1",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plots = tmp_("plots");
    let flagged = tmp_("flagged.csv");
    let o = tally(&[
        "forensics",
        f.to_str().unwrap(),
        "--format",
        "json",
        "--reps",
        "200",
        "--level",
        "region",
        "--plots",
        plots.to_str().unwrap(),
        "--stations-csv",
        flagged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for field in ["observed", "expected", "excess", "mc_sd", "p_value"] {
        assert!(v["integer_test"][field].is_number(), "integer_test.{field}");
    }
    assert!(
        v["integer_test"]["excess"].as_f64().unwrap()
            > 5.0 * v["integer_test"]["mc_sd"].as_f64().unwrap()
    );
    assert!(
        v["fingerprint"]["fe"].as_f64().unwrap() > 0.01,
        "planted 3% extreme stuffing"
    );
    assert_eq!(v["seed"], 1);
    assert!(v["digits"][0]["second_digit_mean"].is_number());
    assert!(!v["stations"].as_array().unwrap().is_empty());
    assert!(plots.join("fingerprint.png").exists() && plots.join("integer_percent.png").exists());
    assert!(std::fs::read_to_string(&flagged).unwrap().lines().count() > 1);
}

#[test]
fn forensics_needs_turnout_data() {
    let f = tmp_("noturnout.csv");
    std::fs::write(&f, "station_id,valid,a,b\n1,10,6,4\n2,12,6,6\n").unwrap();
    let o = tally(&["forensics", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs registered, cast and valid"));
}

#[test]
fn transfers_of_the_embedded_election_answer_the_seeds_question() {
    let png = tmp_("transfers.png");
    let o = tally(&[
        "transfers",
        "--format",
        "json",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(rows.contains(&"ogan") && rows.contains(&"abstained"));
    assert_eq!(v["cols"][0], "erdogan");
    assert_eq!(v["units_used"], 974);
    let ogan = rows.iter().position(|r| *r == "ogan").unwrap();
    // Row proportions sum to 1, votes to Oğan's round-1 total, intervals hold the estimate.
    let p: Vec<f64> = v["proportions"][ogan]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    let votes: f64 = v["votes"][ogan]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((votes - 2_831_239.0).abs() < 1.0);
    for c in 0..p.len() {
        let (lo, hi) = (
            v["lower"][ogan][c].as_f64().unwrap(),
            v["upper"][ogan][c].as_f64().unwrap(),
        );
        assert!(lo <= p[c] + 1e-9 && p[c] <= hi + 1e-9);
    }
    assert!(v["method"].is_string());
    assert!(png.exists());
    // Item 6: the other trusted methods beside the chosen one (974 units: on by default), and
    // for every cell min <= chosen <= max.
    let spread = &v["spread"];
    let compared = spread["compared"].as_array().unwrap();
    assert_eq!(compared[0], v["method"]);
    assert_eq!(
        compared.len() + spread["skipped"].as_array().unwrap().len(),
        4,
        "{spread}"
    );
    for (i, row) in v["proportions"].as_array().unwrap().iter().enumerate() {
        for (j, p) in row.as_array().unwrap().iter().enumerate() {
            let cell = &spread["cells"][i][j];
            let (min, max, p) = (
                cell["min"].as_f64().unwrap(),
                cell["max"].as_f64().unwrap(),
                p.as_f64().unwrap(),
            );
            assert!(min <= p && p <= max, "cell {i},{j}: {min} {p} {max}");
            assert_eq!(cell["methods"].as_object().unwrap().len(), compared.len());
        }
    }
    assert!(spread["warnings"].is_array());
}

#[test]
fn transfers_on_any_two_margins_of_one_file() {
    let senc =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tally-transfers/tests/data/senc.csv");
    let o = tally(&[
        "transfers",
        senc.to_str().unwrap(),
        "--rows",
        "white,black,natam",
        "--cols",
        "dem,rep,non",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).lines().count() > 3);
    let o = tally(&[
        "transfers",
        senc.to_str().unwrap(),
        "--rows",
        "white,nope",
        "--cols",
        "dem,rep",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no column 'nope'"));
}

#[test]
fn transfers_on_unbalanced_margins_name_the_rule() {
    // New and departed voters between two elections: the unit totals differ.
    let f = tmp_("unbalanced.csv");
    std::fs::write(
        &f,
        "station_id,a,b,c,x,y\n1,50,30,20,60,45\n2,40,40,10,50,30\n3,20,60,30,35,80\n4,30,10,40,40,40\n",
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["transfers", path, "--rows", "a,b,c", "--cols", "x,y"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bootstrap", "0"]);
        tally(&args)
    };
    let o = run(&["--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["balance"]["rule"], "net");
    // Unit 1: 105 - 100 = 5 entries; 2: 90 - 80 = 10 exits; 3: 115 - 110 = 5 entries; 4 balances.
    assert_eq!(v["balance"]["entries"], 10);
    assert_eq!(v["balance"]["exits"], 10);
    assert_eq!(v["balance"]["voters_moved"], 20);
    assert_eq!(v["rows"][3], "new/net entries");
    assert_eq!(v["cols"][2], "net exits");
    let o = run(&["--balance", "proportional"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("Balancing rule proportional"));
    let o = run(&["--balance", "bogus"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("net or proportional") && !err.contains('{'),
        "{err}"
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["results", "-", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"station_id,region,registered,cast,invalid,valid,a,b\n1,N,100,80,0,80,50,30\n2,S,100,60,0,60,25,35\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rounds"][0]["candidates"][0]["votes"], 75);
    assert_eq!(v["rounds"][0]["outcome"]["kind"], "elected");
    assert_eq!(v["election"], "stdin");
}

#[test]
fn outputs_never_go_over_an_input_and_formulas_are_neutralised() {
    let dir = std::env::temp_dir().join(format!("tally-cli-clobber-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("a.csv");
    let mut text = String::from(
        "station_id,region,registered,cast,invalid,valid,a,b\n\
         =1+1,=HYPERLINK(\"x\"),100,80,0,80,50,30\n\
         S2,North,100,80,0,80,50,31\n",
    );
    for i in 3..40 {
        text.push_str(&format!("S{i},North,100,80,0,80,50,30\n"));
    }
    let text = text.as_str();
    std::fs::write(&input, text).unwrap();
    let input_s = input.to_string_lossy().to_string();
    // --quarantine naming the input itself: refused, the input is intact.
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["results", &input_s, "--quarantine", &input_s])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to write over the input"), "{err}");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), text);
    // An unrelated a.partial is left alone; the quarantine's text cells cannot run as formulas.
    std::fs::write(dir.join("q.partial"), "mine").unwrap();
    let q = dir.join("q.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "results",
            &input_s,
            "--quarantine",
            &q.to_string_lossy(),
            "--format",
            "csv",
            "--level",
            "region",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("q.partial")).unwrap(),
        "mine"
    );
    let quarantine = std::fs::read_to_string(&q).unwrap();
    assert!(quarantine.contains(",S2,E102,"), "{quarantine}");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
}

#[test]
fn a_partial_count_says_who_leads_and_that_it_is_not_final() {
    let dir = std::env::temp_dir().join(format!("tally-cli-partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("partial.csv");
    let mut text = String::from("station_id,registered,cast,invalid,valid,a,b\n");
    for i in 0..100 {
        if i < 10 {
            text.push_str(&format!("S{i},1000,800,0,800,500,300\n"));
        } else {
            text.push_str(&format!("S{i},1000,,,,,\n"));
        }
    }
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["results", &p, "--rule", "majority"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("is elected"), "{table}");
    assert!(
        table.contains("a leads with 62.50% of valid votes, with 10.00% of stations counted (90 without a counted sheet): not final (`tally project` projects the final result)."),
        "{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["results", &p, "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rounds"][0]["outcome"]["kind"], "elected");
    assert_eq!(v["rounds"][0]["outcome"]["final"], false);
}

#[test]
fn absurd_station_counts_are_an_error_not_an_abort() {
    for n in ["1e11", "100000000000", "0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["synth", "--stations", n])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{n}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--stations"), "{err}");
    }
}

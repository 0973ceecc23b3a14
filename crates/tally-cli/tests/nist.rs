//! `tally results --format nist` end to end: the written report validates against the NIST
//! schema (docs/schema, with Python's jsonschema; skipped with a message when absent) and
//! `tally results REPORT.json --format json` gives the same rounds (shares, outcomes, progress,
//! sheets) as the CSV run. The embedded Turkish election always; Poland 2020 when ../shared is
//! there.

use std::path::PathBuf;
use std::process::Command;

mod run;
use run::{shared, tally};

fn schema_check(file: &PathBuf) {
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schema/nist-sp-1500-100-v2.schema.json");
    let script = "import json,sys\ntry:\n import jsonschema\nexcept ImportError:\n sys.exit(3)\ns=json.load(open(sys.argv[1]))\nd=json.load(open(sys.argv[2]))\nerrs=list(jsonschema.Draft4Validator(s).iter_errors(d))\nfor e in errs[:5]: print(list(e.path), e.message[:300])\nsys.exit(1 if errs else 0)\n";
    match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(file)
        .output()
    {
        Err(_) => eprintln!("skipped schema validation: python3 is not installed"),
        Ok(o) if o.status.code() == Some(3) => eprintln!(
            "skipped schema validation: the Python package jsonschema is not installed (pip install jsonschema)"
        ),
        Ok(o) => assert!(
            o.status.success(),
            "{} does not validate against the NIST schema:\n{}",
            file.display(),
            String::from_utf8_lossy(&o.stdout)
        ),
    }
}

/// Writes the NIST report of `inputs`, reads it back, and compares the rounds of both runs.
fn same_results(inputs: &[&str], name: &str, validate: bool) {
    let nist = tally(&[&["results"], inputs, &["--format", "nist"]].concat());
    assert!(
        nist.status.success(),
        "{}",
        String::from_utf8_lossy(&nist.stderr)
    );
    let dir = std::env::temp_dir().join(format!("tally-cli-nist-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("report.json");
    std::fs::write(&file, &nist.stdout).expect("writes");
    if validate {
        schema_check(&file);
    }
    let from_csv = tally(&[&["results"], inputs, &["--format", "json"]].concat());
    let from_nist = tally(&["results", &file.to_string_lossy(), "--format", "json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        from_nist.status.success(),
        "{}",
        String::from_utf8_lossy(&from_nist.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&from_csv.stdout).expect("json");
    let b: serde_json::Value = serde_json::from_slice(&from_nist.stdout).expect("json");
    assert_eq!(a["rounds"], b["rounds"]);
    assert_eq!(a["matching"]["matched"], b["matching"]["matched"]);
}

#[test]
fn embedded_election_through_nist_gives_the_same_results() {
    same_results(&[], "embedded", true);
}

#[test]
fn poland_2020_through_nist_gives_the_same_results() {
    let (Some(r1), Some(r2)) = (
        shared("poland2020/r1.csv.gz"),
        shared("poland2020/r2.csv.gz"),
    ) else {
        return;
    };
    // Python's jsonschema takes minutes on this 110 MB report: validated when asked.
    let large = std::env::var_os("TALLY_NIST_VALIDATE_LARGE").is_some();
    if !large {
        eprintln!(
            "schema validation of the Poland report skipped: set TALLY_NIST_VALIDATE_LARGE=1"
        );
    }
    same_results(&[&r1, &r2], "poland", large);
}

#[test]
fn certified_and_refused_formats() {
    let o = tally(&["results", "--format", "nist", "--certified"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["Status"], "certified");
    assert_eq!(v["GeneratedDate"], "2023-11-14T22:13:20Z");
    assert_eq!(v["Election"][1]["Type"], "runoff");
    // Forensics offers table and json only: nist is a usage error naming the values it takes.
    let o = tally(&["forensics", "--format", "nist"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("possible values: table, json"));
}

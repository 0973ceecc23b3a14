//! One results report: every sheet of Poland 2020 round 2 posted to a live `tally serve` gives
//! the same `tally.results/1` round as `tally results` on the file, field for field, apart from
//! the fields `docs/results-json.md` documents as live-only (`sheets`).
//!
//! Drives the real `tally` binary (init, users add, serve, results) as a user would. Needs
//! ../shared/data/poland2020; says so and passes when it is absent (the README's commands work
//! without it).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tally_io::{import_path, ImportOptions};
use tally_model::{SheetStatus, MISSING};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn data(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    p.exists().then_some(p)
}

fn tally(args: &[&str]) -> String {
    let out = Command::new(TALLY).args(args).output().expect("tally runs");
    assert!(
        out.status.success(),
        "tally {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the JSON body.
fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    // The server answers with a length, never chunked, for JSON documents.
    let value = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, value)
}

#[test]
fn server_and_cli_build_the_same_report_on_poland_2020_round_2() {
    let Some(r2) = data("poland2020/r2.csv.gz") else {
        eprintln!("skipped: ../shared/data/poland2020 is absent");
        return;
    };
    let r2 = r2.to_string_lossy().to_string();
    let dir = std::env::temp_dir().join(format!("tally-one-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("night.db");
    let _ = std::fs::remove_file(&db);
    let db = db.to_string_lossy().to_string();
    tally(&["init", "--db", &db, "--stations", &r2]);
    let token = tally(&["users", "add", "--db", &db, "--role", "official"]);
    let token = token.lines().last().unwrap().trim().to_string();

    let mut child = Command::new(TALLY)
        .args(["serve", "--db", &db, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tally serve starts");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on ADDR")
        .to_string();

    // Every counted sheet of the file, as a client would type it in.
    let file = import_path(&r2, &ImportOptions::default()).expect("imports");
    let round = &file.rounds[0].round;
    let s = &round.stations;
    let opt = |v: tally_model::StoredCount| (v != MISSING).then_some(v);
    let sheets: Vec<Value> = (0..round.len())
        .filter(|&i| s.status[i] == SheetStatus::Counted)
        .map(|i| {
            let votes: serde_json::Map<String, Value> = round
                .candidates
                .iter()
                .zip(round.votes_of(i))
                .map(|(c, &v)| (c.id.clone(), json!(v)))
                .collect();
            let extra: serde_json::Map<String, Value> = round
                .extra_lines
                .iter()
                .zip(round.extra_of(i))
                .filter(|(_, &v)| v != MISSING)
                .map(|(name, &v)| (name.clone(), json!(v)))
                .collect();
            json!({
                "station_id": s.ids[i],
                "round": round.number,
                "registered": opt(s.registered[i]),
                "cast": opt(s.cast[i]),
                "invalid": opt(s.invalid[i]),
                "valid": opt(s.valid[i]),
                "votes": votes,
                "extra": extra,
            })
        })
        .collect();
    assert!(sheets.len() > 27_000, "{} sheets", sheets.len());
    for batch in sheets.chunks(1000) {
        let body = serde_json::to_vec(&Value::Array(batch.to_vec())).unwrap();
        let (status, answer) = request(&addr, "POST", "/api/v1/sheets", Some(&token), &body);
        assert!(status == 201 || status == 200, "{status}: {answer}");
    }

    let (status, live) = request(&addr, "GET", "/api/v1/results?round=2", None, b"");
    assert_eq!(status, 200, "{live}");
    let cli: Value =
        serde_json::from_str(&tally(&["results", &r2, "--format", "json"])).expect("json");
    let mut live_round = live["rounds"][0].clone();
    let mut cli_round = cli["rounds"][0].clone();
    // `sheets` counts input rows at the command line and registry stations on the server
    // (docs/results-json.md); everything else must be equal.
    let live_sheets = live_round
        .as_object_mut()
        .unwrap()
        .remove("sheets")
        .unwrap();
    let cli_sheets = cli_round.as_object_mut().unwrap().remove("sheets").unwrap();
    assert_eq!(live_round, cli_round);
    assert_eq!(live["schema"], cli["schema"]);
    assert_eq!(live["election"], cli["election"]);
    // Both count the same accepted sheets.
    assert_eq!(live_sheets["accepted"], cli_sheets["accepted"]);
    assert_eq!(live_sheets["with_warnings"], cli_sheets["with_warnings"]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

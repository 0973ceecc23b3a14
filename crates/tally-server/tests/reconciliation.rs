//! The live reconciliation (`GET /api/v1/reconciliation`) equals `tally reconcile`'s on the same
//! sheets read from files, and a sheet that makes a station's sources disagree is announced on
//! the event stream as a `conflict` event.

mod common;
use common::Kind;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tally_io::{import_bytes, ImportOptions};
use tally_server::client::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Station i's numbers; `bump` moves votes between the first two candidates.
fn sheet(i: u64, bump: i64) -> (u64, [u64; 3]) {
    let registered = 500 + (i * 37) % 1500;
    let a = (200 + i) as i64 + bump;
    let b = (150 + 2 * i) as i64 - bump;
    (registered, [a as u64, b as u64, 50])
}

fn json_sheet(i: u64, bump: i64) -> Value {
    let (registered, v) = sheet(i, bump);
    let valid: u64 = v.iter().sum();
    json!({"station_id": format!("S{i:06}"), "registered": registered, "cast": valid + 5,
           "invalid": 5, "valid": valid,
           "votes": {"cand0": v[0], "cand1": v[1], "cand2": v[2]}})
}

fn csv(bumps: &HashMap<u64, i64>) -> String {
    let mut out = String::from(
        "station_id,region,district,registered,cast,invalid,valid,cand0,cand1,cand2\n",
    );
    for i in 0..40u64 {
        let (registered, v) = sheet(i, bumps.get(&i).copied().unwrap_or(0));
        let valid: u64 = v.iter().sum();
        out.push_str(&format!(
            "S{i:06},R{},D{},{registered},{},5,{valid},{},{},{}\n",
            i % 4,
            i % 16,
            valid + 5,
            v[0],
            v[1],
            v[2]
        ));
    }
    out
}

async fn post(c: &mut Conn, token: &str, body: &Value) -> u16 {
    let auth = format!("Bearer {token}");
    let r = c
        .request(
            "POST",
            "/api/v1/sheets",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reconciliation_equals_the_file_based_one_and_conflicts_are_announced() {
    let (_dir, db, tokens) = common::setup("reconciliation", Kind::Sqlite);
    let target = tally_store::DbTarget::parse(&db);
    let (_, observer) = common::blocking(move || {
        tally_store::engine::add_user(&target, tally_store::Role::Observer, &["*".to_string()])
    })
    .expect("an observer of every station");
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let official: Vec<Value> = (0..40).map(|i| json_sheet(i, 0)).collect();
    assert_eq!(post(&mut c, &tokens[1], &Value::Array(official)).await, 201);
    // The observers agree everywhere but on three stations.
    let bumps: HashMap<u64, i64> = [(3, 9), (17, -27), (30, 90)].into_iter().collect();
    let agreeing: Vec<Value> = (0..40)
        .filter(|i| !bumps.contains_key(i))
        .map(|i| json_sheet(i, 0))
        .collect();
    assert_eq!(post(&mut c, &observer, &Value::Array(agreeing)).await, 201);
    // Listen, then send the disagreeing sheets.
    let mut events = tokio::net::TcpStream::connect(&addr).await.unwrap();
    events
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let differing: Vec<Value> = bumps.iter().map(|(&i, &b)| json_sheet(i, b)).collect();
    assert_eq!(post(&mut c, &observer, &Value::Array(differing)).await, 201);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while String::from_utf8_lossy(&got)
            .matches("event: conflict")
            .count()
            < 3
        {
            match events.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("event: conflict").count(), 3, "{text}");

    let r = c
        .request("GET", "/api/v1/reconciliation?round=1", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let live = r.json();

    // The same sheets as files, through `tally reconcile`'s function.
    let opts = ImportOptions::default();
    let a = import_bytes(csv(&HashMap::new()).as_bytes(), "official.csv", &opts).unwrap();
    let b = import_bytes(csv(&bumps).as_bytes(), "observers.csv", &opts).unwrap();
    let none = HashMap::new();
    let files = tally_reconcile::reconcile(
        tally_reconcile::Side {
            round: &a.rounds[0].round,
            codes: &none,
        },
        tally_reconcile::Side {
            round: &b.rounds[0].round,
            codes: &none,
        },
        &tally_reconcile::Options {
            rule: &tally_model::Rule::majority(),
            level: None,
            boxes: None,
        },
    )
    .unwrap();
    let files = serde_json::to_value(&files).unwrap();
    for key in [
        "stations",
        "kinds",
        "net",
        "outcome_official",
        "outcome_other",
        "flips",
        "worst_case",
    ] {
        assert_eq!(live[key], files[key], "{key}");
    }
    assert_eq!(live["stations"]["differ"], 3);
    let mut live_diff: Vec<String> = live["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["station_id"], d["kind"]))
        .collect();
    let mut file_diff: Vec<String> = files["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["station_id"], d["kind"]))
        .collect();
    live_diff.sort();
    file_diff.sort();
    assert_eq!(live_diff, file_diff);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_as_nist_from_the_live_server() {
    let (_dir, db, tokens) = common::setup("nist_live", Kind::Sqlite);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let sheets: Vec<Value> = (0..40).map(|i| json_sheet(i, 0)).collect();
    assert_eq!(post(&mut c, &tokens[1], &Value::Array(sheets)).await, 201);
    let r = c
        .request("GET", "/api/v1/results?format=nist", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["@type"], "ElectionResults.ElectionReport");
    assert_eq!(v["Status"], "unofficial-complete");
    // Every candidate's votes over the stations equal the JSON results'.
    let results = c
        .request("GET", "/api/v1/results", &[], b"")
        .await
        .unwrap()
        .json();
    let total: u64 = (0..40).map(|i| sheet(i, 0).1[0]).sum();
    let cand0 = results["rounds"][0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "cand0")
        .unwrap()["votes"]
        .as_u64()
        .unwrap();
    assert_eq!(cand0, total);
    let text = v.to_string();
    assert!(text.contains("polling-place"), "one unit per station");
    let r = c
        .request("GET", "/api/v1/results?format=xml", &[], b"")
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("H400")));
}

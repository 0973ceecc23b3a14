//! The live projection (`GET /api/v1/projection`) equals `tally project`'s on the same sheets
//! read from a file, and a change of the projection is announced on the event stream as a
//! `projection` event.

mod common;
use common::Kind;
use serde_json::{json, Value};
use std::time::Duration;
use tally_io::{import_bytes, ImportOptions};
use tally_server::client::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Station i's votes: cand0 leads in the even districts, cand1 in the odd ones.
fn votes(i: u64) -> [u64; 3] {
    let registered = 500 + (i * 37) % 1500;
    let turnout = registered * 6 / 10;
    let lean = if (i % 16).is_multiple_of(2) { 55 } else { 42 };
    let a = turnout * lean / 100;
    let c = turnout / 20;
    [a, turnout - a - c, c]
}

fn json_sheet(i: u64) -> Value {
    let v = votes(i);
    let valid: u64 = v.iter().sum();
    json!({"station_id": format!("S{i:06}"), "registered": 500 + (i * 37) % 1500,
           "cast": valid + 4, "invalid": 4, "valid": valid,
           "votes": {"cand0": v[0], "cand1": v[1], "cand2": v[2]}})
}

/// The same sheets as a partial count: stations not in have empty counts.
fn partial_csv(counted: u64) -> String {
    let mut out = String::from(
        "station_id,region,district,registered,cast,invalid,valid,cand0,cand1,cand2\n",
    );
    for i in 0..40u64 {
        let reg = 500 + (i * 37) % 1500;
        let area = format!("R{},D{}", i % 4, i % 16);
        if i < counted {
            let v = votes(i);
            let valid: u64 = v.iter().sum();
            out.push_str(&format!(
                "S{i:06},{area},{reg},{},4,{valid},{},{},{}\n",
                valid + 4,
                v[0],
                v[1],
                v[2]
            ));
        } else {
            out.push_str(&format!("S{i:06},{area},{reg},,,,,,\n"));
        }
    }
    out
}

async fn post(c: &mut Conn, token: &str, body: &Value) -> u16 {
    let auth = format!("Bearer {token}");
    c.request(
        "POST",
        "/api/v1/sheets",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap()
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_projection_equals_tally_project_and_changes_are_announced() {
    let (_dir, db, tokens) = common::setup("projection", Kind::Sqlite);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let first: Vec<Value> = (0..24).map(json_sheet).collect();
    assert_eq!(post(&mut c, &tokens[1], &Value::Array(first)).await, 201);

    let r = c
        .request("GET", "/api/v1/projection", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let live = r.json();
    assert_eq!(live["format"], "tally.projection/1");
    assert_eq!(live["round"], 1);
    assert_eq!(live["reported"]["stations"], 24);
    assert_eq!(live["reported"]["stations_total"], 40);

    // The same sheets as a file, through `tally project`'s functions.
    let file = import_bytes(
        partial_csv(24).as_bytes(),
        "partial.csv",
        &ImportOptions::default(),
    )
    .unwrap();
    let pop = tally_project::Population::build(&tally_project::Inputs {
        partial: &file.rounds[0].round,
        baseline: None,
        registry: None,
        level: None,
    })
    .unwrap();
    let from_file = serde_json::to_value(tally_project::project(
        &pop,
        &tally_model::Rule::majority(),
        &tally_project::Options::default(),
    ))
    .unwrap();
    for key in ["method", "reported", "call", "level", "confidence"] {
        assert_eq!(live[key], from_file[key], "{key}");
    }
    for (a, b) in live["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .zip(from_file["candidates"].as_array().unwrap())
    {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["votes_now"], b["votes_now"]);
        for f in ["share", "lower", "upper"] {
            let (x, y) = (a[f].as_f64().unwrap(), b[f].as_f64().unwrap());
            assert!((x - y).abs() < 1e-6, "{f}: {x} vs {y}");
        }
    }

    // Listen, then send more sheets: a projection event follows within seconds.
    let mut events = tokio::net::TcpStream::connect(&addr).await.unwrap();
    events
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more: Vec<Value> = (24..34).map(json_sheet).collect();
    assert_eq!(post(&mut c, &tokens[1], &Value::Array(more)).await, 201);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&got).contains("\"stations\":34") {
            match events.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    // (The body is chunked: an event may follow a chunk-size line.)
    let event = text
        .split("event: projection\ndata: ")
        .skip(1)
        .map(|rest| rest.lines().next().unwrap_or(""))
        .find(|data| data.contains("\"stations\":34"))
        .unwrap_or_else(|| panic!("no projection event with 34 stations in: {text}"));
    let data: Value = serde_json::from_str(event).unwrap();
    assert_eq!(data["format"], "tally.projection/1");

    // The results say where the projection is and what it rests on.
    let r = c.request("GET", "/api/v1/results", &[], b"").await.unwrap();
    let results = r.json();
    assert_eq!(
        results["projection"][0]["href"],
        "/api/v1/projection?round=1"
    );
    assert_eq!(results["projection"][0]["based_on_stations"], 34);

    // A round the registry does not have is a coded 404.
    let r = c
        .request("GET", "/api/v1/projection?round=2", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "H404");
}

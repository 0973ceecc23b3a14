//! The API: hostile and malformed requests are refused with the right 4xx and a coded error and
//! store nothing; good sheets get receipts; corrections, conflicts, idempotency, reads.

mod common;
use common::Kind;
use serde_json::{json, Value};
use tally_server::client::Conn;
use tally_store::both;

/// (name, token, body, expected status, expected code)
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

fn good(station: &str) -> Value {
    json!({"station_id": station, "round": 1, "registered": 1000, "cast": 600, "invalid": 9,
           "valid": 591, "votes": {"cand0": 197, "cand1": 197, "cand2": 197}})
}

async fn post(c: &mut Conn, token: Option<&str>, key: Option<&str>, body: &[u8]) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        h.push(("Authorization", a));
    }
    if let Some(k) = key {
        h.push(("Idempotency-Key", k));
    }
    let r = c.request("POST", "/api/v1/sheets", &h, body).await.unwrap();
    (r.status, r.json())
}

async fn versions(c: &mut Conn) -> u64 {
    let r = c
        .request("GET", "/api/v1/progress", &[], b"")
        .await
        .unwrap();
    r.json()["versions"].as_u64().unwrap()
}

both!(hostile_requests_get_coded_4xx_and_store_nothing);
async fn hostile_requests_get_coded_4xx_and_store_nothing(kind: Kind) {
    let (_dir, db, [admin, official, observer]) = common::setup("bad", kind);
    let addr = common::start(&db).await;
    let o = Some(official.as_str());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good("S000002");
        f(&mut v);
        v.to_string().into_bytes()
    };
    let cases: Vec<Case> = vec![
        ("bad JSON", o, b"{\"station_id\": ".to_vec(), 400, "E108"),
        ("not JSON at all", o, b"hello".to_vec(), 400, "E108"),
        ("a JSON string", o, b"\"sheet\"".to_vec(), 400, "E108"),
        ("empty array", o, b"[]".to_vec(), 400, "E108"),
        ("deeply nested", o, format!("{}{}", "[".repeat(10000), "]".repeat(10000)).into_bytes(), 400, "E108"),
        ("array of numbers", o, b"[1,2]".to_vec(), 422, "E108"),
        ("count is a string", o, with(&|v| v["cast"] = json!("600")), 422, "E101"),
        ("negative count", o, with(&|v| v["invalid"] = json!(-9)), 422, "E101"),
        ("fractional count", o, with(&|v| v["votes"]["cand0"] = json!(197.5)), 422, "E101"),
        ("huge count", o, with(&|v| v["registered"] = json!(1u64 << 41)), 422, "E101"),
        ("u64 overflow", o, br#"{"station_id":"S000002","cast":99999999999999999999999}"#.to_vec(), 422, "E101"),
        ("exponent count", o, br#"{"station_id":"S000002","cast":1e3}"#.to_vec(), 422, "E101"),
        ("boolean count", o, with(&|v| v["valid"] = json!(true)), 422, "E101"),
        ("unknown station", o, with(&|v| v["station_id"] = json!("NOPE")), 422, "E106"),
        ("unknown round", o, with(&|v| v["round"] = json!(7)), 422, "E106"),
        ("round zero", o, with(&|v| v["round"] = json!(0)), 422, "E108"),
        ("station id a number", o, with(&|v| v["station_id"] = json!(5)), 422, "E108"),
        ("station id empty", o, with(&|v| v["station_id"] = json!("")), 422, "E109"),
        ("station id missing", o, with(&|v| { v.as_object_mut().unwrap().remove("station_id"); }), 422, "E109"),
        ("station id too long", o, with(&|v| v["station_id"] = json!("x".repeat(500))), 422, "E108"),
        ("unknown candidate", o, with(&|v| v["votes"]["mallory"] = json!(1)), 422, "E107"),
        ("unknown field", o, with(&|v| v["bonus"] = json!(1)), 422, "E107"),
        ("votes not an object", o, with(&|v| v["votes"] = json!([1, 2, 3])), 422, "E108"),
        ("sum of votes != valid", o, with(&|v| v["votes"]["cand0"] = json!(198)), 422, "E102"),
        ("valid + invalid != cast", o, with(&|v| v["invalid"] = json!(10)), 422, "E103"),
        ("cast > registered", o, with(&|v| { v["registered"] = json!(100); }), 422, "E104"),
        ("incomplete votes", o, with(&|v| { v["votes"] = json!({"cand0": 1}); }), 422, "E110"),
        ("no counts at all", o, br#"{"station_id":"S000002"}"#.to_vec(), 422, "E110"),
        ("same station twice, different numbers", o,
            json!([good("S000003"), {"station_id": "S000003", "cast": 1, "invalid": 1, "valid": 0, "votes": {"cand0": 0, "cand1": 0, "cand2": 0}}]).to_string().into_bytes(), 422, "E105"),
        ("one bad sheet in a batch", o, json!([good("S000004"), {"station_id": "NOPE"}]).to_string().into_bytes(), 422, "E106"),
        ("missing token", None, good("S000002").to_string().into_bytes(), 401, "H401"),
        ("forged token", Some("0123456789abcdef"), good("S000002").to_string().into_bytes(), 401, "H401"),
        ("admin writes a sheet", Some(admin.as_str()), good("S000002").to_string().into_bytes(), 403, "H403"),
        ("observer writes another station", Some(observer.as_str()), good("S000002").to_string().into_bytes(), 403, "H403"),
        ("oversize body", o, format!("[{}]", vec![good("S000002").to_string(); 9000].join(",")).into_bytes(), 413, "H413"),
        ("too many sheets", o, format!("[{}]", vec![good("S000002").to_string(); 1001].join(",")).into_bytes(), 413, "H413"),
    ];
    assert!(cases.len() >= 30);
    for (name, token, body, status, code) in &cases {
        let (s, v) = post(&mut Conn::connect(&addr).await.unwrap(), *token, None, body).await;
        assert_eq!(
            (s, v["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{name}: {v}"
        );
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {v}"
        );
    }
    // Other malformed requests (a fresh connection each: the server may close one whose
    // request body it did not read): (method, path, headers, body, status, code).
    let auth = format!("Bearer {official}");
    let json_auth = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let long_key = "k".repeat(300);
    let good_body = good("S000002").to_string().into_bytes();
    type Request<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        u16,
        &'a str,
    );
    let requests: Vec<Request> = vec![
        (
            "POST",
            "/api/v1/sheets",
            vec![("Authorization", &auth), ("Content-Type", "text/plain")],
            &good_body,
            415,
            "H415",
        ),
        (
            "POST",
            "/api/v1/sheets",
            vec![
                ("Authorization", &auth),
                ("Content-Type", "application/jsonx"),
            ],
            &good_body,
            415,
            "H415",
        ),
        (
            "POST",
            "/api/v1/sheets",
            [&json_auth[..], &[("Idempotency-Key", long_key.as_str())]].concat(),
            &good_body,
            400,
            "H400",
        ),
        ("GET", "/api/v1/nothing", vec![], b"", 404, "H404"),
        ("DELETE", "/api/v1/sheets", vec![], b"", 405, "H405"),
        ("GET", "/api/v1/results?round=abc", vec![], b"", 400, "H400"),
        ("GET", "/api/v1/results?round=", vec![], b"", 400, "H400"),
        ("GET", "/api/v1/results?round=256", vec![], b"", 400, "H400"),
        (
            "GET",
            "/api/v1/results?area=Nowhere",
            vec![],
            b"",
            404,
            "H404",
        ),
        ("GET", "/api/v1/journal?from=-1", vec![], b"", 400, "H400"),
        (
            "POST",
            "/api/v1/users",
            json_auth.to_vec(),
            br#"{"role":"admin"}"#,
            403,
            "H403",
        ),
        ("GET", "/api/v1/stations/NOPE", vec![], b"", 404, "H404"),
        (
            "GET",
            "/api/v1/events",
            vec![("Last-Event-ID", "yesterday")],
            b"",
            400,
            "H400",
        ),
    ];
    for (method, path, headers, body, status, code) in &requests {
        let r = Conn::connect(&addr)
            .await
            .unwrap()
            .request(method, path, headers, body)
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (*status, json!(code)),
            "{method} {path}"
        );
    }
    // Nothing was stored by any of them.
    assert_eq!(versions(&mut Conn::connect(&addr).await.unwrap()).await, 0);

    // Replay with a changed body under the same key: 409, and the first sheet stays the only one.
    let mut c = Conn::connect(&addr).await.unwrap();
    let (s, first) = post(
        &mut c,
        o,
        Some("key-1"),
        good("S000005").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = post(
        &mut c,
        o,
        Some("key-1"),
        good("S000005").to_string().as_bytes(),
    )
    .await;
    assert_eq!((s, &again), (200, &first));
    let mut changed = good("S000005");
    changed["votes"]["cand0"] = json!(196);
    changed["votes"]["cand1"] = json!(198);
    let (s, v) = post(
        &mut Conn::connect(&addr).await.unwrap(),
        o,
        Some("key-1"),
        changed.to_string().as_bytes(),
    )
    .await;
    assert_eq!((s, v["code"].as_str().unwrap()), (409, "H409"));
    assert_eq!(versions(&mut Conn::connect(&addr).await.unwrap()).await, 1);
}

both!(receipts_versions_conflicts_and_reads);
async fn receipts_versions_conflicts_and_reads(kind: Kind) {
    let (_dir, db, [admin, official, observer]) = common::setup("good", kind);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let mut events = Conn::connect(&addr).await.unwrap();
    let _ = &mut events;
    let (s, r1) = post(
        &mut c,
        Some(&official),
        None,
        good("S000001").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201);
    for k in ["sheet_id", "version", "journal_seq", "hash"] {
        assert!(r1.get(k).is_some(), "{r1}");
    }
    assert_eq!(r1["version"], 1);
    // A correction: new version, old kept.
    let mut corr = good("S000001");
    corr["votes"]["cand0"] = json!(190);
    corr["votes"]["cand1"] = json!(204);
    let (s, r2) = post(&mut c, Some(&official), None, corr.to_string().as_bytes()).await;
    assert_eq!((s, r2["version"].clone()), (201, json!(2)));
    // An observer disagrees with the official sheet on one line pair.
    let (s, ro) = post(
        &mut c,
        Some(&observer),
        None,
        good("S000001").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201, "{ro}");
    assert!(ro["source"].as_str().unwrap().starts_with("observer:"));
    let st = c
        .request("GET", "/api/v1/stations/S000001", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(st["versions"].as_array().unwrap().len(), 3);
    assert_eq!(st["rounds"][0]["conflict"], true);
    let lines: Vec<&str> = st["rounds"][0]["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["votes.cand0", "votes.cand1"]);
    let p = c
        .request("GET", "/api/v1/progress", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(p["conflicts"], 1);
    assert_eq!(p["rounds"][0]["stations_counted"], 1);
    // Results: official only, the tally.results/1 schema.
    let res = c
        .request("GET", "/api/v1/results?level=region&round=1", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(res["schema"], "tally.results/1");
    let cands = res["rounds"][0]["candidates"].as_array().unwrap();
    let c1 = cands.iter().find(|x| x["id"] == "cand1").unwrap();
    assert_eq!(c1["votes"], 204);
    assert_eq!(res["rounds"][0]["areas"].as_array().unwrap().len(), 4);
    // Journal from a seq, chained.
    let j = c
        .request("GET", "/api/v1/journal?from=2", &[], b"")
        .await
        .unwrap()
        .json();
    let e = j["entries"].as_array().unwrap();
    assert!(e.len() >= 3);
    assert_eq!(e[1]["prev"], e[0]["hash"]);
    // OpenAPI document parses and lists the routes.
    let api = c
        .request("GET", "/api/v1/openapi.json", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(api["openapi"], "3.0.3");
    for path in [
        "/sheets",
        "/results",
        "/progress",
        "/stations/{id}",
        "/events",
        "/journal",
    ] {
        assert!(api["paths"].get(path).is_some(), "{path}");
    }
    // Admin adds a user through the API; the new token works.
    let auth = format!("Bearer {admin}");
    let u = c
        .request(
            "POST",
            "/api/v1/users",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"role":"official"}"#,
        )
        .await
        .unwrap();
    assert_eq!(u.status, 201);
    let tok = u.json()["token"].as_str().unwrap().to_string();
    let (s, _) = post(
        &mut c,
        Some(&tok),
        None,
        good("S000009").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201);
    let id = u.json()["user_id"].as_i64().unwrap();
    let d = c
        .request(
            "DELETE",
            &format!("/api/v1/users/{id}"),
            &[("Authorization", &auth)],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(d.status, 200);
    let (s, _) = post(
        &mut c,
        Some(&tok),
        None,
        good("S000010").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 401);
}

both!(a_corrupt_idempotency_row_is_a_coded_500_not_a_panic);
/// A stored idempotency answer that cannot be read (garbage, or an empty list of receipts) is
/// refused on replay with a coded 500 naming the row, and nothing is acknowledged; the server
/// does not panic and goes on answering every other request. A running store keeps the answers
/// it made in memory, so the corrupt rows are read by a second server opened on the same
/// database afterwards, as after a restart or by a replica.
async fn a_corrupt_idempotency_row_is_a_coded_500_not_a_panic(kind: Kind) {
    let (_dir, db, [_, official, _]) = common::setup("corrupt_idem", kind);
    let first = common::start(&db).await;
    let mut c = Conn::connect(&first).await.unwrap();
    let o = Some(official.as_str());
    let cases = [
        ("k-garbage", "S000003", "'garbage'", "unreadable response"),
        ("k-empty", "S000004", "'[]'", "no receipts stored"),
    ];
    let mut bodies = Vec::new();
    for (key, station, _, _) in cases {
        let body = good(station).to_string();
        let (s, r) = post(&mut c, o, Some(key), body.as_bytes()).await;
        assert_eq!(s, 201, "{r}");
        bodies.push(body);
    }
    for (key, _, garbage, _) in cases {
        let sql = format!("UPDATE idempotency SET response = {garbage} WHERE key = '{key}'");
        assert_eq!(common::raw_sql(&db, &sql), 1);
    }

    let second = common::start(&db).await;
    let mut c = Conn::connect(&second).await.unwrap();
    let before = versions(&mut c).await;
    for ((key, _, _, reason), body) in cases.iter().zip(&bodies) {
        let (s, r) = post(&mut c, o, Some(key), body.as_bytes()).await;
        assert_eq!((s, r["code"].as_str()), (500, Some("H500")), "{key}: {r}");
        let m = r["message"].as_str().unwrap();
        for part in ["table idempotency", &format!("key '{key}'"), reason] {
            assert!(m.contains(part), "{key}: '{part}' not in: {m}");
        }
        assert!(
            r.get("receipts").is_none() && r.get("sheet_id").is_none(),
            "{r}"
        );
    }
    // Nothing was stored by the refused replays, and the server still answers.
    assert_eq!(versions(&mut c).await, before);
    let (s, r) = post(
        &mut c,
        o,
        Some("k-new"),
        good("S000005").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let (s, _) = post(
        &mut c,
        o,
        Some("k-new"),
        good("S000005").to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "a sound key still replays");
    assert_eq!(versions(&mut c).await, before + 1);
}

both!(events_stream_announces_every_stored_sheet);
async fn events_stream_announces_every_stored_sheet(kind: Kind) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, db, [_, official, _]) = common::setup("events", kind);
    let addr = common::start(&db).await;
    let mut sse = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sse.write_all(
        format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Read the response head before posting, so the subscription exists.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Duration::from_secs(10);
    while !seen.contains("\r\n\r\n") {
        let n = tokio::time::timeout(deadline, sse.read(&mut buf))
            .await
            .expect("SSE head in time")
            .unwrap();
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{seen}"
    );
    let mut c = Conn::connect(&addr).await.unwrap();
    for station in ["S000002", "S000003"] {
        let (s, _) = post(
            &mut c,
            Some(&official),
            None,
            good(station).to_string().as_bytes(),
        )
        .await;
        assert_eq!(s, 201);
    }
    // Both stored versions arrive as `change` events naming their station.
    while !(seen.contains("S000002") && seen.contains("S000003")) {
        let n = tokio::time::timeout(deadline, sse.read(&mut buf))
            .await
            .expect("events in time")
            .unwrap();
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.matches("event: change").count() >= 2, "{seen}");
    // Every event carries its journal seq as its id; reconnecting with Last-Event-ID gives
    // exactly what came after it, from the journal.
    let ids: Vec<i64> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{seen}");
    assert!(ids[0] < ids[1]);
    let mut again = tokio::net::TcpStream::connect(&addr).await.unwrap();
    again
        .write_all(
            format!(
                "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nLast-Event-ID: {}\r\n\r\n",
                ids[0]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut resumed = String::new();
    while !resumed.contains("S000003") {
        let n = tokio::time::timeout(deadline, again.read(&mut buf))
            .await
            .expect("replayed events in time")
            .unwrap();
        assert!(n > 0, "stream closed: {resumed}");
        resumed.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(resumed.contains(&format!("id: {}\n", ids[1])), "{resumed}");
    assert!(
        !resumed.contains("S000002"),
        "nothing before the last id: {resumed}"
    );
}

both!(two_servers_on_one_database_serve_the_same_results);
/// Two servers on one database, as replicas behind a load balancer: a sheet posted to one is
/// in the other's results, progress and event stream, and corrections through either server
/// form one version line.
async fn two_servers_on_one_database_serve_the_same_results(kind: Kind) {
    let (_dir, db, [_, official, _]) = common::setup("replicas", kind);
    let a = common::start(&db).await;
    let b = common::start(&db).await;
    let mut ca = Conn::connect(&a).await.unwrap();
    let mut cb = Conn::connect(&b).await.unwrap();
    let (s, r1) = post(
        &mut ca,
        Some(&official),
        None,
        good("S000001").to_string().as_bytes(),
    )
    .await;
    assert_eq!((s, r1["version"].clone()), (201, json!(1)));
    let mut corr = good("S000001");
    corr["votes"]["cand0"] = json!(190);
    corr["votes"]["cand1"] = json!(204);
    let (s, r2) = post(&mut cb, Some(&official), None, corr.to_string().as_bytes()).await;
    assert_eq!((s, r2["version"].clone()), (201, json!(2)), "{r2}");
    assert_eq!(r2["journal_seq"], r1["journal_seq"].as_i64().unwrap() + 1);
    // B's follower brings A's sheets in (PostgreSQL: notified at commit; SQLite: polled).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pa = ca
            .request("GET", "/api/v1/progress", &[], b"")
            .await
            .unwrap()
            .json();
        let pb = cb
            .request("GET", "/api/v1/progress", &[], b"")
            .await
            .unwrap()
            .json();
        if pa["versions"] == 2 && pb["versions"] == 2 {
            assert_eq!(pa["journal_seq"], pb["journal_seq"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas did not converge: {pa} {pb}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ra = ca
        .request("GET", "/api/v1/results?round=1", &[], b"")
        .await
        .unwrap()
        .json();
    let rb = cb
        .request("GET", "/api/v1/results?round=1", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(ra, rb);
    let c1 = ra["rounds"][0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "cand1")
        .unwrap()
        .clone();
    assert_eq!(
        c1["votes"], 204,
        "the correction made through B counts on A"
    );
}

both!(concurrent_corrections_through_two_servers_form_one_version_line);
/// Eight clients send corrections for the same ten stations, alternating between two servers
/// on one database: every station's versions are 1..k with no gap or repeat, every receipt is
/// found in the journal with its hash, and the chain verifies.
async fn concurrent_corrections_through_two_servers_form_one_version_line(kind: Kind) {
    let (_dir, db, [_, official, _]) = common::setup("race", kind);
    let servers = [common::start(&db).await, common::start(&db).await];
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let (servers, official) = (servers.clone(), official.clone());
        tasks.push(tokio::spawn(async move {
            let mut conns = [
                Conn::connect(&servers[0]).await.unwrap(),
                Conn::connect(&servers[1]).await.unwrap(),
            ];
            let mut receipts = Vec::new();
            for k in 0..20u64 {
                let station = format!("S{:06}", 1 + (client + k) % 10);
                let mut sheet = good(&station);
                // Different numbers from every client and round of the loop: a correction.
                let shift = client * 20 + k;
                sheet["votes"]["cand0"] = json!(197 - shift);
                sheet["votes"]["cand1"] = json!(197 + shift);
                let c = &mut conns[(k % 2) as usize];
                let (s, r) = post(c, Some(&official), None, sheet.to_string().as_bytes()).await;
                assert_eq!(s, 201, "{r}");
                receipts.push(r);
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    assert_eq!(receipts.len(), 160);
    let mut c = Conn::connect(&servers[0]).await.unwrap();
    let mut total = 0;
    for s in 1..=10 {
        let st = c
            .request("GET", &format!("/api/v1/stations/S{s:06}"), &[], b"")
            .await
            .unwrap()
            .json();
        let versions: Vec<u64> = st["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "S{s:06}"
        );
        total += versions.len();
    }
    assert_eq!(total, 160, "one version per receipt");
    let mut seqs: Vec<i64> = receipts
        .iter()
        .map(|r| r["journal_seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 160, "no journal entry shared by two receipts");
    for r in &receipts {
        common::assert_receipt_in_journal(&mut c, r).await;
    }
    let v = common::blocking(move || {
        tally_store::verify_db(&tally_store::DbTarget::parse(&db), &[]).unwrap()
    });
    assert!(v.ok, "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let (_dir, db, tokens) = common::setup("bearer_case", Kind::Sqlite);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let body = good("S000003").to_string().into_bytes();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {}", tokens[1]);
        let r = c
            .request(
                "POST",
                "/api/v1/sheets",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json; charset=utf-8"),
                ],
                &body,
            )
            .await
            .unwrap();
        assert!(r.status == 201 || r.status == 200, "{scheme}: {}", r.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_scoped_by_area_path_write_only_there() {
    let (_dir, db, _) = common::setup("scope_area", Kind::Sqlite);
    let target = tally_store::DbTarget::parse(&db);
    let add = |scope: &[&str]| {
        let scope: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
        let target = target.clone();
        common::blocking(move || {
            tally_store::engine::add_user(&target, tally_store::Role::Observer, &scope)
        })
    };
    // Unknown stations or areas are refused at `users add`, named.
    let err = add(&["R1/D1", "Nowhere", "S999999"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Nowhere") && err.contains("S999999"), "{err}");
    assert!(!err.contains("R1/D1"), "{err}");
    // Station i lies in R(i % 4)/D(i % 16): an observer of region R1 writes S000005, not S000002.
    let (_, token) = add(&["R1"]).expect("a known region");
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let (ok, _) = post(
        &mut c,
        Some(&token),
        None,
        good("S000005").to_string().as_bytes(),
    )
    .await;
    assert_eq!(ok, 201);
    let (no, body) = post(
        &mut c,
        Some(&token),
        None,
        good("S000002").to_string().as_bytes(),
    )
    .await;
    assert_eq!((no, body["code"].as_str()), (403, Some("H403")));
}

//! Crash: the real `tally serve` runs as a child process on 127.0.0.1 (free port), concurrent clients
//! submit, the server is killed with SIGKILL mid-load, restarted on the same database, and every
//! receipt a client got is found again and the journal verifies.

mod common;
use common::Kind;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_cli::{load_test, serve};
use tally_server::client::Conn;
use tally_store::both;

fn spawn(db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--db"])
        .arg(db)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (child, addr)
}

both!(kill_9_mid_load_loses_no_receipt);
async fn kill_9_mid_load_loses_no_receipt(kind: Kind) {
    let (dir, db, [_, official, _]) = common::setup("crash", kind);
    let reg = serve::registry_from_file(&dir.join("stations.csv").to_string_lossy(), None).unwrap();
    let (mut child, addr) = spawn(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load_test::run(
        load_test::LoadConfig {
            addr,
            token: official.clone(),
            stations: load_test::stations_of(&reg),
            sheets: 20_000,
            concurrency: 8,
            per_request: 1,
            rate: None,
        },
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(20), load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.sheets > 0, "no receipt before the kill");
    assert!(report.sheets < 20_000, "the kill came after the load");

    let (mut child, addr) = spawn(&db);
    let mut c = Conn::connect(&addr).await.unwrap();
    let auth = format!("Bearer {official}");
    for (key, body, receipt) in &report.receipts {
        // The same key and body give back the very same receipt, so it was stored.
        let r = c
            .request(
                "POST",
                "/api/v1/sheets",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", key),
                ],
                body.as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, &r.json()),
            (200, receipt),
            "receipt for {key} lost"
        );
        common::assert_receipt_in_journal(&mut c, receipt).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let v = common::blocking(move || serve::verify(&db, &[]).unwrap());
    assert!(v.ok, "{:?}", v.problems);
    eprintln!(
        "crash: {} receipts before the kill, all found; {} journal entries verify",
        report.sheets, v.journal_entries
    );
}

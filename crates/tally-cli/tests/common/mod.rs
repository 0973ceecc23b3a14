//! Shared fixtures of the election-night command tests: a fresh database (SQLite file or
//! PostgreSQL database) made by `init` and `users add` from the load test's synthetic registry,
//! and an in-process server.
//!
//! Every test runs once per backend (`both!`). The PostgreSQL runs need a server:
//! `export TALLY_TEST_POSTGRES=$(scripts/postgres-for-tests)`; without it they print that they
//! were skipped, unless `TALLY_REQUIRE_POSTGRES=1` (as in CI), where that is a failure.
#![allow(dead_code)]

use std::path::PathBuf;
use tally_cli::{load_test, serve};
use tally_server::client::Conn;

// Not every test file uses every helper (each compiles this module on its own).
#[allow(unused_imports)]
pub use tally_store::testing::{blocking, fresh_db, Kind};

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tally-cli-{}",
        tally_store::pg::unique_test_name(name)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A database with 40 stations (`stations.csv` in the directory), candidates cand0..cand2;
/// tokens (admin, official, observer of S000001).
pub fn setup(name: &str, kind: Kind) -> (PathBuf, String, [String; 3]) {
    let name = name.to_string();
    // On a thread of its own: the PostgreSQL client must not run inside the test's runtime.
    std::thread::spawn(move || setup_blocking(&name, kind))
        .join()
        .unwrap()
}

fn setup_blocking(name: &str, kind: Kind) -> (PathBuf, String, [String; 3]) {
    let dir = tmp(name);
    let csv = dir.join("stations.csv");
    std::fs::write(&csv, load_test::synthetic_registry_csv(40, 3)).unwrap();
    let db = fresh_db(kind, &dir, name);
    serve::init(&db, &csv.to_string_lossy(), None).unwrap();
    let admin = serve::users_add(&db, "admin", &[]).unwrap();
    let official = serve::users_add(&db, "official", &[]).unwrap();
    let observer = serve::users_add(&db, "observer", &["S000001".to_string()]).unwrap();
    (dir, db, [admin, official, observer])
}

/// Serves `db` in this process on a free port; returns `127.0.0.1:PORT`.
pub async fn start(db: &str) -> String {
    let (store, listener) = serve::bind(db, "127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(tally_server::serve(listener, store));
    addr
}

/// Asserts that the journal entry a receipt names is there, with the receipt's hash and version.
pub async fn assert_receipt_in_journal(c: &mut Conn, receipt: &serde_json::Value) {
    let seq = receipt["journal_seq"].as_i64().expect("journal_seq");
    let j = c
        .request(
            "GET",
            &format!("/api/v1/journal?from={seq}&limit=1"),
            &[],
            b"",
        )
        .await
        .expect("journal read")
        .json();
    let e = &j["entries"][0];
    assert_eq!(e["hash"], receipt["hash"], "journal entry {seq}");
    assert_eq!(e["version"], receipt["version"], "journal entry {seq}");
}

//! Shared test fixtures: a fresh database (SQLite file or PostgreSQL database) from a small
//! registry, an in-process server, and a minimal HTTP client ([`client`]).
//!
//! Every server test runs once per backend (`both!`). The PostgreSQL runs need a server:
//! `export TALLY_TEST_POSTGRES=$(scripts/postgres-for-tests)`; without it they print that they
//! were skipped, unless `TALLY_REQUIRE_POSTGRES=1` (as in CI), where that is a failure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use tally_model::{Rule, ValidationConfig};
use tally_store::model::{CandidateRec, RoundDef, StationInfo};
use tally_store::{DbTarget, Registry, Role, TallyStore};

// Not every test file uses every helper (each compiles this module on its own).
#[allow(unused_imports)]
pub use tally_store::testing::{blocking, fresh_db, Kind};

fn unique(name: &str) -> String {
    tally_store::pg::unique_test_name(name)
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tally-server-{}", unique(name)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A database with 40 stations, candidates cand0..cand2; tokens (admin, official, observer of
/// S000001).
pub fn setup(name: &str, kind: Kind) -> (PathBuf, String, [String; 3]) {
    let name = name.to_string();
    // On a thread of its own: the PostgreSQL client must not run inside the test's runtime.
    std::thread::spawn(move || setup_blocking(&name, kind))
        .join()
        .unwrap()
}

/// 40 stations S000000..S000039 in regions R0..R3 and districts D0..D15, candidates
/// cand0..cand2 (the registry `tally init` builds from the load generator's synthetic CSV).
pub fn registry() -> Registry {
    let candidates = (0..3)
        .map(|c| CandidateRec {
            id: format!("cand{c}"),
            name: format!("cand{c}"),
            colour: None,
        })
        .collect();
    Registry {
        election: "stations.csv".into(),
        rule: Rule::majority(),
        rounds: vec![RoundDef {
            number: 1,
            candidates,
            extra_lines: vec![],
            levels: vec!["region".into(), "district".into()],
        }],
        stations: (0..40u64)
            .map(|i| StationInfo {
                round: 1,
                station_id: format!("S{i:06}"),
                area: vec![format!("R{}", i % 4), format!("D{}", i % 16)],
                registered: Some(500 + (i * 37) % 1500),
            })
            .collect(),
    }
}

fn setup_blocking(name: &str, kind: Kind) -> (PathBuf, String, [String; 3]) {
    let dir = tmp(name);
    let db = fresh_db(kind, &dir, name);
    let target = DbTarget::parse(&db);
    tally_store::engine::init(&target, &registry()).unwrap();
    let add = |role, stations: &[String]| {
        tally_store::engine::add_user(&target, role, stations)
            .unwrap()
            .1
    };
    let admin = add(Role::Admin, &[]);
    let official = add(Role::Official, &[]);
    let observer = add(Role::Observer, &["S000001".to_string()]);
    (dir, db, [admin, official, observer])
}

/// Opens the store (off the runtime: it reads the whole history), binds a free port and serves
/// in the background; returns `127.0.0.1:PORT`.
pub async fn start(db: &str) -> String {
    start_with(db, tally_server::conn::Limits::default()).await
}

/// [`start`] under the given connection limits.
pub async fn start_with(db: &str, limits: tally_server::conn::Limits) -> String {
    let target = DbTarget::parse(db);
    let store = tokio::task::spawn_blocking(move || {
        TallyStore::open(&target, ValidationConfig::default()).expect("the store opens")
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(tally_server::serve_with(listener, Arc::new(store), limits));
    addr
}

/// Runs SQL on the database behind the store's back (tampering), off the async runtime.
pub fn raw_sql(db: &str, sql: &str) -> u64 {
    let (db, sql) = (db.to_string(), sql.to_string());
    blocking(move || match DbTarget::parse(&db) {
        DbTarget::Sqlite(p) => rusqlite::Connection::open(p)
            .unwrap()
            .execute(&sql, [])
            .unwrap() as u64,
        DbTarget::Postgres(url) => tally_store::pg::PgBackend::connect(&url)
            .unwrap()
            .execute_raw(&sql)
            .unwrap(),
    })
}

/// Asserts that the journal entry a receipt names is there, with the receipt's hash and version.
pub async fn assert_receipt_in_journal(
    c: &mut tally_server::client::Conn,
    receipt: &serde_json::Value,
) {
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

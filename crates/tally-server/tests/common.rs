//! Shared test fixtures: a fresh database from a small registry and an in-process server.
#![allow(dead_code)]

use std::path::PathBuf;
use tally_server::cli;

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tally-server-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A database with 40 stations, candidates cand0..cand2; tokens (admin, official, observer of S000001).
pub fn setup(name: &str) -> (PathBuf, PathBuf, [String; 3]) {
    let dir = tmp(name);
    let csv = dir.join("stations.csv");
    std::fs::write(&csv, tally_server::loadgen::synthetic_registry_csv(40, 3)).unwrap();
    let db = dir.join("t.db");
    cli::init(&db, &csv.to_string_lossy(), None).unwrap();
    let admin = cli::users_add(&db, "admin", &[]).unwrap();
    let official = cli::users_add(&db, "official", &[]).unwrap();
    let observer = cli::users_add(&db, "observer", &["S000001".to_string()]).unwrap();
    (dir, db, [admin, official, observer])
}

pub async fn start(db: &std::path::Path) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let db = db.to_path_buf();
    tokio::spawn(async move {
        let _ = cli::serve_async(&db, "127.0.0.1:0", move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    rx.await.unwrap().to_string()
}

//! Store tests, each on SQLite and on PostgreSQL: incremental totals equal a full count;
//! tampering is named by `verify`; two stores on one database (server replicas) agree.
//!
//! PostgreSQL runs need `TALLY_TEST_POSTGRES=$(scripts/postgres-for-tests)`; without it they
//! say they were skipped, unless `TALLY_REQUIRE_POSTGRES=1` (CI), where that is a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::channel;
use tally_model::{Rule, ValidationConfig};
use tally_store::model::{CandidateRec, RoundDef, StationInfo};
use tally_store::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// `$name(Kind)` once per backend, as `$name::sqlite` and `$name::postgres`
/// (skipped, saying so, without a PostgreSQL server; see `tally_store::pg::test_database`).
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Kind::Sqlite)
            }
            #[test]
            fn postgres() {
                match tally_store::pg::test_server() {
                    Some(_) => super::$name(super::Kind::Postgres),
                    None => super::skipped_on_postgres(),
                }
            }
        }
    };
}

fn skipped_on_postgres() {
    eprintln!("skipped on PostgreSQL: set TALLY_TEST_POSTGRES=$(scripts/postgres-for-tests)");
}

fn unique(name: &str) -> String {
    tally_store::pg::unique_test_name(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tally-store-{}", unique(name)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs SQL on the database behind the store's back (tampering).
fn raw_sql(db: &DbTarget, sql: &str) -> u64 {
    match db {
        DbTarget::Sqlite(p) => rusqlite::Connection::open(p)
            .unwrap()
            .execute(sql, [])
            .unwrap() as u64,
        DbTarget::Postgres(url) => tally_store::pg::PgBackend::connect(url)
            .unwrap()
            .execute_raw(sql)
            .unwrap(),
    }
}

fn registry() -> Registry {
    Registry {
        election: "Test".into(),
        rule: Rule::majority(),
        rounds: vec![RoundDef {
            number: 1,
            candidates: ["a", "b"]
                .iter()
                .map(|c| CandidateRec {
                    id: c.to_string(),
                    name: c.to_string(),
                    colour: None,
                })
                .collect(),
            extra_lines: vec![],
            levels: vec!["region".into()],
        }],
        stations: (0..10)
            .map(|i| StationInfo {
                round: 1,
                station_id: format!("S{i}"),
                area: vec![format!("R{}", i % 3)],
                registered: Some(1000),
            })
            .collect(),
    }
}

fn sheet(st: &str, a: u64, b: u64) -> ValidSheet {
    let mut votes = BTreeMap::new();
    votes.insert("a".to_string(), a);
    votes.insert("b".to_string(), b);
    ValidSheet {
        sheet: Sheet {
            station_id: st.into(),
            round: 1,
            registered: Some(1000),
            cast: Some(a + b + 10),
            invalid: Some(10),
            valid: Some(a + b),
            votes,
            extra: BTreeMap::new(),
        },
        warnings: vec![],
    }
}

fn submit(
    store: &TallyStore,
    user: &User,
    sheets: Vec<ValidSheet>,
    key: Option<&str>,
) -> Result<SubmitOutcome, StoreError> {
    let (tx, rx) = channel();
    store.submit(
        Submission {
            user: user.clone(),
            idempotency: key.map(|k| (k.to_string(), "h".to_string())),
            sheets,
        },
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
}

fn setup(name: &str, kind: Kind) -> (PathBuf, DbTarget, TallyStore, User) {
    let dir = tmp(name);
    let db = match kind {
        Kind::Sqlite => DbTarget::Sqlite(dir.join("t.db")),
        Kind::Postgres => DbTarget::Postgres(tally_store::pg::test_database(name)),
    };
    engine::init(&db, &registry()).unwrap();
    let (user, token) = engine::add_user(&db, Role::Official, &[]).unwrap();
    let store = TallyStore::open(&db, ValidationConfig::default()).unwrap();
    assert_eq!(
        store.authenticate(&token).unwrap().map(|u| u.id),
        Some(user.id)
    );
    assert!(store.authenticate("forged").unwrap().is_none());
    (dir, db, store, user)
}

both!(incremental_totals_equal_a_full_count_and_versions_are_kept);
fn incremental_totals_equal_a_full_count_and_versions_are_kept(kind: Kind) {
    let (_dir, db, store, user) = setup("incr", kind);
    for i in 0..30u64 {
        let st = format!("S{}", i % 10);
        submit(&store, &user, vec![sheet(&st, 100 + i, 200 + 2 * i)], None).unwrap();
    }
    assert!(store.live_matches_full_count());
    let rep = store.results(None, None, Some("region")).unwrap();
    assert_eq!(rep.rounds[0].progress.stations_counted, 10);
    let v = store.station("S3").unwrap();
    assert_eq!(v.versions.len(), 3, "corrections keep old versions");
    // Same numbers again: no new version.
    let again = submit(&store, &user, vec![sheet("S3", 123, 246)], None).unwrap();
    assert!(again.receipts[0].unchanged);
    assert_eq!(store.station("S3").unwrap().versions.len(), 3);
    // Idempotency: same key + different body hash -> conflict.
    submit(&store, &user, vec![sheet("S1", 1, 1)], Some("k1")).unwrap();
    let (tx, rx) = channel();
    store.submit(
        Submission {
            user: user.clone(),
            idempotency: Some(("k1".into(), "other".into())),
            sheets: vec![sheet("S1", 2, 2)],
        },
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    assert!(matches!(
        rx.recv().unwrap(),
        Err(StoreError::IdempotencyConflict(_))
    ));
    store.close();
    let r = verify_db(&db, &[]).unwrap();
    assert!(r.ok, "{:?}", r.problems);
    // Reopen: the live state is rebuilt from the database.
    let store = TallyStore::open(&db, ValidationConfig::default()).unwrap();
    assert!(store.live_matches_full_count());
    assert_eq!(store.station("S3").unwrap().versions.len(), 3);
}

both!(tampering_is_named_by_verify);
fn tampering_is_named_by_verify(kind: Kind) {
    let (dir, db, store, user) = setup("tamper", kind);
    for i in 0..10u64 {
        submit(&store, &user, vec![sheet(&format!("S{i}"), 300, 400)], None).unwrap();
    }
    store.close();
    drop(store);
    let out = dir.join("export");
    let r = export(&db, &out, false).unwrap();
    assert!(r.ok, "{:?}", r.problems);
    // The same folder again: refused (nothing overwritten) unless asked.
    let err = export(&db, &out, false).unwrap_err().to_string();
    assert!(
        err.contains("not empty") && err.contains("--replace"),
        "{err}"
    );
    assert!(export(&db, &out, true).unwrap().ok);
    assert!(verify_dir(&out, &[]).unwrap().ok);

    // Edit a stored sheet directly in the database.
    let n = raw_sql(
        &db,
        "UPDATE sheets SET body = replace(body, '\"a\":300', '\"a\":301') WHERE station_id = 'S4'",
    );
    assert_eq!(n, 1);
    // Delete a journal entry.
    assert_eq!(raw_sql(&db, "DELETE FROM journal WHERE seq = 5"), 1);
    let r = verify_db(&db, &[]).unwrap();
    assert!(!r.ok);
    let text: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.kind, p.detail))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("sheet_edited") && t.contains("station S4")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("journal_gap") && t.contains("entry 5")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("total_changed")),
        "{text:#?}"
    );

    // The export: change a total in results.json and remove a journal line.
    let res = std::fs::read_to_string(out.join("results.json")).unwrap();
    std::fs::write(
        out.join("results.json"),
        res.replacen("\"votes\": 3000", "\"votes\": 3001", 1),
    )
    .unwrap();
    let j = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let kept: Vec<&str> = j
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(out.join("journal.jsonl"), kept.join("\n") + "\n").unwrap();
    let r = verify_dir(&out, &[]).unwrap();
    let text: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.kind, p.detail))
        .collect();
    assert!(
        text.iter().any(|t| t.contains("results.json: its sha256")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("journal.jsonl: its sha256")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("journal_gap") && t.contains("entry 4")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("total_changed") && t.contains("stored 3001")),
        "{text:#?}"
    );
}

both!(a_corrupt_row_is_an_error_that_names_it);
/// A stored row that cannot be decoded is an error naming its table and key, never a default
/// value or a silently shorter list: in point reads, in `verify`, and when a store opens.
fn a_corrupt_row_is_an_error_that_names_it(kind: Kind) {
    let (_dir, db, store, user) = setup("corrupt", kind);
    for i in 0..3u64 {
        submit(&store, &user, vec![sheet(&format!("S{i}"), 300, 400)], None).unwrap();
    }
    let rec = store.station("S1").unwrap().versions[0].clone();
    let (id, seq) = (rec.sheet_id, rec.journal_seq);
    let sql = format!("UPDATE sheets SET warnings = 'not json' WHERE id = {id}");
    assert_eq!(raw_sql(&db, &sql), 1);
    let sql = format!("UPDATE journal SET body = '{{' WHERE seq = {seq}");
    assert_eq!(raw_sql(&db, &sql), 1);
    let names = |e: StoreError, table: &str, key: String| match e {
        StoreError::CorruptRow {
            table: t, key: k, ..
        } => assert_eq!((t, k), (table, key)),
        other => panic!("expected a corrupt {table} row, got: {other}"),
    };
    names(
        store.station("S1").unwrap_err(),
        "sheets",
        format!("id {id}"),
    );
    names(
        store.journal(1, 100).unwrap_err(),
        "journal",
        format!("seq {seq}"),
    );
    assert_eq!(store.station("S2").unwrap().versions.len(), 1);
    store.close();
    drop(store);

    let r = verify_db(&db, &[]).unwrap();
    assert!(!r.ok);
    let text: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.kind, p.detail))
        .collect();
    for row in [
        format!("table sheets (id {id})"),
        format!("table journal (seq {seq})"),
    ] {
        assert!(
            text.iter()
                .any(|t| t.starts_with("unreadable") && t.contains(&row)),
            "{row}: {text:#?}"
        );
    }
    // A store is never built on a partial history.
    match TallyStore::open(&db, ValidationConfig::default()) {
        Ok(_) => panic!("a store opened on a corrupt history"),
        Err(e) => assert!(matches!(e, StoreError::CorruptRow { .. }), "{e}"),
    }
}

both!(two_stores_on_one_database_agree);
/// Two stores on one database, as two server replicas behind a load balancer: corrections sent
/// to either get consecutive versions, an idempotency key used on one is honoured by the
/// other, each sees the other's sheets, and the chain verifies.
fn two_stores_on_one_database_agree(kind: Kind) {
    let (_dir, db, a, user) = setup("replicas", kind);
    let b = TallyStore::open(&db, ValidationConfig::default()).unwrap();
    let mut versions = Vec::new();
    for i in 0..12u64 {
        let store = if i % 2 == 0 { &a } else { &b };
        let out = submit(store, &user, vec![sheet("S7", 100 + i, 200)], None).unwrap();
        versions.push(out.receipts[0].version);
        submit(
            store,
            &user,
            vec![sheet(&format!("S{}", i % 5), 50 + i, 60)],
            None,
        )
        .unwrap();
    }
    assert_eq!(versions, (1..=12).collect::<Vec<u32>>(), "one version line");
    let first = submit(&a, &user, vec![sheet("S9", 1, 2)], Some("k")).unwrap();
    let again = submit(&b, &user, vec![sheet("S9", 1, 2)], Some("k")).unwrap();
    assert!(again.replayed);
    assert_eq!(first.receipts, again.receipts);
    a.catch_up().unwrap();
    b.catch_up().unwrap();
    let ra = serde_json::to_value(a.results(None, None, Some("region")).unwrap()).unwrap();
    let rb = serde_json::to_value(b.results(None, None, Some("region")).unwrap()).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(ra["rounds"][0]["progress"]["stations_counted"], 7);
    assert!(a.live_matches_full_count() && b.live_matches_full_count());
    assert_eq!(a.progress().journal_seq, b.progress().journal_seq);
    assert_eq!(b.station("S7").unwrap().versions.len(), 12);
    a.close();
    b.close();
    let r = verify_db(&db, &[]).unwrap();
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(r.journal_entries, 1 + 12 + 12 + 1);
}

both!(a_published_head_catches_a_rewritten_history);
/// A consistent rewrite of the whole chain passes the chain check, which is why heads are
/// published: the anchor taken before the rewrite names it.
fn a_published_head_catches_a_rewritten_history(kind: Kind) {
    let (_dir, db, store, user) = setup("anchor", kind);
    for i in 0..5u64 {
        submit(&store, &user, vec![sheet(&format!("S{i}"), 300, 400)], None).unwrap();
    }
    let p = store.progress();
    assert_eq!(p.journal_seq, 6);
    let anchor: Anchor = format!("{}:{}", p.journal_seq, p.journal_head)
        .parse()
        .unwrap();
    store.close();
    drop(store);
    assert!(verify_db(&db, std::slice::from_ref(&anchor)).unwrap().ok);
    assert!("6:abc".parse::<Anchor>().is_err());

    // Rewrite: change the time of entry 1 and re-chain every entry after it.
    let mut backend = db.connect(false).unwrap();
    let entries: Vec<JournalEntry> = backend
        .journal(1, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().1)
        .collect();
    drop(backend);
    let mut prev = model::GENESIS.to_string();
    for mut e in entries {
        if e.body.seq == 1 {
            e.body.at += 1;
        }
        let hash = e.body.chain(&prev);
        let body = String::from_utf8(e.body.canonical()).unwrap();
        assert!(!body.contains('\''));
        raw_sql(
            &db,
            &format!(
                "UPDATE journal SET body = '{body}', prev = '{prev}', hash = '{hash}' WHERE seq = {}",
                e.body.seq
            ),
        );
        prev = hash;
    }
    let r = verify_db(&db, &[]).unwrap();
    assert!(
        r.ok,
        "a consistent rewrite passes the chain check: {:?}",
        r.problems
    );
    let r = verify_db(&db, &[anchor]).unwrap();
    assert!(!r.ok);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].kind, "anchor_mismatch");
    assert!(r.problems[0].detail.contains("journal entry 6"));
}

/// PostgreSQL only (a SQLite file has no connection to lose): every connection of the stores is
/// cut, as by a database restart or failover; the writer refuses what it cannot store (no
/// receipt) and reconnects, the reader and the follower reconnect, and nothing acknowledged is
/// missing.
#[test]
fn a_lost_postgresql_connection_is_reestablished() {
    if tally_store::pg::test_server().is_none() {
        skipped_on_postgres();
        return;
    }
    let (_dir, db, a, user) = setup("lost", Kind::Postgres);
    let b = TallyStore::open(&db, ValidationConfig::default()).unwrap();
    let first = submit(&a, &user, vec![sheet("S1", 10, 20)], None).unwrap();
    let killed = raw_sql(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    eprintln!("terminated {killed} connection(s)");
    // A client retries until the writer is back; a refused attempt carries no receipt.
    let mut refused = 0;
    let second = loop {
        match submit(&a, &user, vec![sheet("S2", 30, 40)], Some("after-cut")) {
            Ok(out) => break out,
            Err(e) => {
                assert!(matches!(e, StoreError::Unreachable(_)), "{e}");
                refused += 1;
                assert!(refused < 50, "the writer did not come back");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    eprintln!("{refused} attempt(s) refused while reconnecting");
    assert_eq!(
        second.receipts[0].journal_seq,
        first.receipts[0].journal_seq + 1
    );
    // The reader of each store reconnects for point look-ups.
    assert_eq!(a.station("S2").unwrap().versions.len(), 1);
    assert_eq!(b.station("S1").unwrap().versions.len(), 1);
    // B's follower reconnects and brings in A's sheet written after the cut.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.progress().journal_seq < second.receipts[0].journal_seq {
        assert!(
            std::time::Instant::now() < deadline,
            "B's follower did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(b.live_matches_full_count());
    a.close();
    b.close();
    assert!(verify_db(&db, &[]).unwrap().ok);
}

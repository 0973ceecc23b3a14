//! The PostgreSQL backend, for deployments that run several server replicas on one database.
//!
//! - Writers exclude each other with a transaction-scoped advisory lock
//!   ([`JOURNAL_LOCK`]): the journal is one chain, so its appends are serialised across replicas;
//!   each replica catches up from the journal under the lock before deciding versions and ids.
//! - `synchronous_commit = on` for every session: `COMMIT` returns once the WAL is flushed.
//! - Each write transaction sends `NOTIFY tally_journal` (delivered at commit), so the other
//!   replicas' followers catch up at once instead of at their next poll.
//! - A batch is persisted with one `INSERT ... SELECT FROM UNNEST(arrays)` per table, so a group
//!   commit of hundreds of sheets costs a handful of round trips.

use crate::backend::*;
use crate::model::*;
use crate::StoreError;
use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::time::Duration;

/// Key of the advisory lock that serialises journal appends ("tally" in ASCII).
pub const JOURNAL_LOCK: i64 = 0x74_61_6c_6c_79;
/// The channel writers notify after each commit.
const CHANNEL: &str = "tally_journal";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stations (
    round BIGINT NOT NULL, station_id TEXT NOT NULL, area TEXT NOT NULL, registered BIGINT,
    PRIMARY KEY (round, station_id));
CREATE TABLE IF NOT EXISTS users (
    id BIGINT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    stations TEXT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sheets (
    id BIGINT PRIMARY KEY, round BIGINT NOT NULL, station_id TEXT NOT NULL,
    source TEXT NOT NULL, version BIGINT NOT NULL, user_id BIGINT NOT NULL,
    journal_seq BIGINT NOT NULL, body TEXT NOT NULL, warnings TEXT NOT NULL, hash TEXT NOT NULL,
    UNIQUE (round, station_id, source, version));
CREATE INDEX IF NOT EXISTS sheets_station ON sheets (station_id);
CREATE INDEX IF NOT EXISTS sheets_seq ON sheets (journal_seq);
CREATE TABLE IF NOT EXISTS journal (
    seq BIGINT PRIMARY KEY, body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, key TEXT NOT NULL,
    body_hash TEXT NOT NULL, response TEXT NOT NULL, UNIQUE (user_id, key));
CREATE TABLE IF NOT EXISTS round_totals (round BIGINT PRIMARY KEY, totals TEXT NOT NULL);
";

/// A failed statement, by cause. SQLSTATE classes 08 (connection), 57 (operator intervention:
/// shutdown, restart) and 53 (insufficient resources) mean the database cannot be reached now;
/// lock and serialisation conflicts mean it is busy; an error without SQLSTATE is a closed or
/// broken connection when the client says so or the cause is I/O.
fn db_err(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => {
            let code = d.code().code();
            let m = format!("{} ({code})", d.message());
            match code {
                c if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") => {
                    StoreError::Unreachable(m)
                }
                "40001" | "40P01" | "55P03" => StoreError::Busy(m),
                _ => StoreError::Db(m),
            }
        }
        None => {
            let io = std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            if e.is_closed() || io {
                StoreError::Unreachable(e.to_string())
            } else {
                StoreError::Db(e.to_string())
            }
        }
    }
}

pub struct PgBackend {
    client: Client,
    listening: bool,
    /// Inside a transaction begun by `begin_write` or `begin_read`.
    in_tx: bool,
    /// Prepared once per connection: each saves a round trip per batch.
    write_stmts: Option<WriteStatements>,
}

struct WriteStatements {
    heads: Statement,
    batch: Statement,
}

const HEADS_SQL: &str = "SELECT (SELECT COALESCE(MAX(seq), 0) FROM journal)::bigint,
        (SELECT hash FROM journal ORDER BY seq DESC LIMIT 1),
        (SELECT COALESCE(MAX(id), 0) FROM sheets)::bigint,
        (SELECT COALESCE(MAX(id), 0) FROM users)::bigint,
        (SELECT COALESCE(MAX(id), 0) FROM idempotency)::bigint";

/// The sheets, journal entries, idempotency records and round totals of a batch, and the
/// notification, in one statement (one round trip): every data-modifying CTE runs.
const BATCH_SQL: &str = "
WITH s AS (
  INSERT INTO sheets (id, round, station_id, source, version, user_id, journal_seq, body, warnings, hash)
  SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                       $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[])
  RETURNING 1),
j AS (
  INSERT INTO journal (seq, body, prev, hash)
  SELECT * FROM UNNEST($11::bigint[], $12::text[], $13::text[], $14::text[])
  RETURNING 1),
i AS (
  INSERT INTO idempotency (id, user_id, key, body_hash, response)
  SELECT * FROM UNNEST($15::bigint[], $16::bigint[], $17::text[], $18::text[], $19::text[])
  RETURNING 1),
t AS (
  INSERT INTO round_totals (round, totals)
  SELECT * FROM UNNEST($20::bigint[], $21::text[])
  ON CONFLICT (round) DO UPDATE SET totals = EXCLUDED.totals
  RETURNING 1)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM j), (SELECT count(*) FROM i),
       (SELECT count(*) FROM t),
       CASE WHEN cardinality($11::bigint[]) > 0 THEN pg_notify('tally_journal', $22::text) END";

const SHEET_COLUMNS: &str = "id, source, version, user_id, journal_seq, body, warnings, hash";

fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(db_err)
}

/// Column `i` of a row of `table`; a value that does not convert is a corrupt row, named by
/// `key` (the row is already fetched: no I/O happens here).
fn col<'a, T: postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
    table: &'static str,
    key: &dyn std::fmt::Display,
) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| StoreError::corrupt(table, key, e))
}

fn sheet_from_row(r: &Row) -> Result<SheetRecord, StoreError> {
    let t = "sheets";
    let id: i64 = col(r, 0, t, &"an id that is not an integer")?;
    let key = format!("id {id}");
    let body: String = col(r, 5, t, &key)?;
    let warnings: String = col(r, 6, t, &key)?;
    let version: i64 = col(r, 2, t, &key)?;
    Ok(SheetRecord {
        sheet_id: id,
        source: col(r, 1, t, &key)?,
        version: u32::try_from(version)
            .map_err(|_| StoreError::corrupt(t, &key, format!("version {version}")))?,
        user_id: col(r, 3, t, &key)?,
        journal_seq: col(r, 4, t, &key)?,
        sheet: json_col(&body, "body", t, &key)?,
        warnings: json_col(&warnings, "warnings", t, &key)?,
        hash: col(r, 7, t, &key)?,
    })
}

fn journal_from_row(r: &Row) -> Result<(i64, JournalEntry), StoreError> {
    let t = "journal";
    let seq: i64 = col(r, 0, t, &"a seq that is not an integer")?;
    let key = format!("seq {seq}");
    let body: String = col(r, 1, t, &key)?;
    Ok((
        seq,
        JournalEntry {
            body: json_col(&body, "body", t, &key)?,
            prev: col(r, 2, t, &key)?,
            hash: col(r, 3, t, &key)?,
        },
    ))
}

/// `(token hash, user)` of a `users` row (`id, role, token_hash, stations, revoked`); an
/// unknown role or unreadable stations is a corrupt row.
fn user_from_row(r: &Row) -> Result<(String, User), StoreError> {
    let t = "users";
    let id: i64 = col(r, 0, t, &"an id that is not an integer")?;
    let key = format!("id {id}");
    let role: String = col(r, 1, t, &key)?;
    let stations: String = col(r, 3, t, &key)?;
    let revoked: i64 = col(r, 4, t, &key)?;
    Ok((
        col(r, 2, t, &key)?,
        User {
            id,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::corrupt(t, &key, format!("unknown role '{role}'")))?,
            stations: json_col(&stations, "stations", t, &key)?,
            revoked: revoked != 0,
        },
    ))
}

/// A PostgreSQL URL with its password hidden, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PgBackend {
    pub fn connect(url: &str) -> Result<PgBackend, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(|e| {
            StoreError::Unreachable(format!("cannot connect to {}: {e}", redact_url(url)))
        })?;
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(db_err)?;
        Ok(PgBackend {
            client,
            listening: false,
            in_tx: false,
            write_stmts: None,
        })
    }

    /// Runs SQL as is (for tests that tamper with the database).
    #[cfg(any(test, feature = "test-support"))]
    pub fn execute_raw(&mut self, sql: &str) -> Result<u64, StoreError> {
        self.client.execute(sql, &[]).map_err(db_err)
    }
}

impl Backend for PgBackend {
    fn init(&mut self, reg: &Registry) -> Result<(), StoreError> {
        self.client.batch_execute(SCHEMA).map_err(db_err)?;
        let mut tx = self.client.transaction().map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])
            .map_err(db_err)?;
        let exists = tx
            .query_opt("SELECT value FROM meta WHERE key = 'registry'", &[])
            .map_err(db_err)?;
        if exists.is_some() {
            return Err(StoreError::Invalid(
                "the database is already initialised".into(),
            ));
        }
        let json = to_json(reg)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('registry', $1)",
            &[&json],
        )
        .map_err(db_err)?;
        let rounds: Vec<i64> = reg.stations.iter().map(|s| i64::from(s.round)).collect();
        let ids: Vec<&str> = reg.stations.iter().map(|s| s.station_id.as_str()).collect();
        let areas: Vec<String> = reg
            .stations
            .iter()
            .map(|s| to_json(&s.area))
            .collect::<Result<_, _>>()?;
        let registered: Vec<Option<i64>> = reg
            .stations
            .iter()
            .map(|s| s.registered.map(|v| v as i64))
            .collect();
        tx.execute(
            "INSERT INTO stations (round, station_id, area, registered)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT DO NOTHING",
            &[&rounds, &ids, &areas, &registered],
        )
        .map_err(db_err)?;
        for r in &reg.rounds {
            tx.execute(
                "INSERT INTO round_totals (round, totals) VALUES ($1, 'null')",
                &[&i64::from(r.number)],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        // CREATE ... IF NOT EXISTS races with a replica doing the same; the lock orders them.
        let mut tx = self.client.transaction().map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])
            .map_err(db_err)?;
        tx.batch_execute(SCHEMA).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    fn registry(&mut self) -> Result<Registry, StoreError> {
        let row = self
            .client
            .query_opt("SELECT value FROM meta WHERE key = 'registry'", &[])
            .map_err(|e| StoreError::Invalid(format!("not a tally database: {e}")))?;
        let json: String = match row {
            Some(r) => get(&r, 0)?,
            None => {
                return Err(StoreError::Invalid(
                    "the database has no registry: run init".into(),
                ))
            }
        };
        json_col(&json, "value", "meta", &"key registry")
    }

    fn users(&mut self) -> Result<Vec<(String, User)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, role, token_hash, stations, revoked FROM users",
                &[],
            )
            .map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            out.push(user_from_row(r)?);
        }
        Ok(out)
    }

    fn user_by_token(&mut self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT id, role, token_hash, stations, revoked FROM users WHERE token_hash = $1",
                &[&token_hash],
            )
            .map_err(db_err)?;
        match row {
            Some(r) => Ok(Some(user_from_row(&r)?.1)),
            None => Ok(None),
        }
    }

    fn sheets(&mut self, station: Option<&str>) -> Result<SheetRows, StoreError> {
        let rows = match station {
            Some(id) => self.client.query(
                &format!("SELECT {SHEET_COLUMNS} FROM sheets WHERE station_id = $1 ORDER BY id"),
                &[&id],
            ),
            None => self.client.query(
                &format!("SELECT {SHEET_COLUMNS} FROM sheets ORDER BY id"),
                &[],
            ),
        }
        .map_err(db_err)?;
        Ok(rows.iter().map(sheet_from_row).collect())
    }

    fn journal(&mut self, from: i64, limit: i64) -> Result<JournalRows, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT seq, body, prev, hash FROM journal WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&from, &limit],
            )
            .map_err(db_err)?;
        Ok(rows.iter().map(journal_from_row).collect())
    }

    fn round_totals(&mut self) -> Result<Vec<(u8, String)>, StoreError> {
        let rows = self
            .client
            .query("SELECT round, totals FROM round_totals ORDER BY round", &[])
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let t = "round_totals";
                let round: i64 = col(r, 0, t, &"a round that is not an integer")?;
                let key = format!("round {round}");
                let round = u8::try_from(round)
                    .map_err(|_| StoreError::corrupt(t, &key, "not a round number"))?;
                Ok((round, col(r, 1, t, &key)?))
            })
            .collect()
    }

    fn delta(&mut self, after: Cursor) -> Result<Delta, StoreError> {
        // The three reads must see one snapshot, so the sheets match the journal entries: inside
        // a write transaction the lock gives that; otherwise a read-only snapshot.
        let own = !self.in_tx;
        if own {
            self.begin_read()?;
        }
        let read = (|| {
            let journal = self
                .client
                .query(
                    "SELECT seq, body, prev, hash FROM journal WHERE seq > $1 ORDER BY seq",
                    &[&after.seq],
                )
                .map_err(db_err)?;
            let sheet_rows = self
                .client
                .query(
                    &format!(
                        "SELECT {SHEET_COLUMNS} FROM sheets WHERE journal_seq > $1 ORDER BY id"
                    ),
                    &[&after.seq],
                )
                .map_err(db_err)?;
            let idem_rows = self
                .client
                .query(
                    "SELECT id, user_id, key, body_hash, response FROM idempotency WHERE id > $1 ORDER BY id",
                    &[&after.idem],
                )
                .map_err(db_err)?;
            Ok((journal, sheet_rows, idem_rows))
        })();
        if own {
            self.end_read();
        }
        let (journal, sheet_rows, idem_rows) = read?;
        let mut sheets: HashMap<i64, SheetRecord> = HashMap::new();
        for r in &sheet_rows {
            let rec = sheet_from_row(r)?;
            sheets.insert(rec.journal_seq, rec);
        }
        let mut entries = Vec::with_capacity(journal.len());
        for r in &journal {
            let (_, e) = journal_from_row(r)?;
            let sheet = sheets.remove(&e.body.seq);
            entries.push((e, sheet));
        }
        let idem = idem_rows
            .iter()
            .map(|r| {
                let t = "idempotency";
                let id: i64 = col(r, 0, t, &"an id that is not an integer")?;
                let key = format!("id {id}");
                Ok(IdemRow {
                    id,
                    user_id: col(r, 1, t, &key)?,
                    key: col(r, 2, t, &key)?,
                    body_hash: col(r, 3, t, &key)?,
                    response: col(r, 4, t, &key)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Delta { entries, idem })
    }

    fn begin_write(&mut self) -> Result<Heads, StoreError> {
        if self.write_stmts.is_none() {
            let heads = self.client.prepare(HEADS_SQL).map_err(db_err)?;
            let batch = self.client.prepare(BATCH_SQL).map_err(db_err)?;
            self.write_stmts = Some(WriteStatements { heads, batch });
        }
        // BEGIN and the lock in one round trip; the heads are read once the lock is held.
        self.client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({JOURNAL_LOCK})"
            ))
            .map_err(db_err)?;
        self.in_tx = true;
        let heads = match &self.write_stmts {
            Some(st) => self.client.query_one(&st.heads, &[]).map_err(db_err),
            None => Err(StoreError::Db("statements not prepared".into())),
        }
        .and_then(|r| {
            Ok(Heads {
                seq: get(&r, 0)?,
                hash: get::<Option<String>>(&r, 1)?.unwrap_or_else(|| GENESIS.to_string()),
                sheet_id: get(&r, 2)?,
                user_id: get(&r, 3)?,
                idem_id: get(&r, 4)?,
            })
        });
        if heads.is_err() {
            self.rollback();
        }
        heads
    }

    fn persist(&mut self, w: &BatchWrite) -> Result<(), StoreError> {
        let s = &w.sheets;
        let ids: Vec<i64> = s.iter().map(|x| x.sheet_id).collect();
        let rounds: Vec<i64> = s.iter().map(|x| i64::from(x.sheet.round)).collect();
        let stations: Vec<&str> = s.iter().map(|x| x.sheet.station_id.as_str()).collect();
        let sources: Vec<&str> = s.iter().map(|x| x.source.as_str()).collect();
        let versions: Vec<i64> = s.iter().map(|x| i64::from(x.version)).collect();
        let users: Vec<i64> = s.iter().map(|x| x.user_id).collect();
        let seqs: Vec<i64> = s.iter().map(|x| x.journal_seq).collect();
        let bodies: Vec<String> = s
            .iter()
            .map(|x| to_json(&x.sheet))
            .collect::<Result<_, _>>()?;
        let warnings: Vec<String> = s
            .iter()
            .map(|x| to_json(&x.warnings))
            .collect::<Result<_, _>>()?;
        let hashes: Vec<&str> = s.iter().map(|x| x.hash.as_str()).collect();
        let j = &w.journal;
        let j_seqs: Vec<i64> = j.iter().map(|e| e.body.seq).collect();
        let j_bodies: Vec<String> = j
            .iter()
            .map(|e| e.body.canonical_text())
            .collect::<Result<_, _>>()?;
        let j_prevs: Vec<&str> = j.iter().map(|e| e.prev.as_str()).collect();
        let j_hashes: Vec<&str> = j.iter().map(|e| e.hash.as_str()).collect();
        let i = &w.idem;
        let i_ids: Vec<i64> = i.iter().map(|x| x.id).collect();
        let i_users: Vec<i64> = i.iter().map(|x| x.user_id).collect();
        let i_keys: Vec<&str> = i.iter().map(|x| x.key.as_str()).collect();
        let i_hashes: Vec<&str> = i.iter().map(|x| x.body_hash.as_str()).collect();
        let i_responses: Vec<&str> = i.iter().map(|x| x.response.as_str()).collect();
        let t_rounds: Vec<i64> = w.round_totals.iter().map(|(r, _)| i64::from(*r)).collect();
        let t_json: Vec<&str> = w.round_totals.iter().map(|(_, t)| t.as_str()).collect();
        let Some(st) = &self.write_stmts else {
            return Err(StoreError::Db("statements not prepared".into()));
        };
        let row = self
            .client
            .query_one(
                &st.batch,
                &[
                    &ids,
                    &rounds,
                    &stations,
                    &sources,
                    &versions,
                    &users,
                    &seqs,
                    &bodies,
                    &warnings,
                    &hashes,
                    &j_seqs,
                    &j_bodies,
                    &j_prevs,
                    &j_hashes,
                    &i_ids,
                    &i_users,
                    &i_keys,
                    &i_hashes,
                    &i_responses,
                    &t_rounds,
                    &t_json,
                    &w.origin,
                ],
            )
            .map_err(db_err)?;
        let written: Vec<i64> = (0..4).map(|k| get(&row, k)).collect::<Result<_, _>>()?;
        let expected = [s.len(), j.len(), i.len(), w.round_totals.len()];
        if written.iter().zip(expected).any(|(a, b)| *a != b as i64) {
            return Err(StoreError::Db(format!(
                "batch wrote {written:?} rows, expected {expected:?}"
            )));
        }
        for u in &w.users {
            self.client
                .execute(
                    "INSERT INTO users (id, role, token_hash, stations) VALUES ($1, $2, $3, $4)",
                    &[&u.id, &u.role, &u.token_hash, &u.stations],
                )
                .map_err(db_err)?;
        }
        for id in &w.revoked {
            self.client
                .execute("UPDATE users SET revoked = 1 WHERE id = $1", &[id])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.in_tx = false;
        self.client.batch_execute("COMMIT").map_err(db_err)
    }

    fn rollback(&mut self) {
        self.in_tx = false;
        let _ = self.client.batch_execute("ROLLBACK");
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(db_err)?;
        self.in_tx = true;
        Ok(())
    }

    fn end_read(&mut self) {
        self.in_tx = false;
        let _ = self.client.batch_execute("COMMIT");
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    fn wait_for_change(&mut self, timeout: Duration, own_origin: &str) {
        if !self.listening {
            if self
                .client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .is_err()
            {
                std::thread::sleep(timeout);
                return;
            }
            self.listening = true;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let got = self.client.notifications().timeout_iter(left).next();
            match got {
                // Our own writer already published its batch.
                Ok(Some(note)) if note.payload() == own_origin => continue,
                Ok(Some(_)) => {
                    // Drain what else arrived: one catch-up serves them all.
                    let mut n = self.client.notifications();
                    let mut rest = n.iter();
                    while let Ok(Some(_)) = rest.next() {}
                    return;
                }
                _ => return,
            }
        }
    }
}

/// Creates an empty database `name` on the server of `base_url` and returns its URL (used by
/// the test suite and benchmarks to get a fresh database per run).
pub fn create_database(base_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Invalid(format!(
            "database name '{name}': use letters, digits and _"
        )));
    }
    PgBackend::connect(base_url)?
        .client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .map_err(db_err)?;
    // Same server and credentials, other database: replace the path of the URL.
    let (head, query) = match base_url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base_url, None),
    };
    let authority_end = head
        .find("://")
        .and_then(|s| head[s + 3..].find('/').map(|i| s + 3 + i))
        .unwrap_or(head.len());
    let mut url = format!("{}/{name}", &head[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// For the test suites of this crate, the server and the command line: the base URL of the
/// server named by `TALLY_TEST_POSTGRES`, or `None` (the caller says the PostgreSQL run is
/// skipped: library code does not print). With `TALLY_REQUIRE_POSTGRES=1` (CI) a missing server
/// is a panic, so a test cannot pass by skipping.
#[cfg(any(test, feature = "test-support"))]
pub fn test_server() -> Option<String> {
    match std::env::var("TALLY_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            assert!(
                std::env::var("TALLY_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TALLY_REQUIRE_POSTGRES=1 but TALLY_TEST_POSTGRES is not set"
            );
            None
        }
    }
}

/// `name` made unique by the process id and the clock (test databases and directories).
#[cfg(any(test, feature = "test-support"))]
pub fn unique_test_name(name: &str) -> String {
    format!(
        "{name}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A fresh database on the [`test_server`], named after `name`, the process and the clock.
/// Panics when there is no test server or it refuses (tests only).
#[cfg(any(test, feature = "test-support"))]
pub fn test_database(name: &str) -> String {
    let Some(base) = test_server() else {
        panic!("no PostgreSQL test server: set TALLY_TEST_POSTGRES");
    };
    match create_database(&base, &unique_test_name(&format!("t_{name}"))) {
        Ok(url) => url,
        Err(e) => panic!("TALLY_TEST_POSTGRES={base}: {e}"),
    }
}

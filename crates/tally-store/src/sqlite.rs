//! The SQLite backend: one file, WAL mode, `synchronous=FULL` (a commit returns once it is on
//! disk), `BEGIN IMMEDIATE` as the write lock (so a `tally users add` from the command line and a
//! running server never interleave journal entries).

use crate::backend::*;
use crate::model::*;
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stations (
    round INTEGER NOT NULL, station_id TEXT NOT NULL, area TEXT NOT NULL, registered INTEGER,
    PRIMARY KEY (round, station_id));
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    stations TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sheets (
    id INTEGER PRIMARY KEY, round INTEGER NOT NULL, station_id TEXT NOT NULL,
    source TEXT NOT NULL, version INTEGER NOT NULL, user_id INTEGER NOT NULL,
    journal_seq INTEGER NOT NULL, body TEXT NOT NULL, warnings TEXT NOT NULL, hash TEXT NOT NULL,
    UNIQUE (round, station_id, source, version));
CREATE INDEX IF NOT EXISTS sheets_station ON sheets (station_id);
CREATE INDEX IF NOT EXISTS sheets_seq ON sheets (journal_seq);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, key TEXT NOT NULL,
    body_hash TEXT NOT NULL, response TEXT NOT NULL, UNIQUE (user_id, key));
CREATE TABLE IF NOT EXISTS round_totals (round INTEGER PRIMARY KEY, totals TEXT NOT NULL);
";

/// A failed statement, by cause: busy, unreachable, I/O, or any other database error.
fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Busy(e.to_string()),
        Some(C::CannotOpen) => StoreError::Unreachable(e.to_string()),
        Some(C::SystemIoFailure | C::DiskFull) => StoreError::Io(e.to_string()),
        _ => StoreError::Db(e.to_string()),
    }
}

/// Column `i` of a row of `table`; a value of the wrong type is a corrupt row, named by `key`
/// (reading a fetched row does no I/O, so every error here is the row's).
fn col<T: rusqlite::types::FromSql>(
    r: &rusqlite::Row<'_>,
    i: usize,
    table: &'static str,
    key: &dyn std::fmt::Display,
) -> Result<T, StoreError> {
    r.get(i).map_err(|e| StoreError::corrupt(table, key, e))
}

pub struct SqliteBackend {
    conn: Connection,
}

/// Columns of `sheets` in the order [`sheet_from_row`] reads them.
const SHEET_COLUMNS: &str = "id, source, version, user_id, journal_seq, body, warnings, hash";

fn sheet_from_row(r: &rusqlite::Row<'_>) -> Result<SheetRecord, StoreError> {
    let t = "sheets";
    let id: i64 = col(r, 0, t, &"an id that is not an integer")?;
    let key = format!("id {id}");
    let body: String = col(r, 5, t, &key)?;
    let warnings: String = col(r, 6, t, &key)?;
    Ok(SheetRecord {
        sheet_id: id,
        source: col(r, 1, t, &key)?,
        version: col(r, 2, t, &key)?,
        user_id: col(r, 3, t, &key)?,
        journal_seq: col(r, 4, t, &key)?,
        sheet: json_col(&body, "body", t, &key)?,
        warnings: json_col(&warnings, "warnings", t, &key)?,
        hash: col(r, 7, t, &key)?,
    })
}

fn journal_from_row(r: &rusqlite::Row<'_>) -> Result<(i64, JournalEntry), StoreError> {
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

/// A user from its columns; an unknown role or unreadable stations is a corrupt row.
fn user_from_row(
    hash: String,
    id: i64,
    role: &str,
    stations: &str,
    revoked: i64,
) -> Result<(String, User), StoreError> {
    let key = format!("id {id}");
    let role = Role::parse(role)
        .ok_or_else(|| StoreError::corrupt("users", &key, format!("unknown role '{role}'")))?;
    Ok((
        hash,
        User {
            id,
            role,
            stations: json_col(stations, "stations", "users", &key)?,
            revoked: revoked != 0,
        },
    ))
}

type UserColumns = (i64, String, String, String, i64);

/// `id, role, token_hash, stations, revoked` of a `users` row.
fn user_columns(r: &rusqlite::Row<'_>) -> Result<UserColumns, StoreError> {
    let t = "users";
    let id: i64 = col(r, 0, t, &"an id that is not an integer")?;
    let key = format!("id {id}");
    Ok((
        id,
        col(r, 1, t, &key)?,
        col(r, 2, t, &key)?,
        col(r, 3, t, &key)?,
        col(r, 4, t, &key)?,
    ))
}

impl SqliteBackend {
    /// Opens (or creates) the file with the durability settings.
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        Ok(SqliteBackend { conn })
    }
}

impl Backend for SqliteBackend {
    fn init(&mut self, reg: &Registry) -> Result<(), StoreError> {
        self.conn.execute_batch(SCHEMA).map_err(db_err)?;
        let tx = self.conn.transaction().map_err(db_err)?;
        let exists: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key='registry'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        if exists.is_some() {
            return Err(StoreError::Invalid(
                "the database is already initialised".into(),
            ));
        }
        let json = to_json(reg)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('registry', ?1)",
            [json],
        )
        .map_err(db_err)?;
        {
            let mut st = tx
                .prepare("INSERT OR IGNORE INTO stations (round, station_id, area, registered) VALUES (?1, ?2, ?3, ?4)")
                .map_err(db_err)?;
            for s in &reg.stations {
                let area = to_json(&s.area)?;
                st.execute(params![
                    s.round,
                    s.station_id,
                    area,
                    s.registered.map(|v| v as i64)
                ])
                .map_err(db_err)?;
            }
        }
        for r in &reg.rounds {
            tx.execute(
                "INSERT INTO round_totals (round, totals) VALUES (?1, 'null')",
                params![r.number],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(SCHEMA).map_err(db_err)
    }

    fn registry(&mut self) -> Result<Registry, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='registry'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| StoreError::Invalid(format!("not a tally database: {e}")))?;
        let json = json
            .ok_or_else(|| StoreError::Invalid("the database has no registry: run init".into()))?;
        json_col(&json, "value", "meta", &"key registry")
    }

    fn users(&mut self) -> Result<Vec<(String, User)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, role, token_hash, stations, revoked FROM users")
            .map_err(db_err)?;
        let rows = st.query_map([], |r| Ok(user_columns(r))).map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, role, hash, stations, revoked) = row.map_err(db_err)??;
            out.push(user_from_row(hash, id, &role, &stations, revoked)?);
        }
        Ok(out)
    }

    fn user_by_token(&mut self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, role, token_hash, stations, revoked FROM users WHERE token_hash = ?1",
            )
            .map_err(db_err)?
            .query_row([token_hash], |r| Ok(user_columns(r)))
            .optional()
            .map_err(db_err)?;
        match row {
            None => Ok(None),
            Some(cols) => {
                let (id, role, hash, stations, revoked) = cols?;
                Ok(Some(user_from_row(hash, id, &role, &stations, revoked)?.1))
            }
        }
    }

    fn sheets(&mut self, station: Option<&str>) -> Result<SheetRows, StoreError> {
        let (sql, args): (String, Vec<&str>) = match station {
            Some(id) => (
                format!("SELECT {SHEET_COLUMNS} FROM sheets WHERE station_id = ?1 ORDER BY id"),
                vec![id],
            ),
            None => (
                format!("SELECT {SHEET_COLUMNS} FROM sheets ORDER BY id"),
                vec![],
            ),
        };
        let mut st = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args), |r| Ok(sheet_from_row(r)))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    fn journal(&mut self, from: i64, limit: i64) -> Result<JournalRows, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, body, prev, hash FROM journal WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map(params![from, limit], |r| Ok(journal_from_row(r)))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    fn round_totals(&mut self) -> Result<Vec<(u8, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT round, totals FROM round_totals ORDER BY round")
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                let t = "round_totals";
                Ok(
                    col::<i64>(r, 0, t, &"a round that is not an integer").and_then(|round| {
                        let key = format!("round {round}");
                        let round = u8::try_from(round)
                            .map_err(|_| StoreError::corrupt(t, &key, "not a round number"))?;
                        Ok((round, col(r, 1, t, &key)?))
                    }),
                )
            })
            .map_err(db_err)?;
        rows.map(|r| r.map_err(db_err)?).collect()
    }

    fn delta(&mut self, after: Cursor) -> Result<Delta, StoreError> {
        let journal = self.journal(after.seq + 1, i64::MAX)?;
        let mut sheets: HashMap<i64, SheetRecord> = HashMap::new();
        {
            let mut st = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {SHEET_COLUMNS} FROM sheets WHERE journal_seq > ?1 ORDER BY id"
                ))
                .map_err(db_err)?;
            let rows = st
                .query_map([after.seq], |r| Ok(sheet_from_row(r)))
                .map_err(db_err)?;
            for row in rows {
                let rec = row.map_err(db_err)??;
                sheets.insert(rec.journal_seq, rec);
            }
        }
        let mut entries = Vec::with_capacity(journal.len());
        for row in journal {
            let (_, e) = row?;
            let sheet = sheets.remove(&e.body.seq);
            entries.push((e, sheet));
        }
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, user_id, key, body_hash, response FROM idempotency WHERE id > ?1 ORDER BY id",
            )
            .map_err(db_err)?;
        let idem = st
            .query_map([after.idem], |r| {
                let t = "idempotency";
                Ok(
                    col(r, 0, t, &"an id that is not an integer").and_then(|id: i64| {
                        let key = format!("id {id}");
                        Ok(IdemRow {
                            id,
                            user_id: col(r, 1, t, &key)?,
                            key: col(r, 2, t, &key)?,
                            body_hash: col(r, 3, t, &key)?,
                            response: col(r, 4, t, &key)?,
                        })
                    }),
                )
            })
            .map_err(db_err)?
            .map(|r| r.map_err(db_err)?)
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Delta { entries, idem })
    }

    fn begin_write(&mut self) -> Result<Heads, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        let heads = self
            .conn
            .prepare_cached(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM journal),
                        (SELECT hash FROM journal ORDER BY seq DESC LIMIT 1),
                        (SELECT COALESCE(MAX(id), 0) FROM sheets),
                        (SELECT COALESCE(MAX(id), 0) FROM users),
                        (SELECT COALESCE(MAX(id), 0) FROM idempotency)",
            )
            .and_then(|mut st| {
                st.query_row([], |r| {
                    Ok(Heads {
                        seq: r.get(0)?,
                        hash: r
                            .get::<_, Option<String>>(1)?
                            .unwrap_or_else(|| GENESIS.to_string()),
                        sheet_id: r.get(2)?,
                        user_id: r.get(3)?,
                        idem_id: r.get(4)?,
                    })
                })
            });
        match heads {
            Ok(h) => Ok(h),
            Err(e) => {
                self.rollback();
                Err(db_err(e))
            }
        }
    }

    fn persist(&mut self, w: &BatchWrite) -> Result<(), StoreError> {
        let c = &self.conn;
        if !w.sheets.is_empty() {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO sheets (id, round, station_id, source, version, user_id, journal_seq, body, warnings, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(db_err)?;
            for s in &w.sheets {
                st.execute(params![
                    s.sheet_id,
                    s.sheet.round,
                    s.sheet.station_id,
                    s.source,
                    s.version,
                    s.user_id,
                    s.journal_seq,
                    to_json(&s.sheet)?,
                    to_json(&s.warnings)?,
                    s.hash
                ])
                .map_err(db_err)?;
            }
        }
        if !w.journal.is_empty() {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO journal (seq, body, prev, hash) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err)?;
            for e in &w.journal {
                let body = e.body.canonical_text()?;
                st.execute(params![e.body.seq, body, e.prev, e.hash])
                    .map_err(db_err)?;
            }
        }
        if !w.idem.is_empty() {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO idempotency (id, user_id, key, body_hash, response) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db_err)?;
            for i in &w.idem {
                st.execute(params![i.id, i.user_id, i.key, i.body_hash, i.response])
                    .map_err(db_err)?;
            }
        }
        for u in &w.users {
            c.execute(
                "INSERT INTO users (id, role, token_hash, stations) VALUES (?1, ?2, ?3, ?4)",
                params![u.id, u.role, u.token_hash, u.stations],
            )
            .map_err(db_err)?;
        }
        for id in &w.revoked {
            c.execute("UPDATE users SET revoked = 1 WHERE id = ?1", [id])
                .map_err(db_err)?;
        }
        for (round, json) in &w.round_totals {
            c.prepare_cached("INSERT OR REPLACE INTO round_totals (round, totals) VALUES (?1, ?2)")
                .map_err(db_err)?
                .execute(params![round, json])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(db_err)
    }

    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        // Deferred: in WAL mode the snapshot is taken at the first read and held to COMMIT.
        self.conn.execute_batch("BEGIN DEFERRED").map_err(db_err)
    }

    fn end_read(&mut self) {
        let _ = self.conn.execute_batch("COMMIT");
    }

    fn wait_for_change(&mut self, timeout: Duration, _own_origin: &str) {
        // One process owns a SQLite file's server; other writers (the command line) are rare,
        // so polling is enough.
        std::thread::sleep(timeout);
    }
}

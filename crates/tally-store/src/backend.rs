//! The boundary between the store's logic ([`crate::engine`]) and a database.
//!
//! A backend only moves rows: it persists a batch that the engine has fully decided in memory
//! (ids, versions, journal hashes), inside one transaction that excludes every other writer of
//! the same database, and it hands back what other writers committed since a cursor. Keeping
//! the decisions in one place is what lets SQLite and PostgreSQL behave identically, and what
//! lets several server replicas share one PostgreSQL database: each replica catches up from the
//! journal under the write lock before deciding anything.

use crate::model::{JournalEntry, Registry, SheetRecord, User};
use crate::StoreError;
use std::time::Duration;

/// Where the engine has read up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Last journal sequence number seen.
    pub seq: i64,
    /// Last idempotency row id seen.
    pub idem: i64,
}

/// The heads of the append-only tables, read under the write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heads {
    pub seq: i64,
    /// Hash of the last journal entry ([`crate::model::GENESIS`] when empty).
    pub hash: String,
    pub sheet_id: i64,
    pub user_id: i64,
    pub idem_id: i64,
}

/// One stored idempotency record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemRow {
    pub id: i64,
    pub user_id: i64,
    pub key: String,
    pub body_hash: String,
    /// The receipts, as JSON.
    pub response: String,
}

/// One user row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub role: String,
    pub token_hash: String,
    /// JSON array of station ids or area names.
    pub stations: String,
}

/// What other writers committed after a cursor, in journal order.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// Journal entries with their sheet version when they record one.
    pub entries: Vec<(JournalEntry, Option<SheetRecord>)>,
    pub idem: Vec<IdemRow>,
}

/// Everything one write transaction stores; decided by the engine, persisted as is.
#[derive(Clone, Debug, Default)]
pub struct BatchWrite {
    pub sheets: Vec<SheetRecord>,
    pub journal: Vec<JournalEntry>,
    pub idem: Vec<IdemRow>,
    pub users: Vec<UserRow>,
    pub revoked: Vec<i64>,
    /// `(round, root totals as JSON)`.
    pub round_totals: Vec<(u8, String)>,
    /// Which store wrote it (sent with the change notification, so a store's follower can
    /// ignore what its own writer already published).
    pub origin: String,
}

impl BatchWrite {
    pub fn is_empty(&self) -> bool {
        self.sheets.is_empty()
            && self.journal.is_empty()
            && self.idem.is_empty()
            && self.users.is_empty()
            && self.revoked.is_empty()
            && self.round_totals.is_empty()
    }
}

/// Journal rows: `(seq, entry)`, or the row that could not be read
/// ([`StoreError::CorruptRow`]): `verify` names each one and goes on.
pub type JournalRows = Vec<Result<(i64, JournalEntry), StoreError>>;
/// Sheet rows, in id order, or the row that could not be read ([`StoreError::CorruptRow`]).
pub type SheetRows = Vec<Result<SheetRecord, StoreError>>;

/// Everything needed to verify or export, read from one consistent snapshot.
pub struct Snapshot {
    pub registry: Registry,
    pub sheets: SheetRows,
    pub journal: JournalRows,
    pub round_totals: Vec<(u8, String)>,
}

/// One database connection. Every method is one round of work on that connection; the write
/// methods are only called between [`Backend::begin_write`] and [`Backend::commit`] /
/// [`Backend::rollback`].
pub trait Backend: Send {
    /// Creates the tables and stores the registry; fails if the database is initialised.
    fn init(&mut self, reg: &Registry) -> Result<(), StoreError>;
    /// Creates missing tables (idempotent; run on open).
    fn ensure_schema(&mut self) -> Result<(), StoreError>;
    fn registry(&mut self) -> Result<Registry, StoreError>;
    fn users(&mut self) -> Result<Vec<(String, User)>, StoreError>;
    fn user_by_token(&mut self, token_hash: &str) -> Result<Option<User>, StoreError>;
    /// Sheet versions in id order: all of them, or one station's.
    fn sheets(&mut self, station: Option<&str>) -> Result<SheetRows, StoreError>;
    /// Journal entries with `seq >= from`, at most `limit`.
    fn journal(&mut self, from: i64, limit: i64) -> Result<JournalRows, StoreError>;
    /// `(round, totals JSON)` as stored beside the sheets (the JSON is checked by `verify`).
    fn round_totals(&mut self) -> Result<Vec<(u8, String)>, StoreError>;
    /// What was committed after `after`. Unreadable rows are errors: the engine must not build
    /// its state on a partial history.
    fn delta(&mut self, after: Cursor) -> Result<Delta, StoreError>;
    /// Starts a transaction that excludes every other writer of this database (other processes
    /// and replicas included) until commit or rollback, and reads the heads under it.
    fn begin_write(&mut self) -> Result<Heads, StoreError>;
    fn persist(&mut self, w: &BatchWrite) -> Result<(), StoreError>;
    /// Returns once the transaction is durable.
    fn commit(&mut self) -> Result<(), StoreError>;
    fn rollback(&mut self);
    /// Starts a read-only transaction: the reads until [`Backend::end_read`] see one snapshot.
    fn begin_read(&mut self) -> Result<(), StoreError>;
    fn end_read(&mut self);
    /// Registry, sheets, journal and stored totals as of one instant, while writers go on.
    fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        self.begin_read()?;
        let read = (|| {
            Ok(Snapshot {
                registry: self.registry()?,
                sheets: self.sheets(None)?,
                journal: self.journal(i64::MIN, i64::MAX)?,
                round_totals: self.round_totals()?,
            })
        })();
        self.end_read();
        read
    }
    /// True when the connection is gone for good (the server restarted, a failover, a network
    /// cut): the engine then opens a new one.
    fn is_broken(&self) -> bool {
        false
    }
    /// Blocks until a writer other than `own_origin` may have committed something, or
    /// `timeout` passes.
    fn wait_for_change(&mut self, timeout: Duration, own_origin: &str);
}

/// A JSON column of a row of `table`; undecodable JSON is a corrupt row, named by `key`.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    text: &str,
    column: &str,
    table: &'static str,
    key: &dyn std::fmt::Display,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(table, key, format!("unreadable {column}: {e}")))
}

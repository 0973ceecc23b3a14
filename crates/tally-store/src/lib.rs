//! # tally-store
//!
//! The election-night store of Tally, and the only crate that touches a database.
//!
//! - Two backends behind one [`backend::Backend`] boundary: **SQLite** (the embedded default, WAL
//!   mode, `synchronous=FULL`) and **PostgreSQL** (`postgres://...`, for several server replicas
//!   on one database). A receipt is handed out only after the transaction holding the sheet is
//!   durable. One writer thread commits in groups (every job queued while the previous commit
//!   was being synced joins the next transaction); the logic is the same for both backends
//!   ([`engine`]), the backends only move rows.
//! - Tables: `stations` (the registry), `users` (token hashes only), `sheets` (every version, never
//!   overwritten), `journal` (append-only, hash-chained), `idempotency`, `round_totals`.
//! - **Journal**: `hash = sha256(prev_hash || canonical bytes)`, canonical = serde_json of
//!   [`model::EntryBody`] (fixed field order). Each sheet entry repeats the sheet version's hash.
//! - **Live aggregates** ([`live`]): totals of every area updated incrementally on each accepted
//!   sheet; results are read from memory, never from the database.
//! - **Export and verification** ([`verify`]): recompute the chain, every sheet hash and every
//!   total, and name what does not match.
//!
//! Architecture invariant: validation rules and the results report come from `tally-model`;
//! this crate adds persistence, versions, sources and conflicts, and knows nothing of HTTP.
//! [`Store`] is the boundary the server uses; [`TallyStore`] implements it over either backend.

pub mod backend;
pub mod engine;
pub mod live;
pub mod model;
pub mod pg;
pub mod sqlite;
pub mod target;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod verify;

pub use engine::TallyStore;
pub use live::ConflictLine;
pub use model::{
    sheet_from_json, JournalEntry, Receipt, Registry, RegistryIndex, Role, Sheet, SheetRecord,
    User, ValidSheet,
};
pub use target::DbTarget;
pub use verify::{export, verify_db, verify_dir, Anchor, Problem, VerifyReport};

use serde::Serialize;
use tally_model::report::ResultsReport;
use tally_model::ValidationConfig;

/// Why the store could not do something. The server maps every variant to an HTTP status and
/// code (`tally-server/src/api.rs`, `docs/validation-codes.md`); the command line prints the
/// Display text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer holds the database longer than the wait allows (SQLite busy or locked, a
    /// PostgreSQL lock or serialisation conflict). Nothing was written; retrying is safe.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// The database cannot be reached: the connection was refused, cut or lost (a restart, a
    /// failover), or the SQLite file cannot be opened. Nothing was written; retrying is safe.
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    /// A stored row that cannot be decoded: it is reported, never read as a default value.
    #[error("corrupt row in table {table} ({key}): {reason}")]
    CorruptRow {
        table: &'static str,
        /// Which row, e.g. `id 12` or `seq 7`.
        key: String,
        reason: String,
    },
    /// Same idempotency key, different body.
    #[error("idempotency key '{0}' was already used with a different body")]
    IdempotencyConflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The request or the database's contents do not fit (not initialised, bad arguments).
    #[error("{0}")]
    Invalid(String),
    /// Any other database failure (a statement refused): the transaction did not commit.
    #[error("database error: {0}")]
    Db(String),
    #[error("I/O error: {0}")]
    Io(String),
    /// An in-memory value could not be encoded as JSON for storage (not expected to happen: the
    /// store's structs always serialise); nothing was written.
    #[error("cannot encode as JSON: {0}")]
    Encode(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// A [`StoreError::CorruptRow`] of `table`, naming the row by `key`.
    pub fn corrupt(table: &'static str, key: impl ToString, reason: impl ToString) -> StoreError {
        StoreError::CorruptRow {
            table,
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Called once with the outcome, after the commit (or its failure).
pub type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;
/// Called after each commit for every change.
pub type Hook = Box<dyn Fn(&ChangeEvent) + Send + Sync>;

/// Validated sheets from one request, all stored in one transaction or none.
pub struct Submission {
    pub user: User,
    /// `(Idempotency-Key, hash of the request body)`.
    pub idempotency: Option<(String, String)>,
    pub sheets: Vec<ValidSheet>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitOutcome {
    pub receipts: Vec<Receipt>,
    /// True when these are the stored receipts of an earlier request with the same key.
    pub replayed: bool,
}

/// One change, as sent to subscribers (the server's SSE stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeEvent {
    pub seq: i64,
    pub kind: String,
    pub station_id: String,
    pub round: u8,
    pub source: String,
    pub version: u32,
    pub hash: String,
    /// True when this sheet made the sources of its station disagree where they agreed before
    /// (live only: a replay from the journal does not recompute it; the reconciliation endpoint
    /// gives the state).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_conflict: bool,
}

/// One page of the stations under an area (`GET /api/v1/stations`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AreaStations {
    pub round: u8,
    /// The area's path (`""` = the whole election).
    pub area: String,
    /// Stations under the area in this round (all pages).
    pub total: usize,
    pub offset: usize,
    pub stations: Vec<AreaStation>,
}

/// A registry station with the current sheet of each source.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AreaStation {
    pub station_id: String,
    /// Its area's path, `Province/District`.
    pub area: String,
    /// Registered voters in the registry (null when the registry has none).
    pub registered: Option<u64>,
    /// True when the current sheets of its sources disagree.
    pub conflict: bool,
    /// The current sheet of each source (none yet: an empty list).
    pub sheets: Vec<CurrentSheet>,
}

/// The current version of one source's sheet for a station.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentSheet {
    /// `official`, or `observer:u<user id>`.
    pub source: String,
    pub version: u32,
    pub registered: Option<u64>,
    pub cast: Option<u64>,
    pub invalid: Option<u64>,
    pub valid: Option<u64>,
    pub votes: std::collections::BTreeMap<String, u64>,
    /// Validation warning codes of this version (W2xx); sheets with errors are never stored.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgressRound {
    pub round: u8,
    pub stations_known: u64,
    pub stations_counted: u64,
    pub registered_known: u64,
    pub registered_counted: u64,
    pub with_warnings: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgressReport {
    pub journal_seq: i64,
    /// Hash of journal entry `journal_seq`: publish it (with the seq) to anchor the chain;
    /// `tally verify --anchor SEQ:HASH` later proves the history up to it was not rewritten.
    pub journal_head: String,
    /// Sheet versions stored (all sources).
    pub versions: u64,
    /// Stations × rounds with an official sheet / with at least one observer sheet per observer.
    pub official_sheets: u64,
    pub observer_sheets: u64,
    /// Stations whose sources disagree, as `round:station_id` (first 1000).
    pub conflicts: u64,
    pub conflict_stations: Vec<String>,
    pub rounds: Vec<ProgressRound>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StationRound {
    pub round: u8,
    pub area: String,
    /// Current version per source.
    pub current: std::collections::BTreeMap<String, u32>,
    pub conflict: bool,
    pub conflicts: Vec<ConflictLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StationView {
    pub station_id: String,
    pub rounds: Vec<StationRound>,
    /// Every stored version of every source, oldest first.
    pub versions: Vec<SheetRecord>,
}

/// What the server needs from a store. Writes are asynchronous: the reply runs on the store's
/// writer thread once the transaction is durable.
pub trait Store: Send + Sync + 'static {
    fn registry(&self) -> &Registry;
    fn registry_index(&self) -> &RegistryIndex;
    fn validation(&self) -> &ValidationConfig;
    /// The user holding `token`, or `None` when it is unknown or revoked; an error when the
    /// users could not be read.
    fn authenticate(&self, token: &str) -> Result<Option<User>, StoreError>;
    fn submit(&self, s: Submission, reply: Reply<SubmitOutcome>);
    fn add_user(&self, by: &User, role: Role, stations: Vec<String>, reply: Reply<(User, String)>);
    fn revoke_user(&self, by: &User, id: i64, reply: Reply<()>);
    fn results(
        &self,
        round: Option<u8>,
        area: Option<&str>,
        level: Option<&str>,
    ) -> Result<ResultsReport, StoreError>;
    fn progress(&self) -> ProgressReport;
    /// The official results as a NIST SP 1500-100 `ElectionReport` (docs/nist.md).
    fn nist(&self, meta: &tally_model::nist::NistMeta<'_>) -> tally_model::nist::ElectionReport;
    /// Official sheets against the observers' for one round (`tally.reconcile/1`).
    fn reconciliation(&self, round: u8) -> Result<tally_reconcile::Reconciliation, StoreError>;
    /// The projection of one round's final result from the official sheets in so far
    /// (`tally.projection/1`), recomputed only when the journal has moved.
    fn projection(
        &self,
        round: u8,
    ) -> Result<std::sync::Arc<tally_project::Projection>, StoreError>;
    fn station(&self, id: &str) -> Result<StationView, StoreError>;
    /// The registry stations of one round under an area (its path, `""` = all), ordered by
    /// station id, `limit` of them from `offset`, each with the current sheet of every source.
    /// Read from memory.
    fn area_stations(
        &self,
        round: u8,
        area: &str,
        offset: usize,
        limit: usize,
    ) -> Result<AreaStations, StoreError>;
    fn journal(&self, from: i64, limit: usize) -> Result<Vec<JournalEntry>, StoreError>;
    fn subscribe(&self, hook: Hook);
}

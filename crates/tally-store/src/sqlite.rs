//! The SQLite store: WAL mode, `synchronous=FULL`, one writer thread doing group commit (every
//! submission that arrives while a commit is being made durable joins the next transaction, so
//! one fsync serves many clients), a reader connection for point look-ups, and the live
//! aggregates in memory.

use crate::live::{Live, StationState};
use crate::model::*;
use crate::{
    ChangeEvent, Hook, ProgressReport, ProgressRound, Reply, StationView, Store, StoreError,
    Submission, SubmitOutcome,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use tally_model::ValidationConfig;

/// Largest number of jobs in one transaction.
const MAX_BATCH: usize = 512;

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
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    user_id INTEGER NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL, response TEXT NOT NULL,
    PRIMARY KEY (user_id, key));
CREATE TABLE IF NOT EXISTS round_totals (round INTEGER PRIMARY KEY, totals TEXT NOT NULL);
";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Opens a connection with the durability settings.
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err)?;
    Ok(conn)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random token (32 bytes from the OS, hex).
pub fn new_token() -> Result<String, StoreError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| StoreError::Io(format!("no randomness: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn token_hash(token: &str) -> String {
    sha256_hex(&[b"tally-token:", token.as_bytes()])
}

/// Creates the database with its registry. Fails if it is already initialised.
pub fn init(path: &Path, reg: &Registry) -> Result<(), StoreError> {
    let mut conn = connect(path)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    let tx = conn.transaction().map_err(db_err)?;
    let exists: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key='registry'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    if exists.is_some() {
        return Err(StoreError::Invalid(format!(
            "{} is already initialised",
            path.display()
        )));
    }
    let json = serde_json::to_string(reg).map_err(|e| StoreError::Io(e.to_string()))?;
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
            let area = serde_json::to_string(&s.area).unwrap_or_default();
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
            "INSERT INTO round_totals (round, totals) VALUES (?1, ?2)",
            params![r.number, "null"],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

pub fn load_registry(conn: &Connection) -> Result<Registry, StoreError> {
    let json: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key='registry'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| StoreError::Invalid(format!("not a tally database: {e}")))?;
    let json =
        json.ok_or_else(|| StoreError::Invalid("the database has no registry: run init".into()))?;
    serde_json::from_str(&json).map_err(|e| StoreError::Invalid(format!("bad registry: {e}")))
}

/// Every stored sheet version, in id order. Rows that cannot be read are returned as errors.
pub fn load_sheets(conn: &Connection) -> Result<Vec<Result<SheetRecord, String>>, StoreError> {
    let mut st = conn
        .prepare("SELECT id, source, version, user_id, journal_seq, body, warnings, hash FROM sheets ORDER BY id")
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, source, version, user_id, seq, body, warnings, hash) = row.map_err(db_err)?;
        out.push(match serde_json::from_str::<Sheet>(&body) {
            Ok(sheet) => Ok(SheetRecord {
                sheet_id: id,
                source,
                version,
                user_id,
                journal_seq: seq,
                sheet,
                warnings: serde_json::from_str(&warnings).unwrap_or_default(),
                hash,
            }),
            Err(e) => Err(format!("sheet {id}: unreadable body: {e}")),
        });
    }
    Ok(out)
}

/// Journal rows: `(seq, entry)` or why the row could not be read.
pub type JournalRows = Vec<Result<(i64, JournalEntry), String>>;

/// Journal entries from `from` on (at most `limit`). Rows that cannot be read are errors.
pub fn load_journal(conn: &Connection, from: i64, limit: i64) -> Result<JournalRows, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, body, prev, hash FROM journal WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map(params![from, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body, prev, hash) = row.map_err(db_err)?;
        out.push(match serde_json::from_str::<EntryBody>(&body) {
            Ok(body) => Ok((seq, JournalEntry { body, prev, hash })),
            Err(e) => Err(format!("journal entry {seq}: unreadable body: {e}")),
        });
    }
    Ok(out)
}

fn load_users(conn: &Connection) -> Result<HashMap<String, User>, StoreError> {
    let mut st = conn
        .prepare("SELECT id, role, token_hash, stations, revoked FROM users")
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, role, hash, stations, revoked) = row.map_err(db_err)?;
        if let Some(role) = Role::parse(&role) {
            out.insert(
                hash,
                User {
                    id,
                    role,
                    stations: serde_json::from_str(&stations).unwrap_or_default(),
                    revoked: revoked != 0,
                },
            );
        }
    }
    Ok(out)
}

/// Appends one journal entry after the current head, inside the caller's transaction.
fn append_journal(conn: &Connection, mut body: EntryBody) -> Result<JournalEntry, StoreError> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")
        .map_err(db_err)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    let (seq, prev) = head.unwrap_or((0, GENESIS.to_string()));
    body.seq = seq + 1;
    let hash = body.chain(&prev);
    let text = String::from_utf8(body.canonical()).unwrap_or_default();
    conn.prepare_cached("INSERT INTO journal (seq, body, prev, hash) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?
        .execute(params![body.seq, text, prev, hash])
        .map_err(db_err)?;
    Ok(JournalEntry { body, prev, hash })
}

fn entry(kind: &str, user_id: i64) -> EntryBody {
    EntryBody {
        seq: 0,
        at: now_ms(),
        kind: kind.to_string(),
        user_id,
        sheet_id: None,
        round: None,
        station_id: None,
        source: None,
        version: None,
        sheet_hash: None,
        detail: None,
    }
}

/// Adds a user inside the caller's transaction; returns the user and its token (never stored).
fn insert_user(
    conn: &Connection,
    role: Role,
    stations: &[String],
    by: i64,
) -> Result<(User, String), StoreError> {
    let token = new_token()?;
    let stations_json = serde_json::to_string(stations).unwrap_or_default();
    conn.execute(
        "INSERT INTO users (role, token_hash, stations) VALUES (?1, ?2, ?3)",
        params![role.as_str(), token_hash(&token), stations_json],
    )
    .map_err(db_err)?;
    let id = conn.last_insert_rowid();
    let mut e = entry("user_add", by);
    e.detail = Some(format!(
        "user {id} role {} stations {stations_json}",
        role.as_str()
    ));
    append_journal(conn, e)?;
    Ok((
        User {
            id,
            role,
            stations: stations.to_vec(),
            revoked: false,
        },
        token,
    ))
}

/// `users add` from the command line (works while a server runs: the chain head is read inside
/// the transaction).
pub fn add_user(
    path: &Path,
    role: Role,
    stations: &[String],
) -> Result<(User, String), StoreError> {
    let mut conn = connect(path)?;
    load_registry(&conn)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let out = insert_user(&tx, role, stations, 0)?;
    tx.commit().map_err(db_err)?;
    Ok(out)
}

struct Cur {
    version: u32,
    content: String,
    receipt: Receipt,
}

/// What only the writer thread owns.
struct WriterState {
    latest: HashMap<(u8, String, String), Cur>,
    idem: HashMap<(i64, String), (String, Vec<Receipt>)>,
    /// Shadow of the live aggregates: root totals written in the same transaction.
    shadow: Live,
}

enum Job {
    Submit(Submission, Reply<SubmitOutcome>),
    AddUser(i64, Role, Vec<String>, Reply<(User, String)>),
    Revoke(i64, i64, Reply<()>),
}

struct Inner {
    registry: Registry,
    index: RegistryIndex,
    cfg: ValidationConfig,
    live: RwLock<Live>,
    users: RwLock<HashMap<String, User>>,
    reader: Mutex<Connection>,
    hooks: RwLock<Vec<Hook>>,
}

pub struct SqliteStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

fn load_state(
    conn: &Connection,
    reg: &Registry,
    cfg: &ValidationConfig,
) -> Result<(Live, WriterState), StoreError> {
    let mut live = Live::new(reg, cfg);
    let mut latest = HashMap::new();
    for rec in load_sheets(conn)? {
        let rec = rec.map_err(StoreError::Invalid)?;
        live.apply(&rec);
        let receipt = receipt_of(&rec, "");
        latest.insert(
            (
                rec.sheet.round,
                rec.sheet.station_id.clone(),
                rec.source.clone(),
            ),
            Cur {
                version: rec.version,
                content: rec.sheet.content_hash(),
                receipt,
            },
        );
    }
    // Receipts carry the journal entry's hash.
    let mut hashes: HashMap<i64, String> = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT seq, hash FROM journal")
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?;
        for row in rows {
            let (seq, h) = row.map_err(db_err)?;
            live.last_seq = live.last_seq.max(seq);
            hashes.insert(seq, h);
        }
    }
    for cur in latest.values_mut() {
        cur.receipt.hash = hashes
            .get(&cur.receipt.journal_seq)
            .cloned()
            .unwrap_or_default();
    }
    let mut idem = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT user_id, key, body_hash, response FROM idempotency")
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db_err)?;
        for row in rows {
            let (u, k, h, resp) = row.map_err(db_err)?;
            let receipts: Vec<Receipt> = serde_json::from_str(&resp).unwrap_or_default();
            idem.insert((u, k), (h, receipts));
        }
    }
    let shadow = live.clone();
    Ok((
        live,
        WriterState {
            latest,
            idem,
            shadow,
        },
    ))
}

fn receipt_of(rec: &SheetRecord, hash: &str) -> Receipt {
    Receipt {
        sheet_id: rec.sheet_id,
        station_id: rec.sheet.station_id.clone(),
        round: rec.sheet.round,
        source: rec.source.clone(),
        version: rec.version,
        journal_seq: rec.journal_seq,
        hash: hash.to_string(),
        warnings: rec.warnings.clone(),
        unchanged: false,
    }
}

impl SqliteStore {
    /// Opens an initialised database and starts its writer thread.
    pub fn open(path: &Path, cfg: ValidationConfig) -> Result<SqliteStore, StoreError> {
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let registry = load_registry(&conn)?;
        let (live, state) = load_state(&conn, &registry, &cfg)?;
        let users = load_users(&conn)?;
        let reader = connect(path)?;
        let inner = Arc::new(Inner {
            index: RegistryIndex::new(&registry),
            registry,
            cfg,
            live: RwLock::new(live),
            users: RwLock::new(users),
            reader: Mutex::new(reader),
            hooks: RwLock::new(Vec::new()),
        });
        let (tx, rx) = channel();
        let w_inner = inner.clone();
        let w_path = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("tally-store-writer".into())
            .spawn(move || writer_loop(conn, w_path, w_inner, state, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(SqliteStore {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, job: Job) -> Result<(), Box<Job>> {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(job)),
        }
    }

    /// Stops the writer after the jobs already queued.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// Sums recomputed from the live aggregates against a full `count` (for tests).
    pub fn live_matches_full_count(&self) -> bool {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        live.rounds
            .iter()
            .all(|r| tally_model::count(&r.round) == r.totals)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn fail_job(job: Job, e: StoreError) {
    match job {
        Job::Submit(_, r) => r(Err(e)),
        Job::AddUser(_, _, _, r) => r(Err(e)),
        Job::Revoke(_, _, r) => r(Err(e)),
    }
}

fn writer_loop(
    mut conn: Connection,
    path: PathBuf,
    inner: Arc<Inner>,
    mut state: WriterState,
    rx: Receiver<Job>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = run_batch(&mut conn, &inner, &mut state, &mut jobs) {
            for j in jobs.drain(..) {
                fail_job(j, e.clone());
            }
            // The shadow state may hold what was rolled back: reload it from the database.
            match connect(&path).and_then(|c| {
                let s = load_state(&c, &inner.registry, &inner.cfg)?;
                Ok((c, s))
            }) {
                Ok((c, (_, s))) => {
                    conn = c;
                    state = s;
                }
                Err(_) => return,
            }
        }
    }
}

enum Done {
    Submit(Reply<SubmitOutcome>, Result<SubmitOutcome, StoreError>),
    AddUser(Reply<(User, String)>, Result<(User, String), StoreError>),
    Revoke(Reply<()>, Result<(), StoreError>),
}

fn run_batch(
    conn: &mut Connection,
    inner: &Inner,
    state: &mut WriterState,
    jobs: &mut Vec<Job>,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
    let mut records: Vec<(SheetRecord, String)> = Vec::new();
    let mut user_changes: Vec<(String, User)> = Vec::new();
    let mut revoked: Vec<i64> = Vec::new();
    let mut rounds_touched: Vec<u8> = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Submit(sub, reply) => {
                if let Some((key, body_hash)) = &sub.idempotency {
                    if let Some((h, receipts)) = state.idem.get(&(sub.user.id, key.clone())) {
                        let r = if h == body_hash {
                            Ok(SubmitOutcome {
                                receipts: receipts.clone(),
                                replayed: true,
                            })
                        } else {
                            Err(StoreError::IdempotencyConflict(key.clone()))
                        };
                        done.push(Done::Submit(reply, r));
                        continue;
                    }
                }
                let source = sub.user.source();
                let mut receipts = Vec::with_capacity(sub.sheets.len());
                for vs in &sub.sheets {
                    let s = &vs.sheet;
                    let key = (s.round, s.station_id.clone(), source.clone());
                    let content = s.content_hash();
                    if let Some(cur) = state.latest.get(&key) {
                        if cur.content == content {
                            let mut r = cur.receipt.clone();
                            r.unchanged = true;
                            receipts.push(r);
                            continue;
                        }
                    }
                    let version = state.latest.get(&key).map_or(1, |c| c.version + 1);
                    let warnings: Vec<String> =
                        vs.warnings.iter().map(|f| f.code.to_string()).collect();
                    let hash = SheetRecord::canonical_hash(&source, version, sub.user.id, s);
                    let body = serde_json::to_string(s).unwrap_or_default();
                    // The journal seq this sheet will get: head + 1 (read inside the transaction).
                    let head: i64 = tx
                        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM journal")
                        .map_err(db_err)?
                        .query_row([], |r| r.get(0))
                        .map_err(db_err)?;
                    tx.prepare_cached(
                        "INSERT INTO sheets (round, station_id, source, version, user_id, journal_seq, body, warnings, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(db_err)?
                    .execute(params![
                        s.round,
                        s.station_id,
                        source,
                        version,
                        sub.user.id,
                        head + 1,
                        body,
                        serde_json::to_string(&warnings).unwrap_or_default(),
                        hash
                    ])
                    .map_err(db_err)?;
                    let sheet_id = tx.last_insert_rowid();
                    let mut e = entry("sheet", sub.user.id);
                    e.sheet_id = Some(sheet_id);
                    e.round = Some(s.round);
                    e.station_id = Some(s.station_id.clone());
                    e.source = Some(source.clone());
                    e.version = Some(version);
                    e.sheet_hash = Some(hash.clone());
                    let je = append_journal(&tx, e)?;
                    let rec = SheetRecord {
                        sheet_id,
                        source: source.clone(),
                        version,
                        user_id: sub.user.id,
                        journal_seq: je.body.seq,
                        sheet: s.clone(),
                        warnings,
                        hash,
                    };
                    let receipt = receipt_of(&rec, &je.hash);
                    state.shadow.apply(&rec);
                    if !rounds_touched.contains(&s.round) {
                        rounds_touched.push(s.round);
                    }
                    state.latest.insert(
                        key,
                        Cur {
                            version,
                            content,
                            receipt: receipt.clone(),
                        },
                    );
                    receipts.push(receipt);
                    records.push((rec, je.hash));
                }
                if let Some((key, body_hash)) = &sub.idempotency {
                    tx.prepare_cached(
                        "INSERT INTO idempotency (user_id, key, body_hash, response) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(db_err)?
                    .execute(params![
                        sub.user.id,
                        key,
                        body_hash,
                        serde_json::to_string(&receipts).unwrap_or_default()
                    ])
                    .map_err(db_err)?;
                    state.idem.insert(
                        (sub.user.id, key.clone()),
                        (body_hash.clone(), receipts.clone()),
                    );
                }
                done.push(Done::Submit(
                    reply,
                    Ok(SubmitOutcome {
                        receipts,
                        replayed: false,
                    }),
                ));
            }
            Job::AddUser(by, role, stations, reply) => {
                let r = insert_user(&tx, role, &stations, by)?;
                user_changes.push((token_hash(&r.1), r.0.clone()));
                done.push(Done::AddUser(reply, Ok(r)));
            }
            Job::Revoke(by, id, reply) => {
                let n = tx
                    .execute("UPDATE users SET revoked = 1 WHERE id = ?1", [id])
                    .map_err(db_err)?;
                let r = if n == 0 {
                    Err(StoreError::NotFound(format!("no user {id}")))
                } else {
                    let mut e = entry("user_revoke", by);
                    e.detail = Some(format!("user {id} revoked"));
                    append_journal(&tx, e)?;
                    revoked.push(id);
                    Ok(())
                };
                done.push(Done::Revoke(reply, r));
            }
        }
    }
    for r in &rounds_touched {
        if let Some(lr) = state.shadow.rounds.iter().find(|x| x.round.number == *r) {
            let json = serde_json::to_string(&lr.totals[0]).unwrap_or_default();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO round_totals (round, totals) VALUES (?1, ?2)",
            )
            .map_err(db_err)?
            .execute(params![r, json])
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    // Durable: publish, notify, answer.
    if !records.is_empty() {
        let mut live = inner.live.write().unwrap_or_else(|e| e.into_inner());
        for (rec, _) in &records {
            live.apply(rec);
        }
    }
    if !user_changes.is_empty() || !revoked.is_empty() {
        let mut users = inner.users.write().unwrap_or_else(|e| e.into_inner());
        for (h, u) in user_changes {
            users.insert(h, u);
        }
        for u in users.values_mut() {
            if revoked.contains(&u.id) {
                u.revoked = true;
            }
        }
    }
    {
        let hooks = inner.hooks.read().unwrap_or_else(|e| e.into_inner());
        if !hooks.is_empty() {
            for (rec, hash) in &records {
                let ev = ChangeEvent {
                    seq: rec.journal_seq,
                    kind: "sheet".into(),
                    station_id: rec.sheet.station_id.clone(),
                    round: rec.sheet.round,
                    source: rec.source.clone(),
                    version: rec.version,
                    hash: hash.clone(),
                };
                for h in hooks.iter() {
                    h(&ev);
                }
            }
        }
    }
    for d in done {
        match d {
            Done::Submit(r, v) => r(v),
            Done::AddUser(r, v) => r(v),
            Done::Revoke(r, v) => r(v),
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn registry_index(&self) -> &RegistryIndex {
        &self.inner.index
    }

    fn validation(&self) -> &ValidationConfig {
        &self.inner.cfg
    }

    fn authenticate(&self, token: &str) -> Option<User> {
        let h = token_hash(token);
        if let Some(u) = self
            .inner
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
        {
            return (!u.revoked).then(|| u.clone());
        }
        // A user added from the command line while the server runs.
        let found = {
            let conn = self.inner.reader.lock().unwrap_or_else(|e| e.into_inner());
            conn.query_row(
                "SELECT id, role, stations, revoked FROM users WHERE token_hash = ?1",
                [&h],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .ok()
            .flatten()
        }?;
        let user = User {
            id: found.0,
            role: Role::parse(&found.1)?,
            stations: serde_json::from_str(&found.2).unwrap_or_default(),
            revoked: found.3 != 0,
        };
        self.inner
            .users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h, user.clone());
        (!user.revoked).then_some(user)
    }

    fn submit(&self, s: Submission, reply: Reply<SubmitOutcome>) {
        if let Err(job) = self.send(Job::Submit(s, reply)) {
            fail_job(*job, StoreError::Closed);
        }
    }

    fn add_user(&self, by: &User, role: Role, stations: Vec<String>, reply: Reply<(User, String)>) {
        if let Err(job) = self.send(Job::AddUser(by.id, role, stations, reply)) {
            fail_job(*job, StoreError::Closed);
        }
    }

    fn revoke_user(&self, by: &User, id: i64, reply: Reply<()>) {
        if let Err(job) = self.send(Job::Revoke(by.id, id, reply)) {
            fail_job(*job, StoreError::Closed);
        }
    }

    fn results(
        &self,
        round: Option<u8>,
        area: Option<&str>,
        level: Option<&str>,
    ) -> Result<tally_model::report::ResultsReport, StoreError> {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        live.results(round, area, level)
            .map_err(StoreError::NotFound)
    }

    fn progress(&self) -> ProgressReport {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        let mut conflicts: Vec<(u8, String)> = live
            .stations
            .iter()
            .filter(|(_, s)| !s.conflicts.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        conflicts.sort();
        ProgressReport {
            journal_seq: live.last_seq,
            versions: live.versions,
            official_sheets: live.official_sheets,
            observer_sheets: live.observer_sheets,
            conflicts: conflicts.len() as u64,
            conflict_stations: conflicts
                .into_iter()
                .take(1000)
                .map(|(r, s)| format!("{r}:{s}"))
                .collect(),
            rounds: live
                .rounds
                .iter()
                .map(|r| {
                    let t = &r.totals[0];
                    ProgressRound {
                        round: r.round.number,
                        stations_known: t.stations_known,
                        stations_counted: t.stations_counted,
                        registered_known: t.registered_known,
                        registered_counted: t.registered,
                        with_warnings: r.with_warnings,
                    }
                })
                .collect(),
        }
    }

    fn station(&self, id: &str) -> Result<StationView, StoreError> {
        let known: Vec<u8> = self
            .inner
            .registry
            .rounds
            .iter()
            .map(|r| r.number)
            .filter(|r| {
                self.inner
                    .index
                    .stations
                    .contains_key(&(*r, id.to_string()))
            })
            .collect();
        if known.is_empty() {
            return Err(StoreError::NotFound(format!("no station '{id}'")));
        }
        let versions: Vec<SheetRecord> = {
            let conn = self.inner.reader.lock().unwrap_or_else(|e| e.into_inner());
            let mut st = conn
                .prepare_cached("SELECT id, source, version, user_id, journal_seq, body, warnings, hash FROM sheets WHERE station_id = ?1 ORDER BY id")
                .map_err(db_err)?;
            let rows = st
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                    ))
                })
                .map_err(db_err)?;
            let mut v = Vec::new();
            for row in rows {
                let (sheet_id, source, version, user_id, journal_seq, body, warnings, hash) =
                    row.map_err(db_err)?;
                if let Ok(sheet) = serde_json::from_str(&body) {
                    v.push(SheetRecord {
                        sheet_id,
                        source,
                        version,
                        user_id,
                        journal_seq,
                        sheet,
                        warnings: serde_json::from_str(&warnings).unwrap_or_default(),
                        hash,
                    });
                }
            }
            v
        };
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        let empty = StationState::default();
        let rounds = known
            .iter()
            .map(|r| {
                let st = live.stations.get(&(*r, id.to_string())).unwrap_or(&empty);
                crate::StationRound {
                    round: *r,
                    area: self.inner.registry.stations
                        [self.inner.index.stations[&(*r, id.to_string())]]
                        .area
                        .join("/"),
                    current: st
                        .latest
                        .iter()
                        .map(|(src, (v, _))| (src.clone(), *v))
                        .collect(),
                    conflict: !st.conflicts.is_empty(),
                    conflicts: st.conflicts.clone(),
                }
            })
            .collect();
        Ok(StationView {
            station_id: id.to_string(),
            rounds,
            versions,
        })
    }

    fn journal(&self, from: i64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        let conn = self.inner.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(load_journal(&conn, from, limit as i64)?
            .into_iter()
            .filter_map(Result::ok)
            .map(|(_, e)| e)
            .collect())
    }

    fn subscribe(&self, hook: Hook) {
        self.inner
            .hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }
}

//! The store's logic, the same over every backend: one writer thread doing group commit (every
//! submission that arrives while a commit is being made durable joins the next transaction, so
//! one fsync serves many clients), a follower thread that brings in what other writers (server
//! replicas, the command line) committed, a reader connection for point look-ups, and the live
//! aggregates in memory.
//!
//! Invariants:
//! - Versions, ids, idempotency answers and journal hashes are decided here, under the
//!   backend's write lock, after catching up from the journal; a backend only persists them.
//! - `Live` is applied in journal order exactly once per entry: every publisher (writer or
//!   follower) skips entries at or below `live.last_seq`, and each publishes a gap-free run.

use crate::backend::*;
use crate::live::{Live, StationState};
use crate::model::*;
use crate::target::DbTarget;
use crate::{
    ChangeEvent, Hook, ProgressReport, ProgressRound, Reply, StationView, Store, StoreError,
    Submission, SubmitOutcome,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tally_model::ValidationConfig;

/// Largest number of jobs in one transaction.
const MAX_BATCH: usize = 512;
/// How long the follower waits for a notification before it looks anyway.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

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
pub fn init(target: &DbTarget, reg: &Registry) -> Result<(), StoreError> {
    target.connect(true)?.init(reg).map_err(|e| match e {
        StoreError::Invalid(m) => StoreError::Invalid(format!("{target}: {m}")),
        e => e,
    })
}

/// The next ids and the chain head while a batch is being decided.
struct Next {
    seq: i64,
    prev: String,
    sheet_id: i64,
    user_id: i64,
    idem_id: i64,
}

impl Next {
    fn from_heads(h: Heads) -> Next {
        Next {
            seq: h.seq,
            prev: h.hash,
            sheet_id: h.sheet_id,
            user_id: h.user_id,
            idem_id: h.idem_id,
        }
    }

    /// Chains `body` after the head.
    fn append(&mut self, mut body: EntryBody) -> JournalEntry {
        self.seq += 1;
        body.seq = self.seq;
        let hash = body.chain(&self.prev);
        let prev = std::mem::replace(&mut self.prev, hash.clone());
        JournalEntry { body, prev, hash }
    }

    /// A new user and its `user_add` entry; the token is returned, never stored.
    fn add_user(
        &mut self,
        w: &mut BatchWrite,
        role: Role,
        stations: &[String],
        by: i64,
    ) -> Result<(User, String), StoreError> {
        let token = new_token()?;
        self.user_id += 1;
        let id = self.user_id;
        let stations_json = to_json(stations)?;
        let mut e = entry("user_add", by);
        e.detail = Some(format!(
            "user {id} role {} stations {stations_json}",
            role.as_str()
        ));
        w.users.push(UserRow {
            id,
            role: role.as_str().to_string(),
            token_hash: token_hash(&token),
            stations: stations_json,
        });
        w.journal.push(self.append(e));
        let user = User {
            id,
            role,
            stations: stations.to_vec(),
            revoked: false,
        };
        Ok((user, token))
    }
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

/// `users add` from the command line (works while servers run: it takes the same write lock).
pub fn add_user(
    target: &DbTarget,
    role: Role,
    stations: &[String],
) -> Result<(User, String), StoreError> {
    let mut db = target.connect(false)?;
    if role == Role::Observer {
        db.registry()?.check_scope(stations)?;
    } else {
        db.registry()?;
    }
    let mut next = Next::from_heads(db.begin_write()?);
    let mut w = BatchWrite::default();
    let out = next
        .add_user(&mut w, role, stations, 0)
        .and_then(|out| db.persist(&w).map(|_| out));
    match out {
        Ok(out) => {
            db.commit()?;
            Ok(out)
        }
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

struct Cur {
    version: u32,
    content: String,
    receipt: Receipt,
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

/// A committed journal entry to show in `Live` and announce.
struct Published {
    seq: i64,
    hash: String,
    sheet: Option<SheetRecord>,
}

/// The receipts an idempotency row holds, or why they cannot be read.
type StoredAnswer = Result<Vec<Receipt>, StoreError>;

/// What only the writer thread owns.
struct WriterState {
    cursor: Cursor,
    latest: HashMap<(u8, String, String), Cur>,
    /// `(user, key)` to `(body hash, stored receipts)`; a stored answer that cannot be read is
    /// kept as its error, so a replay of that key is refused and every other request goes on.
    idem: HashMap<(i64, String), (String, StoredAnswer)>,
    /// By token hash.
    users: HashMap<String, User>,
    /// Shadow of the live aggregates: root totals written in the same transaction.
    shadow: Live,
}

impl WriterState {
    fn new(reg: &Registry, cfg: &ValidationConfig) -> WriterState {
        WriterState {
            cursor: Cursor::default(),
            latest: HashMap::new(),
            idem: HashMap::new(),
            users: HashMap::new(),
            shadow: Live::new(reg, cfg),
        }
    }

    /// Takes in what was committed after the cursor; returns it for publishing and whether
    /// users changed.
    fn absorb(&mut self, d: Delta) -> (Vec<Published>, bool) {
        let mut out = Vec::with_capacity(d.entries.len());
        let mut users_changed = false;
        for (e, sheet) in d.entries {
            users_changed |= e.body.kind.starts_with("user_");
            if let Some(rec) = &sheet {
                self.shadow.apply(rec);
                self.latest.insert(
                    (
                        rec.sheet.round,
                        rec.sheet.station_id.clone(),
                        rec.source.clone(),
                    ),
                    Cur {
                        version: rec.version,
                        content: rec.sheet.content_hash(),
                        receipt: receipt_of(rec, &e.hash),
                    },
                );
            }
            if e.body.seq > self.shadow.last_seq {
                self.shadow.last_seq = e.body.seq;
                self.shadow.head_hash = e.hash.clone();
            }
            self.cursor.seq = self.cursor.seq.max(e.body.seq);
            out.push(Published {
                seq: e.body.seq,
                hash: e.hash,
                sheet,
            });
        }
        for row in d.idem {
            let receipts = stored_receipts(&row);
            self.idem
                .insert((row.user_id, row.key), (row.body_hash, receipts));
            self.cursor.idem = self.cursor.idem.max(row.id);
        }
        (out, users_changed)
    }
}

/// The receipts an idempotency row stored. A request always holds at least one sheet, so an
/// empty list is as corrupt as unreadable JSON.
fn stored_receipts(row: &IdemRow) -> StoredAnswer {
    let corrupt = |reason: String| {
        StoreError::corrupt(
            "idempotency",
            format!("id {}, user {}, key '{}'", row.id, row.user_id, row.key),
            reason,
        )
    };
    match serde_json::from_str::<Vec<Receipt>>(&row.response) {
        Ok(r) if r.is_empty() => Err(corrupt("no receipts stored".into())),
        Ok(r) => Ok(r),
        Err(e) => Err(corrupt(format!("unreadable response: {e}"))),
    }
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
    /// This store's name in change notifications (random per process and open).
    origin: String,
    /// Where to open a new connection when one is lost.
    target: DbTarget,
    /// `None` once dropped (see `Drop for Inner`).
    reader: Mutex<Option<Box<dyn Backend>>>,
    hooks: RwLock<Vec<Hook>>,
    /// The last projection of each round and the journal seq it was computed at.
    projections: Mutex<HashMap<u8, (i64, Arc<tally_project::Projection>)>>,
}

impl Drop for Inner {
    /// The PostgreSQL client closes its connection by blocking on a runtime of its own, which
    /// panics on a thread that drives async tasks (the server's): close it on a plain thread.
    fn drop(&mut self) {
        let reader = self
            .reader
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|e| e.into_inner().take());
        if let Some(db) = reader {
            let _ = std::thread::spawn(move || drop(db)).join();
        }
    }
}

impl Inner {
    /// Runs `f` on the reader connection, on a thread of its own: the PostgreSQL client blocks
    /// on a runtime of its own, which must not be entered from the server's async tasks.
    /// A lost connection is replaced, and `f` retried once on the new one.
    fn read_db<T: Send>(
        &self,
        f: impl Fn(&mut dyn Backend) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreError> {
        std::thread::scope(|s| {
            let job = s.spawn(|| {
                let mut guard = self.reader.lock().unwrap_or_else(|e| e.into_inner());
                let Some(db) = guard.as_mut() else {
                    return Err(StoreError::Closed);
                };
                if db.is_broken() {
                    *db = self.target.connect(false)?;
                }
                match f(&mut **db) {
                    Err(e) if db.is_broken() => match self.target.connect(false) {
                        Ok(fresh) => {
                            *db = fresh;
                            f(&mut **db)
                        }
                        Err(_) => Err(e),
                    },
                    r => r,
                }
            });
            match job.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Applies a gap-free run of committed entries to `Live` (skipping what is already there),
    /// then announces the sheets that were new.
    fn publish(&self, items: &[Published]) {
        if items.is_empty() {
            return;
        }
        let mut events = Vec::new();
        {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            for it in items {
                if it.seq <= live.last_seq {
                    continue;
                }
                if let Some(rec) = &it.sheet {
                    let new_conflict = live.apply(rec);
                    events.push(ChangeEvent {
                        new_conflict,
                        seq: rec.journal_seq,
                        kind: "sheet".into(),
                        station_id: rec.sheet.station_id.clone(),
                        round: rec.sheet.round,
                        source: rec.source.clone(),
                        version: rec.version,
                        hash: it.hash.clone(),
                    });
                }
                live.last_seq = it.seq;
                live.head_hash = it.hash.clone();
            }
        }
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner());
        for ev in &events {
            for h in hooks.iter() {
                h(ev);
            }
        }
    }

    fn replace_users(&self, users: impl IntoIterator<Item = (String, User)>) {
        let mut map = self.users.write().unwrap_or_else(|e| e.into_inner());
        for (h, u) in users {
            map.insert(h, u);
        }
    }
}

/// The store over any backend: what the server holds.
pub struct TallyStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

fn load_state(
    db: &mut dyn Backend,
    reg: &Registry,
    cfg: &ValidationConfig,
) -> Result<WriterState, StoreError> {
    let mut state = WriterState::new(reg, cfg);
    let delta = db.delta(Cursor::default())?;
    state.absorb(delta);
    state.users = db.users()?.into_iter().collect();
    Ok(state)
}

impl TallyStore {
    /// Opens an initialised database and starts its writer and follower threads.
    pub fn open(target: &DbTarget, cfg: ValidationConfig) -> Result<TallyStore, StoreError> {
        let mut db = target.connect(false)?;
        db.ensure_schema()?;
        let registry = db.registry()?;
        let state = load_state(&mut *db, &registry, &cfg)?;
        let mut live = state.shadow.clone();
        live.last_seq = state.cursor.seq;
        live.head_hash = state.shadow.head_hash.clone();
        let users = state.users.clone();
        let inner = Arc::new(Inner {
            index: RegistryIndex::new(&registry),
            registry,
            cfg,
            live: RwLock::new(live),
            users: RwLock::new(users),
            reader: Mutex::new(Some(target.connect(false)?)),
            origin: new_token()?[..16].to_string(),
            target: target.clone(),
            hooks: RwLock::new(Vec::new()),
            projections: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = channel();
        let w_inner = inner.clone();
        let w_target = target.clone();
        let handle = std::thread::Builder::new()
            .name("tally-store-writer".into())
            .spawn(move || writer_loop(db, w_target, w_inner, state, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let follower = target.connect(false)?;
        let (f_inner, f_stop) = (inner.clone(), stop.clone());
        std::thread::Builder::new()
            .name("tally-store-follower".into())
            .spawn(move || follow_loop(follower, f_inner, f_stop))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(TallyStore {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            stop,
        })
    }

    fn send(&self, job: Job) -> Result<(), Box<Job>> {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(job)),
        }
    }

    /// Stops the writer after the jobs already queued (the follower ends at its next wake-up).
    pub fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
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

    /// Brings in what other writers committed, now (the follower does it in the background).
    pub fn catch_up(&self) -> Result<(), StoreError> {
        self.inner.read_db(|db| catch_up(db, &self.inner))
    }
}

impl Drop for TallyStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn catch_up(db: &mut dyn Backend, inner: &Inner) -> Result<(), StoreError> {
    let seq = inner
        .live
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .last_seq;
    let delta = db.delta(Cursor {
        seq,
        idem: i64::MAX,
    })?;
    let users_changed = delta
        .entries
        .iter()
        .any(|(e, _)| e.body.kind.starts_with("user_"));
    let items: Vec<Published> = delta
        .entries
        .into_iter()
        .map(|(e, sheet)| Published {
            seq: e.body.seq,
            hash: e.hash,
            sheet,
        })
        .collect();
    if users_changed {
        inner.replace_users(db.users()?);
    }
    inner.publish(&items);
    Ok(())
}

fn follow_loop(mut db: Box<dyn Backend>, inner: Arc<Inner>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if db.is_broken() {
            // Lost (database restart, failover): wait, then try a new connection.
            std::thread::sleep(FOLLOW_INTERVAL);
            if let Ok(fresh) = inner.target.connect(false) {
                db = fresh;
            }
            continue;
        }
        db.wait_for_change(FOLLOW_INTERVAL, &inner.origin);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A failed look is retried at the next wake-up; nothing is published half.
        let _ = catch_up(&mut *db, &inner);
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
    mut db: Box<dyn Backend>,
    target: DbTarget,
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
        if let Err(e) = run_batch(&mut *db, &inner, &mut state, &mut jobs) {
            for j in jobs.drain(..) {
                fail_job(j, e.clone());
            }
            // The state may hold what was rolled back (or miss what committed just before the
            // connection broke): rebuild it from the database, on a new connection in case the
            // old one is what failed. While the database cannot be reached, every submission
            // is refused at once (503, no receipt) and the writer keeps trying.
            let mut pause = Duration::from_millis(50);
            loop {
                match target.connect(false).and_then(|mut c| {
                    let s = load_state(&mut *c, &inner.registry, &inner.cfg)?;
                    Ok((c, s))
                }) {
                    Ok((c, s)) => {
                        db = c;
                        state = s;
                        break;
                    }
                    Err(e) => loop {
                        match rx.try_recv() {
                            Ok(j) => fail_job(j, e.clone()),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                        }
                    },
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

enum Done {
    Submit(Reply<SubmitOutcome>, Result<SubmitOutcome, StoreError>),
    AddUser(Reply<(User, String)>, Result<(User, String), StoreError>),
    Revoke(Reply<()>, Result<(), StoreError>),
}

/// Answers every decided job with `e` instead (the transaction did not commit).
fn fail_done(done: Vec<Done>, e: &StoreError) {
    for d in done {
        match d {
            Done::Submit(r, _) => r(Err(e.clone())),
            Done::AddUser(r, _) => r(Err(e.clone())),
            Done::Revoke(r, _) => r(Err(e.clone())),
        }
    }
}

/// One transaction: lock, catch up, decide every job in memory, persist, commit, publish, answer.
/// On failure every job gets the error (no receipt), none is left unanswered.
fn run_batch(
    db: &mut dyn Backend,
    inner: &Inner,
    state: &mut WriterState,
    jobs: &mut Vec<Job>,
) -> Result<(), StoreError> {
    let heads = db.begin_write()?;
    let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
    let (w, mut published, users_changed) =
        match decide(&inner.origin, db, state, heads, jobs, &mut done) {
            Ok(x) => x,
            Err(e) => {
                db.rollback();
                fail_done(done, &e);
                return Err(e);
            }
        };
    if w.is_empty() {
        db.rollback();
    } else if let Err(e) = db.commit() {
        fail_done(done, &e);
        return Err(e);
    }
    // Durable: publish, notify, answer.
    for (rec, e) in w
        .sheets
        .iter()
        .zip(w.journal.iter().filter(|e| e.body.kind == "sheet"))
    {
        published.push(Published {
            seq: e.body.seq,
            hash: e.hash.clone(),
            sheet: Some(rec.clone()),
        });
    }
    for e in w.journal.iter().filter(|e| e.body.kind != "sheet") {
        published.push(Published {
            seq: e.body.seq,
            hash: e.hash.clone(),
            sheet: None,
        });
    }
    published.sort_by_key(|p| p.seq);
    if users_changed || !w.users.is_empty() || !w.revoked.is_empty() {
        inner.replace_users(state.users.clone());
    }
    inner.publish(&published);
    for d in done {
        match d {
            Done::Submit(r, v) => r(v),
            Done::AddUser(r, v) => r(v),
            Done::Revoke(r, v) => r(v),
        }
    }
    Ok(())
}

type Decided = (BatchWrite, Vec<Published>, bool);

fn decide(
    origin: &str,
    db: &mut dyn Backend,
    state: &mut WriterState,
    heads: Heads,
    jobs: &mut Vec<Job>,
    done: &mut Vec<Done>,
) -> Result<Decided, StoreError> {
    let mut published = Vec::new();
    let mut users_changed = false;
    if heads.seq != state.cursor.seq || heads.idem_id != state.cursor.idem {
        let (p, u) = state.absorb(db.delta(state.cursor)?);
        published = p;
        users_changed = u;
        if users_changed {
            state.users = db.users()?.into_iter().collect();
        }
    }
    if heads.seq != state.cursor.seq {
        return Err(StoreError::Db(format!(
            "the journal head is {} but its entries end at {}: entries missing",
            heads.seq, state.cursor.seq
        )));
    }
    let mut next = Next::from_heads(heads);
    let mut w = BatchWrite {
        origin: origin.to_string(),
        ..BatchWrite::default()
    };
    let mut rounds_touched: Vec<u8> = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Submit(sub, reply) => {
                if let Some((key, body_hash)) = &sub.idempotency {
                    if let Some((h, receipts)) = state.idem.get(&(sub.user.id, key.clone())) {
                        let r = if h == body_hash {
                            receipts.clone().map(|receipts| SubmitOutcome {
                                receipts,
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
                    next.sheet_id += 1;
                    let mut e = entry("sheet", sub.user.id);
                    e.sheet_id = Some(next.sheet_id);
                    e.round = Some(s.round);
                    e.station_id = Some(s.station_id.clone());
                    e.source = Some(source.clone());
                    e.version = Some(version);
                    e.sheet_hash = Some(hash.clone());
                    let je = next.append(e);
                    let rec = SheetRecord {
                        sheet_id: next.sheet_id,
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
                    w.sheets.push(rec);
                    w.journal.push(je);
                }
                if let Some((key, body_hash)) = &sub.idempotency {
                    next.idem_id += 1;
                    w.idem.push(IdemRow {
                        id: next.idem_id,
                        user_id: sub.user.id,
                        key: key.clone(),
                        body_hash: body_hash.clone(),
                        response: to_json(&receipts)?,
                    });
                    state.idem.insert(
                        (sub.user.id, key.clone()),
                        (body_hash.clone(), Ok(receipts.clone())),
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
                // Only the token can fail here, before anything is added to the batch.
                let r = next.add_user(&mut w, role, &stations, by);
                if let (Ok((user, _)), Some(row)) = (&r, w.users.last()) {
                    state.users.insert(row.token_hash.clone(), user.clone());
                }
                done.push(Done::AddUser(reply, r));
            }
            Job::Revoke(by, id, reply) => {
                let found = state.users.values_mut().find(|u| u.id == id);
                let r = match found {
                    None => Err(StoreError::NotFound(format!("no user {id}"))),
                    Some(u) => {
                        u.revoked = true;
                        let mut e = entry("user_revoke", by);
                        e.detail = Some(format!("user {id} revoked"));
                        w.journal.push(next.append(e));
                        w.revoked.push(id);
                        Ok(())
                    }
                };
                done.push(Done::Revoke(reply, r));
            }
        }
    }
    for r in &rounds_touched {
        if let Some(lr) = state.shadow.rounds.iter().find(|x| x.round.number == *r) {
            w.round_totals.push((*r, to_json(&lr.totals[0])?));
        }
    }
    state.cursor.seq = next.seq;
    state.cursor.idem = next.idem_id;
    state.shadow.last_seq = next.seq;
    state.shadow.head_hash = next.prev.clone();
    if !w.is_empty() {
        db.persist(&w)?;
    }
    Ok((w, published, users_changed))
}

impl Store for TallyStore {
    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn registry_index(&self) -> &RegistryIndex {
        &self.inner.index
    }

    fn validation(&self) -> &ValidationConfig {
        &self.inner.cfg
    }

    fn authenticate(&self, token: &str) -> Result<Option<User>, StoreError> {
        let h = token_hash(token);
        if let Some(u) = self
            .inner
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
        {
            return Ok((!u.revoked).then(|| u.clone()));
        }
        // A user added from the command line (or another replica) since the last catch-up. A
        // failed look-up is an error, not an unknown token: the token may well be valid.
        let Some(user) = self.inner.read_db(|db| db.user_by_token(&h))? else {
            return Ok(None);
        };
        self.inner
            .users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h, user.clone());
        Ok((!user.revoked).then_some(user))
    }

    fn submit(&self, s: Submission, reply: Reply<SubmitOutcome>) {
        if let Err(job) = self.send(Job::Submit(s, reply)) {
            fail_job(*job, StoreError::Closed);
        }
    }

    fn add_user(&self, by: &User, role: Role, stations: Vec<String>, reply: Reply<(User, String)>) {
        if role == Role::Observer {
            if let Err(e) = self.inner.registry.check_scope(&stations) {
                return reply(Err(e));
            }
        }
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
        let scope = tally_model::report::ReportScope { round, area, level };
        live.results(&scope)
            .map_err(|e| StoreError::NotFound(e.to_string()))
    }

    fn nist(&self, meta: &tally_model::nist::NistMeta<'_>) -> tally_model::nist::ElectionReport {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        live.nist(meta)
    }

    fn reconciliation(&self, round: u8) -> Result<tally_reconcile::Reconciliation, StoreError> {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        live.reconciliation(&self.inner.registry, round)
            .map_err(StoreError::NotFound)
    }

    fn projection(&self, round: u8) -> Result<Arc<tally_project::Projection>, StoreError> {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        let seq = live.last_seq;
        let mut cache = self
            .inner
            .projections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((at, p)) = cache.get(&round) {
            if *at == seq {
                return Ok(p.clone());
            }
        }
        let p = Arc::new(live.projection(round).map_err(StoreError::NotFound)?);
        cache.insert(round, (seq, p.clone()));
        Ok(p)
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
            journal_head: live.head_hash.clone(),
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

    fn area_stations(
        &self,
        round: u8,
        area: &str,
        offset: usize,
        limit: usize,
    ) -> Result<crate::AreaStations, StoreError> {
        let reg = &self.inner.registry;
        if reg.round(round).is_none() {
            return Err(StoreError::NotFound(format!("no round {round}")));
        }
        let path: Vec<&str> = area.split('/').filter(|p| !p.is_empty()).collect();
        let mut under: Vec<&crate::model::StationInfo> = reg
            .stations
            .iter()
            .filter(|s| {
                s.round == round
                    && s.area.len() >= path.len()
                    && s.area.iter().zip(&path).all(|(a, b)| a == b)
            })
            .collect();
        if under.is_empty() && !path.is_empty() {
            return Err(StoreError::NotFound(format!(
                "no area '{area}' in round {round}"
            )));
        }
        under.sort_by(|a, b| a.station_id.cmp(&b.station_id));
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        let stations = under
            .iter()
            .skip(offset)
            .take(limit)
            .map(|s| {
                let st = live.stations.get(&(round, s.station_id.clone()));
                crate::AreaStation {
                    station_id: s.station_id.clone(),
                    area: s.area.join("/"),
                    registered: s.registered,
                    conflict: st.is_some_and(|st| !st.conflicts.is_empty()),
                    sheets: st
                        .map(|st| {
                            st.latest
                                .iter()
                                .map(|(src, (v, sh))| crate::CurrentSheet {
                                    source: src.clone(),
                                    version: *v,
                                    registered: sh.registered,
                                    cast: sh.cast,
                                    invalid: sh.invalid,
                                    valid: sh.valid,
                                    votes: sh.votes.clone(),
                                    warnings: st.warnings.get(src).cloned().unwrap_or_default(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(crate::AreaStations {
            round,
            area: path.join("/"),
            total: under.len(),
            offset,
            stations,
        })
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
        // An unreadable version fails the look-up, naming the row: a station's history is never
        // shown with a version silently missing.
        let versions: Vec<SheetRecord> = self
            .inner
            .read_db(|db| db.sheets(Some(id)))?
            .into_iter()
            .collect::<Result<_, _>>()?;
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
        // An unreadable entry fails the read, naming the row: a page never skips an entry.
        self.inner
            .read_db(|db| db.journal(from, limit as i64))?
            .into_iter()
            .map(|row| row.map(|(_, e)| e))
            .collect()
    }

    fn subscribe(&self, hook: Hook) {
        self.inner
            .hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }
}

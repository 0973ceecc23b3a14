//! The JSON API under `/api/v1`. Every error is `{"code": "...", "message": "..."}` with a 4xx,
//! a 503 when the store cannot commit or read now, or a 500 when a stored row is corrupt. Sheet
//! errors use the validation codes (E1xx); the others use `H4xx`/`H5xx` codes named after their
//! HTTP status (`docs/validation-codes.md`).

#[allow(unused_imports)] // named only by the #[utoipa::path] attribute of `post_user`
use crate::wire::NewUser;
use crate::wire::{
    CandidateInfo, ElectionInfo, ErrorBody, GeoInfo, JournalPage, ReceiptBatch, RoundInfo,
    UserCreated, UserRevoked,
};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tally_model::validate::{find_duplicates, Duplicate};
use tally_model::Code;
use tally_store::model::sha256_hex;
#[allow(unused_imports)] // named only by the #[utoipa::path] attribute of `get_stations`
use tally_store::AreaStations;
use tally_store::{Receipt, Role, Store, StoreError, Submission, User};
use tokio::sync::{broadcast, oneshot};

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 1 << 20;
/// Bodies up to this size are read and dropped before a 413 (see `read_body`).
const DRAIN_LIMIT: usize = 8 << 20;
/// Largest number of sheets in one request.
pub const MAX_SHEETS: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// `(journal seq, event JSON)` of every stored sheet version.
    pub events: broadcast::Sender<(i64, String)>,
    /// Journal pages being read for SSE replays right now (at most [`MAX_CONCURRENT_REPLAYS`]).
    pub replays: Arc<tokio::sync::Semaphore>,
    /// Event subscribers connected now (at most [`MAX_SUBSCRIBERS`]).
    pub subscribers: Arc<std::sync::atomic::AtomicUsize>,
    /// `projection` events: a round's projection JSON whenever its call, method, stations in or
    /// rounded shares change (see [`watch_projections`]).
    pub projections: broadcast::Sender<String>,
    /// The map layer the server was given, as `/election` describes it.
    pub geo: Option<GeoInfo>,
}

/// Event streams open at once; more are answered 503 H503 (docs/limits.md).
pub const MAX_SUBSCRIBERS: usize = 2_000;

/// Journal pages read at once for SSE replays (each on a short blocking thread).
pub const MAX_CONCURRENT_REPLAYS: usize = 8;

/// One subscriber's place among [`MAX_SUBSCRIBERS`], given back when its stream ends.
struct SubscriberSlot(Arc<std::sync::atomic::AtomicUsize>);

impl SubscriberSlot {
    fn take(count: &Arc<std::sync::atomic::AtomicUsize>) -> Option<SubscriberSlot> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            })
            .ok()
            .map(|_| SubscriberSlot(count.clone()))
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>) -> AppState {
        let (events, _) = broadcast::channel(4096);
        let tx = events.clone();
        store.subscribe(Box::new(move |ev| {
            if let Ok(s) = serde_json::to_string(ev) {
                let _ = tx.send((ev.seq, s));
            }
        }));
        let (projections, _) = broadcast::channel(64);
        let state = AppState {
            store,
            events,
            replays: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REPLAYS)),
            subscribers: Default::default(),
            geo: None,
            projections,
        };
        // Outside a runtime (a router built for a test without one) there is no one to watch.
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(watch_projections(
                state.store.clone(),
                state.events.subscribe(),
                state.projections.clone(),
            ));
        }
        state
    }
}

/// How long the projection waits after a commit for more to arrive: a burst of sheets gives
/// one recomputation, and a page sees the new projection well within a second.
const PROJECTION_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Recomputes the projection of every round after commits and announces those that changed.
/// What counts as a change: the call, the method, the stations in, or a projected share or bound
/// moved by 0.01 point (so a page redraws when what it shows would).
async fn watch_projections(
    store: Arc<dyn Store>,
    mut commits: broadcast::Receiver<(i64, String)>,
    out: broadcast::Sender<String>,
) {
    let mut last: std::collections::HashMap<u8, String> = Default::default();
    loop {
        match commits.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
        tokio::time::sleep(PROJECTION_DEBOUNCE).await;
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = commits.try_recv() {}
        let s = store.clone();
        let Ok(found) = tokio::task::spawn_blocking(move || {
            let rounds: Vec<u8> = s.progress().rounds.iter().map(|r| r.round).collect();
            rounds
                .into_iter()
                .filter_map(|r| s.projection(r).ok().map(|p| (r, p)))
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        for (round, p) in found {
            let key = projection_key(&p);
            if last.get(&round) != Some(&key) {
                last.insert(round, key);
                if let Ok(json) = serde_json::to_string(p.as_ref()) {
                    let _ = out.send(json);
                }
            }
        }
    }
}

fn projection_key(p: &tally_project::Projection) -> String {
    let mut k = format!(
        "{}|{}|{:?}|{:?}|{}",
        p.method, p.reported.stations, p.call.kind, p.call.winner, p.call.words
    );
    for c in &p.candidates {
        k.push_str(&format!("|{:.2}/{:.2}/{:.2}", c.share, c.lower, c.upper));
    }
    k
}

/// An error answer: status, code, message, and per-sheet errors for a rejected batch.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub errors: Vec<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            errors: self.errors,
        };
        json_response(self.status, &body)
    }
}

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Every store error has its status and code (the table in `docs/validation-codes.md`); the
/// match has no catch-all, so a new variant must be given one. The message is the Display text.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::IdempotencyConflict(_) => (StatusCode::CONFLICT, "H409"),
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "H404"),
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "H400"),
            // Nothing was committed and a retry (with the same Idempotency-Key) is safe.
            StoreError::Busy(_)
            | StoreError::Unreachable(_)
            | StoreError::Db(_)
            | StoreError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "H503"),
            // A retry gives the same answer: someone must look at the database or the machine.
            StoreError::CorruptRow { .. } | StoreError::Io(_) | StoreError::Encode(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "H500")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The longest request target the API answers (its longest real URL is a few hundred bytes).
pub const MAX_URI: usize = 8 * 1024;
/// Header lines and bytes a request may carry (hyper itself stops far beyond these, with a bare
/// answer; here the client gets a coded JSON one, like every other refusal).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 H414 for an over-long request target, 431 H431 for too many or too large headers.
pub(crate) async fn limit_request_head(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = req.uri().to_string().len();
    if uri > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "H414",
            format!("the request target is {uri} bytes; at most {MAX_URI}"),
        )
        .into_response();
    }
    let h = req.headers();
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if h.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "H431",
            format!(
                "{} header lines, {bytes} bytes; at most {MAX_HEADERS} lines and {MAX_HEADER_BYTES} bytes",
                h.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

pub(crate) async fn not_found(method: Method) -> ApiError {
    let _ = method;
    ApiError::new(StatusCode::NOT_FOUND, "H404", "no such route")
}

pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "H405",
        format!("method {method} is not allowed here"),
    )
}

/// The user of the bearer token, or 401 (or the store's error when the users cannot be read).
fn authenticate(store: &dyn Store, headers: &HeaderMap) -> Result<User, ApiError> {
    let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "H401", m);
    let v = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauth("missing Authorization: Bearer <token>"))?;
    let v = v
        .to_str()
        .map_err(|_| unauth("the Authorization header is not text"))?;
    // The scheme name is case-insensitive (RFC 9110 11.1): `bearer` is `Bearer`.
    let token = v
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| unauth("the Authorization header must be 'Bearer <token>'"))?;
    if token.is_empty() || token.len() > 256 {
        return Err(unauth("invalid token"));
    }
    store
        .authenticate(token)?
        .ok_or_else(|| unauth("unknown or revoked token"))
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "H413",
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n > MAX_BODY as u64 => {
                // Read (and drop) a moderately large body first so the client sees the answer
                // instead of a connection reset; a body beyond that closes the connection.
                if n <= DRAIN_LIMIT as u64 {
                    let _ = axum::body::to_bytes(body, DRAIN_LIMIT).await;
                }
                return Err(too_large());
            }
            Some(_) => {}
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "H400",
                    "bad Content-Length",
                ))
            }
        }
    }
    match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        // The media type itself, not a prefix of it: `application/jsonx` is not JSON.
        Some(Ok(ct))
            if ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json") => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "H415",
                "the body must be JSON (Content-Type: application/json)",
            ))
        }
    }
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_large())
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "E108",
            format!("malformed JSON: {e}"),
        )
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_string()))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "H400",
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        )),
    }
}

/// One sheet stored, or a batch.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Stored {
    One(Receipt),
    Batch(ReceiptBatch),
}

/// The body of `POST /sheets`: one sheet, or an array of 1 to [`MAX_SHEETS`] sheets (all stored
/// or none). Only its schema is used: the body is read as JSON and checked sheet by sheet.
pub struct SheetsInput;

impl<'s> utoipa::ToSchema<'s> for SheetsInput {
    fn schema() -> (
        &'s str,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    ) {
        use utoipa::openapi::{ArrayBuilder, OneOfBuilder, Ref};
        // Written out because the array's bounds (which the handler enforces: 400 E108 when
        // empty, 413 H413 beyond MAX_SHEETS) cannot be stated on a derived enum variant.
        let sheet = || {
            Ref::from_schema_name(
                <tally_store::model::SheetRequest as utoipa::ToSchema>::schema().0,
            )
        };
        let batch = ArrayBuilder::new()
            .items(sheet())
            .min_items(Some(1))
            .max_items(Some(MAX_SHEETS));
        (
            "SheetsInput",
            OneOfBuilder::new()
                .item(sheet())
                .item(batch)
                .description(Some(
                    "One sheet, or an array of sheets (all stored or none).",
                ))
                .into(),
        )
    }
}

/// Submit one sheet or an array of sheets (all stored or none).
///
/// The source (official or observer) comes from the token's role.
#[utoipa::path(
    post,
    path = "/sheets",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 128,
        description = "Same key and same body: the same receipt again. Same key, different body: 409 H409.")),
    request_body = SheetsInput,
    responses(
        (status = 201, description = "Stored durably", body = Stored),
        (status = 200, description = "Replay of an earlier request with the same Idempotency-Key", body = Stored),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token (H401)", body = ErrorBody),
        (status = 403, description = "The role may not do this (H403)", body = ErrorBody),
        (status = 409, description = "Idempotency-Key used with a different body (H409)", body = ErrorBody),
        (status = 413, description = "Body or batch too large (H413)", body = ErrorBody),
        (status = 415, description = "Not JSON (H415)", body = ErrorBody),
        (status = 422, description = "A sheet error (E1xx); nothing was stored", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn post_sheets(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match submit(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn submit(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let store = st.store.as_ref();
    let user = authenticate(store, headers)?;
    if user.role == Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "H403",
            "an admin token cannot submit sheets",
        ));
    }
    let key = idempotency_key(headers)?;
    let bytes = read_body(headers, body).await?;
    let value = parse_json(&bytes)?;
    let (items, is_batch) = match value {
        Value::Array(a) => (a, true),
        v @ Value::Object(_) => (vec![v], false),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "E108",
                format!("expected a sheet object or an array of sheets, got {other}"),
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E108",
            "an empty array of sheets",
        ));
    }
    if items.len() > MAX_SHEETS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "H413",
            format!("at most {MAX_SHEETS} sheets per request"),
        ));
    }
    let mut sheets = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut forbidden = None;
    for (i, item) in items.iter().enumerate() {
        match tally_store::sheet_from_json(
            item,
            store.registry(),
            store.registry_index(),
            store.validation(),
        ) {
            Ok(vs) => {
                let area = store
                    .registry_index()
                    .stations
                    .get(&(vs.sheet.round, vs.sheet.station_id.clone()))
                    .map_or(&[][..], |&i| &store.registry().stations[i].area[..]);
                if !user.may_write(&vs.sheet.station_id, area) {
                    forbidden.get_or_insert(vs.sheet.station_id.clone());
                }
                sheets.push(vs);
            }
            Err(found) => {
                for f in found {
                    errors.push(json!({
                        "index": i,
                        "station_id": item.get("station_id"),
                        "code": f.code.as_str(),
                        "message": f.detail,
                        "fields": f.fields,
                    }));
                }
            }
        }
    }
    // E105: the same station twice in one request with different numbers, found by the same
    // function as in files (identical repeats are harmless: the store answers `unchanged`).
    if errors.is_empty() {
        let keys: Vec<String> = sheets
            .iter()
            .map(|vs| format!("{}\u{0}{}", vs.sheet.round, vs.sheet.station_id))
            .collect();
        let ids: Vec<&str> = keys.iter().map(String::as_str).collect();
        for dup in find_duplicates(&ids, |a, b| sheets[a].sheet == sheets[b].sheet) {
            if let Duplicate::Conflicting { rows } = dup {
                let items: Vec<String> = rows.iter().map(usize::to_string).collect();
                for &i in &rows[1..] {
                    let station = &sheets[i].sheet.station_id;
                    errors.push(json!({
                        "index": i,
                        "station_id": station,
                        "code": Code::E105.as_str(),
                        "message": format!("station {station} appears in this request with different numbers (items {})", items.join(", ")),
                    }));
                }
            }
        }
    }
    if !errors.is_empty() {
        let first = &errors[0];
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            first["code"].as_str().unwrap_or("E108"),
            format!(
                "{} sheet error(s); nothing was stored. First: {}",
                errors.len(),
                first["message"].as_str().unwrap_or("")
            ),
        );
        e.errors = errors;
        return Err(e);
    }
    if let Some(station) = forbidden {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "H403",
            format!("this token may not write sheets for station '{station}'"),
        ));
    }
    let body_hash = sha256_hex(&[&bytes]);
    let (tx, rx) = oneshot::channel();
    store.submit(
        Submission {
            user,
            idempotency: key.map(|k| (k, body_hash)),
            sheets,
        },
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let outcome = rx.await.map_err(|_| StoreError::Closed)??;
    let status = if outcome.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = if is_batch {
        json_response(
            status,
            &Stored::Batch(ReceiptBatch {
                receipts: outcome.receipts,
            }),
        )
    } else {
        // The store answers a one-sheet request with one receipt, and refuses a stored answer
        // without any (a corrupt idempotency row); should it ever hand back none, that is a
        // coded 500, not a panic.
        let Some(receipt) = outcome.receipts.first() else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "H500",
                "the store answered without a receipt; nothing is acknowledged",
            ));
        };
        json_response(status, &Stored::One(receipt.clone()))
    };
    if outcome.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// `a=1&b=x%2Fy` into a map (later keys win); `+` is a space.
pub fn parse_query(q: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let Some(q) = q else { return Ok(out) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k)?, decode(v)?);
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "H400",
            "bad percent-encoding in the query",
        )
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn check_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "H400",
            format!(
                "unknown query parameter '{k}' (allowed: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Results in the tally.results/1 schema (docs/results-json.md), from the official sheets.
#[utoipa::path(
    get,
    path = "/results",
    params(
        ("level" = Option<String>, Query, description = "Also report every area of this level"),
        ("area" = Option<String>, Query, description = "Path such as North/A"),
        ("round" = Option<u8>, Query, minimum = 1, maximum = 255),
        ("format" = Option<String>, Query, description = "json (tally.results/1, the default) or nist (a NIST SP 1500-100 v2 ElectionReport of the whole election, docs/nist.md)"),
    ),
    responses(
        (status = 200, description = "tally.results/1 document, or a NIST ElectionReport with format=nist"),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody)
    )
)]
pub async fn get_results(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["level", "area", "round", "format"])?;
    match q.get("format").map(String::as_str) {
        None | Some("json") => {}
        // The whole election as a NIST SP 1500-100 ElectionReport (docs/nist.md): every round,
        // area and station, so `round`, `area` and `level` do not narrow it.
        Some("nist") => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let generated = tally_model::nist::datetime_utc(now);
            // A round still partial whose projection calls a winner names it
            // `projected-winner`.
            let store = st.store.clone();
            let projected_winners: Vec<(u8, String)> = tokio::task::spawn_blocking(move || {
                let rounds: Vec<u8> = store.progress().rounds.iter().map(|r| r.round).collect();
                rounds
                    .into_iter()
                    .filter_map(|r| {
                        let p = store.projection(r).ok()?;
                        let partial = p.reported.stations < p.reported.stations_total;
                        let winner = p.call.winner.clone()?;
                        (partial && p.call.kind == tally_project::CallKind::Elected)
                            .then_some((r, winner))
                    })
                    .collect()
            })
            .await
            .map_err(|_| StoreError::Closed)?;
            let meta = tally_model::nist::NistMeta {
                generated: &generated,
                election_date: None,
                certified: false,
                issuer: "Tally",
                projected_winners: &projected_winners,
            };
            return Ok(json_response(StatusCode::OK, &st.store.nist(&meta)));
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "H400",
                format!("format '{other}' is not one of json, nist"),
            ))
        }
    }
    let round = match q.get("round").map(String::as_str) {
        None => None,
        Some(r) => Some(r.parse::<u8>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "H400",
                format!("round '{r}' is not a round number"),
            )
        })?),
    };
    let rep = st.store.results(
        round,
        q.get("area").map(String::as_str),
        q.get("level").map(String::as_str),
    )?;
    // Live only: where each round's projection is, and how many stations it rests on (the
    // official sheets counted, whole election).
    let projection: Vec<Value> = st
        .store
        .progress()
        .rounds
        .iter()
        .filter(|r| rep.rounds.iter().any(|x| x.round == r.round))
        .map(|r| {
            serde_json::json!({
                "round": r.round,
                "href": format!("/api/v1/projection?round={}", r.round),
                "based_on_stations": r.stations_counted,
                "stations_total": r.stations_known,
            })
        })
        .collect();
    let mut body = serde_json::to_value(&rep)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "H500", e.to_string()))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("projection".into(), Value::Array(projection));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Stations counted per round, sheet versions, conflicts, and the journal head.
///
/// Publish `journal_seq` and `journal_head` as an anchor (`tally verify --anchor SEQ:HASH`).
#[utoipa::path(get, path = "/progress", responses((status = 200, description = "progress")))]
pub async fn get_progress(State(st): State<AppState>) -> Response {
    json_response(StatusCode::OK, &st.store.progress())
}

/// The official sheets against the observers' for one round (`tally.reconcile/1`, as
/// `tally reconcile` builds it; docs/reconcile-json.md): recomputed on every request from memory.
#[utoipa::path(
    get,
    path = "/reconciliation",
    params(("round" = Option<u8>, Query, minimum = 1, description = "The round (default 1)")),
    responses(
        (status = 200, description = "tally.reconcile/1 document"),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody)
    )
)]
pub async fn get_reconciliation(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["round"])?;
    let round = round_param(&q)?.unwrap_or(1);
    let store = st.store.clone();
    let rep = tokio::task::spawn_blocking(move || store.reconciliation(round))
        .await
        .map_err(|_| StoreError::Closed)??;
    Ok(json_response(StatusCode::OK, &rep))
}

/// The projection of one round's final result from the official sheets in so far
/// (`tally.projection/1`, as `tally project` builds it; docs/projection.md): each candidate's
/// projected share with its interval, projected turnout, and the race call. Recomputed only when
/// the journal has moved; a `projection` event on `/events` announces a change.
#[utoipa::path(
    get,
    path = "/projection",
    params(("round" = Option<u8>, Query, minimum = 1, description = "The round (default: the latest with a counted sheet)")),
    responses(
        (status = 200, description = "tally.projection/1 document"),
        (status = 400, description = "Bad request (H400)", body = ErrorBody),
        (status = 404, description = "No such round (H404)", body = ErrorBody)
    )
)]
pub async fn get_projection(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["round"])?;
    let round = match round_param(&q)? {
        Some(r) => r,
        None => default_projection_round(st.store.as_ref()),
    };
    let store = st.store.clone();
    let p = tokio::task::spawn_blocking(move || store.projection(round))
        .await
        .map_err(|_| StoreError::Closed)??;
    Ok(json_response(StatusCode::OK, p.as_ref()))
}

/// The `round` query parameter: absent, or a round number from 1 (H400 otherwise).
fn round_param(q: &HashMap<String, String>) -> Result<Option<u8>, ApiError> {
    match q.get("round") {
        None => Ok(None),
        Some(r) => r
            .parse::<u8>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "H400",
                    format!("round '{r}' is not a round number"),
                )
            }),
    }
}

/// The latest round with a counted official sheet (round 1 before any).
pub fn default_projection_round(store: &dyn Store) -> u8 {
    store
        .progress()
        .rounds
        .iter()
        .filter(|r| r.stations_counted > 0)
        .map(|r| r.round)
        .max()
        .unwrap_or(1)
}

/// The election definition: rounds, candidates with display names and colours, area levels,
/// and the map layer when there is one.
#[utoipa::path(get, path = "/election", responses((status = 200, description = "the election", body = ElectionInfo)))]
pub async fn get_election(State(st): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &election_info(st.store.as_ref(), st.geo.clone()),
    )
}

/// What `GET /election` answers (also written by `tally site`).
pub fn election_info(store: &dyn Store, geo: Option<GeoInfo>) -> ElectionInfo {
    let reg = store.registry();
    let idx = store.registry_index();
    ElectionInfo {
        election: reg.election.clone(),
        rule: reg.rule.name.clone(),
        rounds: reg
            .rounds
            .iter()
            .map(|r| RoundInfo {
                round: r.number,
                candidates: r
                    .candidates
                    .iter()
                    .map(|c| CandidateInfo {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        colour: c.colour.clone(),
                    })
                    .collect(),
                levels: r.levels.clone(),
                stations: idx.stations.keys().filter(|(n, _)| *n == r.number).count(),
            })
            .collect(),
        geo,
    }
}

/// Largest page of `GET /stations`.
pub const MAX_STATIONS_PAGE: usize = 500;

/// The stations of one area and round, each with the current sheet of every source: numbers,
/// version and warning codes (a page of at most 500, ordered by station id).
#[utoipa::path(
    get,
    path = "/stations",
    params(
        ("round" = Option<u8>, Query, minimum = 1, maximum = 255, description = "The round (default 1)"),
        ("area" = Option<String>, Query, description = "Area path such as Adana/Ceyhan (default: the whole election)"),
        ("offset" = Option<usize>, Query, minimum = 0),
        ("limit" = Option<usize>, Query, minimum = 0, maximum = 500, description = "Default 100"),
    ),
    responses(
        (status = 200, description = "one page of stations", body = AreaStations),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody)
    )
)]
pub async fn get_stations(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["round", "area", "offset", "limit"])?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "H400", m);
    let round = round_param(&q)?.unwrap_or(1);
    let num = |name: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad(format!("{name} must be an integer from 0 to {max}"))),
        }
    };
    let offset = num("offset", 0, usize::MAX >> 1)?;
    let limit = num("limit", 100, MAX_STATIONS_PAGE)?;
    let area = q.get("area").cloned().unwrap_or_default();
    let store = st.store.clone();
    let page =
        tokio::task::spawn_blocking(move || store.area_stations(round, &area, offset, limit))
            .await
            .map_err(|_| StoreError::Closed)??;
    Ok(json_response(StatusCode::OK, &page))
}

/// Every version of every source of one station, and its conflicts.
#[utoipa::path(
    get,
    path = "/stations/{id}",
    params(("id" = String, Path, description = "A station id of the registry")),
    responses(
        (status = 200, description = "station"),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn get_station(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &st.store.station(&id)?))
}

/// Journal entries from seq on (hash-chained).
#[utoipa::path(
    get,
    path = "/journal",
    params(
        ("from" = Option<i64>, Query, minimum = 0, maximum = 9223372036854775807.0),
        ("limit" = Option<i64>, Query, minimum = 0, maximum = 1000),
    ),
    responses(
        (status = 200, description = "entries", body = JournalPage),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn get_journal(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["from", "limit"])?;
    let num = |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "H400",
                    format!("{name} must be an integer from 0 to {max}"),
                )),
            },
        }
    };
    let from = num("from", 1, i64::MAX)?;
    let limit = num("limit", 1000, 1000)?;
    let entries = st.store.journal(from, limit as usize)?;
    Ok(json_response(StatusCode::OK, &JournalPage { entries }))
}

/// The `change` events of stored sheet versions after `after`, read from the journal (for a
/// client resuming with `Last-Event-ID`, or a subscriber that fell behind). A journal that
/// cannot be read, or a sheet entry without its station, round, source or version, is an error:
/// an event is never skipped or sent with made-up fields.
/// Journal entries read per page of an SSE replay: what one subscriber holds at most.
pub const REPLAY_PAGE: usize = 500;

/// The sheet events of one journal page after `after`: the events and the last seq read (or
/// `None` when the journal has nothing after `after`). One page only, so a subscriber that
/// replays a long journal never holds more than [`REPLAY_PAGE`] entries, and concurrent page
/// reads are capped by `replays` (the blocking threads they use are few and short).
async fn journal_page(
    store: Arc<dyn Store>,
    replays: Arc<tokio::sync::Semaphore>,
    after: i64,
) -> Result<(Vec<(i64, String)>, Option<i64>), StoreError> {
    let _permit = replays
        .acquire_owned()
        .await
        .map_err(|_| StoreError::Closed)?;
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let from = after.saturating_add(1);
        {
            let page = store.journal(from, REPLAY_PAGE)?;
            let Some(last) = page.last().map(|e| e.body.seq) else {
                return Ok((out, None));
            };
            for e in page.into_iter().filter(|e| e.body.kind == "sheet") {
                let b = e.body;
                let seq = b.seq;
                let missing = |field: &str| {
                    StoreError::corrupt(
                        "journal",
                        format!("seq {seq}"),
                        format!("a sheet entry without {field}"),
                    )
                };
                let ev = tally_store::ChangeEvent {
                    new_conflict: false,
                    seq,
                    kind: b.kind,
                    station_id: b.station_id.ok_or_else(|| missing("station_id"))?,
                    round: b.round.ok_or_else(|| missing("round"))?,
                    source: b.source.ok_or_else(|| missing("source"))?,
                    version: b.version.ok_or_else(|| missing("version"))?,
                    hash: e.hash,
                };
                let text =
                    serde_json::to_string(&ev).map_err(|e| StoreError::Encode(e.to_string()))?;
                out.push((seq, text));
            }
            Ok((out, Some(last)))
        }
    })
    .await
    .map_err(|_| StoreError::Closed)?
}

/// Server-sent events: `id: SEQ`, `event: change`, `data: {...}` per stored sheet version. A
/// client that reconnects with `Last-Event-ID: SEQ` (or `?from=SEQ`) first gets what it missed,
/// from the journal; a subscriber that falls behind the in-memory channel is caught up the same
/// way, so no event is skipped or repeated.
/// Server-sent events: one 'change' event per stored sheet version, its id the journal seq.
///
/// Resume with Last-Event-ID (or from=SEQ): what was missed comes from the journal first.
#[utoipa::path(
    get,
    path = "/events",
    params(
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0),
        ("from" = Option<i64>, Query, minimum = 0, maximum = 9223372036854775807.0),
    ),
    responses(
        (status = 200, description = "text/event-stream"),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn get_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref())?;
    check_params(&q, &["from"])?;
    let bad = |what: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "H400",
            format!("{what} must be a journal sequence number (an integer >= 0)"),
        )
    };
    let header_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("Last-Event-ID"))?,
        ),
    };
    let query_from = match q.get("from") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("from"))?,
        ),
    };
    let Some(subscriber) = SubscriberSlot::take(&st.subscribers) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "H503",
            format!("{MAX_SUBSCRIBERS} event subscribers are connected already; retry later"),
        ));
    };
    // Subscribe before reading the journal, so nothing falls between the two.
    let rx = st.events.subscribe();
    let (replay_after, last) = match header_id.or(query_from) {
        Some(after) => (Some(after), after),
        // Live only: what is stored after the connection (the head is read after subscribing,
        // so an event is either before it or in the channel).
        None => (None, st.store.progress().journal_seq),
    };
    struct State {
        rx: broadcast::Receiver<(i64, String)>,
        projections: broadcast::Receiver<String>,
        pending: std::collections::VecDeque<(i64, String)>,
        /// Replaying the journal after this seq, one page at a time, before going live.
        replay_after: Option<i64>,
        last: i64,
        first: bool,
        store: Arc<dyn Store>,
        replays: Arc<tokio::sync::Semaphore>,
        _slot: SubscriberSlot,
    }
    let init = State {
        rx,
        projections: st.projections.subscribe(),
        pending: Default::default(),
        replay_after,
        last,
        first: true,
        store: st.store.clone(),
        replays: st.replays.clone(),
        _slot: subscriber,
    };
    let stream = futures_util::stream::unfold(init, |mut s| async move {
        if s.first {
            s.first = false;
            return Some((
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b": connected\n\n")),
                s,
            ));
        }
        loop {
            if let Some((seq, data)) = s.pending.pop_front() {
                s.last = s.last.max(seq);
                let mut item = format!("id: {seq}\nevent: change\ndata: {data}\n\n");
                // A sheet that made its station's sources disagree is also announced as a
                // `conflict` event (no id of its own: resuming goes by the change events).
                if data.contains("\"new_conflict\":true") {
                    item.push_str(&format!("event: conflict\ndata: {data}\n\n"));
                }
                return Some((Ok(Bytes::from(item)), s));
            }
            // The next page is read only once this one has been sent: a subscriber that does
            // not read holds one page, never the journal.
            if let Some(after) = s.replay_after {
                match journal_page(s.store.clone(), s.replays.clone(), after).await {
                    Ok((events, Some(read_to))) => {
                        s.pending
                            .extend(events.into_iter().filter(|(seq, _)| *seq > s.last));
                        s.replay_after = Some(read_to);
                    }
                    // Caught up: the channel holds everything after this point.
                    Ok((_, None)) => s.replay_after = None,
                    // Unreadable: end the stream rather than skip events; the client reconnects
                    // with Last-Event-ID and gets the coded error.
                    Err(_) => return None,
                }
                continue;
            }
            let next = tokio::select! {
                r = tokio::time::timeout(std::time::Duration::from_secs(15), s.rx.recv()) => r,
                p = s.projections.recv() => {
                    match p {
                        // A projection changed: its own event, no id (resuming goes by the
                        // change events; a reconnecting page fetches /projection anyway).
                        Ok(json) => {
                            let item = format!("event: projection\ndata: {json}\n\n");
                            return Some((Ok(Bytes::from(item)), s));
                        }
                        Err(_) => continue,
                    }
                }
            };
            match next {
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s)),
                Ok(Ok((seq, data))) => {
                    if seq > s.last {
                        s.pending.push_back((seq, data));
                    }
                }
                // Fell behind the channel: replay what was missed from the journal, page by page.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => s.replay_after = Some(s.last),
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

fn require_admin(store: &dyn Store, headers: &HeaderMap) -> Result<User, ApiError> {
    let user = authenticate(store, headers)?;
    if user.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "H403",
            "only an admin manages users",
        ));
    }
    Ok(user)
}

/// Add a user (admin). The token is shown once.
#[utoipa::path(
    post,
    path = "/users",
    security(("bearer" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "The new user and its token", body = UserCreated),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token (H401)", body = ErrorBody),
        (status = 403, description = "The role may not do this (H403)", body = ErrorBody),
        (status = 413, description = "Body or batch too large (H413)", body = ErrorBody),
        (status = 415, description = "Not JSON (H415)", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn post_user(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let admin = require_admin(st.store.as_ref(), &headers)?;
    let bytes = read_body(&headers, body).await?;
    let v = parse_json(&bytes)?;
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "H400", m);
    let role = v
        .get("role")
        .and_then(Value::as_str)
        .and_then(Role::parse)
        .ok_or_else(|| bad("role must be admin, official or observer"))?;
    let stations: Vec<String> = match v.get("stations") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("stations must be an array of station ids"))?,
        Some(_) => return Err(bad("stations must be an array of station ids")),
    };
    let (tx, rx) = oneshot::channel();
    st.store.add_user(
        &admin,
        role,
        stations,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let (user, token) = rx.await.map_err(|_| StoreError::Closed)??;
    Ok(json_response(
        StatusCode::CREATED,
        &UserCreated {
            user_id: user.id,
            role: user.role,
            stations: user.stations,
            token,
        },
    ))
}

/// Revoke a user's token (admin).
#[utoipa::path(
    delete,
    path = "/users/{id}",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "A user id")),
    responses(
        (status = 200, description = "revoked", body = UserRevoked),
        (status = 400, description = "Bad request (H400) or malformed JSON (E108)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token (H401)", body = ErrorBody),
        (status = 403, description = "The role may not do this (H403)", body = ErrorBody),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody),
        (status = 500, description = "A stored row is corrupt (H500); nothing acknowledged", body = ErrorBody),
        (status = 503, description = "The database cannot commit or be read now (H503); nothing stored, retry", body = ErrorBody)
    )
)]
pub async fn delete_user(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = require_admin(st.store.as_ref(), &headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "H400", "a user id is a number"))?;
    let (tx, rx) = oneshot::channel();
    st.store.revoke_user(
        &admin,
        id,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.map_err(|_| StoreError::Closed)??;
    Ok(json_response(
        StatusCode::OK,
        &UserRevoked {
            user_id: id,
            revoked: true,
        },
    ))
}

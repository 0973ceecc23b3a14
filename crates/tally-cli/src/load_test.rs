//! `tally load-test`: concurrent clients submit valid sheets (later ones are corrections, i.e. new
//! versions) with idempotency keys while a reader polls the results; reports durable sheets per
//! second, write latency p50/p99 and the results-read p99 during the load. Loopback only;
//! every loop is bounded by the sheet count. Nothing here prints: the command returns a
//! [`LoadTestReport`] and `main` prints it.

use crate::serve;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tally_server::client::Conn;

#[derive(Clone, Debug)]
pub struct LoadStation {
    pub round: u8,
    pub station_id: String,
    pub registered: Option<u64>,
    pub candidates: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub token: String,
    pub stations: Vec<LoadStation>,
    /// Sheets to submit in all.
    pub sheets: usize,
    /// Concurrent writing connections.
    pub concurrency: usize,
    /// Sheets per request (1 = one object per request; more = a JSON array).
    pub per_request: usize,
    /// Target sheets per second in all (`None`: as fast as the server answers). Sheet `i` is
    /// sent no earlier than `i / rate` seconds after the start, so reads can be measured under
    /// a stated load instead of a saturated machine.
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub sheets: usize,
    pub requests: usize,
    pub errors: usize,
    pub secs: f64,
    pub sheets_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub reads: usize,
    pub read_p50_ms: f64,
    pub read_p99_ms: f64,
    /// Every receipt: (idempotency key, request body, receipt JSON).
    #[serde(skip)]
    pub receipts: Vec<(String, String, serde_json::Value)>,
}

/// The JSON of sheet number `i`: station `i % n`, generation `i / n` (so numbers change and a
/// repeated station is a correction).
pub fn sheet_json(stations: &[LoadStation], i: usize) -> serde_json::Value {
    let s = &stations[i % stations.len()];
    let g = (i / stations.len()) as u64;
    let reg = s.registered.unwrap_or(1000).max(20);
    let cast = reg * 6 / 10 + g % (reg / 10 + 1);
    let invalid = (3 + g % 5).min(cast);
    let valid = cast - invalid;
    let k = s.candidates.len().max(1) as u64;
    let mut votes = serde_json::Map::new();
    for (j, c) in s.candidates.iter().enumerate() {
        let share = valid / k;
        let v = if j == 0 {
            valid - share * (k - 1)
        } else {
            share
        };
        votes.insert(c.clone(), v.into());
    }
    let mut m = serde_json::json!({
        "station_id": s.station_id, "round": s.round,
        "cast": cast, "invalid": invalid, "valid": valid, "votes": votes,
    });
    if let Some(r) = s.registered {
        m["registered"] = r.into();
    }
    m
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the load; keeps every receipt (for the crash test). `stop` ends it early.
pub async fn run(cfg: LoadConfig, stop: Arc<AtomicBool>) -> Result<LoadReport, String> {
    if cfg.stations.is_empty() {
        return Err("no stations".into());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let receipts = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        let (cfg, next, lat, receipts, errors, requests, stop) = (
            cfg.clone(),
            next.clone(),
            lat.clone(),
            receipts.clone(),
            errors.clone(),
            requests.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = match Conn::connect(&cfg.addr).await {
                Ok(c) => c,
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let auth = format!("Bearer {}", cfg.token);
            let per = cfg.per_request.max(1);
            let mut mine = Vec::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(per, Ordering::Relaxed);
                if i >= cfg.sheets {
                    break;
                }
                if let Some(rate) = cfg.rate.filter(|r| *r > 0.0) {
                    let due = start + std::time::Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let hi = (i + per).min(cfg.sheets);
                let body = if per == 1 {
                    sheet_json(&cfg.stations, i).to_string()
                } else {
                    serde_json::Value::Array(
                        (i..hi).map(|j| sheet_json(&cfg.stations, j)).collect(),
                    )
                    .to_string()
                };
                let key = format!("lg-{i}");
                let t = Instant::now();
                let r = conn
                    .request(
                        "POST",
                        "/api/v1/sheets",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                            ("Idempotency-Key", &key),
                        ],
                        body.as_bytes(),
                    )
                    .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                requests.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(resp) if resp.status == 201 || resp.status == 200 => {
                        mine.push(ms);
                        receipts.lock().unwrap_or_else(|e| e.into_inner()).push((
                            key,
                            body,
                            resp.json(),
                        ));
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match Conn::connect(&cfg.addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            lat.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        }));
    }
    let reader = {
        let (cfg, done) = (cfg.clone(), done.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            let Ok(mut conn) = Conn::connect(&cfg.addr).await else {
                return out;
            };
            while !done.load(Ordering::Relaxed) && out.len() < 1_000_000 {
                let t = Instant::now();
                match conn.request("GET", "/api/v1/results", &[], b"").await {
                    Ok(r) if r.status == 200 => out.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => break,
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            out
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut reads = reader.await.unwrap_or_default();
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    let receipts = std::mem::take(&mut *receipts.lock().unwrap_or_else(|e| e.into_inner()));
    let sheets: usize = receipts
        .iter()
        .map(|(_, _, r)| {
            r.get("receipts")
                .and_then(|a| a.as_array())
                .map_or(1, Vec::len)
        })
        .sum();
    Ok(LoadReport {
        sheets,
        requests: requests.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        secs,
        sheets_per_s: sheets as f64 / secs.max(1e-9),
        p50_ms: pct(&l, 0.50),
        p99_ms: pct(&l, 0.99),
        max_ms: l.last().copied().unwrap_or(0.0),
        reads: reads.len(),
        read_p50_ms: pct(&reads, 0.50),
        read_p99_ms: pct(&reads, 0.99),
        receipts,
    })
}

/// A results CSV with `stations` stations in two area levels and `candidates` candidates, for
/// `init` in tests and benchmarks.
pub fn synthetic_registry_csv(stations: usize, candidates: usize) -> String {
    let mut s = String::from("round,station_id,region,district,registered,cast,invalid,valid");
    for c in 0..candidates {
        s.push_str(&format!(",cand{c}"));
    }
    s.push('\n');
    for i in 0..stations {
        let reg = 500 + (i as u64 * 37) % 1500;
        let cast = reg * 7 / 10;
        let invalid = 5 + (i as u64 % 7);
        let valid = cast - invalid;
        let k = candidates.max(1) as u64;
        s.push_str(&format!(
            "1,S{i:06},R{},D{},{reg},{cast},{invalid},{valid}",
            i % 4,
            i % 16
        ));
        for c in 0..candidates {
            let share = valid / k;
            let v = if c == 0 {
                valid - share * (k - 1)
            } else {
                share
            };
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}

/// Stations of a registry as load targets.
pub fn stations_of(reg: &tally_store::Registry) -> Vec<LoadStation> {
    reg.stations
        .iter()
        .filter_map(|s| {
            let r = reg.round(s.round)?;
            Some(LoadStation {
                round: s.round,
                station_id: s.station_id.clone(),
                registered: s.registered,
                candidates: r.candidates.iter().map(|c| c.id.clone()).collect(),
            })
        })
        .collect()
}

/// What `tally load-test` measured, and the verification of the database afterwards.
#[derive(Clone, Debug)]
pub struct LoadTestReport {
    pub load: LoadReport,
    pub verify: tally_store::VerifyReport,
}

/// Load test on loopback: a fresh database (a SQLite file in a temporary directory, or the
/// given empty PostgreSQL database), a server in this process, `sheets` sheets from
/// `concurrency` clients; the database is verified afterwards.
pub fn run_fresh(
    db: Option<&str>,
    sheets: usize,
    stations: usize,
    concurrency: usize,
    per_request: usize,
    rate: Option<f64>,
) -> Result<LoadTestReport, String> {
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let csv = dir.join("stations.csv");
    std::fs::write(&csv, synthetic_registry_csv(stations, 4)).map_err(|e| e.to_string())?;
    let db = match db {
        Some(url) => url.to_string(),
        None => dir.join("bench.db").to_string_lossy().to_string(),
    };
    serve::init(&db, &csv.to_string_lossy(), None)?;
    let token = serve::users_add(&db, "official", &[])?;
    let reg = serve::registry_from_file(&csv.to_string_lossy(), None)?;
    // The server and the clients run on runtimes (threads) of their own, as they would on
    // different machines: the OS shares the cores between them, and a read request does not
    // wait in the same task queue as the 64 clients' next requests.
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    };
    let server_rt = runtime("tally-server")?;
    let client_rt = runtime("tally-loadgen")?;
    let (store, listener) = server_rt.block_on(serve::bind(&db, "127.0.0.1:0"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // A server that stops early shows as failed requests in the report.
    let server = server_rt.spawn(tally_server::serve(listener, store));
    let out = client_rt.block_on(run(
        LoadConfig {
            addr: addr.to_string(),
            token,
            stations: stations_of(&reg),
            sheets,
            concurrency,
            per_request,
            rate,
        },
        Default::default(),
    ));
    server.abort();
    server_rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let verify = serve::verify(&db, &[])?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LoadTestReport { load: out?, verify })
}

//! The dashboard in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (WebDriver, with `fantoccini`), against a `tally serve` of the embedded election on a fresh
//! SQLite file in this process.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (or `TALLY_CHROMIUM` /
//! `TALLY_CHROMEDRIVER`) the tests say they skipped, unless `TALLY_REQUIRE_BROWSER=1` (as in CI),
//! where that is a failure. Screenshots go to `target/screenshots/`.
//!
//! `TALLY_DASHBOARD_BENCH=1 cargo test -p tally-cli --test browser bench -- --nocapture` prints
//! the time to first render and the bytes of the first view with 200,000 stations stored.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_cli::{dashboard, serve};
use tally_server::client::Conn;

fn tool(env: &str, default: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_string()));
    p.exists().then_some(p)
}

/// The browser and its driver, or `None` (after saying so) when they are not installed.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = tool("TALLY_CHROMIUM", "/usr/bin/chromium");
    let driver = tool("TALLY_CHROMEDRIVER", "/usr/bin/chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let msg = "browser test skipped: /usr/bin/chromium and /usr/bin/chromedriver are not both installed (apt-get install chromium chromium-driver)";
            if std::env::var("TALLY_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("{msg}; TALLY_REQUIRE_BROWSER=1 makes this a failure");
            }
            eprintln!("{msg}");
            None
        }
    }
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tally-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts chromedriver and a headless Chromium session with a fresh profile.
async fn browser(chromium: &Path, driver: &Path, dir: &Path) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let guard = Driver(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = dir.join("profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,800",
            ]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session");
    (guard, client)
}

/// The embedded election on a fresh database with every official sheet stored except those of
/// `held_back` stations (round 1); a server on a free port with the embedded map. Returns the
/// address and the official token.
async fn embedded_server(dir: &Path, held_back: &[&str]) -> (String, String) {
    let (db, user, token) = dashboard::demo_db(&dir.join("night.db")).unwrap();
    let rounds = dashboard::embedded_rounds().unwrap();
    let sheets: Vec<Value> = dashboard::sheets_of(&rounds)
        .into_iter()
        .filter(|s| !(s["round"] == 1 && held_back.iter().any(|h| s["station_id"] == *h)))
        .collect();
    let (store, listener) = serve::bind(&db, "127.0.0.1:0").await.unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || {
        dashboard::submit_all(s2.as_ref(), &user, &sheets, Duration::ZERO).unwrap()
    })
    .await
    .unwrap();
    let geo = dashboard::geo_for(tally_store::Store::registry(store.as_ref()), None, None)
        .unwrap()
        .map(Arc::new);
    assert!(geo.is_some(), "the embedded election has its map");
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(tally_server::serve_site(
        listener,
        store,
        tally_server::conn::Limits::default(),
        geo,
    ));
    (addr, token)
}

async fn get_json(addr: &str, path: &str) -> Value {
    let mut c = Conn::connect(addr).await.unwrap();
    let r = c.request("GET", path, &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "GET {path}");
    r.json()
}

/// Waits until the page has rendered journal entry `seq` or later (`body[data-ready]`).
async fn ready(c: &Client, min_seq: i64) {
    let start = Instant::now();
    loop {
        let v = c
            .execute("return document.body.getAttribute('data-ready')", vec![])
            .await
            .unwrap();
        if let Some(s) = v.as_str().and_then(|s| s.parse::<i64>().ok()) {
            if s >= min_seq {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the page did not render"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `[data-candidate]` of the page: id -> (votes, share).
async fn page_numbers(c: &Client) -> Vec<(String, u64, f64)> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('[data-candidate]')).map(e => [e.getAttribute('data-candidate'), e.getAttribute('data-votes'), e.getAttribute('data-share')])",
            vec![],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x[0].as_str().unwrap().to_string(),
                x[1].as_str().unwrap().parse().unwrap(),
                x[2].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The page's candidate numbers and progress equal `/api/v1/results` for the round and area.
async fn assert_matches_api(c: &Client, addr: &str, round: u8, area: &str) {
    let api = get_json(
        addr,
        &format!(
            "/api/v1/results?round={round}&area={}",
            area.replace(' ', "%20")
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b == b'%' || b == b'/' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        ),
    )
    .await;
    let rr = &api["rounds"][0];
    let want: Vec<(String, u64, f64)> = rr["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["votes"].as_u64().unwrap(),
                c["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(page_numbers(c).await, want, "round {round}, area '{area}'");
    let p = c
        .execute(
            "const e = document.querySelector('[data-progress]'); return [e.getAttribute('data-stations-reported'), e.getAttribute('data-stations-total')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        p[0].as_str().unwrap().parse::<u64>().unwrap(),
        rr["progress"]["stations_counted"].as_u64().unwrap()
    );
    assert_eq!(
        p[1].as_str().unwrap().parse::<u64>().unwrap(),
        rr["progress"]["stations_known"].as_u64().unwrap()
    );
    // Read in one script: the live page may re-render between a find and a read of the element
    // (a stale element reference).
    let outcome = c
        .execute(
            "const e = document.querySelector('[data-outcome]'); return e ? e.innerText : ''",
            vec![],
        )
        .await
        .unwrap();
    let outcome = outcome.as_str().unwrap_or("");
    assert!(!outcome.trim().is_empty(), "the outcome in words");
}

fn screenshots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sets the viewport (not the window) to `w` x `h`.
async fn viewport(c: &Client, w: u32, h: u32) {
    c.set_window_size(w, h).await.unwrap();
    let d = c
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
            vec![],
        )
        .await
        .unwrap();
    // Only the height: a headless window's width is its viewport's.
    let dh = d[1].as_u64().unwrap_or(0);
    if dh > 0 {
        c.set_window_size(w, h + dh as u32).await.unwrap();
    }
}

async fn screenshot(c: &Client, w: u32, h: u32, name: &str) -> PathBuf {
    viewport(c, w, h).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    let p = screenshots_dir().join(name);
    std::fs::write(&p, png).unwrap();
    p
}

/// axe-core's serious and critical violations on the page as it is now.
async fn axe_violations(c: &Client) -> Vec<Value> {
    let axe = include_str!("browser/axe.min.js");
    c.execute(axe, vec![]).await.unwrap();
    let v = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.map(v =>
               ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) }))));",
            vec![],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious") | Some("critical")))
        .cloned()
        .collect()
}

async fn current_crumb(c: &Client) -> String {
    c.find(Locator::Css("#crumbs [aria-current]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_crumb(c: &Client, want: &str) {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css("#crumbs [aria-current]")).await {
            if e.text().await.unwrap_or_default() == want {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "breadcrumb never showed {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn votes_of(c: &Client, id: &str) -> Option<u64> {
    c.execute(
        &format!("const e = document.querySelector('[data-candidate=\"{id}\"]'); return e && e.getAttribute('data-votes')"),
        vec![],
    )
    .await
    .ok()?
    .as_str()?
    .parse()
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let dir = tmp("dashboard");
    // Adana/Aladağ's round-1 sheet is held back and posted while the page is open.
    let held = "TR-D-01-001";
    let (addr, token) = embedded_server(&dir, &[held]).await;
    let (_driver, c) = browser(&chromium, &driver, &dir).await;
    let base = format!("http://{addr}");

    // The whole country, round 1: the numbers are the API's.
    c.goto(&format!("{base}/")).await.unwrap();
    let seq = get_json(&addr, "/api/v1/progress").await["journal_seq"]
        .as_i64()
        .unwrap();
    ready(&c, seq).await;
    assert_matches_api(&c, &addr, 1, "").await;
    // The projection panel shows the projection endpoint's call and shares. Read through one
    // script (the panel is redrawn when a projection event arrives), retried for a few seconds.
    let proj = get_json(&addr, "/api/v1/projection?round=1").await;
    let want: Vec<(String, f64)> = proj["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["share"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut seen = Value::Null;
    let mut matched = false;
    for _ in 0..50 {
        seen = c
            .execute(
                "var call = document.querySelector('[data-projection-call]');
                 return {call: call && call.getAttribute('data-projection-call'),
                   shares: Array.from(document.querySelectorAll('[data-projection-candidate]'))
                     .map(function (e) { return [e.getAttribute('data-projection-candidate'),
                                                 parseFloat(e.getAttribute('data-share'))]; })};",
                vec![],
            )
            .await
            .unwrap();
        let shares: Vec<(String, f64)> = seen["shares"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or("").to_string(),
                            p[1].as_f64().unwrap_or(-1.0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        matched = seen["call"] == proj["call"]["kind"]
            && shares.len() == want.len()
            && shares
                .iter()
                .zip(&want)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-9);
        if matched {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matched,
        "projection panel {seen} against the endpoint {proj}"
    );
    let areas = c.find_all(Locator::Css("svg [data-area]")).await.unwrap();
    assert_eq!(areas.len(), 81, "81 provinces on the map");

    // Screenshots, desktop and phone.
    let desk = screenshot(&c, 1280, 800, "dashboard-1280x800.png").await;
    let phone = screenshot(&c, 390, 844, "dashboard-390x844.png").await;
    // The whole page too (for people looking at the screenshots).
    let full = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(844) as u32;
    screenshot(&c, 390, full.min(8000), "dashboard-390-full.png").await;
    viewport(&c, 1280, 800).await;
    let full = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(800) as u32;
    screenshot(&c, 1280, full.min(8000), "dashboard-1280-full.png").await;
    viewport(&c, 390, 844).await;
    eprintln!("screenshots: {} {}", desk.display(), phone.display());
    // Readable at phone width: nothing wider than the viewport.
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(0) <= 0,
        "the page scrolls sideways at 390 px: {overflow}"
    );
    viewport(&c, 1280, 800).await;

    // Accessibility: no serious or critical violation.
    let bad = axe_violations(&c).await;
    assert!(bad.is_empty(), "axe-core: {}", Value::from(bad.clone()));

    // Live: a sheet posted while the page is open appears without reload within 2 s.
    let before = votes_of(&c, "erdogan").await.unwrap();
    let sheet = json!({"station_id": held, "round": 1, "registered": 12330, "cast": 11227,
        "invalid": 355, "valid": 10872,
        "votes": {"erdogan": 6679, "kilicdaroglu": 3607, "ogan": 502, "ince": 84}});
    let mut conn = Conn::connect(&addr).await.unwrap();
    let auth = format!("Bearer {token}");
    let posted = Instant::now();
    let r = conn
        .request(
            "POST",
            "/api/v1/sheets",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            sheet.to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    loop {
        if votes_of(&c, "erdogan").await == Some(before + 6679) {
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(2),
            "the posted sheet did not appear within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!(
        "a posted sheet appeared on the page after {:?}",
        posted.elapsed()
    );
    assert_matches_api(&c, &addr, 1, "").await;

    // Drill-down by click on the map.
    c.find(Locator::Css("svg [data-area=\"Adana\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_crumb(&c, "Adana").await;
    ready(&c, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_matches_api(&c, &addr, 1, "Adana").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/r/1/a/Adana"));

    // Then by keyboard: Enter on a district's link; its station table appears.
    let link = c
        .find(Locator::Css("#children a[data-path=\"Adana/Aladağ\"]"))
        .await
        .unwrap();
    link.send_keys("\u{E007}").await.unwrap();
    wait_crumb(&c, "Aladağ").await;
    let row = c
        .wait()
        .for_element(Locator::Css("#stations tr[data-station=\"TR-D-01-001\"]"))
        .await
        .unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("official"), "the station's source: {text}");
    assert_matches_api(&c, &addr, 1, "Adana/Aladağ").await;
    let bad = axe_violations(&c).await;
    assert!(
        bad.is_empty(),
        "axe-core on the station table: {}",
        Value::from(bad.clone())
    );

    // The breadcrumb back to the whole country, by keyboard.
    c.find(Locator::Css("#crumbs a[data-path=\"\"]"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_crumb(&c, "All areas").await;
    c.wait()
        .for_element(Locator::Css("svg [data-area=\"Ankara\"]"))
        .await
        .unwrap();
    // A map area selected with the keyboard.
    c.find(Locator::Css("svg [data-area=\"Ankara\"]"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_crumb(&c, "Ankara").await;
    assert_eq!(current_crumb(&c).await, "Ankara");

    // A deep link to the runoff, in Turkish: the runoff's numbers, Turkish text.
    c.goto(&format!("{base}/r/2/a/Ankara?lang=tr"))
        .await
        .unwrap();
    ready(&c, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_matches_api(&c, &addr, 2, "Ankara").await;
    let crumb = c
        .find(Locator::Css("#crumbs a[data-path=\"\"]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(crumb, "Tüm bölgeler");
    c.goto(&format!("{base}/?lang=tr")).await.unwrap();
    ready(&c, 0).await;
    screenshot(&c, 390, 844, "dashboard-tr-390x844.png").await;

    c.close().await.unwrap();
}

/// A minimal static file server for the published site (GET only; `/` is `index.html`).
async fn static_server(root: PathBuf) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let root = root.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).await.is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split(' ').nth(1).unwrap_or("/");
                let path = path.split(['?', '#']).next().unwrap_or("/");
                let rel = if path == "/" {
                    "index.html"
                } else {
                    &path[1..]
                };
                let file = root.join(rel);
                let (status, body, mime) = match std::fs::read(&file) {
                    Ok(b) if !rel.contains("..") => {
                        let mime = match file.extension().and_then(|e| e.to_str()) {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript",
                            Some("css") => "text/css",
                            _ => "application/json",
                        };
                        ("200 OK", b, mime)
                    }
                    _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
                };
                let mut s = r.into_inner();
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_site_in_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let dir = tmp("site");
    let (addr, _) = embedded_server(&dir, &[]).await;
    let store = dashboard::open_store(&dir.join("night.db").to_string_lossy()).unwrap();
    let geo = dashboard::geo_for(tally_store::Store::registry(store.as_ref()), None, None).unwrap();
    let out = dir.join("site");
    let sum = dashboard::write_site(&store, geo.as_ref(), &out, false).unwrap();
    assert!(sum.areas > 1000, "every area has its snapshot: {sum:?}");
    assert!(
        dashboard::write_site(&store, geo.as_ref(), &out, false).is_err(),
        "a non-empty folder is refused without replace"
    );
    let site = static_server(out).await;
    let (_driver, c) = browser(&chromium, &driver, &dir).await;
    c.goto(&format!("http://{site}/#/r/1/a/Adana"))
        .await
        .unwrap();
    ready(&c, 0).await;
    assert_eq!(current_crumb(&c).await, "Adana");
    // The snapshot's numbers are the live server's.
    assert_matches_api(&c, &addr, 1, "Adana").await;
    c.find(Locator::Css("#children a[data-path=\"Adana/Ceyhan\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_crumb(&c, "Ceyhan").await;
    c.wait()
        .for_element(Locator::Css("#stations tr[data-station]"))
        .await
        .unwrap();
    c.close().await.unwrap();
}

/// Not a check: prints the time to first render and the bytes of the first view with 200,000
/// stations stored (run with TALLY_DASHBOARD_BENCH=1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_first_render_200k() {
    if std::env::var("TALLY_DASHBOARD_BENCH").as_deref() != Ok("1") {
        eprintln!("dashboard bench skipped: set TALLY_DASHBOARD_BENCH=1");
        return;
    }
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let n: usize = std::env::var("TALLY_DASHBOARD_BENCH_STATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let dir = tmp("bench");
    let csv = dir.join("stations.csv");
    std::fs::write(&csv, tally_cli::load_test::synthetic_registry_csv(n, 5)).unwrap();
    let db = dir.join("night.db").to_string_lossy().to_string();
    serve::init(&db, &csv.to_string_lossy(), None).unwrap();
    let (user, _) = tally_store::engine::add_user(
        &tally_store::DbTarget::parse(&db),
        tally_store::Role::Official,
        &[],
    )
    .unwrap();
    let t0 = Instant::now();
    let (store, listener) = serve::bind(&db, "127.0.0.1:0").await.unwrap();
    let reg = tally_store::Store::registry(store.as_ref()).clone();
    let stations = tally_cli::load_test::stations_of(&reg);
    let sheets: Vec<Value> = (0..stations.len())
        .map(|i| tally_cli::load_test::sheet_json(&stations, i))
        .collect();
    let s2 = store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        dashboard::submit_all(s2.as_ref(), &user, &sheets, Duration::ZERO).unwrap()
    })
    .await
    .unwrap();
    eprintln!("stored {stored} sheets in {:.1?}", t0.elapsed());
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(tally_server::serve_site(
        listener,
        store,
        tally_server::conn::Limits::default(),
        None,
    ));
    let (_driver, c) = browser(&chromium, &driver, &dir).await;
    for run in 0..3 {
        // A fresh page each time; the first run has an empty cache.
        let wall = Instant::now();
        c.goto(&format!("http://{addr}/?run={run}")).await.unwrap();
        ready(&c, 1).await;
        let wall = wall.elapsed();
        let m = c
            .execute(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const res = performance.getEntriesByType('resource');
                 return { first_render_ms: window.tallyFirstRender,
                   bytes: nav.transferSize + res.reduce((a, r) => a + (r.transferSize || 0), 0),
                   decoded: nav.decodedBodySize + res.reduce((a, r) => a + (r.decodedBodySize || 0), 0),
                   requests: 1 + res.length }",
                vec![],
            )
            .await
            .unwrap();
        eprintln!(
            "dashboard, {n} stations, run {run}: first render {:.0} ms after navigation start (wall {:.0?}); {} bytes transferred in {} requests ({} bytes decoded)",
            m["first_render_ms"].as_f64().unwrap_or(f64::NAN),
            wall,
            m["bytes"],
            m["requests"],
            m["decoded"]
        );
    }
    c.close().await.unwrap();
}

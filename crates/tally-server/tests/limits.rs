//! Hostile clients get bounded time, bounded memory and a coded answer (docs/limits.md):
//! idle connections cannot starve a real request, over-limit clients are refused at once,
//! slow and idle connections are closed, and SSE replay subscribers that never read hold one
//! page of the journal each, not the journal.

mod common;
use common::Kind;
use serde_json::json;
use std::time::Duration;
use tally_server::client::Conn;
use tally_server::conn::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); what was read.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|_| out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_starve_a_request() {
    let (_dir, db, _) = common::setup("limits_idle", Kind::Sqlite);
    let addr = common::start(&db).await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // The issue's bound: a normal request is still answered within 2 s.
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        let mut c = Conn::connect(&addr).await.unwrap();
        c.request("GET", "/api/v1/results", &[], b"").await.unwrap()
    })
    .await
    .expect("answered within 2 s with 2,000 idle connections open");
    assert_eq!(answer.status, 200);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_slow_and_idle_clients_are_answered_and_closed() {
    let (_dir, db, _) = common::setup("limits_small", Kind::Sqlite);
    let limits = Limits {
        max_connections: 20,
        header_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(600),
    };
    let addr = common::start_with(&db, limits).await;
    // Fill every slot, then one more: a coded 503 at once, and the connection is closed.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let refused = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the over-limit client is closed");
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains(r#""code":"H503""#), "{text}");
    // The held connections send nothing: the header-read timeout closes them.
    for s in &mut held {
        assert!(
            read_until_closed(s, Duration::from_secs(5)).await.is_some(),
            "a silent connection is closed"
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Slowloris: a header trickling in is cut off by the header-read timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let trickle = async {
        for b in b"GET /api/v1/results HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    assert!(read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .is_some());
    // Keep-alive: after one answer, an idle connection is closed by the idle timeout.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /api/v1/progress HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let all = read_until_closed(&mut c, Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    // And the server still answers.
    let mut ok = Conn::connect(&addr).await.unwrap();
    let r = ok
        .request("GET", "/api/v1/results", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

/// Resident memory of this process, in kB (Linux).
fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_replay_subscribers_hold_one_page_each() {
    let (_dir, db, tokens) = common::setup("limits_sse", Kind::Sqlite);
    let addr = common::start(&db).await;
    let official = format!("Bearer {}", tokens[1]);
    // 8,000 journal entries: 200 corrections of the 40 stations.
    let mut c = Conn::connect(&addr).await.unwrap();
    for v in 0..200u64 {
        let batch: Vec<_> = (0..40)
            .map(|i| {
                json!({"station_id": format!("S{i:06}"), "registered": 3000, "cast": 600 + v,
                       "invalid": 0, "valid": 600 + v,
                       "votes": {"cand0": 300 + v, "cand1": 200, "cand2": 100}})
            })
            .collect();
        let body = serde_json::to_vec(&batch).unwrap();
        let r = c
            .request(
                "POST",
                "/api/v1/sheets",
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &official),
                ],
                &body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let Some(before) = rss_kb() else {
        eprintln!("skipped: no /proc/self/status on this system");
        return;
    };
    // 100 subscribers replaying from the start that never read a byte.
    let mut subs = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n")
            .await
            .unwrap();
        subs.push(s);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kb().unwrap();
    let grown_mb = after.saturating_sub(before) / 1024;
    eprintln!("100 non-reading replay subscribers: RSS {before} kB -> {after} kB");
    // Holding the whole journal would be 100 x 8,000 events of ~250 bytes = ~200 MB; one page
    // each (500 events) is ~12 MB. The bound leaves room for allocator slack.
    assert!(
        grown_mb < 64,
        "100 non-reading subscribers grew the server by {grown_mb} MB"
    );
    // Everyone else is still served, and a reading subscriber gets the whole journal in order.
    let mut reader = TcpStream::connect(&addr).await.unwrap();
    reader
        .write_all(b"GET /api/v1/events?from=7990 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let want = (7991..=8000)
        .map(|n| format!("id: {n}\n"))
        .collect::<Vec<_>>();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !want
            .iter()
            .all(|w| String::from_utf8_lossy(&got).contains(w.as_str()))
        {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    for w in &want {
        assert!(text.contains(w.as_str()), "missing {w:?} in {text}");
    }
    drop(subs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_coded_json_answers() {
    let (_dir, db, _) = common::setup("limits_heads", Kind::Sqlite);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let long = format!("/api/v1/results?area={}", "x".repeat(10_000));
    let r = c.request("GET", &long, &[], b"").await.unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (414, Some("H414")));
    let names: Vec<String> = (0..150).map(|i| format!("X-Extra-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let mut c = Conn::connect(&addr).await.unwrap();
    let r = c
        .request("GET", "/api/v1/results", &headers, b"")
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (431, Some("H431")));
}

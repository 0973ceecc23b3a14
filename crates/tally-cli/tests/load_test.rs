//! The load test's generator against an in-process server: every sheet gets a receipt and is
//! counted once.

mod common;
use common::Kind;
use tally_cli::{load_test, serve};
use tally_server::client::Conn;
use tally_store::both;

both!(load_small);
async fn load_small(kind: Kind) {
    let (dir, db, [_, official, _]) = common::setup("load", kind);
    let addr = common::start(&db).await;
    let reg = serve::registry_from_file(&dir.join("stations.csv").to_string_lossy(), None).unwrap();
    let r = load_test::run(
        load_test::LoadConfig {
            addr: addr.clone(),
            token: official,
            stations: load_test::stations_of(&reg),
            sheets: 400,
            concurrency: 8,
            per_request: 1,
            rate: None,
        },
        Default::default(),
    )
    .await
    .unwrap();
    eprintln!("load (debug): {}", serde_json::to_string(&r).unwrap());
    assert_eq!((r.sheets, r.errors), (400, 0));
    assert!(r.sheets_per_s > 0.0 && r.p99_ms >= r.p50_ms);
    let mut c = Conn::connect(&addr).await.unwrap();
    let p = c
        .request("GET", "/api/v1/progress", &[], b"")
        .await
        .unwrap()
        .json();
    assert_eq!(p["versions"], 400);
    assert_eq!(p["rounds"][0]["stations_counted"], 40);
}

//! Test support shared by the store, server and command-line test suites (feature
//! `test-support`): which backend a test runs on, and a macro that runs an async test once per
//! backend.

/// The backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of the given kind: a SQLite path in `dir`, or a PostgreSQL URL.
pub fn fresh_db(kind: Kind, dir: &std::path::Path, name: &str) -> String {
    match kind {
        Kind::Sqlite => dir.join("t.db").to_string_lossy().to_string(),
        Kind::Postgres => crate::pg::test_database(name),
    }
}

/// Runs a blocking store call (verify, export, a PostgreSQL client) off the async runtime.
pub fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("the blocking call finished")
}

/// Runs the async test function `$name(Kind)` once per backend, as `$name::sqlite` and
/// `$name::postgres`. The PostgreSQL run needs `TALLY_TEST_POSTGRES`; without it, it says it was
/// skipped, unless `TALLY_REQUIRE_POSTGRES=1` (as in CI), where that is a failure.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::testing::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::pg::test_server() {
                    Some(_) => super::$name($crate::testing::Kind::Postgres).await,
                    None => eprintln!(
                        "skipped on PostgreSQL: set TALLY_TEST_POSTGRES=$(scripts/postgres-for-tests)"
                    ),
                }
            }
        }
    };
}

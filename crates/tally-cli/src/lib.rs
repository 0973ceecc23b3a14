//! The election-night half of the `tally` command line, as a library so its integration tests
//! (the crash test, the load test) drive the same code: `init`, `users add`, `serve`, `export`
//! and `verify` ([`serve`]), the load test ([`load_test`]) (its HTTP client is `tally_server::client`).
//! Like the rest of this crate it is glue: storage is `tally-store`, HTTP is `tally-server`.

pub mod dashboard;
pub mod embedded;
pub mod load_test;
pub mod naming;
pub mod serve;

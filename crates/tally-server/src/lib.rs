//! # tally-server
//!
//! The election-night server of Tally and the only crate that knows HTTP: an axum JSON API under
//! `/api/v1` over a [`tally_store::Store`]. It knows nothing else: opening databases, command-line
//! glue, the load generator and all printing live in `tally-cli`.
//!
//! Architecture invariant: no validation rule and no counting here. Sheets are checked by
//! `tally_store::sheet_from_json` (which uses `tally_model::validate`), results are built by
//! `tally_model::report`, and every write goes through the store, which answers only once the
//! sheet is durable.

pub mod api;
pub mod openapi;

pub use api::{router, AppState};

use std::sync::Arc;
use tally_store::Store;

/// Serves the API over `store` on a bound listener until the listener fails. Binding is left to
/// the caller, so it can report the address (port 0) before the first request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
) -> std::io::Result<()> {
    axum::serve(listener, router(AppState::new(store))).await
}

//! # tally-server
//!
//! The election-night server of Tally and the only crate that knows HTTP: an axum JSON API under
//! `/api/v1` over a [`tally_store::Store`], plus the command-line glue ([`cli`]) and a load
//! generator ([`loadgen`]).
//!
//! Architecture invariant: no validation rule and no counting here. Sheets are checked by
//! `tally_store::sheet_from_json` (which uses `tally_model::validate`), results are built by
//! `tally_model::report`, and every write goes through the store, which answers only once the
//! sheet is durable.

pub mod api;
pub mod cli;
pub mod client;
pub mod loadgen;
pub mod openapi;

pub use api::{router, AppState};

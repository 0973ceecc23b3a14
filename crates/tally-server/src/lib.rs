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
pub mod client;
pub mod conn;
pub mod openapi;
pub mod site;
pub mod wire;

pub use api::AppState;

use api::{
    delete_user, get_election, get_events, get_journal, get_progress, get_projection,
    get_reconciliation, get_results, get_station, get_stations, method_not_allowed, not_found,
    post_sheets, post_user,
};
use axum::routing::{delete, get, post};
use axum::Router;

/// The routes: every handler of [`api`] under `/api/v1`, and the OpenAPI document.
pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// [`router`] with the dashboard's map layer (`GET /api/v1/geo`).
pub fn router_with(mut state: AppState, geo: Option<Arc<site::Geo>>) -> Router {
    state.geo = geo.as_ref().map(|g| g.info());
    let api = Router::new()
        .route("/sheets", post(post_sheets))
        .route("/results", get(get_results))
        .route("/progress", get(get_progress))
        .route("/stations/{id}", get(get_station))
        .route("/stations", get(get_stations))
        .route("/election", get(get_election))
        .route(
            "/geo",
            get(move |headers: axum::http::HeaderMap| async move {
                site::geo_response(geo.as_deref(), &headers)
            }),
        )
        .route("/events", get(get_events))
        .route("/journal", get(get_journal))
        .route("/reconciliation", get(get_reconciliation))
        .route("/projection", get(get_projection))
        .route("/openapi.json", get(openapi::get_openapi))
        .route("/users", post(post_user))
        .route("/users/{id}", delete(delete_user));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(site::get_page))
        .route("/r/{*rest}", get(site::get_page))
        .route("/assets/{*file}", get(site::get_asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(api::limit_request_head))
        .with_state(state)
}

use std::sync::Arc;
use tally_store::Store;

/// Serves the API over `store` on a bound listener until the listener fails. Binding is left to
/// the caller, so it can report the address (port 0) before the first request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
) -> std::io::Result<()> {
    serve_with(listener, store, conn::Limits::default()).await
}

/// [`serve`] under the given connection limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    limits: conn::Limits,
) -> std::io::Result<()> {
    serve_site(listener, store, limits, None).await
}

/// [`serve_with`] with the dashboard's map layer.
pub async fn serve_site(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    limits: conn::Limits,
    geo: Option<Arc<site::Geo>>,
) -> std::io::Result<()> {
    conn::serve(listener, router_with(AppState::new(store), geo), limits).await
}

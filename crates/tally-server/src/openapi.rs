//! The OpenAPI 3 document of the API (served at `/api/v1/openapi.json`), generated with `utoipa`
//! from the handlers' `#[utoipa::path]` attributes in [`crate::api`] and from the wire types
//! ([`crate::wire`]: receipts, journal entries, error bodies...),
//! so a field added to an answer appears here by itself. The request bodies are read as JSON
//! values and checked by `tally_store::sheet_from_json`; the sheet's schema is derived from its
//! typed request (`tally_store::model::SheetRequest`), and `NewUser` describes what the user route accepts (the test `tests/openapi.rs` holds both sides together).

use crate::wire::{
    CandidateInfo, ElectionInfo, ErrorBody, GeoInfo, JournalPage, NewUser, ReceiptBatch, RoleName,
    RoundInfo, SheetError, UserCreated, UserRevoked,
};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use std::sync::OnceLock;
use tally_store::model::EntryBody;
use tally_store::{JournalEntry, Receipt};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The bearer scheme the write routes name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally election-night API",
        version = "1",
        description = "Tally sheets in, results out. Writes need a bearer token (roles admin, official, observer); reads are public. Every error is {code, message}: E1xx validation codes (docs/validation-codes.md) or H4xx/H5xx codes named after the HTTP status: H503 when the database cannot commit or be read right now (nothing stored; retry with the same Idempotency-Key), H500 when a stored row is corrupt (the message names its table and key; nothing acknowledged)."
    ),
    servers((url = "/api/v1")),
    paths(
        crate::api::post_sheets,
        crate::api::get_results,
        crate::api::get_progress,
        crate::api::get_station,
        crate::api::get_events,
        crate::api::get_journal,
        crate::api::get_reconciliation,
        crate::api::get_projection,
        crate::api::get_election,
        crate::api::get_stations,
        crate::site::get_geo,
        get_openapi,
        crate::api::post_user,
        crate::api::delete_user,
    ),
    components(schemas(
        ErrorBody,
        SheetError,
        crate::api::Stored,
        crate::api::SheetsInput,
        tally_store::model::Count,
        tally_store::model::SheetRequest,
        ReceiptBatch,
        JournalPage,
        RoleName,
        NewUser,
        UserCreated,
        UserRevoked,
        Receipt,
        JournalEntry,
        EntryBody,
        ElectionInfo,
        RoundInfo,
        CandidateInfo,
        GeoInfo,
        tally_store::AreaStations,
        tally_store::AreaStation,
        tally_store::CurrentSheet,
    )),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// The document as served (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // Serialising the generated document cannot fail (plain maps and strings); an empty
        // object would fail the OpenAPI test rather than go unnoticed.
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_string())
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3")))]
pub async fn get_openapi() -> Response {
    let mut r = Response::new(Body::from(document()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

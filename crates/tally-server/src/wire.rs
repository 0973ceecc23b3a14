//! The API's wire types: the bodies the server answers with (and, for the documentation, the
//! request bodies it accepts), with their schemas for the OpenAPI document. Shared by the
//! handlers ([`crate::api`]) and the document ([`crate::openapi`]), so neither needs the other's
//! internals.

use serde::Serialize;
use serde_json::Value;
use tally_store::{JournalEntry, Receipt};
use utoipa::ToSchema;

/// Every error answer: `{"code", "message"}`, plus one entry per bad sheet of a rejected batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// An E1xx validation code or an H4xx/H5xx code named after the HTTP status.
    #[schema(example = "E102")]
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<SheetError>>)]
    pub errors: Vec<Value>,
}

/// One bad sheet of a rejected request.
#[derive(Serialize, ToSchema)]
pub struct SheetError {
    /// Position of the sheet in the request (0 for a single sheet).
    pub index: usize,
    /// The sheet's `station_id` as sent (any JSON value, or null).
    #[schema(value_type = Value)]
    pub station_id: Value,
    pub code: String,
    pub message: String,
    /// The sheet's fields the error is about (`cast`, `votes.<candidate>`...); may be empty.
    pub fields: Vec<String>,
}

/// The answer to a batch (an array of sheets).
#[derive(Serialize, ToSchema)]
pub struct ReceiptBatch {
    pub receipts: Vec<Receipt>,
}

/// A page of the journal.
#[derive(Serialize, ToSchema)]
pub struct JournalPage {
    pub entries: Vec<JournalEntry>,
}

/// The role of a user.
#[derive(Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Official,
    Observer,
}

/// `POST /users`: a new user.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)] // only its schema is used: the body is read field by field
pub struct NewUser {
    role: RoleName,
    /// Observer's stations (ids or area paths); "*" = all. May be left out, never null.
    #[serde(default)]
    stations: Vec<String>,
}

/// The new user, with its token (shown once: only its hash is stored).
#[derive(Serialize, ToSchema)]
pub struct UserCreated {
    pub user_id: i64,
    #[schema(value_type = RoleName)]
    pub role: tally_store::Role,
    pub stations: Vec<String>,
    pub token: String,
}

/// `DELETE /users/{id}`.
#[derive(Serialize, ToSchema)]
pub struct UserRevoked {
    pub user_id: i64,
    pub revoked: bool,
}

/// `GET /election`: what the dashboard needs to draw the election (names, colours, levels).
#[derive(Serialize, ToSchema)]
pub struct ElectionInfo {
    pub election: String,
    /// majority | argentina | costa-rica | threshold-<p>
    pub rule: String,
    pub rounds: Vec<RoundInfo>,
    /// The map layer, when the server was given one (`GET /geo`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoInfo>,
}

/// One round of the election definition.
#[derive(Serialize, ToSchema)]
pub struct RoundInfo {
    pub round: u8,
    /// In the definition's order.
    pub candidates: Vec<CandidateInfo>,
    /// Names of the area levels, top first (`province`, `district`).
    pub levels: Vec<String>,
    /// Stations of the registry in this round.
    pub stations: usize,
}

/// A candidate as the definition names it.
#[derive(Serialize, ToSchema)]
pub struct CandidateInfo {
    pub id: String,
    pub name: String,
    /// A CSS colour from the definition, or null.
    pub colour: Option<String>,
}

/// The map layer given to `tally serve --geo FILE --geo-key PROPERTY`.
#[derive(Clone, Serialize, ToSchema)]
pub struct GeoInfo {
    /// The level whose areas the features name.
    pub level: String,
    /// The feature property matched to area names.
    pub key: String,
    /// Features matched to an area.
    pub features: usize,
    /// Areas of that level with no feature (listed in the table only).
    pub unmatched_areas: Vec<String>,
}

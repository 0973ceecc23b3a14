//! The API's wire types: the bodies the server answers with (and, for the documentation, the
//! request bodies it accepts), with their schemas for the OpenAPI document. Shared by the
//! handlers ([`crate::api`]) and the document ([`crate::openapi`]), so neither needs the other's
//! internals.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tally_store::{JournalEntry, Receipt};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, SchemaType};
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

/// A count on a tally sheet: a whole number from 0 to 2^40, or null (not on the sheet).
pub struct Count;

impl<'s> ToSchema<'s> for Count {
    fn schema() -> (&'s str, RefOr<Schema>) {
        (
            "Count",
            ObjectBuilder::new()
                .schema_type(SchemaType::Integer)
                .minimum(Some(0.0))
                .maximum(Some(tally_model_max_count()))
                .nullable(true)
                .into(),
        )
    }
}

/// The largest count a sheet may carry (`tally_model::MAX_COUNT`, 2^40): a larger one is E101.
fn tally_model_max_count() -> f64 {
    (1u64 << 40) as f64
}

/// A tally sheet as `POST /sheets` takes it (alone or in an array). A station not in the
/// registry is 422 E106; the arithmetic is checked with the validation codes.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used: the body is checked by `sheet_from_json`
pub struct SheetInput {
    /// A station of the registry (otherwise 422 E106).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f]+$"
    )]
    station_id: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 255, default = 1)]
    round: u8,
    #[serde(default)]
    #[schema(value_type = Count)]
    registered: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Count)]
    cast: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Count)]
    invalid: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Count)]
    valid: Option<u64>,
    /// Votes per candidate id.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Count>)]
    votes: BTreeMap<String, Option<u64>>,
    /// Extra count lines of the election (ballots issued, ...).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Count>)]
    extra: BTreeMap<String, Option<u64>>,
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

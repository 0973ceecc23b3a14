//! The store's data types: the station registry, sheets in canonical form, users, receipts,
//! journal entries, and the parsing + validation of a submitted JSON sheet.
//!
//! Canonical bytes: every hashed structure is a struct serialised by serde_json, whose fields come
//! out in declaration order; maps are `BTreeMap`s (sorted keys). So the same value always gives
//! the same bytes, on any machine.

use crate::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use tally_model::validate::{
    normalise_station_id, normalised_id_finding, validate_sheet, Finding, SheetInput, Verdict,
};
use tally_model::{stored, Candidate, Code, Rule, StoredCount, ValidationConfig, MAX_COUNT};

/// Hex SHA-256.
/// JSON text of an in-memory value, for a column. Serialising the store's plain structs cannot
/// fail, but if it ever did the write fails instead of storing an empty string.
pub fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, crate::StoreError> {
    serde_json::to_string(v).map_err(|e| crate::StoreError::Encode(e.to_string()))
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

/// The previous hash of the first journal entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRec {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
}

impl CandidateRec {
    pub fn to_candidate(&self) -> Candidate {
        Candidate {
            id: self.id.clone(),
            name: self.name.clone(),
            colour: self.colour.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundDef {
    pub number: u8,
    pub candidates: Vec<CandidateRec>,
    pub extra_lines: Vec<String>,
    pub levels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationInfo {
    pub round: u8,
    pub station_id: String,
    /// Area path from the first level down.
    pub area: Vec<String>,
    pub registered: Option<u64>,
}

/// The station registry and what the election counts: fixed by `init`, read-only afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub election: String,
    pub rule: Rule,
    pub rounds: Vec<RoundDef>,
    pub stations: Vec<StationInfo>,
}

impl Registry {
    pub fn round(&self, n: u8) -> Option<&RoundDef> {
        self.rounds.iter().find(|r| r.number == n)
    }

    /// Checks an observer's scope: every entry is `*`, a station id of the registry, or the path
    /// of an area of it (`Adana` or `Adana/Ceyhan`). Unknown entries are refused, naming them,
    /// so a typo never leaves an observer silently unable to write.
    pub fn check_scope(&self, scope: &[String]) -> Result<(), StoreError> {
        let unknown: Vec<&str> = scope
            .iter()
            .filter(|e| {
                e.as_str() != "*"
                    && !self
                        .stations
                        .iter()
                        .any(|s| &s.station_id == *e || area_prefix(&s.area, e).is_some())
            })
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "not a station id or an area path of the registry: {}",
                unknown.join(", ")
            )))
        }
    }
}

/// `Some(())` when `path` (`A/B`) names `area` or one of its ancestors.
fn area_prefix(area: &[String], path: &str) -> Option<()> {
    let parts: Vec<&str> = path.split('/').map(str::trim).collect();
    (!parts.is_empty()
        && parts.len() <= area.len()
        && parts.iter().zip(area).all(|(p, a)| *p == a.as_str()))
    .then_some(())
}

/// Roles of users. Reads of results need no user at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Official,
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Official => "official",
            Role::Observer => "observer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "official" => Some(Role::Official),
            "observer" => Some(Role::Observer),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub role: Role,
    /// Stations an observer may write (`*` = all); ignored for other roles.
    pub stations: Vec<String>,
    pub revoked: bool,
}

impl User {
    /// The source of the sheets this user writes.
    pub fn source(&self) -> String {
        match self.role {
            Role::Observer => format!("observer:u{}", self.id),
            _ => "official".to_string(),
        }
    }

    /// Whether this user may write the sheet of `station`, which lies in `area` (its path from
    /// the first level): an observer's scope names stations, areas (`Adana/Ceyhan`) or `*`.
    pub fn may_write(&self, station: &str, area: &[String]) -> bool {
        match self.role {
            Role::Official => true,
            Role::Admin => false,
            Role::Observer => self
                .stations
                .iter()
                .any(|s| s == "*" || s == station || area_prefix(area, s).is_some()),
        }
    }
}

/// One tally sheet as stored: counts by candidate id and extra line name (sorted maps, so the
/// serialised form is canonical).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sheet {
    pub station_id: String,
    pub round: u8,
    pub registered: Option<u64>,
    pub cast: Option<u64>,
    pub invalid: Option<u64>,
    pub valid: Option<u64>,
    pub votes: BTreeMap<String, u64>,
    #[serde(default)]
    pub extra: BTreeMap<String, u64>,
}

impl Sheet {
    /// Hash of the numbers only (what makes two sheets "the same sheet").
    pub fn content_hash(&self) -> String {
        // Serialising a plain struct with string map keys cannot fail: the default is never used.
        sha256_hex(&[&serde_json::to_vec(self).unwrap_or_default()])
    }
}

/// A stored version of a sheet: what `sheets` holds and the export writes, one per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SheetRecord {
    pub sheet_id: i64,
    pub source: String,
    pub version: u32,
    pub user_id: i64,
    pub journal_seq: i64,
    pub sheet: Sheet,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// sha256 of [`SheetRecord::canonical`]; the journal entry repeats it.
    pub hash: String,
}

/// The hashed part of a sheet version (no row ids, no derived data).
#[derive(Serialize)]
struct CanonicalSheet<'a> {
    source: &'a str,
    version: u32,
    user_id: i64,
    sheet: &'a Sheet,
}

impl SheetRecord {
    pub fn canonical_hash(source: &str, version: u32, user_id: i64, sheet: &Sheet) -> String {
        let c = CanonicalSheet {
            source,
            version,
            user_id,
            sheet,
        };
        // Serialising a plain struct with string map keys cannot fail: the default is never used.
        sha256_hex(&[&serde_json::to_vec(&c).unwrap_or_default()])
    }

    pub fn recompute_hash(&self) -> String {
        Self::canonical_hash(&self.source, self.version, self.user_id, &self.sheet)
    }
}

/// The hashed body of a journal entry (fixed field order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryBody {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// `sheet`, `user_add` or `user_revoke`.
    pub kind: String,
    pub user_id: i64,
    pub sheet_id: Option<i64>,
    pub round: Option<u8>,
    pub station_id: Option<String>,
    pub source: Option<String>,
    pub version: Option<u32>,
    pub sheet_hash: Option<String>,
    pub detail: Option<String>,
}

/// One journal entry: `hash = sha256(prev || canonical bytes of body)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalEntry {
    #[serde(flatten)]
    pub body: EntryBody,
    pub prev: String,
    pub hash: String,
}

impl EntryBody {
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising a plain struct cannot fail: the default is never used (and if it were, the
        // chain check of `verify` would name the entry).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// [`EntryBody::canonical`] as the text stored in the journal's `body` column.
    pub fn canonical_text(&self) -> Result<String, crate::StoreError> {
        String::from_utf8(self.canonical())
            .map_err(|e| crate::StoreError::Encode(format!("journal entry {}: {e}", self.seq)))
    }

    pub fn chain(&self, prev: &str) -> String {
        sha256_hex(&[prev.as_bytes(), &self.canonical()])
    }
}

/// What a client gets back once its sheet is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub sheet_id: i64,
    pub station_id: String,
    pub round: u8,
    pub source: String,
    pub version: u32,
    pub journal_seq: i64,
    /// The journal entry's hash.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// True when the same numbers were already the current version (nothing new was stored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// A sheet that passed validation, with its warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSheet {
    pub sheet: Sheet,
    pub warnings: Vec<Finding>,
}

/// Index of the registry for validation.
#[derive(Debug, Default)]
pub struct RegistryIndex {
    /// (round, station) -> registry position.
    pub stations: HashMap<(u8, String), usize>,
}

impl RegistryIndex {
    pub fn new(reg: &Registry) -> Self {
        RegistryIndex {
            stations: reg
                .stations
                .iter()
                .enumerate()
                .map(|(i, s)| ((s.round, s.station_id.clone()), i))
                .collect(),
        }
    }
}

const MAX_ID_LEN: usize = 128;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One count as a client sent it: a count, or why it is not one (E101). Never fails to
/// deserialise, so every bad count of a sheet is reported, not only the first.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonCount {
    Count(u64),
    Bad(String),
}

impl<'de> Deserialize<'de> for JsonCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a count (a non-negative integer)")
            }
            fn visit_u64<E>(self, u: u64) -> Result<JsonCount, E> {
                Ok(if u > MAX_COUNT {
                    JsonCount::Bad(format!("{u} is too large (> {MAX_COUNT})"))
                } else {
                    JsonCount::Count(u)
                })
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<JsonCount, E> {
                match u64::try_from(i) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Ok(JsonCount::Bad(format!("{i} is negative"))),
                }
            }
            // A JSON number with a fraction or an exponent (`600.0`, `1e3`) is not a count, as
            // in a file: a count is written as digits (E101 at the command line too).
            fn visit_f64<E>(self, f: f64) -> Result<JsonCount, E> {
                Ok(if f < 0.0 {
                    JsonCount::Bad(format!("{f} is negative"))
                } else if f > MAX_COUNT as f64 {
                    JsonCount::Bad(format!("{f} is too large"))
                } else {
                    JsonCount::Bad(format!(
                        "{f} is not written as an integer (digits only, no decimal point or exponent)"
                    ))
                })
            }
            fn visit_bool<E>(self, _: bool) -> Result<JsonCount, E> {
                Ok(JsonCount::Bad("a boolean is not a number".into()))
            }
            fn visit_str<E>(self, _: &str) -> Result<JsonCount, E> {
                Ok(JsonCount::Bad("a string is not a number".into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<JsonCount, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(JsonCount::Bad("an array is not a number".into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<JsonCount, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(JsonCount::Bad("an object is not a number".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The OpenAPI schema of a count: what [`JsonCount`] accepts without an E101 (or null).
#[cfg(feature = "openapi")]
pub struct Count;

#[cfg(feature = "openapi")]
impl<'s> utoipa::ToSchema<'s> for Count {
    fn schema() -> (&'s str, utoipa::openapi::RefOr<utoipa::openapi::Schema>) {
        (
            "Count",
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::SchemaType::Integer)
                .minimum(Some(0.0))
                .maximum(Some(MAX_COUNT as f64))
                .nullable(true)
                .into(),
        )
    }
}

/// A tally sheet as a client submits it to `POST /api/v1/sheets`: only a parser in front of
/// the one validation (`tally_model::validate_sheet`), like a CSV row. The OpenAPI document's
/// request schema is derived from this type.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SheetRequest {
    /// A station of the registry (otherwise 422 E106).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = "^[^\\u0000-\\u001f\\u007f]+$"
        )
    )]
    pub station_id: String,
    /// 1 when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 255, default = 1))]
    pub round: Option<u8>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Count))]
    pub registered: Option<JsonCount>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Count))]
    pub cast: Option<JsonCount>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Count))]
    pub invalid: Option<JsonCount>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Count))]
    pub valid: Option<JsonCount>,
    /// Votes by candidate id (case-insensitive); null is an absent count.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Count>))]
    pub votes: Option<BTreeMap<String, Option<JsonCount>>>,
    /// Extra count lines of the election (ballots issued...) by name; null is an absent count.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Count>))]
    pub extra: Option<BTreeMap<String, Option<JsonCount>>>,
}

/// The code of a request that does not have the shape of a sheet.
fn shape_finding(e: &serde_json::Error) -> Finding {
    let text = e.to_string();
    let code = if text.starts_with("unknown field") {
        Code::E107
    } else if text.starts_with("missing field `station_id`") {
        Code::E109
    } else {
        Code::E108
    };
    Finding::new(code, text)
}

fn count_of(v: &Option<JsonCount>, what: &str, errs: &mut Vec<Finding>) -> Option<u64> {
    match v {
        None => None,
        Some(JsonCount::Count(n)) => Some(*n),
        Some(JsonCount::Bad(why)) => {
            errs.push(Finding::on(Code::E101, [what], format!("{what}: {why}")));
            None
        }
    }
}

/// Parses and validates one submitted JSON sheet against the registry. `Err` holds every error
/// found (E1xx); `Ok` holds the sheet and its warnings (W2xx).
pub fn sheet_from_json(
    v: &Value,
    reg: &Registry,
    idx: &RegistryIndex,
    cfg: &ValidationConfig,
) -> Result<ValidSheet, Vec<Finding>> {
    if !v.is_object() {
        return Err(vec![Finding::new(
            Code::E108,
            format!("a sheet must be a JSON object, not {}", type_name(v)),
        )]);
    }
    let req = SheetRequest::deserialize(v).map_err(|e| vec![shape_finding(&e)])?;
    sheet_from_request(&req, reg, idx, cfg)
}

/// Validates a submitted sheet against the registry (see [`sheet_from_json`]).
pub fn sheet_from_request(
    req: &SheetRequest,
    reg: &Registry,
    idx: &RegistryIndex,
    cfg: &ValidationConfig,
) -> Result<ValidSheet, Vec<Finding>> {
    let mut errs = Vec::new();
    let normal = normalise_station_id(&req.station_id);
    let sid = normal.as_ref().unwrap_or(&req.station_id);
    if sid.trim().is_empty() {
        errs.push(Finding::on(
            Code::E109,
            ["station_id"],
            "station_id is empty",
        ));
    } else if sid.len() > MAX_ID_LEN || sid.chars().any(char::is_control) {
        errs.push(Finding::on(
            Code::E108,
            ["station_id"],
            "station_id is too long or has control characters",
        ));
    }
    let round = req.round.unwrap_or(1);
    if round == 0 {
        errs.push(Finding::on(
            Code::E108,
            ["round"],
            "round 0 is not a round number",
        ));
    }
    let rdef = reg.round(round);
    match rdef {
        None if round > 0 => errs.push(Finding::on(
            Code::E106,
            ["round"],
            format!("round {round} is not in the registry"),
        )),
        Some(_) if errs.is_empty() && !idx.stations.contains_key(&(round, sid.clone())) => errs
            .push(Finding::on(
                Code::E106,
                ["station_id"],
                format!(
                    "station '{}' is not in the registry for round {round}",
                    truncate(sid)
                ),
            )),
        _ => {}
    }
    let registered = count_of(&req.registered, "registered", &mut errs);
    let cast = count_of(&req.cast, "cast", &mut errs);
    let invalid = count_of(&req.invalid, "invalid", &mut errs);
    let valid = count_of(&req.valid, "valid", &mut errs);
    let mut votes: Vec<Option<u64>> = vec![None; rdef.map_or(0, |d| d.candidates.len())];
    for (k, v) in req.votes.iter().flatten() {
        let n = count_of(v, &format!("votes.{}", truncate(k)), &mut errs);
        let pos = rdef.and_then(|d| {
            d.candidates
                .iter()
                .position(|c| c.id.eq_ignore_ascii_case(k))
        });
        match pos {
            Some(p) => votes[p] = n,
            None if rdef.is_some() => errs.push(Finding::on(
                Code::E107,
                [format!("votes.{}", truncate(k))],
                format!("unknown candidate '{}'", truncate(k)),
            )),
            None => {}
        }
    }
    let mut extra = BTreeMap::new();
    for (k, v) in req.extra.iter().flatten() {
        let n = count_of(v, &format!("extra.{}", truncate(k)), &mut errs);
        let known = rdef.and_then(|d| d.extra_lines.iter().find(|l| l.eq_ignore_ascii_case(k)));
        match known {
            Some(name) => {
                if let Some(n) = n {
                    extra.insert(name.clone(), n);
                }
            }
            None if rdef.is_some() => errs.push(Finding::on(
                Code::E107,
                [format!("extra.{}", truncate(k))],
                format!("unknown extra line '{}'", truncate(k)),
            )),
            None => {}
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let Some(rdef) = rdef else {
        return Err(vec![Finding::new(Code::E108, "incomplete sheet")]);
    };
    let station_id = sid.clone();
    if votes.iter().all(Option::is_none) && valid.is_none() && cast.is_none() {
        return Err(vec![Finding::new(
            Code::E110,
            "the sheet has no counts at all",
        )]);
    }
    let mut flat: Vec<StoredCount> = votes.iter().map(|&v| stored(v)).collect();
    let ids: Vec<&str> = rdef.candidates.iter().map(|c| c.id.as_str()).collect();
    let mut found = Vec::new();
    let verdict = validate_sheet(
        &mut SheetInput {
            core: [
                stored(registered),
                stored(cast),
                stored(invalid),
                stored(valid),
            ],
            votes: &mut flat,
            candidates: &ids,
        },
        cfg,
        &mut found,
    );
    if verdict == Verdict::Quarantined {
        return Err(found.into_iter().filter(Finding::is_error).collect());
    }
    let mut warnings = found;
    if let Some(n) = &normal {
        warnings.insert(0, normalised_id_finding(&req.station_id, n));
    }
    let sheet = Sheet {
        station_id,
        round,
        registered,
        cast,
        invalid,
        valid,
        votes: rdef
            .candidates
            .iter()
            .zip(&flat)
            .map(|(c, &n)| (c.id.clone(), u64::from(n)))
            .collect(),
        extra,
    };
    Ok(ValidSheet { sheet, warnings })
}

fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_string();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

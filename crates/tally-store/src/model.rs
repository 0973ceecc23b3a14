//! The store's data types: the station registry, sheets in canonical form, users, receipts,
//! journal entries, and the parsing + validation of a submitted JSON sheet.
//!
//! Canonical bytes: every hashed structure is a struct serialised by serde_json, whose fields come
//! out in declaration order; maps are `BTreeMap`s (sorted keys). So the same value always gives
//! the same bytes, on any machine.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use tally_model::validate::{check_sheet, Finding};
use tally_model::{Candidate, Code, Rule, SheetCounts, ValidationConfig, MAX_COUNT};

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

    pub fn may_write(&self, station: &str) -> bool {
        match self.role {
            Role::Official => true,
            Role::Admin => false,
            Role::Observer => self.stations.iter().any(|s| s == "*" || s == station),
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

fn count_of(v: &Value, what: &str, errs: &mut Vec<Finding>) -> Option<u64> {
    let bad = |errs: &mut Vec<Finding>, why: &str| {
        errs.push(Finding::new(Code::E101, format!("{what}: {why}")));
        None
    };
    match v {
        Value::Null => None,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_COUNT {
                    bad(errs, &format!("{u} is too large (> 2^40)"))
                } else {
                    Some(u)
                }
            } else if n.as_i64().is_some() {
                bad(errs, &format!("{n} is negative"))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && (0.0..=MAX_COUNT as f64).contains(&f) => {
                        Some(f as u64)
                    }
                    Some(f) if f < 0.0 => bad(errs, &format!("{n} is negative")),
                    Some(f) if f.fract() == 0.0 => bad(errs, &format!("{n} is too large")),
                    _ => bad(errs, &format!("{n} is not an integer")),
                }
            }
        }
        other => bad(errs, &format!("{} is not a number", type_name(other))),
    }
}

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

/// Parses and validates one submitted JSON sheet against the registry. `Err` holds every error
/// found (E1xx); `Ok` holds the sheet and its warnings (W2xx).
pub fn sheet_from_json(
    v: &Value,
    reg: &Registry,
    idx: &RegistryIndex,
    cfg: &ValidationConfig,
) -> Result<ValidSheet, Vec<Finding>> {
    let mut errs = Vec::new();
    let Value::Object(obj) = v else {
        return Err(vec![Finding::new(
            Code::E108,
            format!("a sheet must be a JSON object, not {}", type_name(v)),
        )]);
    };
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "station_id"
                | "round"
                | "registered"
                | "cast"
                | "invalid"
                | "valid"
                | "votes"
                | "extra"
        ) {
            errs.push(Finding::new(
                Code::E107,
                format!("unknown field '{}'", truncate(k)),
            ));
        }
    }
    let station_id = match obj.get("station_id") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errs.push(Finding::new(Code::E109, "station_id is empty"));
            None
        }
        Some(Value::String(s)) if s.len() > MAX_ID_LEN || s.chars().any(char::is_control) => {
            errs.push(Finding::new(
                Code::E108,
                "station_id is too long or has control characters",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => {
            errs.push(Finding::new(Code::E109, "station_id is missing"));
            None
        }
        Some(other) => {
            errs.push(Finding::new(
                Code::E108,
                format!("station_id must be a string, not {}", type_name(other)),
            ));
            None
        }
    };
    let round = match obj.get("round") {
        None | Some(Value::Null) => Some(1u8),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(r @ 1..=255) => Some(r as u8),
            _ => {
                errs.push(Finding::new(
                    Code::E108,
                    format!("round {n} is not a round number"),
                ));
                None
            }
        },
        Some(other) => {
            errs.push(Finding::new(
                Code::E108,
                format!("round must be a number, not {}", type_name(other)),
            ));
            None
        }
    };
    let rdef = round.and_then(|r| match reg.round(r) {
        Some(d) => Some(d),
        None => {
            errs.push(Finding::new(
                Code::E106,
                format!("round {r} is not in the registry"),
            ));
            None
        }
    });
    if let (Some(sid), Some(r), Some(_)) = (&station_id, round, rdef) {
        if !idx.stations.contains_key(&(r, sid.clone())) {
            errs.push(Finding::new(
                Code::E106,
                format!(
                    "station '{}' is not in the registry for round {r}",
                    truncate(sid)
                ),
            ));
        }
    }
    let core =
        |name: &str, errs: &mut Vec<Finding>| obj.get(name).and_then(|v| count_of(v, name, errs));
    let registered = core("registered", &mut errs);
    let cast = core("cast", &mut errs);
    let invalid = core("invalid", &mut errs);
    let valid = core("valid", &mut errs);
    let mut votes: Vec<Option<u64>> = vec![None; rdef.map_or(0, |d| d.candidates.len())];
    match obj.get("votes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let pos = rdef.and_then(|d| {
                    d.candidates
                        .iter()
                        .position(|c| c.id.eq_ignore_ascii_case(k))
                });
                let n = count_of(v, &format!("votes of '{}'", truncate(k)), &mut errs);
                match pos {
                    Some(p) => votes[p] = n,
                    None if rdef.is_some() => errs.push(Finding::new(
                        Code::E107,
                        format!("unknown candidate '{}'", truncate(k)),
                    )),
                    None => {}
                }
            }
        }
        Some(other) => errs.push(Finding::new(
            Code::E108,
            format!("votes must be an object, not {}", type_name(other)),
        )),
    }
    let mut extra = BTreeMap::new();
    match obj.get("extra") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let known =
                    rdef.and_then(|d| d.extra_lines.iter().find(|l| l.eq_ignore_ascii_case(k)));
                let n = count_of(v, &format!("extra line '{}'", truncate(k)), &mut errs);
                match known {
                    Some(name) => {
                        if let Some(n) = n {
                            extra.insert(name.clone(), n);
                        }
                    }
                    None if rdef.is_some() => errs.push(Finding::new(
                        Code::E107,
                        format!("unknown extra line '{}'", truncate(k)),
                    )),
                    None => {}
                }
            }
        }
        Some(other) => errs.push(Finding::new(
            Code::E108,
            format!("extra must be an object, not {}", type_name(other)),
        )),
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let (Some(station_id), Some(round), Some(rdef)) = (station_id, round, rdef) else {
        return Err(vec![Finding::new(Code::E108, "incomplete sheet")]);
    };
    let mut warnings = Vec::new();
    // Absent candidate counts: implied by the valid total (W208) or an incomplete sheet (E110).
    let missing: Vec<usize> = (0..votes.len()).filter(|&i| votes[i].is_none()).collect();
    let known_sum: u64 = votes.iter().flatten().sum();
    if votes.iter().all(Option::is_none) && valid.is_none() && cast.is_none() {
        return Err(vec![Finding::new(
            Code::E110,
            "the sheet has no counts at all",
        )]);
    }
    if !missing.is_empty() {
        match valid {
            Some(v) if known_sum == v => {
                missing.iter().for_each(|&i| votes[i] = Some(0));
                warnings.push(Finding::new(
                    Code::W208,
                    format!(
                        "{} candidate count(s) absent, implied 0 by the valid total",
                        missing.len()
                    ),
                ));
            }
            Some(v) if missing.len() == 1 && known_sum < v => {
                votes[missing[0]] = Some(v - known_sum);
                warnings.push(Finding::new(
                    Code::W208,
                    format!(
                        "votes of '{}' absent, implied {} by the valid total",
                        rdef.candidates[missing[0]].id,
                        v - known_sum
                    ),
                ));
            }
            _ => {
                let names: Vec<&str> = missing
                    .iter()
                    .map(|&i| rdef.candidates[i].id.as_str())
                    .collect();
                return Err(vec![Finding::new(
                    Code::E110,
                    format!(
                        "no count for {} and the valid total does not determine it",
                        names.join(", ")
                    ),
                )]);
            }
        }
    }
    let flat: Vec<u64> = votes.iter().map(|v| v.unwrap_or(0)).collect();
    let counts = SheetCounts {
        registered,
        cast,
        invalid,
        valid,
        votes: &flat,
    };
    let mut found = Vec::new();
    check_sheet(&counts, cfg, &mut found);
    let (e, w): (Vec<Finding>, Vec<Finding>) = found
        .into_iter()
        .partition(|f| f.code.severity() == tally_model::Severity::Error);
    if !e.is_empty() {
        return Err(e);
    }
    warnings.extend(w);
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
            .map(|(c, &n)| (c.id.clone(), n))
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

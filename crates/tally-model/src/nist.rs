//! NIST SP 1500-100 Revision 2 (Election Results Reporting Common Data Format), JSON: the
//! classes Tally writes and reads, and the one builder of an `ElectionReport` from counted rounds
//! (the same inputs as [`crate::report::results_report`], so the CLI and the live server give the
//! same document). Mapping and limits: `docs/nist.md`.
//!
//! Pure like the rest of the crate: the report's date is an input ([`NistMeta::generated`]).
//!
//! Each round is one `Election` (round 1 `general`, round 2 `runoff`) with one `CandidateContest`;
//! registered voters and participation are per unit *and* per round in Tally, so every round has
//! its own `ReportingUnit`s (`@id`s start with `r1-`, `r2-`): the area tree (`r1-ru`,
//! `r1-ru-Adana/Ceyhan`) and one `polling-place` per station (`r1-ps-<station id>`).

use crate::area::{AreaId, ROOT};
use crate::report::CountedRound;
use crate::round::{Round, SheetStatus, StoredCount, MISSING};
use crate::rule::{Outcome, Rule};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// `@type` of the report, also how a reader recognises the format.
pub const REPORT_TYPE: &str = "ElectionResults.ElectionReport";
/// Language tag of texts whose language Tally does not know (BCP 47 "undetermined").
pub const LANGUAGE: &str = "und";
/// `OtherType` prefix of the `BallotCounts` (Type `other`) that carry Tally's extra count lines.
pub const EXTRA_PREFIX: &str = "extra:";
/// `OtherType` of the `BallotCounts` (Type `other`) that carries valid votes when they are not
/// cast minus invalid.
pub const VALID_TYPE: &str = "valid";

/// A count as read from a report: the schema says "number", so `12.0` is 12, while `-1`, `1.5`
/// or a value past 2^53 are kept as an error for the reader to report (E101), never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub Result<u64, BadNumber>);

/// A number that is not a count, with what it was.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BadNumber(pub f64);

impl Eq for BadNumber {}

impl fmt::Display for BadNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Count {
    pub fn new(v: u64) -> Self {
        Count(Ok(v))
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Ok(v) => s.serialize_u64(v),
            Err(b) => s.serialize_f64(b.0),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Ok(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(if v >= 0 {
                    Ok(v as u64)
                } else {
                    Err(BadNumber(v as f64))
                }))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                // Integers up to 2^53 are exact in a double.
                Ok(Count(
                    if v.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&v) {
                        Ok(v as u64)
                    } else {
                        Err(BadNumber(v))
                    },
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value from a closed list (`@type`, `Type`, `Status`, `Language`): the usual values are
/// shared statics, so reading a large report does not allocate one string per object for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tag(Cow<'static, str>);

const KNOWN_TAGS: [&str; 38] = [
    "ElectionResults.VoteCounts",
    "ElectionResults.BallotCounts",
    "ElectionResults.ReportingUnit",
    "ElectionResults.CountStatus",
    "ElectionResults.ExternalIdentifier",
    "ElectionResults.InternationalizedText",
    "ElectionResults.LanguageString",
    "ElectionResults.Candidate",
    "ElectionResults.CandidateSelection",
    "ElectionResults.CandidateContest",
    "ElectionResults.Election",
    "ElectionResults.ElectionReport",
    "total",
    "polling-place",
    "precinct",
    "other",
    "completed",
    "in-process",
    "not-processed",
    "local-level",
    "election-day",
    "early",
    "absentee",
    "und",
    "en",
    "general",
    "runoff",
    "county",
    "state",
    "country",
    "city",
    "town",
    "municipality",
    "ward",
    "school",
    "village",
    "borough",
    "township",
];

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Tag {
    fn from(s: &'static str) -> Self {
        Tag(Cow::Borrowed(s))
    }
}

impl From<String> for Tag {
    fn from(s: String) -> Self {
        Tag(Cow::Owned(s))
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<str> for Tag {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                Ok(match KNOWN_TAGS.iter().find(|k| **k == v) {
                    Some(k) => Tag(Cow::Borrowed(k)),
                    None => Tag(Cow::Owned(v.to_string())),
                })
            }
        }
        d.deserialize_str(V)
    }
}

fn no<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// `ElectionResults.LanguageString`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageString {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(rename = "Content", default)]
    pub content: String,
    #[serde(rename = "Language", default)]
    pub language: Tag,
}

/// `ElectionResults.InternationalizedText`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Text {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(rename = "Text", default)]
    pub text: Vec<LanguageString>,
}

impl Text {
    pub fn new(content: &str) -> Self {
        Text {
            at_type: "ElectionResults.InternationalizedText".into(),
            text: vec![LanguageString {
                at_type: "ElectionResults.LanguageString".into(),
                content: content.to_string(),
                language: LANGUAGE.into(),
            }],
        }
    }

    /// The first text, whatever its language.
    pub fn first(&self) -> Option<&str> {
        self.text.first().map(|t| t.content.as_str())
    }
}

/// `ElectionResults.CountStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountStatus {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(rename = "Status", default)]
    pub status: Tag,
    #[serde(rename = "Type", default)]
    pub r#type: Tag,
}

impl CountStatus {
    fn total(status: &'static str) -> Vec<CountStatus> {
        vec![CountStatus {
            at_type: "ElectionResults.CountStatus".into(),
            status: status.into(),
            r#type: "total".into(),
        }]
    }
}

/// `ElectionResults.ExternalIdentifier`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalIdentifier {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(rename = "Type", default)]
    pub r#type: Tag,
    #[serde(rename = "Value", default)]
    pub value: String,
}

/// `ElectionResults.ReportingUnit` (or, when read, a `ReportingDevice`: `at_type` tells).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GpUnit {
    #[serde(rename = "@id", default)]
    pub id: String,
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub composing_gp_unit_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_status: Vec<CountStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_identifier: Vec<ExternalIdentifier>,
    #[serde(default, skip_serializing_if = "no")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "no")]
    pub other_type: Option<String>,
    #[serde(default, skip_serializing_if = "no")]
    pub sub_units_reported: Option<u64>,
    #[serde(default, skip_serializing_if = "no")]
    pub total_sub_units: Option<u64>,
    #[serde(default)]
    pub r#type: Tag,
    #[serde(default, skip_serializing_if = "no")]
    pub voters_participated: Option<Count>,
    #[serde(default, skip_serializing_if = "no")]
    pub voters_registered: Option<Count>,
}

/// `ElectionResults.VoteCounts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VoteCounts {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    pub count: Count,
    #[serde(default)]
    pub gp_unit_id: String,
    #[serde(default, skip_serializing_if = "no")]
    pub other_type: Option<String>,
    /// The round of a ranked-choice count: Tally does not read those.
    #[serde(default, skip_serializing_if = "no")]
    pub round: Option<u64>,
    #[serde(default)]
    pub r#type: Tag,
}

impl Default for Count {
    fn default() -> Self {
        Count(Ok(0))
    }
}

/// `ElectionResults.BallotCounts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BallotCounts {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "no")]
    pub ballots_cast: Option<Count>,
    #[serde(default, skip_serializing_if = "no")]
    pub ballots_rejected: Option<Count>,
    #[serde(default)]
    pub gp_unit_id: String,
    #[serde(default, skip_serializing_if = "no")]
    pub other_type: Option<String>,
    #[serde(default)]
    pub r#type: Tag,
}

/// `ElectionResults.Candidate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Candidate {
    #[serde(rename = "@id", default)]
    pub id: String,
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "no")]
    pub ballot_name: Option<Text>,
    #[serde(default, skip_serializing_if = "no")]
    pub post_election_status: Option<String>,
}

/// A `ContestSelection` (candidate, party or ballot-measure selection: `at_type` tells).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Selection {
    #[serde(rename = "@id", default)]
    pub id: String,
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidate_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "no")]
    pub sequence_order: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vote_counts: Vec<VoteCounts>,
}

/// A `Contest` (candidate, party, ballot-measure or retention contest: `at_type` tells).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Contest {
    #[serde(rename = "@id", default)]
    pub id: String,
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contest_selection: Vec<Selection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_status: Vec<CountStatus>,
    #[serde(default)]
    pub election_district_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "no")]
    pub number_elected: Option<u64>,
    #[serde(default, skip_serializing_if = "no")]
    pub other_vote_variation: Option<String>,
    #[serde(default, skip_serializing_if = "no")]
    pub sub_units_reported: Option<u64>,
    #[serde(default, skip_serializing_if = "no")]
    pub total_sub_units: Option<u64>,
    #[serde(default, skip_serializing_if = "no")]
    pub vote_variation: Option<String>,
    #[serde(default, skip_serializing_if = "no")]
    pub votes_allowed: Option<u64>,
}

/// `ElectionResults.Election`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Election {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ballot_counts: Vec<BallotCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidate: Vec<Candidate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contest: Vec<Contest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_status: Vec<CountStatus>,
    #[serde(default)]
    pub election_scope_id: String,
    #[serde(default)]
    pub end_date: String,
    #[serde(default, skip_serializing_if = "no")]
    pub name: Option<Text>,
    #[serde(default)]
    pub start_date: String,
    #[serde(default)]
    pub r#type: Tag,
}

/// `ElectionResults.ElectionReport`: the whole document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElectionReport {
    #[serde(rename = "@type", default)]
    pub at_type: Tag,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub election: Vec<Election>,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub generated_date: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gp_unit: Vec<GpUnit>,
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub issuer_abbreviation: String,
    #[serde(default, skip_serializing_if = "no")]
    pub notes: Option<String>,
    #[serde(default)]
    pub sequence_end: u64,
    #[serde(default)]
    pub sequence_start: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub vendor_application_id: String,
}

/// What the report says that the rounds do not: when, by whom, and whether it is certified.
#[derive(Clone, Debug)]
pub struct NistMeta<'a> {
    /// `GeneratedDate`, e.g. `2026-12-02T02:00:00Z` (see [`datetime_utc`]).
    pub generated: &'a str,
    /// `StartDate`/`EndDate` of the elections (`YYYY-MM-DD`); the date of `generated` when not
    /// known (Tally's inputs carry no election date).
    pub election_date: Option<&'a str>,
    /// `Status: certified` instead of `unofficial-partial`/`unofficial-complete`.
    pub certified: bool,
    pub issuer: &'a str,
    /// `(round, candidate id)` for rounds still partial whose projection calls a winner (the
    /// live server's `tally.projection/1` call): that candidate is `projected-winner`.
    pub projected_winners: &'a [(u8, String)],
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (seconds), for `GeneratedDate`.
pub fn datetime_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Escapes a name or station id for an `@id`: letters and digits (any script), `-`, `_` and `.`
/// are kept, every other character is `%` and its UTF-8 bytes in hex (so `/` separates levels
/// unambiguously and the id is stable for the same input).
pub fn escape_id(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

/// [`escape_id`] onto the end of `out`.
fn push_escaped(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in s.chars() {
        if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// The inverse of [`escape_id`] (text that is not a valid escape is kept as it is).
pub fn unescape_id(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// `@id` prefix of the units of round `n`.
pub fn round_prefix(n: u8) -> String {
    format!("r{n}-")
}

/// `@id` of a station's `polling-place` unit in round `n`.
pub fn station_unit_id(n: u8, station: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(station.len() + 10);
    let _ = write!(out, "r{n}-ps-"); // writing into a String cannot fail
    push_escaped(&mut out, station);
    out
}

/// `@id` of an area's unit in round `n` (`r1-ru` for the whole election).
pub fn area_unit_id(n: u8, path: &[&str]) -> String {
    if path.is_empty() {
        format!("r{n}-ru")
    } else {
        let parts: Vec<String> = path.iter().map(|p| escape_id(p)).collect();
        format!("r{n}-ru-{}", parts.join("/"))
    }
}

/// `@id` of a candidate in round `n`.
pub fn candidate_id(n: u8, id: &str) -> String {
    format!("r{n}-cand-{}", escape_id(id))
}

/// The `ReportingUnitType` values of the schema: a level named like one of them keeps it,
/// others are `other` with the level's name in `OtherType`.
pub const UNIT_TYPES: [&str; 29] = [
    "ballot-batch",
    "ballot-style-area",
    "borough",
    "city",
    "city-council",
    "combined-precinct",
    "congressional",
    "country",
    "county",
    "county-council",
    "drop-box",
    "judicial",
    "municipality",
    "other",
    "polling-place",
    "precinct",
    "school",
    "special",
    "split-precinct",
    "state",
    "state-house",
    "state-senate",
    "town",
    "township",
    "utility",
    "village",
    "vote-center",
    "ward",
    "water",
];

fn unit_type(level: &str) -> (String, Option<String>) {
    let l = level.to_ascii_lowercase();
    if l != "other" && UNIT_TYPES.contains(&l.as_str()) {
        (l, None)
    } else {
        ("other".into(), Some(level.to_string()))
    }
}

fn count_opt(v: StoredCount) -> Option<Count> {
    (v != MISSING).then(|| Count::new(u64::from(v)))
}

fn vote_count(unit: &str, v: u64) -> VoteCounts {
    VoteCounts {
        at_type: "ElectionResults.VoteCounts".into(),
        count: Count::new(v),
        gp_unit_id: unit.to_string(),
        other_type: None,
        round: None,
        r#type: "total".into(),
    }
}

fn ballot_counts(unit: &str, cast: Option<Count>, rejected: Option<Count>) -> BallotCounts {
    BallotCounts {
        at_type: "ElectionResults.BallotCounts".into(),
        ballots_cast: cast,
        ballots_rejected: rejected,
        gp_unit_id: unit.to_string(),
        other_type: None,
        r#type: "total".into(),
    }
}

fn progress_status(counted: u64, known: u64) -> &'static str {
    if known > 0 && counted == known {
        "completed"
    } else if counted > 0 {
        "in-process"
    } else {
        "not-processed"
    }
}

/// `PostElectionStatus` of each candidate (round order) from the rule's outcome.
fn post_status(round: &Round, outcome: &Outcome) -> Vec<Option<&'static str>> {
    let ids = round.candidates.iter().map(|c| c.id.as_str());
    match outcome {
        Outcome::Elected { winner, .. } => ids
            .map(|id| Some(if id == winner { "winner" } else { "defeated" }))
            .collect(),
        Outcome::Runoff { runoff, .. } => ids
            .map(|id| {
                Some(if runoff.iter().any(|r| r == id) {
                    "advanced-to-runoff"
                } else {
                    "defeated"
                })
            })
            .collect(),
        Outcome::Undecided { .. } => ids.map(|_| None).collect(),
    }
}

/// The `VoteCounts` and `BallotCounts` of a counted station (unit `unit`).
fn station_counts(
    round: &Round,
    i: usize,
    unit: &str,
    votes: &mut [Vec<VoteCounts>],
    ballots: &mut Vec<BallotCounts>,
) {
    let s = &round.stations;
    let e = round.extra_lines.len();
    for (j, &v) in round.votes_of(i).iter().enumerate() {
        if v != MISSING {
            votes[j].push(vote_count(unit, u64::from(v)));
        }
    }
    let (cast, invalid, valid) = (s.cast[i], s.invalid[i], s.valid[i]);
    if cast != MISSING || invalid != MISSING {
        ballots.push(ballot_counts(unit, count_opt(cast), count_opt(invalid)));
    }
    let derived =
        (cast != MISSING && invalid != MISSING && cast >= invalid).then(|| cast - invalid);
    if valid != MISSING && derived != Some(valid) {
        let mut b = ballot_counts(unit, Some(Count::new(u64::from(valid))), None);
        b.r#type = "other".into();
        b.other_type = Some(VALID_TYPE.into());
        ballots.push(b);
    }
    for (x, &v) in round.extra_of(i).iter().enumerate() {
        if v != MISSING && x < e {
            let mut b = ballot_counts(unit, Some(Count::new(u64::from(v))), None);
            b.r#type = "other".into();
            b.other_type = Some(format!("{EXTRA_PREFIX}{}", round.extra_lines[x]));
            ballots.push(b);
        }
    }
}

/// The one `ElectionReport` builder: every round, its area tree and stations. Candidates get a
/// `PostElectionStatus` once their round is complete (every known station counted) or the report
/// is certified; while stations are missing the outcome is not final and none is given.
pub fn nist_report(
    election: &str,
    rule: &Rule,
    rounds: &[CountedRound<'_>],
    meta: &NistMeta<'_>,
) -> ElectionReport {
    let date = meta
        .election_date
        .unwrap_or_else(|| meta.generated.get(..10).unwrap_or(meta.generated))
        .to_string();
    let mut units = Vec::new();
    let mut elections = Vec::new();
    let mut complete = true;
    for r in rounds {
        let projected = meta
            .projected_winners
            .iter()
            .find(|(n, _)| *n == r.round.number)
            .map(|(_, id)| id.as_str());
        let (e, u, done) = round_election(election, rule, r, &date, meta.certified, projected);
        complete &= done;
        elections.push(e);
        units.extend(u);
    }
    ElectionReport {
        at_type: REPORT_TYPE.into(),
        election: elections,
        format: "precinct-level".into(),
        generated_date: meta.generated.to_string(),
        gp_unit: units,
        issuer: meta.issuer.to_string(),
        issuer_abbreviation: meta.issuer.to_string(),
        notes: Some(format!(
            "Written by Tally {}: one Election per round (round 2 is Type runoff), units per round (@id r1-, r2-); rule: {}.",
            env!("CARGO_PKG_VERSION"),
            rule.describe()
        )),
        sequence_end: 1,
        sequence_start: 1,
        status: if meta.certified {
            "certified"
        } else if complete {
            "unofficial-complete"
        } else {
            "unofficial-partial"
        }
        .into(),
        vendor_application_id: format!("Tally {}", env!("CARGO_PKG_VERSION")),
    }
}

/// One round: its `Election` and its units; true when every known station is counted.
fn round_election(
    election: &str,
    rule: &Rule,
    r: &CountedRound<'_>,
    date: &str,
    certified: bool,
    projected_winner: Option<&str>,
) -> (Election, Vec<GpUnit>, bool) {
    let round = r.round;
    let n = round.number;
    let tree = &round.tree;
    let totals = r.totals;
    let k = round.candidates.len();
    let all = &totals[ROOT as usize];
    let complete = all.stations_known > 0 && all.stations_counted == all.stations_known;
    // Children of every area node, and the stations of every node.
    let mut children: Vec<Vec<AreaId>> = vec![Vec::new(); tree.len()];
    for (id, node) in tree.nodes.iter().enumerate().skip(1) {
        children[node.parent as usize].push(id as AreaId);
    }
    let mut stations_of: Vec<Vec<usize>> = vec![Vec::new(); tree.len()];
    for (i, &a) in round.stations.area.iter().enumerate() {
        stations_of[a as usize].push(i);
    }
    let area_ids: Vec<String> = (0..tree.len() as AreaId)
        .map(|id| area_unit_id(n, &tree.path(id)))
        .collect();
    let station_ids: Vec<String> = round
        .stations
        .ids
        .iter()
        .map(|s| station_unit_id(n, s))
        .collect();
    let mut votes: Vec<Vec<VoteCounts>> = (0..k)
        .map(|_| Vec::with_capacity(tree.len() + round.len()))
        .collect();
    let mut ballots: Vec<BallotCounts> = Vec::with_capacity(tree.len() + round.len());
    let mut units = Vec::with_capacity(tree.len() + round.len());
    for (id, node) in tree.nodes.iter().enumerate() {
        let t = &totals[id];
        let (ty, other) = if id == ROOT as usize {
            ("other".to_string(), Some("election".to_string()))
        } else {
            unit_type(&tree.levels[node.depth as usize - 1])
        };
        let mut composing: Vec<String> = children[id]
            .iter()
            .map(|&c| area_ids[c as usize].to_string())
            .collect();
        composing.extend(stations_of[id].iter().map(|&i| station_ids[i].to_string()));
        let unit = &area_ids[id];
        units.push(GpUnit {
            id: unit.clone(),
            at_type: "ElectionResults.ReportingUnit".into(),
            composing_gp_unit_ids: composing,
            count_status: CountStatus::total(progress_status(t.stations_counted, t.stations_known)),
            external_identifier: Vec::new(),
            name: Some(Text::new(if id == ROOT as usize {
                election
            } else {
                &node.name
            })),
            other_type: other,
            sub_units_reported: Some(t.stations_counted),
            total_sub_units: Some(t.stations_known),
            r#type: ty.into(),
            voters_participated: Some(Count::new(t.cast)),
            voters_registered: Some(Count::new(t.registered_known)),
        });
        if t.stations_counted > 0 {
            for (j, v) in t.votes.iter().enumerate() {
                votes[j].push(vote_count(unit, *v));
            }
            ballots.push(ballot_counts(
                unit,
                Some(Count::new(t.cast)),
                Some(Count::new(t.invalid)),
            ));
        }
    }
    let s = &round.stations;
    for (i, unit) in station_ids.into_iter().enumerate() {
        let counted = s.status[i] == SheetStatus::Counted;
        if counted {
            station_counts(round, i, &unit, &mut votes, &mut ballots);
        }
        units.push(GpUnit {
            id: unit,
            at_type: "ElectionResults.ReportingUnit".into(),
            composing_gp_unit_ids: Vec::new(),
            count_status: CountStatus::total(if counted {
                "completed"
            } else {
                "not-processed"
            }),
            external_identifier: vec![ExternalIdentifier {
                at_type: "ElectionResults.ExternalIdentifier".into(),
                r#type: "local-level".into(),
                value: s.ids[i].to_string(),
            }],
            // The station id is its ExternalIdentifier (and its @id): a Name repeating it
            // would be a fifth of the report at 200,000 stations, and the schema does not ask.
            name: None,
            other_type: None,
            sub_units_reported: None,
            total_sub_units: None,
            r#type: "polling-place".into(),
            voters_participated: if counted { count_opt(s.cast[i]) } else { None },
            voters_registered: count_opt(s.registered[i]),
        });
    }
    let outcome = crate::report::outcome(round, rule, all);
    let statuses = if complete || certified {
        post_status(round, &outcome)
    } else if let Some(w) = projected_winner {
        round
            .candidates
            .iter()
            .map(|c| (c.id == w).then_some("projected-winner"))
            .collect()
    } else {
        vec![None; k]
    };
    let candidates: Vec<Candidate> = round
        .candidates
        .iter()
        .zip(&statuses)
        .map(|(c, st)| Candidate {
            id: candidate_id(n, &c.id),
            at_type: "ElectionResults.Candidate".into(),
            ballot_name: Some(Text::new(&c.name)),
            post_election_status: st.map(str::to_string),
        })
        .collect();
    let selections: Vec<Selection> = round
        .candidates
        .iter()
        .zip(votes)
        .enumerate()
        .map(|(j, (c, vc))| Selection {
            id: format!("r{n}-sel-{}", escape_id(&c.id)),
            at_type: "ElectionResults.CandidateSelection".into(),
            candidate_ids: vec![candidate_id(n, &c.id)],
            sequence_order: Some(j as u64 + 1),
            vote_counts: vc,
        })
        .collect();
    let majority_rule = rule.clauses.len() == 1
        && rule.clauses[0].lead.is_none()
        && rule.clauses[0].share == crate::rule::Ratio::new(1, 2)
        && !rule.clauses[0].inclusive;
    let (variation, other_variation) = if n >= 2 {
        ("plurality", None)
    } else if majority_rule {
        ("majority", None)
    } else {
        ("other", Some(rule.describe()))
    };
    let status = progress_status(all.stations_counted, all.stations_known);
    let root = area_ids[ROOT as usize].to_string();
    let name = if n >= 2 {
        format!("{election}, round {n} (runoff)")
    } else {
        format!("{election}, round {n}")
    };
    let contest = Contest {
        id: format!("r{n}-contest"),
        at_type: "ElectionResults.CandidateContest".into(),
        contest_selection: selections,
        count_status: CountStatus::total(status),
        election_district_id: root.clone(),
        name: name.clone(),
        number_elected: Some(1),
        other_vote_variation: other_variation,
        sub_units_reported: Some(all.stations_counted),
        total_sub_units: Some(all.stations_known),
        vote_variation: Some(variation.into()),
        votes_allowed: Some(1),
    };
    let el = Election {
        at_type: "ElectionResults.Election".into(),
        ballot_counts: ballots,
        candidate: candidates,
        contest: vec![contest],
        count_status: CountStatus::total(status),
        election_scope_id: root,
        end_date: date.to_string(),
        name: Some(Text::new(&name)),
        start_date: date.to_string(),
        r#type: if n >= 2 { "runoff" } else { "general" }.into(),
    };
    (el, units, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_escape_and_come_back() {
        for s in ["Adana", "a/b", "x y%z", "Łódź 12", "=1+2"] {
            assert_eq!(unescape_id(&escape_id(s)), s);
            assert!(!escape_id(s).contains('/'));
        }
        assert_eq!(area_unit_id(1, &["Adana", "Ceyhan"]), "r1-ru-Adana/Ceyhan");
        assert_eq!(station_unit_id(2, "12 3"), "r2-ps-12%203");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(datetime_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(datetime_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(datetime_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn counts_accept_integral_numbers_only() {
        let c = |v: f64| {
            Count::deserialize(serde::de::value::F64Deserializer::<serde::de::value::Error>::new(v))
                .unwrap()
        };
        assert_eq!(c(12.0), Count(Ok(12)));
        assert!(c(1.5).0.is_err());
        assert!(c(-1.0).0.is_err());
    }
}

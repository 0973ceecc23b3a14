//! Reading a NIST SP 1500-100 v2 election results report (JSON) into Tally rounds, through the
//! same sheet pipeline as a CSV row: every `polling-place` (every leaf unit of the contest's
//! district) becomes one sheet, validated by [`tally_model::validate_sheet`], duplicates found by
//! [`tally_model::validate::find_duplicates`], quarantined sheets kept with their codes, and
//! [`SheetStats`] adding up. Mapping and limits: `docs/nist.md`.
//!
//! A "line" in a finding is the unit's 1-based position in the report's `GpUnit` list.

use crate::layout::Layout;
use crate::{FileImport, ImportError, ImportOptions, ImportedRound, Issue, QuarantinedRow};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use tally_model::nist::{
    unescape_id, Count, ElectionReport, EXTRA_PREFIX, REPORT_TYPE, VALID_TYPE,
};
use tally_model::report::SheetStats;
use tally_model::validate::{validate_sheet, Finding, SheetInput};
use tally_model::{
    AreaTree, Candidate, Code, Round, SheetStatus, StoredCount, Verdict, MAX_COUNT, MISSING,
};

/// True when the bytes look like JSON (the first character that is not white space is `{`): a
/// tally-sheet CSV never starts so.
pub fn is_json(data: &[u8]) -> bool {
    data.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// The candidate contests of a report, for a listing (`@id`, name, election type).
pub fn contests(report: &ElectionReport) -> Vec<(String, String, String)> {
    report
        .election
        .iter()
        .flat_map(|e| {
            e.contest
                .iter()
                .filter(|c| c.at_type == CANDIDATE_CONTEST)
                .map(move |c| (c.id.clone(), c.name.clone(), e.r#type.to_string()))
        })
        .collect()
}

const CANDIDATE_CONTEST: &str = "ElectionResults.CandidateContest";

// What the reader takes from a report: the parts it uses, with their texts borrowed from the
// bytes (a text with JSON escapes is copied), every other member skipped without being built.
// `tally_model::nist::ElectionReport` is the whole document, as Tally writes it.

/// A text of the report, borrowed when it has no escapes.
#[derive(Deserialize, Default)]
struct S<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for S<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Deserialize)]
struct Report<'a> {
    #[serde(rename = "@type", default, borrow)]
    at_type: S<'a>,
    #[serde(rename = "Election", default, borrow)]
    election: Vec<RElection<'a>>,
    #[serde(rename = "GpUnit", default, borrow)]
    gp_unit: Vec<Unit<'a>>,
}

/// `InternationalizedText`: its first `Content` is all Tally reads.
#[derive(Deserialize)]
struct RText<'a> {
    #[serde(rename = "Text", default, borrow)]
    text: Vec<RLang<'a>>,
}

#[derive(Deserialize)]
struct RLang<'a> {
    #[serde(rename = "Content", default, borrow)]
    content: S<'a>,
}

fn first<'r>(t: &'r Option<RText<'_>>) -> Option<&'r str> {
    t.as_ref().and_then(|t| t.text.first()).map(|l| &*l.content)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Unit<'a> {
    #[serde(rename = "@id", default, borrow)]
    id: S<'a>,
    #[serde(default, borrow)]
    composing_gp_unit_ids: Vec<S<'a>>,
    #[serde(default, borrow)]
    external_identifier: Vec<RExternal<'a>>,
    #[serde(default, borrow)]
    name: Option<RText<'a>>,
    #[serde(default, borrow)]
    other_type: Option<S<'a>>,
    #[serde(default, borrow)]
    r#type: S<'a>,
    #[serde(default)]
    voters_participated: Option<Count>,
    #[serde(default)]
    voters_registered: Option<Count>,
}

#[derive(Deserialize)]
struct RExternal<'a> {
    #[serde(rename = "Type", default, borrow)]
    r#type: S<'a>,
    #[serde(rename = "Value", default, borrow)]
    value: S<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RElection<'a> {
    #[serde(default, borrow)]
    ballot_counts: Vec<RBallots<'a>>,
    #[serde(default, borrow)]
    candidate: Vec<RCandidate<'a>>,
    #[serde(default, borrow)]
    contest: Vec<RContest<'a>>,
    #[serde(default, borrow)]
    election_scope_id: S<'a>,
    #[serde(default, borrow)]
    name: Option<RText<'a>>,
    #[serde(default, borrow)]
    r#type: S<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RBallots<'a> {
    #[serde(default)]
    ballots_cast: Option<Count>,
    #[serde(default)]
    ballots_rejected: Option<Count>,
    #[serde(default, borrow)]
    gp_unit_id: S<'a>,
    #[serde(default, borrow)]
    other_type: Option<S<'a>>,
    #[serde(default, borrow)]
    r#type: S<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RCandidate<'a> {
    #[serde(rename = "@id", default, borrow)]
    id: S<'a>,
    #[serde(default, borrow)]
    ballot_name: Option<RText<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RContest<'a> {
    #[serde(rename = "@id", default, borrow)]
    id: S<'a>,
    #[serde(rename = "@type", default, borrow)]
    at_type: S<'a>,
    #[serde(default, borrow)]
    contest_selection: Vec<RSelection<'a>>,
    #[serde(default, borrow)]
    election_district_id: S<'a>,
    #[serde(default, borrow)]
    name: S<'a>,
    #[serde(default)]
    number_elected: Option<u64>,
    #[serde(default, borrow)]
    vote_variation: Option<S<'a>>,
    #[serde(default)]
    votes_allowed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RSelection<'a> {
    #[serde(rename = "@id", default, borrow)]
    id: S<'a>,
    #[serde(rename = "@type", default, borrow)]
    at_type: S<'a>,
    #[serde(default, borrow)]
    candidate_ids: Vec<S<'a>>,
    #[serde(default, borrow)]
    vote_counts: Vec<RVotes<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RVotes<'a> {
    count: Count,
    #[serde(default, borrow)]
    gp_unit_id: S<'a>,
    /// The round of a ranked-choice count: Tally does not read those.
    #[serde(default)]
    round: Option<u64>,
    #[serde(default, borrow)]
    r#type: S<'a>,
}

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// The report's units by `@id` (the first of a repeated `@id`). Counts are usually listed in
/// the order of their units, so a lookup first tries the unit after the previous one.
struct Units<'r> {
    list: &'r [Unit<'r>],
    by_id: Map<&'r str, usize>,
    /// For each unit, the first unit with its `@id`.
    first: Vec<u32>,
}

impl<'r> Units<'r> {
    fn new(list: &'r [Unit<'r>]) -> Self {
        let mut by_id: Map<&str, usize> = Map::default();
        by_id.reserve(list.len());
        let first = list
            .iter()
            .enumerate()
            .map(|(i, u)| *by_id.entry(&*u.id).or_insert(i) as u32)
            .collect();
        Units { list, by_id, first }
    }

    fn get(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The unit `id`, tried first at `guess`.
    fn find(&self, id: &str, guess: usize) -> Option<usize> {
        match self.list.get(guess) {
            Some(u) if *u.id == *id => Some(self.first[guess] as usize),
            _ => self.get(id),
        }
    }
}

/// The report with its two large members (`GpUnit`, `Election`) parsed at the same time on two
/// threads, the same value as `serde_json::from_slice` gives; `None` when the bytes are not
/// UTF-8, not an object with each member once, or anything in them does not parse: the caller
/// then parses serially (and reports the error where it is).
fn parse_parallel(data: &[u8]) -> Option<Report<'_>> {
    let text = std::str::from_utf8(data).ok()?;
    let members = root_members(text.as_bytes())?;
    let mut at_type: Option<&str> = None;
    let mut units: Option<&str> = None;
    let mut elections: Option<&str> = None;
    let mut seen: Vec<Cow<'_, str>> = Vec::new();
    for (k, v) in members {
        let key: Cow<'_, str> = serde_json::from_str::<S>(&text[k]).ok()?.0;
        if seen.contains(&key) {
            return None; // serde says "duplicate field"
        }
        let value = &text[v];
        match &*key {
            "@type" => at_type = Some(value),
            "GpUnit" => units = Some(value),
            "Election" => elections = Some(value),
            _ => {
                serde_json::from_str::<serde::de::IgnoredAny>(value).ok()?;
            }
        }
        seen.push(key);
    }
    let (gp_unit, election) = rayon::join(
        || units.map_or(Some(Vec::new()), |u| serde_json::from_str(u).ok()),
        || elections.map_or(Some(Vec::new()), |e| serde_json::from_str(e).ok()),
    );
    Some(Report {
        at_type: match at_type {
            Some(t) => serde_json::from_str(t).ok()?,
            None => S::default(),
        },
        election: election?,
        gp_unit: gp_unit?,
    })
}

/// The byte ranges of the keys and values of the root object, from a scan that follows strings
/// and brackets only (the values are checked by parsing them); `None` when it is not so shaped.
fn root_members(b: &[u8]) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The end of the string starting at `i` (its opening quote), after the closing quote.
    let string_end = |mut i: usize| -> Option<usize> {
        i += 1;
        loop {
            i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
            if b[i] == b'"' {
                return Some(i + 1);
            }
            i += 2;
        }
    };
    let mut out = Vec::new();
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let k = i..string_end(i)?;
        i = ws(k.end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(i + 1);
        i = start;
        match b.get(i)? {
            b'"' => i = string_end(i)?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *b.get(i)? {
                        b'"' => {
                            i = string_end(i)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                while i < b.len() && !matches!(b[i], b',' | b'}') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
        }
        out.push((k, start..i));
        i = ws(i);
        match b.get(i)? {
            b',' => i = ws(i + 1),
            b'}' => return (ws(i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// Reads a report's bytes (already decompressed). `contest` chooses one candidate contest by
/// its `@id`; without it a report with one candidate contest per round (round 2 being the
/// `runoff` election) is read whole, and several contests are F012 with their list.
pub fn import_nist(
    data: &[u8],
    file: &str,
    opts: &ImportOptions<'_>,
    contest: Option<&str>,
) -> Result<FileImport, ImportError> {
    let report: Report<'_> = match parse_parallel(data) {
        Some(r) => r,
        // Serially, for the error (with its line and column) or an unusual document.
        None => serde_json::from_slice(data).map_err(|e| {
            ImportError::fatal(
                Code::F010,
                file,
                format!("not a readable NIST election report (JSON): {e}"),
            )
        })?,
    };
    if *report.at_type != *REPORT_TYPE {
        return Err(ImportError::fatal(
            Code::F010,
            file,
            format!(
                "a JSON document whose @type is '{}', not {REPORT_TYPE}",
                &*report.at_type
            ),
        ));
    }
    let chosen = choose(&report, file, contest)?;
    let mut ignored_contests: Vec<(String, String)> = Vec::new();
    for (ei, e) in report.election.iter().enumerate() {
        for (ci, c) in e.contest.iter().enumerate() {
            if !chosen.contains(&(ei, ci)) {
                ignored_contests.push((
                    format!("contest {}", &*c.id),
                    format!("{}, {}: not the contest read", kind(&c.at_type), &*c.name),
                ));
            }
        }
    }
    let units = Units::new(&report.gp_unit);
    let several = chosen.len() > 1;
    let mut rounds = Vec::new();
    let mut layout: Option<Layout> = None;
    for &(ei, ci) in &chosen {
        let el = &report.election[ei];
        let c = &el.contest[ci];
        let number = if *el.r#type == *"runoff" {
            2
        } else if several {
            1
        } else {
            opts.default_round
        };
        let (r, l) = read_contest(el, c, &units, number, file, opts)?;
        rounds.push(r);
        if layout.is_none() {
            layout = Some(l);
        } else if let Some(lay) = layout.as_mut() {
            lay.notes.extend(l.notes);
        }
    }
    // `chosen` is never empty here (no contest is F011/F012 above); an error, not a panic, if it were.
    let mut layout = layout.ok_or_else(|| {
        ImportError::fatal(
            Code::F010,
            file,
            "the report has no candidate contest to read",
        )
    })?;
    for (name, why) in ignored_contests {
        layout.ignored.push((layout.header.len(), why));
        layout.header.push(name);
    }
    rounds.sort_by_key(|r| r.round.number);
    Ok(FileImport {
        file: file.to_string(),
        layout,
        rounds,
        phases: Default::default(),
    })
}

fn kind(at_type: &str) -> &str {
    match at_type {
        CANDIDATE_CONTEST => "candidate contest",
        "ElectionResults.BallotMeasureContest" => "ballot measure",
        "ElectionResults.PartyContest" => "party contest",
        "ElectionResults.RetentionContest" => "retention contest",
        other => other,
    }
}

/// Which contests to read: (election, contest) indices, one per round.
fn choose(
    report: &Report<'_>,
    file: &str,
    contest: Option<&str>,
) -> Result<Vec<(usize, usize)>, ImportError> {
    let all: Vec<(usize, usize, &RContest)> = report
        .election
        .iter()
        .enumerate()
        .flat_map(|(ei, e)| e.contest.iter().enumerate().map(move |(ci, c)| (ei, ci, c)))
        .collect();
    if let Some(want) = contest {
        let Some(&(ei, ci, c)) = all.iter().find(|(_, _, c)| *c.id == *want) else {
            return Err(ImportError::fatal(
                Code::F012,
                file,
                format!("no contest '{want}' in the report; {}", listing(report)),
            ));
        };
        supported(c, file)?;
        return Ok(vec![(ei, ci)]);
    }
    let candidate: Vec<&(usize, usize, &RContest)> = all
        .iter()
        .filter(|(_, _, c)| *c.at_type == *CANDIDATE_CONTEST)
        .collect();
    if candidate.is_empty() {
        let kinds: Vec<String> = all
            .iter()
            .map(|(_, _, c)| format!("{} ({})", &*c.id, kind(&c.at_type)))
            .collect();
        return Err(ImportError::fatal(
            Code::F011,
            file,
            if kinds.is_empty() {
                "the report has no contest".to_string()
            } else {
                format!(
                    "no candidate contest: Tally counts candidate contests only, and the report has {}",
                    kinds.join(", ")
                )
            },
        ));
    }
    let runoff = |ei: usize| *report.election[ei].r#type == *"runoff";
    let first: Vec<_> = candidate.iter().filter(|(ei, _, _)| !runoff(*ei)).collect();
    let second: Vec<_> = candidate.iter().filter(|(ei, _, _)| runoff(*ei)).collect();
    if first.len() > 1 || second.len() > 1 {
        return Err(ImportError::fatal(
            Code::F012,
            file,
            format!(
                "{} candidate contests and none chosen (choose one with --contest ID); {}",
                candidate.len(),
                listing(report)
            ),
        ));
    }
    let mut out = Vec::new();
    for &&&(ei, ci, c) in first.iter().chain(second.iter()) {
        supported(c, file)?;
        out.push((ei, ci));
    }
    Ok(out)
}

fn listing(report: &Report<'_>) -> String {
    let list: Vec<String> = report
        .election
        .iter()
        .flat_map(|e| {
            e.contest
                .iter()
                .filter(|c| *c.at_type == *CANDIDATE_CONTEST)
                .map(move |c| format!("{} ({}; election type {})", &*c.id, &*c.name, &*e.r#type))
        })
        .collect();
    format!("the candidate contests are: {}", list.join(", "))
}

/// F011 for what Tally cannot count.
fn supported(c: &RContest<'_>, file: &str) -> Result<(), ImportError> {
    let refuse = |why: String| {
        Err(ImportError::fatal(
            Code::F011,
            file,
            format!("contest {} ({}): {why}", &*c.id, &*c.name),
        ))
    };
    if *c.at_type != *CANDIDATE_CONTEST {
        return refuse(format!(
            "a {}; Tally counts candidate contests only",
            kind(&c.at_type)
        ));
    }
    if let Some(v) = c.vote_variation.as_deref() {
        if !matches!(v, "majority" | "plurality" | "super-majority" | "other") {
            return refuse(format!(
                "vote variation '{v}'; Tally counts one vote per ballot for one seat (majority or plurality)"
            ));
        }
    }
    if c.votes_allowed.is_some_and(|v| v > 1) || c.number_elected.is_some_and(|v| v > 1) {
        return refuse(format!(
            "{} votes allowed and {} seats; Tally counts one vote for one seat",
            c.votes_allowed.unwrap_or(1),
            c.number_elected.unwrap_or(1)
        ));
    }
    for s in &c.contest_selection {
        if *s.at_type != *"ElectionResults.CandidateSelection" {
            return refuse(format!("selection {} is a {}", &*s.id, &*s.at_type));
        }
        if s.vote_counts.iter().any(|v| v.round.is_some()) {
            return refuse(format!(
                "selection {} has counts by round (ranked choice)",
                &*s.id
            ));
        }
    }
    Ok(())
}

/// Tally's id of a candidate `@id` written as `r<n>-cand-<id>`, or the `@id` itself.
fn tally_id(id: &str, prefix: &str) -> String {
    let bare = id
        .strip_prefix('r')
        .and_then(|r| r.split_once('-'))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, rest)| rest.strip_prefix(prefix));
    match bare {
        Some(b) if !b.is_empty() => unescape_id(b),
        _ => id.to_string(),
    }
}

fn station_id(u: &Unit<'_>) -> String {
    u.external_identifier
        .iter()
        .find(|x| *x.r#type == *"local-level" && !x.value.is_empty())
        .map(|x| x.value.to_string())
        .unwrap_or_else(|| tally_id(&u.id, "ps-"))
}

fn level_name(u: &Unit<'_>) -> String {
    match (&*u.r#type, u.other_type.as_deref()) {
        ("other", Some(o)) if !o.is_empty() => o.to_string(),
        (t, _) => t.to_string(),
    }
}

/// One leaf unit (a station) while its counts are gathered; its votes are in [`Sheets`].
struct Sheet<'r> {
    unit: Option<usize>,
    unit_id: &'r str,
    station: String,
    /// The area unit above it (an index in the walk's nodes).
    node: usize,
    registered: u64,
    participated: u64,
    cast: u64,
    invalid: u64,
    split_cast: u64,
    split_invalid: u64,
    valid: u64,
    extra: Vec<u64>,
    findings: Vec<Finding>,
}

/// An area unit met in the walk: its name and the node above it (the district is node 0).
struct Node<'r> {
    parent: usize,
    name: &'r str,
    depth: usize,
}

/// Where a count's unit is in the walk.
#[derive(Clone, Copy, PartialEq)]
enum Where {
    Station(usize),
    Area,
    Unknown,
}

const NONE: u32 = u32::MAX;

/// An absent count while a unit's counts are gathered (in `u64`: split units are summed, and a
/// sum may pass [`MAX_COUNT`]; [`stored_count`] then checks it).
const ABSENT: u64 = u64::MAX;

/// A gathered count as the station table stores it: [`MISSING`] when absent, E101 when a sum of
/// split units is too large for a count.
fn stored_count(v: u64, what: impl Fn() -> String, findings: &mut Vec<Finding>) -> StoredCount {
    if v == ABSENT {
        MISSING
    } else if v > MAX_COUNT {
        findings.push(too_large(&what(), v));
        MISSING
    } else {
        v as StoredCount
    }
}

/// E101 for a count above [`MAX_COUNT`].
fn too_large(what: &str, v: u64) -> Finding {
    Finding::on(
        Code::E101,
        [what],
        format!("{what} {v} is too large to be a count"),
    )
}

fn add(acc: &mut u64, v: u64) {
    *acc = if *acc == ABSENT {
        v
    } else {
        acc.saturating_add(v)
    };
}

/// The value of a count, or an E101 finding.
fn value(c: &Count, what: &str, findings: &mut Vec<Finding>) -> Option<u64> {
    value_of(c, || what.to_string(), findings)
}

/// [`value`] with the field's name made only when it is needed.
fn value_of(c: &Count, what: impl Fn() -> String, findings: &mut Vec<Finding>) -> Option<u64> {
    match c.0 {
        Ok(v) if v <= MAX_COUNT => Some(v),
        Ok(v) => {
            findings.push(too_large(&what(), v));
            None
        }
        Err(b) => {
            let what = what();
            findings.push(Finding::on(
                Code::E101,
                [what.as_str()],
                format!("{what} {b} is not a count (a non-negative integer)"),
            ));
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_contest(
    el: &RElection<'_>,
    c: &RContest<'_>,
    units: &Units<'_>,
    number: u8,
    file: &str,
    opts: &ImportOptions<'_>,
) -> Result<(ImportedRound, Layout), ImportError> {
    let mut notes = vec![format!(
        "NIST report: contest {} ({}) of election '{}' (type {}) read as round {number}",
        &*c.id,
        &*c.name,
        first(&el.name).unwrap_or(""),
        &*el.r#type
    )];
    // Candidates.
    let by_id: HashMap<&str, &RCandidate> = el.candidate.iter().map(|x| (&*x.id, x)).collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for s in &c.contest_selection {
        let (mut id, name) = match s.candidate_ids.first() {
            Some(cid) => {
                let name = by_id
                    .get(&**cid)
                    .and_then(|x| first(&x.ballot_name))
                    .map(str::to_string);
                let id = tally_id(cid, "cand-");
                (id.clone(), name.unwrap_or(id))
            }
            None => {
                let id = tally_id(&s.id, "sel-");
                (id.clone(), id)
            }
        };
        if candidates.iter().any(|x| x.id == id) {
            id = format!("{id}#{}", candidates.len() + 1);
        }
        candidates.push(Candidate {
            id,
            name,
            colour: None,
        });
    }
    let k = candidates.len();
    // The district's unit tree, depth first, children in their listed order.
    let root_id: &str = if c.election_district_id.is_empty() {
        &el.election_scope_id
    } else {
        &c.election_district_id
    };
    let Some(root) = units.get(root_id) else {
        return Err(ImportError::fatal(
            Code::F010,
            file,
            format!(
                "contest {}: its district '{root_id}' is not a unit of the report",
                &*c.id
            ),
        ));
    };
    let list = units.list;
    let n_units = list.len();
    let mut sheets: Vec<Sheet> = Vec::new();
    // Per unit of the report: its sheet, or whether it is an area of the district.
    let mut leaf_at: Vec<u32> = vec![NONE; n_units];
    let mut inner_at: Vec<bool> = vec![false; n_units];
    let mut visited: Vec<bool> = vec![false; n_units];
    // Stations named in ComposingGpUnitIds without a unit of their own.
    let mut leaf_other: Map<&str, usize> = Map::default();
    let mut nodes: Vec<Node> = vec![Node {
        parent: 0,
        name: "",
        depth: 0,
    }];
    let mut level_names: Vec<String> = Vec::new();
    // (unit index or None, unit id, the node above it)
    let mut stack: Vec<(Option<usize>, &str, usize)> = vec![(Some(root), root_id, 0)];
    while let Some((at, uid, above)) = stack.pop() {
        let unit = at.map(|i| &list[i]);
        if let Some(i) = at {
            if visited[i] {
                continue; // a unit composed twice (or a cycle): read once
            }
            visited[i] = true;
        }
        let children = unit.map_or(&[][..], |u| &u.composing_gp_unit_ids[..]);
        if children.is_empty() && at != Some(root) || at.is_none() {
            let station = unit.map_or_else(|| tally_id(uid, "ps-"), station_id);
            match at {
                Some(i) => leaf_at[i] = sheets.len() as u32,
                None => {
                    leaf_other.insert(uid, sheets.len());
                }
            }
            let mut findings = Vec::new();
            let reg = unit
                .and_then(|u| u.voters_registered.as_ref())
                .and_then(|v| value(v, "registered", &mut findings))
                .unwrap_or(ABSENT);
            let part = unit
                .and_then(|u| u.voters_participated.as_ref())
                .and_then(|v| value(v, "cast", &mut findings))
                .unwrap_or(ABSENT);
            sheets.push(Sheet {
                unit: at,
                unit_id: uid,
                station,
                node: above,
                registered: reg,
                participated: part,
                cast: ABSENT,
                invalid: ABSENT,
                split_cast: ABSENT,
                split_invalid: ABSENT,
                valid: ABSENT,
                extra: Vec::new(),
                findings,
            });
            continue;
        }
        let mut below = above;
        if let Some(i) = at {
            inner_at[i] = true;
        }
        if let (Some(u), true) = (unit, at != Some(root)) {
            let depth = nodes[above].depth + 1;
            nodes.push(Node {
                parent: above,
                name: first(&u.name).unwrap_or(&u.id),
                depth,
            });
            below = nodes.len() - 1;
            if level_names.len() < depth {
                level_names.push(level_name(u));
            }
        }
        for ch in children.iter().rev() {
            stack.push((units.get(ch), &**ch, below));
        }
    }
    let n = sheets.len();
    level_names.truncate(
        sheets
            .iter()
            .map(|s| nodes[s.node].depth)
            .max()
            .unwrap_or(0),
    );
    let depth = level_names.len();
    let place = |unit: Option<usize>, id: &str| match unit {
        Some(u) if leaf_at[u] != NONE => Where::Station(leaf_at[u] as usize),
        Some(u) if inner_at[u] => Where::Area,
        _ => match leaf_other.get(id) {
            Some(&s) => Where::Station(s),
            None => Where::Unknown,
        },
    };
    // Vote counts at the stations; area aggregates are recomputed, other units are E106.
    let mut votes: Vec<u64> = vec![ABSENT; n * k];
    let mut split_votes: Vec<u64> = vec![ABSENT; n * k];
    let mut unknown: Vec<(String, Vec<Finding>)> = Vec::new();
    let mut unknown_at: HashMap<String, usize> = HashMap::new();
    let mut split_units = 0usize;
    let mut split_types: Vec<String> = Vec::new();
    for (j, s) in c.contest_selection.iter().enumerate() {
        let mut guess = 0;
        for vc in &s.vote_counts {
            let id: &str = &vc.gp_unit_id;
            let unit = units.find(id, guess);
            if let Some(u) = unit {
                guess = u + 1;
            }
            let li = match place(unit, id) {
                Where::Station(li) => li,
                Where::Area => continue,
                Where::Unknown => {
                    let at = *unknown_at.entry(id.to_string()).or_insert_with(|| {
                        unknown.push((id.to_string(), Vec::new()));
                        unknown.len() - 1
                    });
                    if unknown[at].1.is_empty() {
                        unknown[at].1.push(Finding::new(
                            Code::E106,
                            format!(
                                "vote counts for unit '{id}', which is not in the district of contest {}",
                                &*c.id
                            ),
                        ));
                    }
                    continue;
                }
            };
            let sh = &mut sheets[li];
            let cand = &candidates[j].id;
            let field = || format!("votes.{cand}");
            let Some(v) = value_of(&vc.count, field, &mut sh.findings) else {
                continue;
            };
            if *vc.r#type == *"total" {
                add(&mut votes[li * k + j], v);
            } else {
                if !split_types.iter().any(|t| *vc.r#type == *t.as_str()) {
                    split_types.push(vc.r#type.to_string());
                }
                add(&mut split_votes[li * k + j], v);
            }
        }
    }
    let mut extra_names: Vec<String> = Vec::new();
    let mut other_ballots: Vec<String> = Vec::new();
    let mut guess = 0;
    for b in &el.ballot_counts {
        let id: &str = &b.gp_unit_id;
        let unit = units.find(id, guess);
        if let Some(u) = unit {
            guess = u + 1;
        }
        let Where::Station(li) = place(unit, id) else {
            continue; // areas (recomputed) and units of other contests
        };
        let sh = &mut sheets[li];
        let cast = b
            .ballots_cast
            .as_ref()
            .and_then(|v| value(v, "cast", &mut sh.findings));
        let rejected = b
            .ballots_rejected
            .as_ref()
            .and_then(|v| value(v, "invalid", &mut sh.findings));
        match (&*b.r#type, b.other_type.as_deref()) {
            ("total", _) => {
                cast.into_iter().for_each(|v| add(&mut sh.cast, v));
                rejected.into_iter().for_each(|v| add(&mut sh.invalid, v));
            }
            ("other", Some(VALID_TYPE)) => cast.into_iter().for_each(|v| add(&mut sh.valid, v)),
            ("other", Some(o)) if o.starts_with(EXTRA_PREFIX) => {
                let name = &o[EXTRA_PREFIX.len()..];
                let x = match extra_names.iter().position(|n| n == name) {
                    Some(x) => x,
                    None => {
                        extra_names.push(name.to_string());
                        extra_names.len() - 1
                    }
                };
                if sh.extra.len() <= x {
                    sh.extra.resize(x + 1, ABSENT);
                }
                cast.into_iter().for_each(|v| add(&mut sh.extra[x], v));
            }
            ("other", o) => {
                let o = o.unwrap_or("").to_string();
                if !other_ballots.contains(&o) {
                    other_ballots.push(o);
                }
            }
            (t, _) => {
                if !split_types.iter().any(|s| s == t) {
                    split_types.push(t.to_string());
                }
                cast.into_iter().for_each(|v| add(&mut sh.split_cast, v));
                rejected
                    .into_iter()
                    .for_each(|v| add(&mut sh.split_invalid, v));
            }
        }
    }
    if !other_ballots.is_empty() {
        notes.push(format!(
            "no use for BallotCounts of other types: {}",
            other_ballots.join(", ")
        ));
    }
    // Sheets through the one validation.
    let e = extra_names.len();
    let mut tree = AreaTree::new(&opts.election_name, level_names.clone());
    let mut round = Round::new(
        number,
        candidates.clone(),
        extra_names.clone(),
        tree.clone(),
    );
    // The area of each node, made once (its path padded to the depth of the deepest station).
    let mut area_of: Vec<Option<tally_model::AreaId>> = vec![None; nodes.len()];
    let mut path: Vec<&str> = Vec::with_capacity(depth);
    let ids: Vec<&str> = candidates.iter().map(|x| x.id.as_str()).collect();
    let mut stats = SheetStats::default();
    let mut issues: Vec<Issue> = Vec::new();
    let mut quarantine: Vec<QuarantinedRow> = Vec::new();
    let (mut stored_votes, mut stored_extra) = (Vec::with_capacity(k), Vec::with_capacity(e));
    for (si, mut sh) in sheets.into_iter().enumerate() {
        stats.rows += 1;
        let line = sh.unit.map_or(0, |u| u as u64 + 1);
        let votes = &mut votes[si * k..(si + 1) * k];
        let split = &split_votes[si * k..(si + 1) * k];
        let mut summed = false;
        for j in 0..k {
            if votes[j] == ABSENT && split[j] != ABSENT {
                votes[j] = split[j];
                summed = true;
            }
        }
        if sh.cast == ABSENT && sh.split_cast != ABSENT {
            sh.cast = sh.split_cast;
            summed = true;
        }
        if sh.invalid == ABSENT && sh.split_invalid != ABSENT {
            sh.invalid = sh.split_invalid;
        }
        if summed {
            split_units += 1;
        }
        if sh.cast == ABSENT {
            sh.cast = sh.participated;
        }
        if sh.valid == ABSENT && sh.cast != ABSENT && sh.invalid != ABSENT {
            sh.valid = sh.cast.checked_sub(sh.invalid).unwrap_or(ABSENT);
        }
        sh.extra.resize(e, ABSENT);
        let mut findings = std::mem::take(&mut sh.findings);
        let mut core = [0; 4];
        for (f, (v, what)) in [sh.registered, sh.cast, sh.invalid, sh.valid]
            .into_iter()
            .zip(["registered", "cast", "invalid", "valid"])
            .enumerate()
        {
            core[f] = stored_count(v, || what.to_string(), &mut findings);
        }
        stored_votes.clear();
        for (j, &v) in votes.iter().enumerate() {
            stored_votes.push(stored_count(
                v,
                || format!("votes.{}", ids[j]),
                &mut findings,
            ));
        }
        stored_extra.clear();
        for (x, &v) in sh.extra.iter().enumerate() {
            stored_extra.push(stored_count(
                v,
                || format!("extra.{}", extra_names[x]),
                &mut findings,
            ));
        }
        let votes = &mut stored_votes[..];
        if let Some(reg) = opts.registry {
            if !reg.contains(&sh.station) {
                findings.push(Finding::new(
                    Code::E106,
                    format!("station '{}' is not in the registry", sh.station),
                ));
            }
        }
        let empty = votes.iter().all(|&v| v == MISSING) && core[1..].iter().all(|&v| v == MISSING);
        let status = if empty && !findings.iter().any(Finding::is_error) {
            SheetStatus::Missing
        } else {
            let verdict = validate_sheet(
                &mut SheetInput {
                    core,
                    votes: &mut *votes,
                    candidates: &ids,
                },
                &opts.validation,
                &mut findings,
            );
            if verdict == Verdict::Quarantined || findings.iter().any(Finding::is_error) {
                SheetStatus::Quarantined
            } else {
                SheetStatus::Counted
            }
        };
        match status {
            SheetStatus::Counted => {
                stats.accepted += 1;
                if !findings.is_empty() {
                    stats.with_warnings += 1;
                }
            }
            SheetStatus::Quarantined => stats.quarantined += 1,
            _ => stats.missing += 1,
        }
        for f in &findings {
            issues.push(Issue {
                code: f.code,
                file: file.to_string(),
                line,
                station: sh.station.clone(),
                detail: f.detail.clone(),
            });
        }
        if status == SheetStatus::Quarantined {
            let errors: Vec<&Finding> = findings.iter().filter(|f| f.is_error()).collect();
            quarantine.push(QuarantinedRow {
                file: file.to_string(),
                line,
                station: sh.station.clone(),
                codes: errors.iter().map(|f| f.code).collect(),
                reasons: errors.iter().map(|f| f.detail.clone()).collect(),
                raw: raw_text(sh.unit_id, &core, &ids, votes),
            });
        }
        if status != SheetStatus::Counted {
            core[1..].iter_mut().for_each(|v| *v = MISSING);
            votes.iter_mut().for_each(|v| *v = MISSING);
            stored_extra.iter_mut().for_each(|v| *v = MISSING);
        }
        let area = match area_of[sh.node] {
            Some(a) => a,
            None => {
                path.clear();
                let mut at = sh.node;
                while at != 0 {
                    path.push(nodes[at].name);
                    at = nodes[at].parent;
                }
                path.reverse();
                path.resize(depth, "");
                let a = tree.leaf(&path);
                area_of[sh.node] = Some(a);
                a
            }
        };
        round.push(&sh.station, area, status, line, core, votes, &stored_extra);
    }
    round.tree = tree;
    // Counts for units outside the district: quarantined rows, never a silent drop.
    for (uid, findings) in unknown {
        stats.rows += 1;
        stats.quarantined += 1;
        let line = units.get(&uid).map_or(0, |u| u as u64 + 1);
        let station = tally_id(&uid, "ps-");
        for f in &findings {
            issues.push(Issue {
                code: f.code,
                file: file.to_string(),
                line,
                station: station.clone(),
                detail: f.detail.clone(),
            });
        }
        quarantine.push(QuarantinedRow {
            file: file.to_string(),
            line,
            station,
            codes: findings.iter().map(|f| f.code).collect(),
            reasons: findings.iter().map(|f| f.detail.clone()).collect(),
            raw: format!("unit {uid}"),
        });
    }
    if split_units > 0 {
        notes.push(format!(
            "no total counts at {split_units} units: their counts of types {} were summed",
            split_types.join(", ")
        ));
    }
    let dups = crate::round_duplicates(&round);
    crate::resolve_duplicates(
        &mut round,
        dups,
        &mut stats,
        &mut issues,
        &mut quarantine,
        file,
        crate::Place::Unit,
        &unit_text,
    );
    issues.sort_by_key(|i| i.line);
    quarantine.sort_by_key(|q| q.line);
    let mut header = vec!["station_id".to_string()];
    header.extend(level_names.iter().cloned());
    header.extend(["registered", "cast", "invalid", "valid"].map(String::from));
    header.extend(candidates.iter().map(|x| x.id.clone()));
    header.extend(extra_names.iter().cloned());
    let l = depth;
    let layout = Layout {
        header,
        round: None,
        station: 0,
        areas: (1..=l).collect(),
        core: [Some(l + 1), Some(l + 2), Some(l + 3), Some(l + 4)],
        status: None,
        candidates: candidates
            .into_iter()
            .enumerate()
            .map(|(j, x)| (l + 5 + j, x))
            .collect(),
        extra: (0..e).map(|x| l + 5 + k + x).collect(),
        ignored: Vec::new(),
        notes,
    };
    Ok((
        ImportedRound {
            round,
            stats,
            issues,
            quarantine,
        },
        layout,
    ))
}

/// The numbers of a sheet as the report gives them, for the quarantine file.
fn raw_text(unit_id: &str, core: &[StoredCount; 4], ids: &[&str], votes: &[StoredCount]) -> String {
    let n = |v: StoredCount| {
        if v == MISSING {
            String::new()
        } else {
            v.to_string()
        }
    };
    let votes: Vec<String> = ids
        .iter()
        .zip(votes)
        .map(|(id, &v)| format!("{id}={}", n(v)))
        .collect();
    format!(
        "unit {}: registered={} cast={} invalid={} valid={} {}",
        unit_id,
        n(core[0]),
        n(core[1]),
        n(core[2]),
        n(core[3]),
        votes.join(" ")
    )
}

/// The text of a sheet held back as E105, for the quarantine (a unit has no line of text).
fn unit_text(round: &Round, i: usize) -> String {
    let n = |v: StoredCount| {
        if v == MISSING {
            String::new()
        } else {
            v.to_string()
        }
    };
    let votes: Vec<String> = round.votes_of(i).iter().map(|&v| n(v)).collect();
    let s = &round.stations;
    format!(
        "unit #{}: registered={} cast={} invalid={} valid={} votes={}",
        s.line[i],
        n(s.registered[i]),
        n(s.cast[i]),
        n(s.invalid[i]),
        n(s.valid[i]),
        votes.join(",")
    )
}

/// The report as compact JSON, the same bytes as `serde_json::to_vec` (a test says so) and a
/// newline, written by hand: one pass, numbers with `itoa`, texts copied as they are unless they
/// need an escape, into a buffer sized for the document (a large report is never copied to grow
/// it). Here rather than in the caller so it is compiled with this crate's optimisation.
///
/// The members are written in the order of the fields of `tally_model::nist` (the order serde
/// gives them), with the same `skip_serializing_if`: a field added there is added here.
pub fn to_json(report: &ElectionReport) -> Vec<u8> {
    let mut w = Json {
        out: Vec::with_capacity(size_hint(report)),
        int: itoa::Buffer::new(),
    };
    w.report(report);
    w.out.push(b'\n');
    w.out
}

/// About the size of the document (a little more, so the buffer does not grow).
fn size_hint(r: &ElectionReport) -> usize {
    let mut n = 4096;
    for u in &r.gp_unit {
        n += 420
            + u.id.len() * 2
            + u.composing_gp_unit_ids
                .iter()
                .map(|c| c.len() + 3)
                .sum::<usize>();
        n += u.name.as_ref().map_or(0, |t| {
            160 + t.text.iter().map(|l| l.content.len()).sum::<usize>()
        });
    }
    for e in &r.election {
        n += 1024;
        n += e
            .ballot_counts
            .iter()
            .map(|b| 150 + b.gp_unit_id.len())
            .sum::<usize>();
        for c in &e.contest {
            n += 1024;
            for s in &c.contest_selection {
                n += 512
                    + s.vote_counts
                        .iter()
                        .map(|v| 100 + v.gp_unit_id.len())
                        .sum::<usize>();
            }
        }
    }
    n
}

use tally_model::nist::{
    BallotCounts, Candidate as NCandidate, Contest as NContest, CountStatus, Election as NElection,
    ExternalIdentifier, GpUnit, Selection, Text, VoteCounts,
};

struct Json {
    out: Vec<u8>,
    int: itoa::Buffer,
}

impl Json {
    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// A string, escaped as serde_json escapes it (`"`, `\\` and control characters).
    fn str(&mut self, s: &str) {
        if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            // Writing into memory cannot fail.
            let _ = serde_json::to_writer(&mut self.out, s);
        } else {
            self.out.push(b'"');
            self.out.extend_from_slice(s.as_bytes());
            self.out.push(b'"');
        }
    }

    /// `,"Key":` (every object here starts with a member that is always written).
    fn key(&mut self, k: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn kstr(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }

    fn u64(&mut self, v: u64) {
        let s = self.int.format(v);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn ku64(&mut self, k: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.key(k);
            self.u64(v);
        }
    }

    fn count(&mut self, c: &Count) {
        match c.0 {
            Ok(v) => self.u64(v),
            Err(b) => {
                let _ = serde_json::to_writer(&mut self.out, &b.0);
            }
        }
    }

    fn kcount(&mut self, k: &str, c: &Option<Count>) {
        if let Some(c) = c {
            self.key(k);
            self.count(c);
        }
    }

    fn kopt(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.kstr(k, v);
        }
    }

    /// `,"Key":[...]`, nothing when empty.
    fn list<T>(&mut self, k: &str, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        if items.is_empty() {
            return;
        }
        self.key(k);
        self.out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            each(self, x);
        }
        self.out.push(b']');
    }

    fn start(&mut self, first: &str, v: &str) {
        self.raw(b"{\"");
        self.raw(first.as_bytes());
        self.raw(b"\":");
        self.str(v);
    }

    fn text(&mut self, t: &Text) {
        self.start("@type", &t.at_type);
        self.key("Text");
        self.out.push(b'[');
        for (i, l) in t.text.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.start("@type", &l.at_type);
            self.kstr("Content", &l.content);
            self.kstr("Language", &l.language);
            self.out.push(b'}');
        }
        self.raw(b"]}");
    }

    fn ktext(&mut self, k: &str, t: &Option<Text>) {
        if let Some(t) = t {
            self.key(k);
            self.text(t);
        }
    }

    fn count_status(&mut self, c: &CountStatus) {
        self.start("@type", &c.at_type);
        self.kstr("Status", &c.status);
        self.kstr("Type", &c.r#type);
        self.out.push(b'}');
    }

    fn external(&mut self, x: &ExternalIdentifier) {
        self.start("@type", &x.at_type);
        self.kstr("Type", &x.r#type);
        self.kstr("Value", &x.value);
        self.out.push(b'}');
    }

    fn unit(&mut self, u: &GpUnit) {
        self.start("@id", &u.id);
        self.kstr("@type", &u.at_type);
        self.list("ComposingGpUnitIds", &u.composing_gp_unit_ids, |w, c| {
            w.str(c)
        });
        self.list("CountStatus", &u.count_status, Self::count_status);
        self.list("ExternalIdentifier", &u.external_identifier, Self::external);
        self.ktext("Name", &u.name);
        self.kopt("OtherType", &u.other_type);
        self.ku64("SubUnitsReported", u.sub_units_reported);
        self.ku64("TotalSubUnits", u.total_sub_units);
        self.kstr("Type", &u.r#type);
        self.kcount("VotersParticipated", &u.voters_participated);
        self.kcount("VotersRegistered", &u.voters_registered);
        self.out.push(b'}');
    }

    fn votes(&mut self, v: &VoteCounts) {
        self.start("@type", &v.at_type);
        self.key("Count");
        self.count(&v.count);
        self.kstr("GpUnitId", &v.gp_unit_id);
        self.kopt("OtherType", &v.other_type);
        self.ku64("Round", v.round);
        self.kstr("Type", &v.r#type);
        self.out.push(b'}');
    }

    fn ballots(&mut self, b: &BallotCounts) {
        self.start("@type", &b.at_type);
        self.kcount("BallotsCast", &b.ballots_cast);
        self.kcount("BallotsRejected", &b.ballots_rejected);
        self.kstr("GpUnitId", &b.gp_unit_id);
        self.kopt("OtherType", &b.other_type);
        self.kstr("Type", &b.r#type);
        self.out.push(b'}');
    }

    fn candidate(&mut self, c: &NCandidate) {
        self.start("@id", &c.id);
        self.kstr("@type", &c.at_type);
        self.ktext("BallotName", &c.ballot_name);
        self.kopt("PostElectionStatus", &c.post_election_status);
        self.out.push(b'}');
    }

    fn selection(&mut self, s: &Selection) {
        self.start("@id", &s.id);
        self.kstr("@type", &s.at_type);
        self.list("CandidateIds", &s.candidate_ids, |w, c| w.str(c));
        self.ku64("SequenceOrder", s.sequence_order);
        self.list("VoteCounts", &s.vote_counts, Self::votes);
        self.out.push(b'}');
    }

    fn contest(&mut self, c: &NContest) {
        self.start("@id", &c.id);
        self.kstr("@type", &c.at_type);
        self.list("ContestSelection", &c.contest_selection, Self::selection);
        self.list("CountStatus", &c.count_status, Self::count_status);
        self.kstr("ElectionDistrictId", &c.election_district_id);
        self.kstr("Name", &c.name);
        self.ku64("NumberElected", c.number_elected);
        self.kopt("OtherVoteVariation", &c.other_vote_variation);
        self.ku64("SubUnitsReported", c.sub_units_reported);
        self.ku64("TotalSubUnits", c.total_sub_units);
        self.kopt("VoteVariation", &c.vote_variation);
        self.ku64("VotesAllowed", c.votes_allowed);
        self.out.push(b'}');
    }

    fn election(&mut self, e: &NElection) {
        self.start("@type", &e.at_type);
        self.list("BallotCounts", &e.ballot_counts, Self::ballots);
        self.list("Candidate", &e.candidate, Self::candidate);
        self.list("Contest", &e.contest, Self::contest);
        self.list("CountStatus", &e.count_status, Self::count_status);
        self.kstr("ElectionScopeId", &e.election_scope_id);
        self.kstr("EndDate", &e.end_date);
        self.ktext("Name", &e.name);
        self.kstr("StartDate", &e.start_date);
        self.kstr("Type", &e.r#type);
        self.out.push(b'}');
    }

    fn report(&mut self, r: &ElectionReport) {
        self.start("@type", &r.at_type);
        self.list("Election", &r.election, Self::election);
        self.kstr("Format", &r.format);
        self.kstr("GeneratedDate", &r.generated_date);
        self.list("GpUnit", &r.gp_unit, Self::unit);
        self.kstr("Issuer", &r.issuer);
        self.kstr("IssuerAbbreviation", &r.issuer_abbreviation);
        self.kopt("Notes", &r.notes);
        self.ku64("SequenceEnd", Some(r.sequence_end));
        self.ku64("SequenceStart", Some(r.sequence_start));
        self.kstr("Status", &r.status);
        self.kstr("VendorApplicationId", &r.vendor_application_id);
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Option<Vec<(&str, &str)>> {
        root_members(text.as_bytes())
            .map(|m| m.into_iter().map(|(k, v)| (&text[k], &text[v])).collect())
    }

    #[test]
    fn the_root_scan_follows_strings_and_brackets() {
        assert_eq!(members(" {} "), Some(vec![]));
        assert_eq!(
            members(r#"{"a" : 1 ,"b\"]":"x\\\"}","c":[1,{"d":"]}"}],"e":{}}"#),
            Some(vec![
                (r#""a""#, "1"),
                (r#""b\"]""#, r#""x\\\"}""#),
                (r#""c""#, r#"[1,{"d":"]}"}]"#),
                (r#""e""#, "{}"),
            ])
        );
        for bad in [
            "",
            "[]",
            r#"{"a":1"#,
            r#"{"a":"\"#,
            r#"{"a":[1,2}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
        ] {
            assert_eq!(members(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_parallel_parse_leaves_the_unusual_to_serde() {
        // A repeated member, trailing text, a member that is not JSON: serially, for the error.
        for text in [
            r#"{"@type":"x","@type":"y"}"#,
            r#"{"GpUnit":[],"GpUnit":[]}"#,
            r#"{"Notes":tru}"#,
            r#"{"GpUnit":null}"#,
        ] {
            assert!(parse_parallel(text.as_bytes()).is_none(), "{text}");
        }
        let r = parse_parallel(
            br#"{"@typ\u0065":"ElectionResults.ElectionReport","Other":{"x":[1]},"GpUnit":[{"@id":"a\"b"}]}"#,
        )
        .expect("parses");
        assert_eq!(&*r.at_type, REPORT_TYPE);
        assert_eq!(&*r.gp_unit[0].id, "a\"b");
        assert!(r.election.is_empty());
    }
}

//! Reading a NIST SP 1500-100 v2 election results report (JSON) into Tally rounds, through the
//! same sheet pipeline as a CSV row: every `polling-place` (every leaf unit of the contest's
//! district) becomes one sheet, validated by [`tally_model::validate_sheet`], duplicates found by
//! [`tally_model::validate::find_duplicates`], quarantined sheets kept with their codes, and
//! [`SheetStats`] adding up. Mapping and limits: `docs/nist.md`.
//!
//! A "line" in a finding is the unit's 1-based position in the report's `GpUnit` list.

use crate::layout::Layout;
use crate::{FileImport, ImportError, ImportOptions, ImportedRound, Issue, QuarantinedRow};
use std::collections::{HashMap, HashSet};
use tally_model::nist::{
    unescape_id, Candidate as NistCandidate, Contest, Count, Election, ElectionReport, GpUnit,
    EXTRA_PREFIX, REPORT_TYPE, VALID_TYPE,
};
use tally_model::report::SheetStats;
use tally_model::validate::{validate_sheet, Finding, SheetInput};
use tally_model::{AreaTree, Candidate, Code, Round, SheetStatus, Verdict, MAX_COUNT, MISSING};

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
                .filter(|c| c.at_type == "ElectionResults.CandidateContest")
                .map(move |c| (c.id.clone(), c.name.clone(), e.r#type.to_string()))
        })
        .collect()
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
    let report: ElectionReport = serde_json::from_slice(data).map_err(|e| {
        ImportError::fatal(
            Code::F010,
            file,
            format!("not a readable NIST election report (JSON): {e}"),
        )
    })?;
    if report.at_type != REPORT_TYPE {
        return Err(ImportError::fatal(
            Code::F010,
            file,
            format!(
                "a JSON document whose @type is '{}', not {REPORT_TYPE}",
                report.at_type
            ),
        ));
    }
    let chosen = choose(&report, file, contest)?;
    let mut ignored_contests: Vec<(String, String)> = Vec::new();
    for e in &report.election {
        for c in &e.contest {
            if !chosen
                .iter()
                .any(|&(ei, ci)| std::ptr::eq(&report.election[ei].contest[ci], c))
            {
                ignored_contests.push((
                    format!("contest {}", c.id),
                    format!("{}, {}: not the contest read", kind(&c.at_type), c.name),
                ));
            }
        }
    }
    let units: HashMap<&str, usize> = report
        .gp_unit
        .iter()
        .enumerate()
        .rev()
        .map(|(i, u)| (u.id.as_str(), i))
        .collect();
    let several = chosen.len() > 1;
    let mut rounds = Vec::new();
    let mut layout: Option<Layout> = None;
    for &(ei, ci) in &chosen {
        let el = &report.election[ei];
        let c = &el.contest[ci];
        let number = if el.r#type == "runoff" {
            2
        } else if several {
            1
        } else {
            opts.default_round
        };
        let (r, l) = read_contest(&report, el, c, &units, number, file, opts)?;
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
        "ElectionResults.CandidateContest" => "candidate contest",
        "ElectionResults.BallotMeasureContest" => "ballot measure",
        "ElectionResults.PartyContest" => "party contest",
        "ElectionResults.RetentionContest" => "retention contest",
        other => other,
    }
}

/// Which contests to read: (election, contest) indices, one per round.
fn choose(
    report: &ElectionReport,
    file: &str,
    contest: Option<&str>,
) -> Result<Vec<(usize, usize)>, ImportError> {
    let all: Vec<(usize, usize, &Contest)> = report
        .election
        .iter()
        .enumerate()
        .flat_map(|(ei, e)| e.contest.iter().enumerate().map(move |(ci, c)| (ei, ci, c)))
        .collect();
    if let Some(want) = contest {
        let Some(&(ei, ci, c)) = all.iter().find(|(_, _, c)| c.id == want) else {
            return Err(ImportError::fatal(
                Code::F012,
                file,
                format!("no contest '{want}' in the report; {}", listing(report)),
            ));
        };
        supported(c, file)?;
        return Ok(vec![(ei, ci)]);
    }
    let candidate: Vec<&(usize, usize, &Contest)> = all
        .iter()
        .filter(|(_, _, c)| c.at_type == "ElectionResults.CandidateContest")
        .collect();
    if candidate.is_empty() {
        let kinds: Vec<String> = all
            .iter()
            .map(|(_, _, c)| format!("{} ({})", c.id, kind(&c.at_type)))
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
    let first: Vec<_> = candidate
        .iter()
        .filter(|(ei, _, _)| report.election[*ei].r#type != "runoff")
        .collect();
    let runoff: Vec<_> = candidate
        .iter()
        .filter(|(ei, _, _)| report.election[*ei].r#type == "runoff")
        .collect();
    if first.len() > 1 || runoff.len() > 1 {
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
    for &&&(ei, ci, c) in first.iter().chain(runoff.iter()) {
        supported(c, file)?;
        out.push((ei, ci));
    }
    Ok(out)
}

fn listing(report: &ElectionReport) -> String {
    let list: Vec<String> = contests(report)
        .into_iter()
        .map(|(id, name, ty)| format!("{id} ({name}; election type {ty})"))
        .collect();
    format!("the candidate contests are: {}", list.join(", "))
}

/// F011 for what Tally cannot count.
fn supported(c: &Contest, file: &str) -> Result<(), ImportError> {
    let refuse = |why: String| {
        Err(ImportError::fatal(
            Code::F011,
            file,
            format!("contest {} ({}): {why}", c.id, c.name),
        ))
    };
    if c.at_type != "ElectionResults.CandidateContest" {
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
        if s.at_type != "ElectionResults.CandidateSelection" {
            return refuse(format!("selection {} is a {}", s.id, s.at_type));
        }
        if s.vote_counts.iter().any(|v| v.round.is_some()) {
            return refuse(format!(
                "selection {} has counts by round (ranked choice)",
                s.id
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

fn station_id(u: &GpUnit) -> String {
    u.external_identifier
        .iter()
        .find(|x| x.r#type == "local-level" && !x.value.is_empty())
        .map(|x| x.value.clone())
        .unwrap_or_else(|| tally_id(&u.id, "ps-"))
}

fn level_name(u: &GpUnit) -> String {
    match (u.r#type.as_str(), u.other_type.as_deref()) {
        ("other", Some(o)) if !o.is_empty() => o.to_string(),
        (t, _) => t.to_string(),
    }
}

/// One leaf unit (a station) while its counts are gathered.
struct Sheet {
    unit: Option<usize>,
    unit_id: String,
    station: String,
    path: Vec<String>,
    registered: u64,
    participated: u64,
    votes: Vec<u64>,
    split_votes: Vec<u64>,
    cast: u64,
    invalid: u64,
    split_cast: u64,
    split_invalid: u64,
    valid: u64,
    extra: Vec<u64>,
    findings: Vec<Finding>,
}

fn add(acc: &mut u64, v: u64) {
    *acc = if *acc == MISSING {
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
            let what = what();
            findings.push(Finding::on(
                Code::E101,
                [what.as_str()],
                format!("{what} {v} is too large to be a count"),
            ));
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
    report: &ElectionReport,
    el: &Election,
    c: &Contest,
    units: &HashMap<&str, usize>,
    number: u8,
    file: &str,
    opts: &ImportOptions<'_>,
) -> Result<(ImportedRound, Layout), ImportError> {
    let mut notes = vec![format!(
        "NIST report: contest {} ({}) of election '{}' (type {}) read as round {number}",
        c.id,
        c.name,
        el.name.as_ref().and_then(|n| n.first()).unwrap_or(""),
        el.r#type
    )];
    // Candidates.
    let by_id: HashMap<&str, &NistCandidate> =
        el.candidate.iter().map(|x| (x.id.as_str(), x)).collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for s in &c.contest_selection {
        let (mut id, name) = match s.candidate_ids.first() {
            Some(cid) => {
                let name = by_id
                    .get(cid.as_str())
                    .and_then(|x| x.ballot_name.as_ref())
                    .and_then(|t| t.first())
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
    let root_id = if c.election_district_id.is_empty() {
        el.election_scope_id.as_str()
    } else {
        c.election_district_id.as_str()
    };
    let Some(&root) = units.get(root_id) else {
        return Err(ImportError::fatal(
            Code::F010,
            file,
            format!(
                "contest {}: its district '{root_id}' is not a unit of the report",
                c.id
            ),
        ));
    };
    let mut sheets: Vec<Sheet> = Vec::new();
    let mut leaf_of: HashMap<String, usize> = HashMap::new();
    let mut inner: HashSet<&str> = HashSet::new();
    let mut level_names: Vec<String> = Vec::new();
    let mut visited: HashSet<usize> = HashSet::new();
    // (unit index or None, unit id, path of names above it)
    let mut stack: Vec<(Option<usize>, &str, Vec<String>)> = vec![(Some(root), root_id, vec![])];
    while let Some((at, uid, path)) = stack.pop() {
        let unit = at.map(|i| &report.gp_unit[i]);
        if let Some(i) = at {
            if !visited.insert(i) {
                continue; // a unit composed twice (or a cycle): read once
            }
        }
        let children = unit.map_or(&[][..], |u| &u.composing_gp_unit_ids[..]);
        if children.is_empty() && at != Some(root) || at.is_none() {
            let station = unit.map_or_else(|| tally_id(uid, "ps-"), station_id);
            leaf_of.insert(uid.to_string(), sheets.len());
            let mut findings = Vec::new();
            let reg = unit
                .and_then(|u| u.voters_registered.as_ref())
                .and_then(|v| value(v, "registered", &mut findings))
                .unwrap_or(MISSING);
            let part = unit
                .and_then(|u| u.voters_participated.as_ref())
                .and_then(|v| value(v, "cast", &mut findings))
                .unwrap_or(MISSING);
            sheets.push(Sheet {
                unit: at,
                unit_id: uid.to_string(),
                station,
                path,
                registered: reg,
                participated: part,
                votes: vec![MISSING; k],
                split_votes: vec![MISSING; k],
                cast: MISSING,
                invalid: MISSING,
                split_cast: MISSING,
                split_invalid: MISSING,
                valid: MISSING,
                extra: Vec::new(),
                findings,
            });
            continue;
        }
        inner.insert(uid);
        let mut below = path;
        if let (Some(u), true) = (unit, at != Some(root)) {
            below.push(
                u.name
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(str::to_string)
                    .unwrap_or_else(|| u.id.clone()),
            );
            if level_names.len() < below.len() {
                level_names.push(level_name(u));
            }
        }
        for ch in children.iter().rev() {
            stack.push((units.get(ch.as_str()).copied(), ch.as_str(), below.clone()));
        }
    }
    level_names.truncate(sheets.iter().map(|s| s.path.len()).max().unwrap_or(0));
    let depth = level_names.len();
    // Vote counts at the stations; area aggregates are recomputed, other units are E106.
    let mut unknown: Vec<(String, Vec<Finding>)> = Vec::new();
    let mut unknown_at: HashMap<String, usize> = HashMap::new();
    let mut split_units = 0usize;
    let mut split_types: Vec<String> = Vec::new();
    for (j, s) in c.contest_selection.iter().enumerate() {
        for vc in &s.vote_counts {
            let Some(&li) = leaf_of.get(vc.gp_unit_id.as_str()) else {
                if !inner.contains(vc.gp_unit_id.as_str()) {
                    let at = *unknown_at.entry(vc.gp_unit_id.clone()).or_insert_with(|| {
                        unknown.push((vc.gp_unit_id.clone(), Vec::new()));
                        unknown.len() - 1
                    });
                    if unknown[at].1.is_empty() {
                        unknown[at].1.push(Finding::new(
                            Code::E106,
                            format!(
                                "vote counts for unit '{}', which is not in the district of contest {}",
                                vc.gp_unit_id, c.id
                            ),
                        ));
                    }
                }
                continue;
            };
            let sh = &mut sheets[li];
            let cand = &candidates[j].id;
            let field = || format!("votes.{cand}");
            let Some(v) = value_of(&vc.count, field, &mut sh.findings) else {
                continue;
            };
            if vc.r#type == "total" {
                add(&mut sh.votes[j], v);
            } else {
                if !split_types.iter().any(|t| vc.r#type == t.as_str()) {
                    split_types.push(vc.r#type.to_string());
                }
                add(&mut sh.split_votes[j], v);
            }
        }
    }
    let mut extra_names: Vec<String> = Vec::new();
    let mut other_ballots: Vec<String> = Vec::new();
    for b in &el.ballot_counts {
        let Some(&li) = leaf_of.get(b.gp_unit_id.as_str()) else {
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
        match (b.r#type.as_str(), b.other_type.as_deref()) {
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
                    sh.extra.resize(x + 1, MISSING);
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
                if !split_types.contains(&t.to_string()) {
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
    let ids: Vec<&str> = candidates.iter().map(|x| x.id.as_str()).collect();
    let mut stats = SheetStats::default();
    let mut issues: Vec<Issue> = Vec::new();
    let mut quarantine: Vec<QuarantinedRow> = Vec::new();
    for mut sh in sheets {
        stats.rows += 1;
        let line = sh.unit.map_or(0, |u| u as u64 + 1);
        let mut summed = false;
        for j in 0..k {
            if sh.votes[j] == MISSING && sh.split_votes[j] != MISSING {
                sh.votes[j] = sh.split_votes[j];
                summed = true;
            }
        }
        if sh.cast == MISSING && sh.split_cast != MISSING {
            sh.cast = sh.split_cast;
            summed = true;
        }
        if sh.invalid == MISSING && sh.split_invalid != MISSING {
            sh.invalid = sh.split_invalid;
        }
        if summed {
            split_units += 1;
        }
        if sh.cast == MISSING {
            sh.cast = sh.participated;
        }
        if sh.valid == MISSING && sh.cast != MISSING && sh.invalid != MISSING {
            sh.valid = sh.cast.checked_sub(sh.invalid).unwrap_or(MISSING);
        }
        sh.extra.resize(e, MISSING);
        let mut core = [sh.registered, sh.cast, sh.invalid, sh.valid];
        let mut findings = std::mem::take(&mut sh.findings);
        if let Some(reg) = opts.registry {
            if !reg.contains(&sh.station) {
                findings.push(Finding::new(
                    Code::E106,
                    format!("station '{}' is not in the registry", sh.station),
                ));
            }
        }
        let empty =
            sh.votes.iter().all(|&v| v == MISSING) && core[1..].iter().all(|&v| v == MISSING);
        let status = if empty && !findings.iter().any(Finding::is_error) {
            SheetStatus::Missing
        } else {
            let verdict = validate_sheet(
                &mut SheetInput {
                    core,
                    votes: &mut sh.votes,
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
        let raw = raw_text(&sh, &core, &ids);
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
        if status != SheetStatus::Counted {
            core[1..].iter_mut().for_each(|v| *v = MISSING);
            sh.votes.iter_mut().for_each(|v| *v = MISSING);
            sh.extra.iter_mut().for_each(|v| *v = MISSING);
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
                raw,
            });
        }
        let mut path = std::mem::take(&mut sh.path);
        path.resize(depth, String::new());
        let area = tree.leaf(&path);
        round.push(&sh.station, area, status, line, core, &sh.votes, &sh.extra);
    }
    round.tree = tree;
    // Counts for units outside the district: quarantined rows, never a silent drop.
    for (uid, findings) in unknown {
        stats.rows += 1;
        stats.quarantined += 1;
        let line = units.get(uid.as_str()).map_or(0, |&u| u as u64 + 1);
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
    crate::resolve_duplicates(
        &mut round,
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
fn raw_text(sh: &Sheet, core: &[u64; 4], ids: &[&str]) -> String {
    let n = |v: u64| {
        if v == MISSING {
            String::new()
        } else {
            v.to_string()
        }
    };
    let votes: Vec<String> = ids
        .iter()
        .zip(&sh.votes)
        .map(|(id, &v)| format!("{id}={}", n(v)))
        .collect();
    format!(
        "unit {}: registered={} cast={} invalid={} valid={} {}",
        sh.unit_id,
        n(core[0]),
        n(core[1]),
        n(core[2]),
        n(core[3]),
        votes.join(" ")
    )
}

/// The text of a sheet held back as E105, for the quarantine (a unit has no line of text).
fn unit_text(round: &Round, i: usize) -> String {
    let n = |v: u64| {
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

/// The report as compact JSON. Here rather than in the caller so the serializer is compiled with
/// this crate's optimisation (a debug build of the command line writes ten times faster).
pub fn to_json(report: &ElectionReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    // Writing into memory cannot fail, and every key is a string.
    if serde_json::to_writer(&mut out, report).is_err() {
        out.clear();
    }
    out.push(b'\n');
    out
}

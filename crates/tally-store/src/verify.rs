//! Export and verification. `export` writes the registry, every sheet version, the journal, the
//! results and a manifest of hashes; `verify_dir` and `verify_db` recompute the hash chain,
//! every sheet hash and every total, and name each thing that does not match.

use crate::live::Live;
use crate::model::*;
use crate::target::DbTarget;
use crate::StoreError;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tally_model::ValidationConfig;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `anchor_mismatch`, `anchor_missing`, `file_changed`, `journal_gap`, `journal_altered`, `journal_broken_link`,
    /// `sheet_edited`, `sheet_without_entry`, `entry_without_sheet`, `unreadable`,
    /// `total_changed`.
    pub kind: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub journal_entries: u64,
    pub sheets: u64,
    pub head: Option<String>,
    pub problems: Vec<Problem>,
}

/// A journal head published earlier (`SEQ:HASH`, as `/api/v1/progress` shows it): the entry
/// `seq` must still have that hash, so the history up to it was not rewritten since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Anchor, String> {
        let bad = || {
            format!("anchor '{s}': expected SEQ:HASH (64 hex digits), as /api/v1/progress shows")
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Anchor { seq, hash })
    }
}

fn check_anchors(by_seq: &HashMap<i64, JournalEntry>, anchors: &[Anchor], out: &mut VerifyReport) {
    for a in anchors {
        match by_seq.get(&a.seq) {
            Some(e) if e.hash == a.hash => {}
            Some(e) => out.problems.push(p(
                "anchor_mismatch",
                format!(
                    "journal entry {} has hash {} but {} was published for it: the history up to it was rewritten",
                    a.seq, e.hash, a.hash
                ),
            )),
            None => out.problems.push(p(
                "anchor_missing",
                format!("journal entry {}, published as {}, is missing", a.seq, a.hash),
            )),
        }
    }
}

fn p(kind: &str, detail: String) -> Problem {
    Problem {
        kind: kind.to_string(),
        detail,
    }
}

/// The results document of an export: whole election plus the first level. Built from memory
/// (no stored row is read here): the level comes from the registry itself, so `results` has
/// nothing to refuse, and serialising the report cannot fail; `null` is never expected.
fn results_value(live: &Live, reg: &Registry) -> Value {
    let level = reg.rounds.first().and_then(|r| r.levels.first()).cloned();
    let scope = tally_model::report::ReportScope {
        level: level.as_deref(),
        ..Default::default()
    };
    live.results(&scope)
        .ok()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or(Value::Null)
}

/// Chain, sheet hashes and recomputed live state from the raw rows; each row that could not be
/// read is an `unreadable` problem naming it (table and key, or file and line), and the check
/// goes on with the others.
fn check(
    anchors: &[Anchor],
    reg: &Registry,
    sheets: Vec<Result<SheetRecord, String>>,
    journal: Vec<Result<(i64, JournalEntry), String>>,
    out: &mut VerifyReport,
) -> Live {
    let mut by_seq: HashMap<i64, JournalEntry> = HashMap::new();
    let mut expected = 1i64;
    let mut prev = GENESIS.to_string();
    for row in journal {
        let (row_seq, e) = match row {
            Ok(x) => x,
            Err(m) => {
                out.problems.push(p("unreadable", m));
                continue;
            }
        };
        out.journal_entries += 1;
        let seq = e.body.seq;
        if row_seq != seq {
            out.problems.push(p(
                "journal_altered",
                format!("journal entry {row_seq}: its body says seq {seq}"),
            ));
        }
        if seq > expected {
            out.problems.push(p(
                "journal_gap",
                if seq == expected + 1 {
                    format!("journal entry {expected} is missing (removed?)")
                } else {
                    format!(
                        "journal entries {expected}..{} are missing (removed?)",
                        seq - 1
                    )
                },
            ));
        } else if e.prev != prev {
            out.problems.push(p(
                "journal_broken_link",
                format!("journal entry {seq}: prev hash does not match the entry before it"),
            ));
        }
        if e.body.chain(&e.prev) != e.hash {
            out.problems.push(p(
                "journal_altered",
                format!(
                    "journal entry {seq} ({} {}) altered: its hash does not match its contents",
                    e.body.kind,
                    e.body.station_id.as_deref().unwrap_or("")
                ),
            ));
        }
        prev = e.hash.clone();
        expected = seq + 1;
        out.head = Some(e.hash.clone());
        by_seq.insert(seq, e);
    }
    check_anchors(&by_seq, anchors, out);
    let mut live = Live::new(reg, &ValidationConfig::default());
    let mut seen_sheets: HashMap<i64, ()> = HashMap::new();
    for row in sheets {
        let rec = match row {
            Ok(r) => r,
            Err(m) => {
                out.problems.push(p("unreadable", m));
                continue;
            }
        };
        out.sheets += 1;
        seen_sheets.insert(rec.sheet_id, ());
        let what = format!(
            "sheet {} (station {}, round {}, {}, version {})",
            rec.sheet_id, rec.sheet.station_id, rec.sheet.round, rec.source, rec.version
        );
        let actual = rec.recompute_hash();
        match by_seq.get(&rec.journal_seq) {
            None => out.problems.push(p(
                "sheet_without_entry",
                format!(
                    "{what}: its journal entry {} is missing (removed?)",
                    rec.journal_seq
                ),
            )),
            Some(e) => {
                if e.body.sheet_id != Some(rec.sheet_id)
                    || e.body.sheet_hash.as_deref() != Some(actual.as_str())
                {
                    out.problems.push(p(
                        "sheet_edited",
                        format!(
                            "{what} edited: its contents do not match journal entry {}",
                            rec.journal_seq
                        ),
                    ));
                } else if rec.hash != actual {
                    out.problems.push(p(
                        "sheet_edited",
                        format!("{what}: stored hash column altered"),
                    ));
                }
            }
        }
        live.apply(&rec);
    }
    for (seq, e) in &by_seq {
        if let Some(id) = e.body.sheet_id {
            if !seen_sheets.contains_key(&id) {
                out.problems.push(p(
                    "entry_without_sheet",
                    format!("journal entry {seq} names sheet {id}, which is missing (removed?)"),
                ));
            }
        }
    }
    out.problems.sort_by(|a, b| a.detail.cmp(&b.detail));
    live
}

/// Paths where two JSON documents differ (numbers compared exactly).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let sub = format!("{path}.{k}");
                match y.get(k) {
                    Some(vb) => diff(&sub, va, vb, out),
                    None => out.push(format!("{sub}: only in the stored results")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: only in the recomputed results"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: stored {a}, recomputed {b}")),
    }
}

/// Pretty JSON of an in-memory value for an export file. It cannot fail for these plain types;
/// if it ever did, the export fails instead of writing an empty file.
fn pretty<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string_pretty(v).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Rows as `check` takes them: a row that could not be read becomes its message, which names
/// the table and the key.
fn named<T>(rows: Vec<Result<T, StoreError>>) -> Vec<Result<T, String>> {
    rows.into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

/// Checks a database: chain, sheets against the journal, and the stored totals of each round
/// against totals recomputed from the sheets.
pub fn verify_db(target: &DbTarget, anchors: &[Anchor]) -> Result<VerifyReport, StoreError> {
    let snap = target.connect(false)?.snapshot()?;
    let reg = snap.registry;
    let mut out = VerifyReport::default();
    let live = check(
        anchors,
        &reg,
        named(snap.sheets),
        named(snap.journal),
        &mut out,
    );
    for (round, json) in snap.round_totals {
        let stored: Value = match serde_json::from_str(&json) {
            Ok(v) => v,
            Err(e) => {
                let e = StoreError::corrupt(
                    "round_totals",
                    format!("round {round}"),
                    format!("unreadable totals: {e}"),
                );
                out.problems.push(p("unreadable", e.to_string()));
                continue;
            }
        };
        let Some(lr) = live.rounds.iter().find(|r| r.round.number == round) else {
            continue;
        };
        if stored.is_null() && lr.totals[0].stations_counted == 0 {
            continue;
        }
        // Serialising in-memory totals cannot fail: `null` is never expected here.
        let fresh = serde_json::to_value(&lr.totals[0]).unwrap_or(Value::Null);
        let mut d = Vec::new();
        diff(&format!("round {round} totals"), &stored, &fresh, &mut d);
        for line in d {
            out.problems.push(p("total_changed", line));
        }
    }
    out.ok = out.problems.is_empty();
    Ok(out)
}

#[derive(Serialize, serde::Deserialize)]
struct Manifest {
    schema: String,
    /// sha256 of each file of the export.
    files: BTreeMap<String, String>,
    journal_entries: u64,
    journal_head: Option<String>,
    sheets: u64,
}

const FILES: [&str; 4] = [
    "registry.json",
    "sheets.jsonl",
    "journal.jsonl",
    "results.json",
];

/// Writes `registry.json`, `sheets.jsonl` (every version), `journal.jsonl`, `results.json` and
/// `manifest.json` (sha256 of each) into `dir`; returns the verification of what was written.
/// Writes an export into `dir`. A folder that already holds files is refused unless `replace`:
/// an earlier export (or anything else) is never overwritten silently.
pub fn export(target: &DbTarget, dir: &Path, replace: bool) -> Result<VerifyReport, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(e.to_string());
    if !replace {
        if let Ok(mut entries) = std::fs::read_dir(dir) {
            if entries.next().is_some() {
                return Err(StoreError::Invalid(format!(
                    "{} is not empty: choose a new folder, or pass --replace to overwrite an earlier export",
                    dir.display()
                )));
            }
        }
    }
    // One snapshot, so an export taken while servers keep writing is still consistent.
    let snap = target.connect(false)?.snapshot()?;
    let (reg, sheets, journal) = (snap.registry, snap.sheets, snap.journal);
    std::fs::create_dir_all(dir).map_err(io)?;
    // An unreadable row cannot be exported; the returned report names each one (`unreadable`),
    // and the export then fails its own verification.
    let mut sheets_text = String::new();
    for rec in sheets.iter().flatten() {
        sheets_text.push_str(&to_json(rec)?);
        sheets_text.push('\n');
    }
    let mut journal_text = String::new();
    for (_, e) in journal.iter().flatten() {
        journal_text.push_str(&to_json(e)?);
        journal_text.push('\n');
    }
    let mut report = VerifyReport::default();
    let live = check(&[], &reg, named(sheets), named(journal), &mut report);
    let results = pretty(&results_value(&live, &reg))?;
    let registry = pretty(&reg)?;
    let contents = [registry, sheets_text, journal_text, results];
    let mut files = BTreeMap::new();
    for (name, text) in FILES.iter().zip(&contents) {
        std::fs::write(dir.join(name), text).map_err(io)?;
        files.insert(name.to_string(), sha256_hex(&[text.as_bytes()]));
    }
    let manifest = Manifest {
        schema: "tally.export/1".into(),
        files,
        journal_entries: report.journal_entries,
        journal_head: report.head.clone(),
        sheets: report.sheets,
    };
    std::fs::write(dir.join("manifest.json"), pretty(&manifest)?).map_err(io)?;
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Checks an export directory: file hashes against the manifest, the chain, the sheets against
/// the journal, and `results.json` against results recomputed from the sheets.
pub fn verify_dir(dir: &Path, anchors: &[Anchor]) -> Result<VerifyReport, StoreError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.join(name).display())))
    };
    let manifest: Manifest = serde_json::from_str(&read("manifest.json")?)
        .map_err(|e| StoreError::Invalid(format!("manifest.json: {e}")))?;
    let mut out = VerifyReport::default();
    let mut texts = HashMap::new();
    for name in FILES {
        let text = read(name)?;
        match manifest.files.get(name) {
            Some(h) if *h == sha256_hex(&[text.as_bytes()]) => {}
            _ => out.problems.push(p(
                "file_changed",
                format!("{name}: its sha256 differs from the manifest"),
            )),
        }
        texts.insert(name, text);
    }
    let reg: Registry = serde_json::from_str(&texts["registry.json"])
        .map_err(|e| StoreError::Invalid(format!("registry.json: {e}")))?;
    let sheets: Vec<Result<SheetRecord, String>> = texts["sheets.jsonl"]
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("sheets.jsonl:{}: {e}", i + 1)))
        .collect();
    let journal: Vec<Result<(i64, JournalEntry), String>> = texts["journal.jsonl"]
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<JournalEntry>(l)
                .map(|e| (e.body.seq, e))
                .map_err(|e| format!("journal.jsonl:{}: {e}", i + 1))
        })
        .collect();
    let live = check(anchors, &reg, sheets, journal, &mut out);
    if manifest.journal_head != out.head || manifest.journal_entries != out.journal_entries {
        out.problems.push(p(
            "journal_altered",
            format!(
                "the journal ends at {} after {} entries but the manifest says {} after {}",
                out.head.as_deref().unwrap_or("(no entry)"),
                out.journal_entries,
                manifest.journal_head.as_deref().unwrap_or("(no entry)"),
                manifest.journal_entries
            ),
        ));
    }
    match serde_json::from_str::<Value>(&texts["results.json"]) {
        Ok(stored) => {
            let fresh = results_value(&live, &reg);
            let mut d = Vec::new();
            diff("results", &stored, &fresh, &mut d);
            for line in d {
                out.problems.push(p("total_changed", line));
            }
        }
        Err(e) => out
            .problems
            .push(p("unreadable", format!("results.json: {e}"))),
    }
    out.ok = out.problems.is_empty();
    Ok(out)
}

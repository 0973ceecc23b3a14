//! Which column is what: inferred from the header and a sample of rows, or named by an
//! election definition. Every decision is written down in [`Layout::notes`] so the user can see
//! (and correct) what was inferred.

use crate::definition::ElectionDef;
use crate::ImportError;
use std::collections::HashSet;

type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
type Set<T> = HashSet<T, ahash::RandomState>;

/// The rows the layout is inferred from, their cells trimmed and kept in one string: twenty
/// thousand rows of a wide file as one `String` per cell cost more to build and free than the
/// inference itself (a third of a 100,000-station import).
#[derive(Default, Debug)]
pub struct Sample {
    text: String,
    /// `(start, end)` in `text` of each cell, row after row: 32 bits are plenty for a sample
    /// (a row that would take `text` past them is left out) and halve the memory.
    cells: Vec<(u32, u32)>,
    width: usize,
}

impl Sample {
    pub fn new(width: usize) -> Sample {
        Sample {
            width,
            ..Sample::default()
        }
    }

    /// Room for `rows` rows of `bytes` bytes in all, taken at once: growing twenty thousand
    /// rows' cells by doubling copies them and touches twice the memory, in page faults on the
    /// thread everything else waits for.
    pub fn with_capacity(width: usize, rows: usize, bytes: usize) -> Sample {
        Sample {
            text: String::with_capacity(bytes),
            cells: Vec::with_capacity(rows.saturating_mul(width)),
            width,
        }
    }

    /// A sample of `text` whose cells, `width` a row, are the given ranges of it (trimmed).
    pub fn from_parts(width: usize, text: String, cells: Vec<(u32, u32)>) -> Sample {
        debug_assert!(width > 0 && cells.len().is_multiple_of(width));
        Sample { text, cells, width }
    }

    fn has_room(&self, bytes: usize) -> bool {
        self.text.len() + bytes < u32::MAX as usize
    }

    /// Adds a row of exactly `width` fields (bytes that are not UTF-8 are replaced, as the
    /// inference only compares and parses them).
    pub fn push_row<'a>(&mut self, fields: impl Iterator<Item = &'a [u8]> + Clone) {
        if !self.has_room(fields.clone().map(|f| f.len() * 3).sum()) {
            return;
        }
        for f in fields {
            match std::str::from_utf8(f) {
                Ok(s) => self.push_cell(s),
                Err(_) => self.push_cell(&String::from_utf8_lossy(f)),
            }
        }
    }

    /// Adds a line of exactly `width` fields separated by commas, without quotes. The line is
    /// checked as UTF-8 and copied once, its cells are ranges in the copy: a cell costs less
    /// than a call, so nothing is done cell by cell that can be done for the line.
    pub fn push_line(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return self.push_row(line.split(|&b| b == b','));
        };
        if !self.has_room(line.len()) {
            return;
        }
        let base = self.text.len();
        self.text.push_str(text);
        let mut start = 0;
        // A plain loop: cells are a few bytes, so a search call per comma costs more than it
        // saves.
        let commas = line
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b',')
            .map(|(i, _)| i);
        for end in commas.chain(std::iter::once(line.len())) {
            let (a, b) = trimmed_range(&text[start..end]);
            let at = |i: usize| (base + start + i) as u32;
            self.cells.push((at(a), at(b)));
            start = end + 1;
        }
    }

    fn push_cell(&mut self, cell: &str) {
        let (a, b) = trimmed_range(cell);
        let start = self.text.len() as u32;
        self.text.push_str(&cell[a..b]);
        self.cells.push((start, self.text.len() as u32));
    }

    pub fn rows(&self) -> usize {
        self.cells.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn cells(&self) -> impl Iterator<Item = &str> {
        self.cells
            .iter()
            .map(|&(a, b)| &self.text[a as usize..b as usize])
    }

    /// The trimmed cell of row `r`, column `c` ("" past the row's width).
    fn cell(&self, r: usize, c: usize) -> &str {
        if c >= self.width {
            return "";
        }
        let (a, b) = self.cells[r * self.width + c];
        &self.text[a as usize..b as usize]
    }
}
use tally_model::{Candidate, Code};

/// Two samples are equal when their cells are, however the cells are stored.
impl PartialEq for Sample {
    fn eq(&self, other: &Sample) -> bool {
        self.width == other.width && self.cells().eq(other.cells())
    }
}

/// How one file's columns map onto tally-sheet lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub header: Vec<String>,
    pub round: Option<usize>,
    pub station: usize,
    /// Area columns, coarsest first, with their level names.
    pub areas: Vec<usize>,
    /// registered, cast, invalid, valid.
    pub core: [Option<usize>; 4],
    /// The sheet-status column, if any (see [`crate::status`]).
    pub status: Option<usize>,
    pub candidates: Vec<(usize, Candidate)>,
    pub extra: Vec<usize>,
    /// Columns read but not used, with the reason.
    pub ignored: Vec<(usize, String)>,
    /// What was inferred and why, for the report.
    pub notes: Vec<String>,
}

pub const CORE_NAMES: [&str; 4] = ["registered", "cast", "invalid", "valid"];

const CORE_ALIASES: [&[&str]; 4] = [
    &[
        "registered",
        "registered_voters",
        "electorate",
        "eligible",
        "voters",
    ],
    &[
        "cast",
        "ballots_cast",
        "votes_cast",
        "turnout_votes",
        "total_votes",
    ],
    &["invalid", "invalid_total", "spoilt", "rejected"],
    &["valid", "valid_votes", "total_valid"],
];

const STATION_NAMES: [&str; 6] = [
    "station_id",
    "station",
    "polling_station",
    "precinct_id",
    "unit_id",
    "id",
];

impl Layout {
    pub fn level_names(&self) -> Vec<String> {
        self.areas.iter().map(|&i| self.header[i].clone()).collect()
    }

    pub fn extra_names(&self) -> Vec<String> {
        self.extra.iter().map(|&i| self.header[i].clone()).collect()
    }

    /// Every column that holds a count (parsed as an integer).
    pub fn count_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.core
            .iter()
            .flatten()
            .copied()
            .chain(self.candidates.iter().map(|c| c.0))
            .chain(self.extra.iter().copied())
    }
}

/// Where `cell.trim()` lies in `cell`, without decoding character by character the usual cell,
/// which starts and ends with a printable ASCII character and so has nothing to trim.
pub(crate) fn trimmed_range(cell: &str) -> (usize, usize) {
    let printable = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    let b = cell.as_bytes();
    if printable(b.first()) && printable(b.last()) {
        return (0, cell.len());
    }
    let rest = cell.trim_start();
    let lead = cell.len() - rest.len();
    (lead, lead + rest.trim_end().len())
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Integer-looking cell (the same acceptance as the parser: digits, optionally `.0`); the
/// sample's cells are trimmed already.
fn is_int(cell: &str) -> bool {
    crate::cell::parse_count(cell.as_bytes()).is_ok()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Empty,
    Numeric,
    Text,
}

/// A column is numeric when (nearly) all its non-empty sample cells are integers: a few bad
/// cells do not turn a count column into text, they become E101 findings on their rows.
fn column_kind(sample: &Sample, col: usize) -> Kind {
    let (mut seen, mut ints) = (0usize, 0usize);
    for r in 0..sample.rows() {
        let v = sample.cell(r, col);
        if v.is_empty() {
            continue;
        }
        seen += 1;
        ints += usize::from(is_int(v));
    }
    if seen == 0 {
        Kind::Empty
    } else if ints * 100 >= seen * 95 {
        Kind::Numeric
    } else {
        Kind::Text
    }
}

/// The widest header Tally reads: a tally sheet with 100 candidates and every extra line has
/// a few hundred columns; 10,000 leaves room and keeps a hostile header from costing minutes.
pub const MAX_COLUMNS: usize = 10_000;

pub fn check_header(header: &[String], file: &str) -> Result<(), ImportError> {
    if header.len() > MAX_COLUMNS {
        return Err(ImportError::fatal(
            Code::F009,
            file,
            format!(
                "the header has {} columns; Tally reads at most {MAX_COLUMNS}",
                header.len()
            ),
        ));
    }
    let mut seen = Map::default();
    for (i, h) in header.iter().enumerate() {
        if let Some(j) = seen.insert(norm(h), i) {
            return Err(ImportError::fatal(
                Code::F003,
                file,
                format!(
                    "columns {} and {} are both named '{}'",
                    j + 1,
                    i + 1,
                    h.trim()
                ),
            ));
        }
    }
    Ok(())
}

/// Infers the layout of a file from its header and a sample of its rows, following `def`
/// where it names columns.
pub fn infer(
    header: &[String],
    sample: &Sample,
    def: Option<&ElectionDef>,
    file: &str,
) -> Result<Layout, ImportError> {
    check_header(header, file)?;
    let names: Vec<String> = header.iter().map(|h| norm(h)).collect();
    let find = |name: &str| names.iter().position(|n| *n == norm(name));
    let named = |opt: &Option<String>, what: &str| -> Result<Option<usize>, ImportError> {
        match opt {
            None => Ok(None),
            Some(n) => find(n).map(Some).ok_or_else(|| {
                ImportError::fatal(
                    Code::F007,
                    file,
                    format!("the election definition names {what} column '{n}', which the file does not have"),
                )
            }),
        }
    };
    let cols = def.map(|d| d.columns.clone()).unwrap_or_default();
    let mut notes = Vec::new();
    let mut used: HashSet<usize> = HashSet::new();

    let round = match named(&cols.round, "round")? {
        Some(i) => Some(i),
        None => find("round"),
    };
    round.map(|i| used.insert(i));

    let station = match named(&cols.station, "station")? {
        Some(i) => i,
        None => STATION_NAMES
            .iter()
            .find_map(|n| find(n))
            .ok_or_else(|| {
                ImportError::fatal(
                    Code::F004,
                    file,
                    format!(
                        "no station id column (looked for {}); name it in an election definition under [columns] station",
                        STATION_NAMES.join(", ")
                    ),
                )
            })?,
    };
    used.insert(station);

    let status = match named(&cols.status, "status")? {
        Some(i) => Some(i),
        None => crate::status::STATUS_COLUMNS
            .iter()
            .find_map(|n| find(n).filter(|i| !used.contains(i))),
    };
    if let Some(i) = status {
        used.insert(i);
        notes.push(format!(
            "'{}' read as the sheet status (counted, pending, annulled, not installed)",
            header[i]
        ));
    }

    let mut core = [None; 4];
    let core_named = [&cols.registered, &cols.cast, &cols.invalid, &cols.valid];
    for f in 0..4 {
        core[f] = match named(core_named[f], CORE_NAMES[f])? {
            Some(i) => Some(i),
            None => CORE_ALIASES[f]
                .iter()
                .find_map(|a| find(a).filter(|i| !used.contains(i))),
        };
        if let Some(i) = core[f] {
            used.insert(i);
            if names[i] != CORE_NAMES[f] {
                notes.push(format!("'{}' read as {}", header[i], CORE_NAMES[f]));
            }
        } else {
            notes.push(format!(
                "no {} column: checks that need it are skipped",
                CORE_NAMES[f]
            ));
        }
    }
    let mut ignored: Vec<(usize, String)> = Vec::new();
    for n in &cols.ignore {
        let i = named(&Some(n.clone()), "ignored")?.expect("named");
        used.insert(i);
        ignored.push((i, "ignored by the election definition".into()));
    }
    let mut extra: Vec<usize> = Vec::new();
    for n in &cols.extra {
        let i = named(&Some(n.clone()), "extra")?.expect("named");
        used.insert(i);
        extra.push(i);
    }

    let first_core = core.iter().flatten().min().copied().unwrap_or(header.len());
    // One pass over the sample per column, on all cores (the layout is inferred before any row
    // is parsed, so it is time every import waits for).
    let kinds: Vec<Kind> = {
        use rayon::prelude::*;
        (0..header.len())
            .into_par_iter()
            .map(|c| column_kind(sample, c))
            .collect()
    };
    for (f, col) in core.iter().enumerate() {
        if let Some(c) = *col {
            if kinds[c] == Kind::Empty {
                notes.push(format!(
                    "no {} in the sample ('{}' is empty): checks that need it are skipped",
                    CORE_NAMES[f], header[c]
                ));
            }
        }
    }

    // Areas: named, or inferred from the descriptive columns before the counts.
    let areas = match &cols.areas {
        Some(list) => {
            let mut v = Vec::new();
            for n in list {
                let i = named(&Some(n.clone()), "area")?.expect("named");
                used.insert(i);
                v.push(i);
            }
            v
        }
        None => {
            let descriptive: Vec<usize> = (0..first_core)
                .filter(|c| !used.contains(c) && kinds[*c] != Kind::Empty)
                .collect();
            let (levels, skipped) = infer_levels(header, sample, &descriptive, &kinds, &mut notes);
            for (c, why) in skipped {
                used.insert(c);
                ignored.push((c, why));
            }
            levels.iter().for_each(|c| {
                used.insert(*c);
            });
            levels
        }
    };
    if !areas.is_empty() {
        notes.push(format!(
            "area levels: {}",
            areas
                .iter()
                .map(|&i| header[i].as_str())
                .collect::<Vec<_>>()
                .join(" > ")
        ));
    } else {
        notes.push("no area columns: every station hangs directly under the whole election".into());
    }

    // Candidates.
    let candidates: Vec<(usize, Candidate)> = if let Some(d) =
        def.filter(|d| !d.candidates.is_empty())
    {
        let mut v = Vec::new();
        for c in &d.candidates {
            if let Some(i) = find(&c.id) {
                used.insert(i);
                v.push((i, c.to_candidate()));
            }
        }
        // Any other numeric column after the counts is a column the definition does not know.
        for c in first_core..header.len() {
            if !used.contains(&c) && kinds[c] == Kind::Numeric {
                return Err(ImportError::fatal(
                    Code::E107,
                    file,
                    format!(
                        "column '{}' holds counts but is not a candidate of the election definition; list it under [columns] extra or ignore",
                        header[c]
                    ),
                ));
            }
        }
        v
    } else {
        infer_candidates(
            header,
            sample,
            &kinds,
            &core,
            &used,
            &mut extra,
            &mut ignored,
            &mut notes,
            file,
        )?
    };
    if candidates.is_empty() {
        return Err(ImportError::fatal(
            Code::F004,
            file,
            "no candidate column found; name the candidates in an election definition",
        ));
    }
    for (c, _) in &candidates {
        used.insert(*c);
    }
    for c in &extra {
        used.insert(*c);
    }
    // Whatever is left is described, not silently dropped.
    for (c, kind) in kinds.iter().enumerate() {
        if !used.contains(&c) {
            let why = match kind {
                Kind::Empty => "empty in the sample",
                Kind::Numeric => "numeric column before the counts (a code, not a count)",
                Kind::Text => "text column (not an area level)",
            };
            ignored.push((c, why.into()));
        }
    }
    ignored.sort();
    ignored.dedup_by_key(|x| x.0);
    let layout = Layout {
        header: header.to_vec(),
        round,
        station,
        areas,
        core,
        status,
        candidates,
        extra,
        ignored,
        notes,
    };
    Ok(layout)
}

/// The chain of area levels among `cols` (in file order, coarsest first). A column is a level
/// when its values nest under the levels already chosen (each value has one parent); a column
/// that only restates the previous level (a code) or numbers the stations is skipped.
fn infer_levels(
    header: &[String],
    sample: &Sample,
    cols: &[usize],
    kinds: &[Kind],
    notes: &mut Vec<String>,
) -> (Vec<usize>, Vec<(usize, String)>) {
    let n = sample.rows();
    let mut levels: Vec<usize> = Vec::new();
    let mut skipped = Vec::new();
    // Path id of each sample row under the chosen levels.
    let mut path: Vec<usize> = vec![0; n];
    let mut distinct_paths = 1usize;
    for &c in cols {
        let cell = |r: usize| sample.cell(r, c);
        let mut ids: Map<(usize, &str), usize> = Map::default();
        let mut new_path = vec![0; n];
        let mut parents: Map<&str, Set<usize>> = Map::default();
        for r in 0..n {
            // Rows come in runs of one area: a row like the one before adds nothing new.
            if r > 0 && path[r] == path[r - 1] && cell(r) == cell(r - 1) {
                new_path[r] = new_path[r - 1];
                continue;
            }
            let next = ids.len();
            new_path[r] = *ids.entry((path[r], cell(r))).or_insert(next);
            parents.entry(cell(r)).or_default().insert(path[r]);
        }
        let d = ids.len();
        let name = &header[c];
        let last = levels
            .last()
            .map(|&l| header[l].as_str())
            .unwrap_or("the election");
        if d == distinct_paths {
            skipped.push((
                c,
                format!("determined by {last} (a code or attribute of it)"),
            ));
            notes.push(format!("'{name}' is determined by {last}: not a level"));
            continue;
        }
        if d == n && kinds[c] == Kind::Numeric && n > 1 {
            skipped.push((c, format!("numbers the stations within {last}")));
            notes.push(format!(
                "'{name}' numbers the stations within {last}: not a level"
            ));
            continue;
        }
        let nested =
            parents.values().filter(|p| p.len() == 1).count() as f64 / parents.len() as f64;
        if nested >= 0.9 {
            levels.push(c);
            path = new_path;
            distinct_paths = d;
        } else if nested <= 0.5 {
            let example = parents
                .iter()
                .max_by_key(|(v, p)| (p.len(), std::cmp::Reverse(*v)))
                .map(|(v, p)| format!("'{v}' appears under {} different {last} values", p.len()))
                .unwrap_or_default();
            skipped.push((c, format!("attribute, not nested under {last}")));
            notes.push(format!(
                "'{name}' is an attribute, not an area level: {example}"
            ));
        } else {
            skipped.push((c, "undecided: treated as an attribute".into()));
            notes.push(format!(
                "cannot decide whether '{name}' is an area level ({:.0}% of its values nest under {last}); treated as an attribute: name the levels under [columns] areas of an election definition to decide",
                nested * 100.0
            ));
        }
    }
    (levels, skipped)
}

/// Count lines that real tally sheets carry beside the candidates: never taken for a candidate,
/// even when they happen to fit the sum (a `contested` column is 0 in a final file, so any run
/// of candidates plus it adds up just as well).
const COUNT_LINE_NAMES: [&str; 24] = [
    "contested",
    "disputed",
    "challenged",
    "impugned",
    "blank",
    "blank_votes",
    "blanks",
    "null",
    "null_votes",
    "nulls",
    "spoilt",
    "spoiled",
    "rejected",
    "unused",
    "unused_ballots",
    "ballots_issued",
    "ballots_received",
    "issued",
    "postal",
    "postal_votes",
    "absentee",
    "provisional",
    "total",
    "invalid_votes",
];

/// Sample rows used to choose the candidates' run (enough to tell, few enough to stay fast).
const INFERENCE_ROWS: usize = 2_000;

/// Runs taken from one row before the search gives up: a row of zeros fits everywhere.
const MAX_RUNS: usize = 200_000;

/// The runs `(a, b)` of pool columns whose sum is the row's valid votes: for each start `a`, the
/// ends form one contiguous range because counts are never negative (found by binary search).
fn runs_of_row(valid: u64, prefix: &[u64], out: &mut Vec<(usize, usize)>) {
    let p = prefix.len() - 1;
    for a in 0..p {
        let target = prefix[a].saturating_add(valid);
        let lo = prefix.partition_point(|&x| x < target).max(a + 1);
        let hi = prefix.partition_point(|&x| x <= target);
        for b in lo..hi {
            out.push((a, b));
            if out.len() > MAX_RUNS {
                return;
            }
        }
    }
}

/// The run of pool columns that adds up to the valid votes on the most rows (ties: the widest;
/// `tied` when another run of the same width does equally well).
///
/// Near-linear in the number of columns: a run that fits nearly every row fits one of the first
/// rows, so only the runs that fit those are scored against all rows (one subtraction each).
fn best_run(rows: &[(u64, Vec<u64>)], pool: usize) -> (Option<(usize, usize)>, usize, bool) {
    if pool == 0 {
        return (None, 0, false);
    }
    let mut runs = Vec::new();
    for (v, prefix) in rows.iter().take(20) {
        runs_of_row(*v, prefix, &mut runs);
        if runs.len() > MAX_RUNS {
            break;
        }
    }
    runs.sort_unstable();
    runs.dedup();
    let mut best: Option<(usize, usize)> = None;
    let (mut best_count, mut best_width, mut tied) = (0usize, 0usize, false);
    for (a, b) in runs {
        let hits = rows
            .iter()
            .filter(|(v, prefix)| prefix[b] - prefix[a] == *v)
            .count();
        let width = b - a;
        if best.is_none() || hits > best_count || (hits == best_count && width > best_width) {
            best = Some((a, b));
            best_count = hits;
            best_width = width;
            tied = false;
        } else if hits == best_count && width == best_width && hits > 0 {
            tied = true;
        }
    }
    (best, best_count, tied)
}

/// Candidates are the contiguous run of numeric columns after the counts whose sum equals the
/// valid votes on the most sample rows; other numeric columns are extra count lines, and
/// identifier-like ones (`*_id`) are ignored.
#[allow(clippy::too_many_arguments)]
fn infer_candidates(
    header: &[String],
    sample: &Sample,
    kinds: &[Kind],
    core: &[Option<usize>; 4],
    used: &HashSet<usize>,
    extra: &mut Vec<usize>,
    ignored: &mut Vec<(usize, String)>,
    notes: &mut Vec<String>,
    file: &str,
) -> Result<Vec<(usize, Candidate)>, ImportError> {
    let last_core = core.iter().flatten().max().copied();
    let first_core = core.iter().flatten().min().copied().unwrap_or(0);
    let start = last_core.map_or(0, |c| c + 1);
    let is_id = |c: usize| {
        let n = norm(&header[c]);
        n.ends_with("_id") || n.ends_with("_code") || n == "code"
    };
    // Count columns inside the core block (e.g. ballots_issued between registered and cast).
    for c in first_core..start {
        if !used.contains(&c) && kinds[c] != Kind::Text {
            extra.push(c);
            notes.push(format!("'{}' read as an extra count line", header[c]));
        }
    }
    let is_count_line = |c: usize| COUNT_LINE_NAMES.contains(&norm(&header[c]).as_str());
    for c in (start..header.len())
        .filter(|c| !used.contains(c) && kinds[*c] != Kind::Text && is_count_line(*c))
    {
        extra.push(c);
        notes.push(format!(
            "'{}' read as an extra count line (its name says it is not a candidate)",
            header[c]
        ));
    }
    let pool: Vec<usize> = (start..header.len())
        .filter(|c| {
            !used.contains(c) && kinds[*c] == Kind::Numeric && !is_id(*c) && !is_count_line(*c)
        })
        .collect();
    for c in (start..header.len())
        .filter(|c| !used.contains(c) && kinds[*c] == Kind::Numeric && is_id(*c))
    {
        ignored.push((c, "identifier (name ends in _id/_code)".into()));
        notes.push(format!("'{}' is an identifier, not a count", header[c]));
    }
    let window = match core[3] {
        None => {
            notes.push("no valid-votes column: every numeric column after the counts is taken as a candidate".into());
            (0, pool.len())
        }
        Some(valid_col) => {
            let rows: Vec<(u64, Vec<u64>)> = (0..sample.rows())
                .filter_map(|r| {
                    let v =
                        crate::cell::parse_count(sample.cell(r, valid_col).as_bytes()).ok()??;
                    // Prefix sums of the pool's cells: the sum of a run is one subtraction. An
                    // empty cell counts as 0 here; the parser decides later whether the valid
                    // total implies it (W208) or not (E110).
                    let mut prefix = Vec::with_capacity(pool.len() + 1);
                    prefix.push(0u64);
                    let mut acc = 0u64;
                    for &c in &pool {
                        let x = crate::cell::parse_count(sample.cell(r, c).as_bytes())
                            .ok()
                            .flatten();
                        acc = acc.saturating_add(u64::from(x.unwrap_or(0)));
                        prefix.push(acc);
                    }
                    Some((u64::from(v), prefix))
                })
                .take(INFERENCE_ROWS)
                .collect();
            if rows.is_empty() {
                notes.push("no row with valid votes in the sample: every numeric column after the counts is taken as a candidate".into());
                (0, pool.len())
            } else {
                let (best, best_count, tied) = best_run(&rows, pool.len());
                let (a, b) = best.unwrap_or((0, pool.len()));
                let frac = best_count as f64 / rows.len() as f64;
                if pool.is_empty() {
                    (0, 0)
                } else if frac < 0.9 || tied {
                    return Err(ImportError::fatal(
                        Code::F006,
                        file,
                        format!(
                            "cannot tell which columns are candidates: the best run of columns adds up to the valid votes on only {:.1}% of {} sample rows{}; list the candidates in an election definition",
                            frac * 100.0,
                            rows.len(),
                            if tied { " and several runs do equally well" } else { "" }
                        ),
                    ));
                } else {
                    // Arithmetic alone cannot tell a candidate without a vote in the sample from
                    // a count line that is always 0 at the edge of the run: say so.
                    let all_zero =
                        |i: usize| rows.iter().all(|(_, prefix)| prefix[i + 1] == prefix[i]);
                    for i in [a, b - 1] {
                        if b - a > 2 && all_zero(i) {
                            notes.push(format!(
                                "unsure: '{}' is taken as a candidate because the sums allow it, but it is 0 on every sample row; if it is a count line (contested, blank...), list it under [columns] extra of an election definition",
                                header[pool[i]]
                            ));
                        }
                    }
                    notes.push(format!(
                        "candidates: {} (they add up to the valid votes on {:.1}% of {} sample rows)",
                        pool[a..b].iter().map(|&c| header[c].as_str()).collect::<Vec<_>>().join(", "),
                        frac * 100.0,
                        rows.len()
                    ));
                    (a, b)
                }
            }
        }
    };
    for (i, &c) in pool.iter().enumerate() {
        if i < window.0 || i >= window.1 {
            extra.push(c);
            notes.push(format!("'{}' read as an extra count line", header[c]));
        }
    }
    extra.sort_unstable();
    Ok(pool[window.0..window.1]
        .iter()
        .map(|&c| (c, Candidate::new(header[c].trim())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_cells_are_trimmed_as_str_trim_does() {
        let line = "\u{a0}a\u{a0},\tb\u{b}, c\u{3000},,x ,\u{2003}";
        let mut by_line = Sample::new(6);
        by_line.push_line(line.as_bytes());
        let mut by_cell = Sample::new(6);
        by_cell.push_row(line.as_bytes().split(|&b| b == b','));
        let want: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(want, ["a", "b", "c", "", "x", ""]);
        assert!(by_line.cells().eq(want.iter().copied()));
        assert!(by_cell.cells().eq(want.iter().copied()));
        // Bytes that are not UTF-8 are replaced, not dropped.
        let mut bad = Sample::new(2);
        bad.push_line(b"\xff1 , 2");
        assert!(bad.cells().eq(["\u{fffd}1", "2"]));
    }
}

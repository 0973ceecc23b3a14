//! The hot path: parsing every row of a file in parallel chunks.
//!
//! The file is split at record boundaries (a newline outside quotes: the number of `"` before
//! it is even), each chunk is parsed by the `csv` crate on its own core into columns, and the
//! chunks are joined in file order, so the result does not depend on the number of threads.

use crate::layout::Layout;
use rayon::prelude::*;
use std::collections::HashSet;
use tally_model::validate::{check_sheet, Finding};
use tally_model::{Code, SheetCounts, SheetStatus, ValidationConfig, MAX_COUNT, MISSING};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountError {
    Negative,
    NotInteger,
    TooLarge,
}

/// An empty cell is `Ok(None)`. Accepts `123` and `123.0` (spreadsheet exports); rejects
/// negatives, fractions, exponents and anything else.
pub fn parse_count(b: &[u8]) -> Result<Option<u64>, CountError> {
    let b = trim(b);
    if b.is_empty() {
        return Ok(None);
    }
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
                .ok_or(CountError::TooLarge)?;
        } else if c == b'.' && i > 0 && b[i + 1..].iter().all(|&z| z == b'0') {
            break; // "12.0" from spreadsheet exports
        } else if c == b'-' && i == 0 && b.len() > 1 && b[1..].iter().all(u8::is_ascii_digit) {
            return Err(CountError::Negative);
        } else {
            return Err(CountError::NotInteger);
        }
    }
    if v > MAX_COUNT {
        return Err(CountError::TooLarge);
    }
    Ok(Some(v))
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// One row's problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowIssue {
    pub line: u64,
    pub station: String,
    pub finding: Finding,
}

/// Columns parsed from one chunk of rows, in file order.
#[derive(Default)]
pub struct Chunk {
    pub round: Vec<u8>,
    pub ids: Vec<String>,
    pub lines: Vec<u64>,
    /// Index into `paths` per row (consecutive rows usually share a path).
    pub path_of: Vec<u32>,
    pub paths: Vec<Vec<String>>,
    pub status: Vec<SheetStatus>,
    pub core: [Vec<u64>; 4],
    pub votes: Vec<u64>,
    pub extra: Vec<u64>,
    /// Rows that could not become a station at all (no id, malformed): line, raw CSV, issue.
    pub rejected: Vec<(RowIssue, String)>,
    /// Issues of rows kept as stations (errors mark the row Quarantined; warnings only flag it).
    pub issues: Vec<(usize, RowIssue)>,
    /// Raw text of quarantined station rows, by row index in this chunk.
    pub raw: Vec<(usize, String)>,
    /// Rows with empty candidate cells, validated once the round's candidates are known.
    pub pending: Vec<usize>,
    /// Per round: which candidate columns hold a count on at least one row.
    pub seen: std::collections::BTreeMap<u8, Vec<bool>>,
    pub rows_read: u64,
    /// Newlines in the chunk (line numbers in the chunk are relative until joined).
    pub newlines: u64,
}

pub struct ParseContext<'a> {
    pub layout: &'a Layout,
    pub file: &'a str,
    pub default_round: u8,
    pub validation: &'a ValidationConfig,
    pub registry: Option<&'a HashSet<String>>,
    /// Average bytes per row in the sample, to size the column buffers once.
    pub avg_row_bytes: usize,
}

/// Splits `data` (after the header) into about `parts` chunks at record boundaries.
pub fn split(data: &[u8], body_start: usize, parts: usize) -> Vec<(usize, usize)> {
    let len = data.len();
    let mut out = Vec::new();
    let mut start = body_start;
    let mut quotes_before = 0usize; // parity of quotes in data[body_start..start]
    let target = ((len - body_start) / parts.max(1)).max(1 << 16);
    while start < len {
        let mut cut = (start + target).min(len);
        if cut < len {
            // Find a newline at or after `cut` with an even number of quotes since `start`.
            let mut q = quotes_before + memchr::memchr_iter(b'"', &data[start..cut]).count();
            loop {
                match memchr::memchr2(b'\n', b'"', &data[cut..]) {
                    None => {
                        cut = len;
                        break;
                    }
                    Some(p) => {
                        let at = cut + p;
                        cut = at + 1;
                        if data[at] == b'"' {
                            q += 1;
                        } else if q.is_multiple_of(2) {
                            break;
                        }
                    }
                }
            }
            quotes_before = q % 2;
        }
        out.push((start, cut));
        start = cut;
    }
    out
}

/// Parses the chunks in parallel, then turns their chunk-relative line numbers into file
/// line numbers (`first_line` is the line of the first chunk's first byte).
pub fn parse_chunks(
    data: &[u8],
    ranges: &[(usize, usize)],
    first_line: u64,
    ctx: &ParseContext<'_>,
) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = ranges
        .par_iter()
        .map(|&(a, b)| parse_chunk(&data[a..b], ctx))
        .collect();
    let mut offset = first_line;
    for c in &mut chunks {
        c.lines.iter_mut().for_each(|l| *l += offset);
        c.issues.iter_mut().for_each(|(_, i)| i.line += offset);
        c.rejected.iter_mut().for_each(|(i, _)| i.line += offset);
        offset += c.newlines;
    }
    chunks
}

fn raw_row(rec: &csv::ByteRecord) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_byte_record(rec);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

fn count_error_text(e: CountError) -> &'static str {
    match e {
        CountError::Negative => "negative",
        CountError::NotInteger => "not an integer",
        CountError::TooLarge => "too large to be a count",
    }
}

/// One data row, from the fast splitter or from the `csv` crate.
trait Row {
    fn len(&self) -> usize;
    fn field(&self, i: usize) -> &[u8];
    /// The row as CSV text, for the quarantine file.
    fn raw(&self) -> String;
}

struct CsvRow<'a>(&'a csv::ByteRecord);

impl Row for CsvRow<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn field(&self, i: usize) -> &[u8] {
        self.0.get(i).unwrap_or(b"")
    }
    fn raw(&self) -> String {
        raw_row(self.0)
    }
}

/// A row of a chunk without quotes: fields are the bytes between commas.
struct PlainRow<'a> {
    line: &'a [u8],
    bounds: &'a [(usize, usize)],
}

impl Row for PlainRow<'_> {
    fn len(&self) -> usize {
        self.bounds.len()
    }
    fn field(&self, i: usize) -> &[u8] {
        self.bounds.get(i).map_or(b"", |&(a, b)| &self.line[a..b])
    }
    fn raw(&self) -> String {
        String::from_utf8_lossy(self.line).into_owned()
    }
}

/// Buffers reused from row to row.
struct RowState {
    votes: Vec<u64>,
    extra: Vec<u64>,
    findings: Vec<Finding>,
    last_path: Option<Vec<Vec<u8>>>,
}

/// Parses one chunk; line numbers are relative to the chunk (0 = its first line).
fn parse_chunk(bytes: &[u8], ctx: &ParseContext<'_>) -> Chunk {
    let first_line = 0;
    let l = ctx.layout;
    let k = l.candidates.len();
    let e = l.extra.len();
    let rows = bytes.len() / ctx.avg_row_bytes.max(8) + 16;
    let mut c = Chunk {
        ids: Vec::with_capacity(rows),
        lines: Vec::with_capacity(rows),
        path_of: Vec::with_capacity(rows),
        status: Vec::with_capacity(rows),
        round: Vec::with_capacity(rows),
        core: std::array::from_fn(|_| Vec::with_capacity(rows)),
        votes: Vec::with_capacity(rows * k),
        extra: Vec::with_capacity(rows * e),
        ..Chunk::default()
    };
    let mut st = RowState {
        votes: vec![0u64; k],
        extra: vec![MISSING; e],
        findings: Vec::new(),
        last_path: None,
    };
    if memchr::memchr(b'"', bytes).is_none() {
        // Fast path: no quoting anywhere in the chunk, so commas and newlines are separators.
        let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(l.header.len() + 1);
        let mut line_no = first_line;
        let mut start = 0usize;
        let mut field = 0usize;
        // One scalar pass: rows are short, so a byte loop beats a search call per separator.
        for (i, &b) in bytes.iter().enumerate() {
            if b == b',' {
                bounds.push((field - start, i - start));
                field = i + 1;
            } else if b == b'\n' {
                let end = if i > start && bytes[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                if end > start {
                    bounds.push((field - start, end - start));
                    c.rows_read += 1;
                    let row = PlainRow {
                        line: &bytes[start..end],
                        bounds: &bounds,
                    };
                    handle_row(&mut c, &mut st, ctx, line_no, &row);
                }
                bounds.clear();
                line_no += 1;
                start = i + 1;
                field = start;
            }
        }
        c.newlines = line_no;
        if start < bytes.len() {
            bounds.push((field - start, bytes.len() - start));
            c.rows_read += 1;
            let row = PlainRow {
                line: &bytes[start..],
                bounds: &bounds,
            };
            handle_row(&mut c, &mut st, ctx, line_no, &row);
        }
        return c;
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    loop {
        let line = first_line + rdr.position().line().saturating_sub(1);
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                c.rows_read += 1;
                let issue = RowIssue {
                    line,
                    station: String::new(),
                    finding: Finding::new(Code::E108, format!("unreadable row: {err}")),
                };
                c.rejected.push((issue, String::new()));
                continue;
            }
        }
        let line = rec.position().map_or(line, |p| first_line + p.line() - 1);
        if rec.len() == 1 && rec[0].is_empty() {
            continue; // blank line
        }
        c.rows_read += 1;
        handle_row(&mut c, &mut st, ctx, line, &CsvRow(&rec));
    }
    c.newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    c
}

fn handle_row<R: Row>(
    c: &mut Chunk,
    st: &mut RowState,
    ctx: &ParseContext<'_>,
    line: u64,
    rec: &R,
) {
    let l = ctx.layout;
    let width = l.header.len();
    let k = l.candidates.len();
    let station = std::str::from_utf8(rec.field(l.station)).map(|s| s.trim().to_string());
    let reject = |c: &mut Chunk, code: Code, detail: String, station: String| {
        c.rejected.push((
            RowIssue {
                line,
                station,
                finding: Finding::new(code, detail),
            },
            rec.raw(),
        ));
    };
    if rec.len() != width {
        let id = station.clone().unwrap_or_default();
        reject(
            c,
            Code::E108,
            format!("row has {} fields, the header has {width}", rec.len()),
            id,
        );
        return;
    }
    let station = match station {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            reject(c, Code::E109, "empty station id".into(), String::new());
            return;
        }
        Err(_) => {
            reject(
                c,
                Code::E108,
                "station id is not valid UTF-8".into(),
                String::new(),
            );
            return;
        }
    };
    // Area path: reuse the previous row's when the cells are the same bytes.
    let same_path = st.last_path.as_ref().is_some_and(|p| {
        l.areas
            .iter()
            .zip(p)
            .all(|(&col, prev)| rec.field(col) == prev.as_slice())
    });
    if !same_path {
        let mut names = Vec::with_capacity(l.areas.len());
        let mut bad = false;
        for &col in &l.areas {
            match std::str::from_utf8(rec.field(col)) {
                Ok(s) => names.push(s.trim().to_string()),
                Err(_) => bad = true,
            }
        }
        if bad {
            reject(
                c,
                Code::E108,
                "an area name is not valid UTF-8".into(),
                station,
            );
            st.last_path = None;
            return;
        }
        c.paths.push(names);
        st.last_path = Some(l.areas.iter().map(|&col| rec.field(col).to_vec()).collect());
    }
    let row = c.ids.len();
    st.findings.clear();
    let mut present = 0usize;
    let mut number = |col: usize, what: &str, findings: &mut Vec<Finding>| -> u64 {
        match parse_count(rec.field(col)) {
            Ok(Some(v)) => {
                present += 1;
                v
            }
            Ok(None) => MISSING,
            Err(err) => {
                present += 1;
                findings.push(Finding::new(
                    Code::E101,
                    format!(
                        "{what} '{}' is {}",
                        String::from_utf8_lossy(rec.field(col)).trim(),
                        count_error_text(err)
                    ),
                ));
                MISSING
            }
        }
    };
    let round = match l.round {
        None => ctx.default_round,
        Some(col) => match parse_count(rec.field(col)) {
            Ok(Some(v)) if (1..=9).contains(&v) => v as u8,
            _ => {
                reject(
                    c,
                    Code::E101,
                    format!(
                        "round '{}' is not a round number (1-9)",
                        String::from_utf8_lossy(rec.field(col)).trim()
                    ),
                    station,
                );
                if !same_path {
                    c.paths.pop();
                    st.last_path = None;
                }
                return;
            }
        },
    };
    let mut core = [MISSING; 4];
    for (f, col) in l.core.iter().enumerate() {
        if let Some(col) = *col {
            core[f] = number(col, tally_model_core_name(f), &mut st.findings);
        }
    }
    for (j, (col, cand)) in l.candidates.iter().enumerate() {
        st.votes[j] = number(*col, &cand.id, &mut st.findings);
    }
    for (j, &col) in l.extra.iter().enumerate() {
        st.extra[j] = number(col, &l.header[col], &mut st.findings);
    }
    // Registered alone is a known station without a result (a registry row).
    let results_present =
        present - usize::from(l.core[0].is_some_and(|col| !trim(rec.field(col)).is_empty()));
    let mut pending = false;
    let status = if results_present == 0 {
        SheetStatus::Missing
    } else {
        if let Some(reg) = ctx.registry {
            if !reg.contains(&station) {
                st.findings.push(Finding::new(
                    Code::E106,
                    format!("station '{station}' is not in the registry"),
                ));
            }
        }
        let seen = c.seen.entry(round).or_insert_with(|| vec![false; k]);
        for (j, &v) in st.votes.iter().enumerate() {
            seen[j] |= v != MISSING;
        }
        if st.findings.iter().any(|f| f.code == Code::E101) {
            SheetStatus::Quarantined
        } else if st.votes.contains(&MISSING) {
            // Either a candidate not on this round's ballot (a multi-round file) or an
            // incomplete sheet (E110): decided once the whole round has been read.
            pending = true;
            SheetStatus::Quarantined
        } else {
            check_sheet(
                &sheet_of(&core, &st.votes),
                ctx.validation,
                &mut st.findings,
            );
            if st
                .findings
                .iter()
                .any(|f| f.code.severity() == tally_model::Severity::Error)
            {
                SheetStatus::Quarantined
            } else {
                SheetStatus::Counted
            }
        }
    };
    if pending {
        c.pending.push(row);
    } else if status == SheetStatus::Quarantined {
        c.raw.push((row, rec.raw()));
        // Only the registered count survives, as the progress base of a known station.
        core[1..].iter_mut().for_each(|v| *v = MISSING);
        st.votes.iter_mut().for_each(|v| *v = 0);
        st.extra.iter_mut().for_each(|v| *v = MISSING);
    } else if status == SheetStatus::Missing {
        st.votes.iter_mut().for_each(|v| *v = 0);
    }
    if pending {
        c.raw.push((row, rec.raw()));
    }
    for f in st.findings.drain(..) {
        c.issues.push((
            row,
            RowIssue {
                line,
                station: station.clone(),
                finding: f,
            },
        ));
    }
    c.round.push(round);
    c.ids.push(station);
    c.lines.push(line);
    c.path_of.push((c.paths.len() - 1) as u32);
    c.status.push(status);
    for (column, value) in c.core.iter_mut().zip(core) {
        column.push(value);
    }
    c.votes.extend_from_slice(&st.votes);
    c.extra.extend_from_slice(&st.extra);
}

pub fn sheet_of<'a>(core: &[u64; 4], votes: &'a [u64]) -> SheetCounts<'a> {
    let opt = |v: u64| (v != MISSING).then_some(v);
    SheetCounts {
        registered: opt(core[0]),
        cast: opt(core[1]),
        invalid: opt(core[2]),
        valid: opt(core[3]),
        votes,
    }
}

fn tally_model_core_name(f: usize) -> &'static str {
    crate::layout::CORE_NAMES[f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_strictly() {
        assert_eq!(parse_count(b" 12 "), Ok(Some(12)));
        assert_eq!(parse_count(b"12.0"), Ok(Some(12)));
        assert_eq!(parse_count(b""), Ok(None));
        assert_eq!(parse_count(b"-3"), Err(CountError::Negative));
        assert_eq!(parse_count(b"1.5"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"1e3"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"abc"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"-"), Err(CountError::NotInteger));
        assert_eq!(
            parse_count(b"99999999999999999999999"),
            Err(CountError::TooLarge)
        );
        assert_eq!(parse_count(b"2000000000000"), Err(CountError::TooLarge));
    }

    #[test]
    fn split_respects_quoted_newlines() {
        let mut data = b"h\n".to_vec();
        for i in 0..20000 {
            data.extend_from_slice(format!("{i},\"a\nb\"\n").as_bytes());
        }
        let ranges = split(&data, 2, 8);
        assert!(ranges.len() > 1);
        for w in ranges.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            // Every chunk starts at a record: a digit, never the "b\"" continuation.
            assert!(data[w[1].0].is_ascii_digit(), "chunk starts inside a field");
        }
        assert_eq!(ranges.last().unwrap().1, data.len());
    }
}

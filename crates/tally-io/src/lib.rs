//! # tally-io
//!
//! Reading tally sheets into [`tally_model::Round`]s: the uniform CSV of Tally (plain, `.gz`,
//! or stdin), with its layout inferred from the header and the data or named in an election
//! definition (TOML); every row ends accepted, quarantined (with its code, line and raw text)
//! or as a known station without result. Nothing is dropped silently.
//!
//! Architecture invariant: this crate reads files and bytes; it knows nothing of HTTP or
//! databases, and it does no counting beyond what validation needs.

mod cell;
pub mod columns;
pub mod definition;
pub mod layout;
pub mod nist;
pub mod output;
pub mod parse;
pub mod quarantine;
mod read;
pub mod round_csv;
pub mod status;

pub use definition::ElectionDef;
pub use layout::Layout;
pub use read::{
    decode, decode_limited, read_input, read_input_limited, release_large_buffers_promptly,
    DEFAULT_MAX_INPUT_BYTES,
};

use parse::{cut_block, parse_block, Chunk, Cursor, ParseContext, Table};
use rayon::prelude::*;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use tally_model::report::SheetStats;
use tally_model::validate::{
    find_duplicates, validate_sheet, Duplicate, Finding, SheetInput, Verdict,
};
use tally_model::{
    AreaPaths, AreaTree, Code, Round, Severity, SheetStatus, StationIds, StoredCount,
    ValidationConfig, MISSING,
};

/// A problem that stops the import of a whole file (F0xx, or E107 for a column).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportError {
    pub code: Code,
    pub file: String,
    pub detail: String,
}

impl ImportError {
    pub fn fatal(code: Code, file: &str, detail: impl Into<String>) -> Self {
        ImportError {
            code,
            file: file.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.code,
            self.file,
            self.detail,
            self.code.title()
        )
    }
}

impl std::error::Error for ImportError {}

/// A located finding on one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub code: Code,
    pub file: String,
    pub line: u64,
    pub station: String,
    pub detail: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let station = if self.station.is_empty() {
            "?"
        } else {
            &self.station
        };
        write!(
            f,
            "{} {}:{} station {}: {} ({})",
            self.code,
            self.file,
            self.line,
            station,
            self.detail,
            self.code.title()
        )
    }
}

/// A rejected row, kept with its reasons and its original text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantinedRow {
    pub file: String,
    pub line: u64,
    pub station: String,
    pub codes: Vec<Code>,
    pub reasons: Vec<String>,
    pub raw: String,
}

#[derive(Clone, Debug)]
pub struct ImportedRound {
    pub round: Round,
    pub stats: SheetStats,
    /// Every finding, errors and warnings, in file order.
    pub issues: Vec<Issue>,
    pub quarantine: Vec<QuarantinedRow>,
}

#[derive(Clone, Debug)]
pub struct FileImport {
    pub file: String,
    pub layout: Layout,
    pub rounds: Vec<ImportedRound>,
    /// Where the import's time went (`tally bench` prints it).
    pub phases: ImportPhases,
}

/// Wall time of an import's phases. Validation runs inside parsing (row by row, on all cores).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportPhases {
    /// The header, the inference sample and the layout.
    pub layout: std::time::Duration,
    /// Splitting blocks at record boundaries, parsing and validating every row, joining chunks.
    pub parse: std::time::Duration,
    /// Waiting for the next block from the reader (reading, inflating).
    pub waiting: std::time::Duration,
    /// Splitting the table into rounds, the duplicate check (E105/W207) and the quarantine.
    pub assemble: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct ImportOptions<'a> {
    pub definition: Option<&'a ElectionDef>,
    pub validation: ValidationConfig,
    /// Known station ids: rows of other stations are E106.
    pub registry: Option<&'a HashSet<String>>,
    /// Round number for files without a `round` column.
    pub default_round: u8,
    /// Name of the root of the area tree.
    pub election_name: String,
    /// A NIST report with several candidate contests: the `@id` of the one to read (F012 lists
    /// them when it is not given).
    pub contest: Option<&'a str>,
}

impl Default for ImportOptions<'_> {
    fn default() -> Self {
        ImportOptions {
            definition: None,
            validation: ValidationConfig::default(),
            registry: None,
            default_round: 1,
            election_name: "All".into(),
            contest: None,
        }
    }
}

const SAMPLE_ROWS: usize = 20_000;

/// Reads and imports `path` (`-` for stdin) under the default ceiling.
pub fn import_path(path: &str, opts: &ImportOptions<'_>) -> Result<FileImport, ImportError> {
    import_path_limited(path, DEFAULT_MAX_INPUT_BYTES, opts)
}

/// Reads and imports `path` (`-` for stdin), refusing more than `limit` bytes (F008). A file is
/// parsed block by block as it is read (and inflated, for gzip), so memory holds the station
/// table and a few blocks, never the whole file.
pub fn import_path_limited(
    path: &str,
    limit: u64,
    opts: &ImportOptions<'_>,
) -> Result<FileImport, ImportError> {
    if path == "-" {
        let data = read_input_limited(path, limit)?;
        return import_bytes(&data, path, opts);
    }
    let mut blocks = read::Blocks::open(path, limit)?;
    let (size, gzip) = (blocks.size, blocks.gzip);
    // Enough of the file for the header and the inference sample.
    let clock = std::time::Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    // Where the file's bytes start in `buf`: the first block is used where it was read,
    // after its headroom, not copied (4 MB of fresh memory, paid in page faults).
    let mut first = 0;
    let mut eof = false;
    let mut newlines = 0usize;
    while !eof && newlines <= SAMPLE_ROWS {
        match blocks.next() {
            Some(block) => {
                let block = block?;
                newlines += memchr::memchr_iter(b'\n', &block[read::HEADROOM..]).count();
                if buf.is_empty() {
                    (buf, first) = (block, read::HEADROOM);
                } else {
                    buf.extend_from_slice(&block[read::HEADROOM..]);
                }
            }
            None => eof = true,
        }
    }
    if buf[first..].starts_with(b"\xEF\xBB\xBF") {
        first += 3;
    }
    if nist::is_json(&buf[first..]) {
        for block in blocks {
            buf.extend_from_slice(&block?[read::HEADROOM..]);
        }
        return nist::import_nist(&buf[first..], path, opts, opts.contest);
    }
    let first_blocks = clock.elapsed();
    let rows_hint = if gzip { 0 } else { size as usize };
    let mut next_block = |spent: Vec<u8>| -> Result<Option<Vec<u8>>, ImportError> {
        if spent.capacity() > 0 {
            blocks.recycle(spent);
        }
        blocks.next().transpose()
    };
    let mut import = import_csv(
        Cow::Owned(buf),
        first,
        eof,
        &mut next_block,
        rows_hint,
        path,
        opts,
    )?;
    import.phases.waiting += first_blocks;
    if !rows_to_restore(&import.rounds).is_empty() {
        // Rare (E105 with different numbers): the file is read once more for those rows' text.
        let data = read_input_limited(path, limit)?;
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
        restore_raw_text(data, &mut import.rounds);
    }
    Ok(import)
}

/// Imports the bytes of one CSV file (gzip-compressed bytes are decompressed first).
pub fn import_bytes(
    data: &[u8],
    file: &str,
    opts: &ImportOptions<'_>,
) -> Result<FileImport, ImportError> {
    let decoded;
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        decoded = decode(data.to_vec(), file)?;
        &decoded[..]
    } else {
        data
    };
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if nist::is_json(data) {
        // A NIST SP 1500-100 election report (JSON), read through the same sheet pipeline.
        return nist::import_nist(data, file, opts, opts.contest);
    }
    let mut no_more = |_| Ok(None);
    let mut import = import_csv(
        Cow::Borrowed(data),
        0,
        true,
        &mut no_more,
        data.len(),
        file,
        opts,
    )?;
    restore_raw_text(data, &mut import.rounds);
    Ok(import)
}

/// The CSV import, whatever the bytes come from: `buf` holds, from `first` on, the header and
/// enough rows for the layout's sample (all the data when `eof`); `more` takes a spent buffer
/// back and gives the next block of the file, its bytes after [`read::HEADROOM`] free ones.
/// Each block is cut after its last complete record and parsed on all cores onto the end of one
/// table; the rest is carried to the front of the next block.
fn import_csv(
    mut buf: Cow<'_, [u8]>,
    first: usize,
    mut eof: bool,
    more: &mut dyn FnMut(Vec<u8>) -> Result<Option<Vec<u8>>, ImportError>,
    size_hint: usize,
    file: &str,
    opts: &ImportOptions<'_>,
) -> Result<FileImport, ImportError> {
    let mut phases = ImportPhases::default();
    let clock = std::time::Instant::now();
    let sample_end = if eof {
        buf.len()
    } else {
        memchr::memrchr(b'\n', &buf[first..]).map_or(buf.len(), |p| first + p + 1)
    };
    // The station-id column is the one column filled on one core, as each block's chunks are
    // joined: its memory is touched now (rows guessed from the lines of the first block) by a
    // core that would otherwise wait for the layout. A row is taken to be 16 bytes at least,
    // so that blank lines cannot make the guess touch more than half the file's size.
    let first_block = &buf[first..sample_end.min(first + (4 << 20))];
    let row_bytes = first_block.len() / memchr::memchr_iter(b'\n', first_block).count().max(1);
    let rows_hint = size_hint / row_bytes.max(16) + 64;
    let (ids, inferred) = rayon::join(
        || StationIds::with_touched_capacity(rows_hint, rows_hint * 8),
        || -> Result<_, ImportError> {
            let (header, body_start, sample, sample_bytes) =
                read_header_and_sample(&buf[first..sample_end], file)?;
            let layout = layout::infer(&header, &sample, opts.definition, file)?;
            Ok((body_start, sample.rows(), sample_bytes, layout))
        },
    );
    let (body_start, sample_rows, sample_bytes, layout) = inferred?;
    let body_start = first + body_start;
    let parts = rayon::current_num_threads().max(1) * 2;
    let candidate_ids: Vec<&str> = layout
        .candidates
        .iter()
        .map(|(_, c)| c.id.as_str())
        .collect();
    let status_values = opts
        .definition
        .map(|d| d.status.values())
        .unwrap_or_default();
    let ctx = ParseContext {
        status_values: &status_values,
        candidate_ids: &candidate_ids,
        layout: &layout,
        file,
        default_round: opts.default_round,
        validation: &opts.validation,
        registry: opts.registry,
    };
    let bytes_per_row = (sample_bytes / sample_rows.max(1)).max(1);
    let mut table = Table::with_capacity(
        size_hint / bytes_per_row + size_hint / bytes_per_row / 16 + 64,
        layout.candidates.len(),
        layout.extra.len(),
        ids,
    );
    phases.layout = clock.elapsed();
    // The header is line 1 (a header with a quoted newline would shift the numbers by one).
    let mut at = Cursor { line: 2, paths: 0 };
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut start = body_start;
    let mut tail = Vec::new();
    loop {
        let clock = std::time::Instant::now();
        let cut = cut_block(&buf, start, eof, parts);
        let end = cut.end;
        if end > start {
            chunks.extend(parse_block(&mut table, &buf[..end], &cut, &mut at, &ctx));
        }
        phases.parse += clock.elapsed();
        if eof {
            break;
        }
        let carry = buf.len() - end;
        let clock = std::time::Instant::now();
        let next = if carry <= read::HEADROOM {
            // The unfinished record is put aside and the block goes straight back to the
            // reader: then two blocks are enough, one parsed while the other is read into
            // (every block more is 4 MB of fresh memory, paid in page faults).
            tail.clear();
            tail.extend_from_slice(&buf[end..]);
            match std::mem::take(&mut buf) {
                Cow::Owned(block) => more(block)?,
                Cow::Borrowed(_) => more(Vec::new())?,
            }
        } else {
            more(Vec::new())?
        };
        phases.waiting += clock.elapsed();
        match next {
            Some(mut block) if carry <= read::HEADROOM => {
                start = read::HEADROOM - carry;
                block[start..read::HEADROOM].copy_from_slice(&tail);
                buf = Cow::Owned(block);
            }
            Some(block) => {
                // A record longer than the headroom: carry it the slow way.
                let buf = buf.to_mut();
                buf.drain(..end);
                buf.extend_from_slice(&block[read::HEADROOM..]);
                start = 0;
            }
            None if carry <= read::HEADROOM => {
                // What is left is the last record, without a final newline.
                (buf, start, eof) = (Cow::Owned(std::mem::take(&mut tail)), 0, true);
            }
            None => {
                start = end;
                eof = true;
            }
        }
    }
    drop(buf);
    table.finish(layout.candidates.len(), layout.extra.len());
    let clock = std::time::Instant::now();
    let rounds = assemble(table, chunks, &layout, file, opts);
    phases.assemble = clock.elapsed();
    Ok(FileImport {
        file: file.to_string(),
        layout,
        rounds,
        phases,
    })
}

/// Lines of quarantined rows whose text is not known yet (see [`restore_raw_text`]).
fn rows_to_restore(rounds: &[ImportedRound]) -> Vec<u64> {
    rounds
        .iter()
        .flat_map(|r| r.quarantine.iter())
        .filter(|q| q.raw.is_empty() && q.line > 0)
        .map(|q| q.line)
        .collect()
}

/// Puts the original text back on quarantined rows that were read as good sheets before a
/// later check (E105: the same station with other numbers elsewhere) held them back, so the
/// quarantine keeps every rejected row's numbers. One pass over the bytes, only when needed.
fn restore_raw_text(data: &[u8], rounds: &mut [ImportedRound]) {
    let mut wanted = rows_to_restore(rounds);
    if wanted.is_empty() {
        return;
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mut found: HashMap<u64, String> = HashMap::with_capacity(wanted.len());
    let mut next = wanted.iter().peekable();
    let (mut line, mut start) = (1u64, 0usize);
    let mut quotes = 0usize;
    for nl in memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len())) {
        let Some(&&want) = next.peek() else { break };
        // A record goes on past a newline inside quotes.
        quotes += memchr::memchr_iter(b'"', &data[start.min(nl)..nl]).count();
        if quotes.is_multiple_of(2) {
            if line >= want {
                let text =
                    String::from_utf8_lossy(&data[record_start(data, start, want, line)..nl]);
                found.insert(want, text.trim_end_matches('\r').to_string());
                next.next();
            }
            quotes = 0;
        }
        line += 1;
        start = nl + 1;
    }
    for q in rounds.iter_mut().flat_map(|r| r.quarantine.iter_mut()) {
        if q.raw.is_empty() {
            if let Some(text) = found.get(&q.line) {
                q.raw = text.clone();
            }
        }
    }
}

/// Where the record that started on line `want` begins (`start` is where line `line` begins;
/// they differ only for a record with quoted newlines).
fn record_start(data: &[u8], start: usize, want: u64, line: u64) -> usize {
    let mut at = start;
    for _ in want..line {
        at = memchr::memrchr(b'\n', &data[..at.saturating_sub(1)]).map_or(0, |p| p + 1);
    }
    at
}

type HeaderAndSample = (Vec<String>, usize, layout::Sample, usize);

/// The header, where the body starts, up to SAMPLE_ROWS rows for inference and their size.
fn read_header_and_sample(data: &[u8], file: &str) -> Result<HeaderAndSample, ImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let got = rdr.read_byte_record(&mut rec).map_err(|e| {
        ImportError::fatal(Code::F001, file, format!("cannot read the header: {e}"))
    })?;
    if !got || rec.iter().all(|f| f.is_empty()) {
        return Err(ImportError::fatal(
            Code::F002,
            file,
            "the file is empty (no header line)",
        ));
    }
    let header: Vec<String> = rec
        .iter()
        .enumerate()
        .map(|(i, f)| {
            std::str::from_utf8(f)
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    ImportError::fatal(
                        Code::F005,
                        file,
                        format!("column {} of the header is not valid UTF-8", i + 1),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let body_start = rdr.position().byte() as usize;
    let body = &data[body_start..];
    let (sample, sample_bytes) = if plain_lines(body) {
        sample_plain(body, header.len())
    } else {
        sample_csv(body, header.len())
    };
    if sample.is_empty() {
        return Err(ImportError::fatal(
            Code::F002,
            file,
            "the file has a header but no readable data row",
        ));
    }
    Ok((header, body_start, sample, sample_bytes))
}

/// Up to SAMPLE_ROWS rows of `width` fields from the start of `body`, and the bytes they took.
/// Without quotes a record is a line and a field the bytes between commas, as the parser's own
/// fast path reads them; the `csv` crate would cost a third of the layout inference.
fn sample_plain(body: &[u8], width: usize) -> (layout::Sample, usize) {
    if let Some(sampled) = sample_plain_text(body, width) {
        return sampled;
    }
    let mut sample = sample_for(body, width);
    let mut at = 0;
    while sample.rows() < SAMPLE_ROWS && at < body.len() {
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |p| at + p);
        let line = &body[at..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at = (end + 1).min(body.len());
        if memchr::memchr_iter(b',', line).count() + 1 == width {
            sample.push_line(line);
        }
    }
    (sample, at)
}

/// [`sample_plain`] in one pass over the bytes, for text that is UTF-8: separators are found
/// 64 bytes at a time as the parser finds them, and the sampled text is checked and copied
/// once, not line by line. `None` when it is not UTF-8 (line by line, bad bytes are replaced).
fn sample_plain_text(body: &[u8], width: usize) -> Option<(layout::Sample, usize)> {
    // Cells of the rows so far, as byte ranges; `line` is where the current line's begin.
    let mut cells: Vec<(u32, u32)> =
        Vec::with_capacity(SAMPLE_ROWS.min(body.len() / width.max(1) + 1) * width);
    let (mut rows, mut line, mut start, mut field, mut end) = (0, 0, 0, 0, body.len());
    // A line of `width` cells ending at `i` (before a CR) is a row; another one is dropped.
    let line_end =
        |cells: &mut Vec<(u32, u32)>, line: &mut usize, start: usize, field: usize, i: usize| {
            let last = if i > start && body[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            cells.push((field as u32, last as u32));
            let row = cells.len() - *line == width;
            if !row {
                cells.truncate(*line);
            }
            *line = cells.len();
            row
        };
    // Cells are 32-bit positions: a sample stops short of 4 GB.
    let fits = |i: usize| u32::try_from(i).is_ok();
    parse::each_separator(body, |i, newline| {
        if !fits(i) {
            end = start;
            return ControlFlow::Break(());
        }
        if !newline {
            cells.push((field as u32, i as u32));
            field = i + 1;
            return ControlFlow::Continue(());
        }
        rows += usize::from(line_end(&mut cells, &mut line, start, field, i));
        (start, field) = (i + 1, i + 1);
        if rows == SAMPLE_ROWS {
            end = i + 1;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if end == body.len() && start < body.len() && fits(body.len()) {
        // The last line, without a newline.
        line_end(&mut cells, &mut line, start, field, body.len());
    }
    cells.truncate(line);
    let text = std::str::from_utf8(&body[..end]).ok()?;
    for cell in &mut cells {
        let (a, b) = (cell.0 as usize, cell.1 as usize);
        let (x, y) = layout::trimmed_range(&text[a..b]);
        *cell = ((a + x) as u32, (a + y) as u32);
    }
    Some((
        layout::Sample::from_parts(width, text.to_string(), cells),
        end,
    ))
}

/// An empty sample with room for the rows `body` can hold (a row of `width` fields takes at
/// least `width` bytes).
fn sample_for(body: &[u8], width: usize) -> layout::Sample {
    let rows = SAMPLE_ROWS.min(body.len() / width.max(1) + 1);
    layout::Sample::with_capacity(width, rows, body.len())
}

/// [`sample_plain`] for any CSV (quotes, quoted newlines, lone carriage returns).
fn sample_csv(body: &[u8], width: usize) -> (layout::Sample, usize) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut rec = csv::ByteRecord::new();
    let mut sample = sample_for(body, width);
    while sample.rows() < SAMPLE_ROWS {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {
                if rec.len() == width {
                    sample.push_row(rec.iter());
                }
            }
            Ok(false) => break,
            Err(_) => continue,
        }
    }
    (sample, rdr.position().byte() as usize)
}

/// Bytes whose records are plain lines: no quote anywhere and no carriage return except in a
/// line's CRLF ending (the `csv` crate would end a record at a lone one).
fn plain_lines(body: &[u8]) -> bool {
    memchr::memchr(b'"', body).is_none()
        && memchr::memchr_iter(b'\r', body).all(|i| body.get(i + 1) == Some(&b'\n'))
}

fn issue(file: &str, row: &parse::RowIssue) -> Issue {
    Issue {
        code: row.finding.code,
        file: file.to_string(),
        line: row.line,
        station: row.station.clone(),
        detail: row.finding.detail.clone(),
    }
}

/// Findings of all chunks, merged in row order.
struct Findings {
    issues: Vec<(usize, parse::RowIssue)>,
    raw: Vec<(usize, String)>,
    pending: Vec<usize>,
}

/// Splits the table into one `Round` per round number found in the file.
fn assemble(
    mut table: Table,
    chunks: Vec<Chunk>,
    layout: &Layout,
    file: &str,
    opts: &ImportOptions<'_>,
) -> Vec<ImportedRound> {
    let mut numbers: BTreeSet<u8> = BTreeSet::new();
    let mut last = None;
    for &r in &table.round {
        if last != Some(r) {
            numbers.insert(r);
            last = Some(r);
        }
    }
    if numbers.is_empty() {
        numbers.insert(opts.default_round);
    }
    let k_all = layout.candidates.len();
    let mut seen: std::collections::BTreeMap<u8, Vec<bool>> = Default::default();
    for c in &chunks {
        for (round, s) in c.seen.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let acc = seen
                .entry(round as u8)
                .or_insert_with(|| vec![false; k_all]);
            acc.iter_mut().zip(s).for_each(|(a, b)| *a |= b);
        }
    }
    // Each chunk's area paths, in file order (taken as they are, not copied into one list).
    let mut paths: Vec<AreaPaths> = Vec::with_capacity(chunks.len());
    let mut rejected = Vec::new();
    let mut found = Findings {
        issues: Vec::new(),
        raw: Vec::new(),
        pending: Vec::new(),
    };
    for c in chunks {
        paths.push(c.paths);
        rejected.extend(c.rejected);
        found.issues.extend(c.issues);
        found.raw.extend(c.raw);
        found.pending.extend(c.pending);
    }
    let first_round = *numbers.iter().next().expect("one round");
    let single = numbers.len() == 1;
    let mut rounds = Vec::new();
    let mut all_paths: Option<AreaPaths> = None;
    for number in numbers {
        // Candidates of this round: the columns with a count on at least one of its rows.
        let on_ballot = seen
            .get(&number)
            .filter(|s| s.iter().any(|&b| b))
            .cloned()
            .unwrap_or_else(|| vec![true; k_all]);
        let mut r = if single && on_ballot.iter().all(|&b| b) && found.pending.is_empty() {
            round_from_table(
                std::mem::take(&mut table),
                std::mem::take(&mut paths),
                &found,
                layout,
                file,
                opts,
                number,
            )
        } else {
            // Row by row, paths are looked up by index: the chunks' lists joined, once.
            let all = all_paths.get_or_insert_with(|| {
                let mut all = AreaPaths::new(layout.areas.len());
                paths.iter().for_each(|p| all.append(p));
                all
            });
            round_from_rows(
                &mut table, all, &found, &on_ballot, layout, file, opts, number,
            )
        };
        if number == first_round {
            // Rows too broken to tell their round are reported with the first round.
            r.stats.rows += rejected.len() as u64;
            r.stats.quarantined += rejected.len() as u64;
            for (ri, raw) in &rejected {
                r.issues.push(issue(file, ri));
                r.quarantine.push(QuarantinedRow {
                    file: file.to_string(),
                    line: ri.line,
                    station: ri.station.clone(),
                    codes: vec![ri.finding.code],
                    reasons: vec![ri.finding.detail.clone()],
                    raw: raw.clone(),
                });
            }
            r.issues.sort_by_key(|i| i.line);
            r.quarantine.sort_by_key(|q| q.line);
        }
        rounds.push(r);
    }
    rounds
}

/// The common case, one round with all its candidates and nothing pending: the table's columns
/// become the round's columns without a copy.
fn round_from_table(
    table: Table,
    paths: Vec<AreaPaths>,
    found: &Findings,
    layout: &Layout,
    file: &str,
    opts: &ImportOptions<'_>,
    number: u8,
) -> ImportedRound {
    // The tree comes once the stations are in (below).
    let mut round = Round::new(
        number,
        layout.candidates.iter().map(|c| c.1.clone()).collect(),
        layout.extra_names(),
        AreaTree::new("", Vec::new()),
    );
    let mut stats = SheetStats {
        rows: table.len() as u64,
        ..SheetStats::default()
    };
    // Counted by comparison, not by a match per row: a million rows in a fraction of a
    // millisecond instead of three.
    let rows_with = |s: SheetStatus| table.status.iter().filter(|&&x| x == s).count() as u64;
    stats.accepted = rows_with(SheetStatus::Counted);
    stats.quarantined = rows_with(SheetStatus::Quarantined);
    stats.missing = stats.rows - stats.accepted - stats.quarantined;
    let mut issues = Vec::with_capacity(found.issues.len());
    let mut last_warned = usize::MAX;
    for (row, ri) in &found.issues {
        if table.status[*row] == SheetStatus::Counted && *row != last_warned {
            stats.with_warnings += 1;
            last_warned = *row;
        }
        issues.push(issue(file, ri));
    }
    // Both lists are in row order: walk them together.
    let mut quarantine = Vec::with_capacity(found.raw.len());
    let mut at = found.issues.iter().peekable();
    for (row, raw) in &found.raw {
        while at.next_if(|(r, _)| r < row).is_some() {}
        let mut errors: Vec<&parse::RowIssue> = Vec::new();
        while let Some((_, ri)) = at.next_if(|(r, _)| r == row) {
            if ri.finding.code.severity() == Severity::Error {
                errors.push(ri);
            }
        }
        quarantine.push(QuarantinedRow {
            file: file.to_string(),
            line: u64::from(table.lines[*row]),
            station: table.ids[*row].to_string(),
            codes: errors.iter().map(|e| e.finding.code).collect(),
            reasons: errors.iter().map(|e| e.finding.detail.clone()).collect(),
            raw: raw.clone(),
        });
    }
    let Table {
        ids,
        lines,
        path,
        status,
        core,
        votes,
        extra,
        ..
    } = table;
    let [registered, cast, invalid, valid] = core;
    round.stations = tally_model::round::Stations {
        ids,
        // Path indices for now; area ids once the tree is built (below).
        area: path,
        status,
        line: lines,
        registered,
        cast,
        invalid,
        valid,
        votes,
        extra,
    };
    // The tree is built on one core (its areas are numbered in the order the file lists them)
    // while the duplicate check runs on the others.
    let mut tree = AreaTree::new(&opts.election_name, layout.level_names());
    let (leaf, dups) = rayon::join(|| tree.leaves_of(&paths), || round_duplicates(&round));
    round.tree = tree;
    drop(paths);
    // Path indices become area ids in place (both u32): no second column.
    round
        .stations
        .area
        .par_iter_mut()
        .for_each(|p| *p = leaf[*p as usize]);
    resolve_duplicates(
        &mut round,
        dups,
        &mut stats,
        &mut issues,
        &mut quarantine,
        file,
        Place::Line,
        &|_, _| String::new(),
    );
    ImportedRound {
        round,
        stats,
        issues,
        quarantine,
    }
}

/// The general case, row by row: a file holding several rounds, candidates not on this round's
/// ballot, or sheets whose empty candidate cells must be resolved (W208/E110).
#[allow(clippy::too_many_arguments)]
fn round_from_rows(
    table: &mut Table,
    paths: &AreaPaths,
    found: &Findings,
    on_ballot: &[bool],
    layout: &Layout,
    file: &str,
    opts: &ImportOptions<'_>,
    number: u8,
) -> ImportedRound {
    let k_all = layout.candidates.len();
    let e = layout.extra.len();
    let cand_idx: Vec<usize> = (0..k_all).filter(|&j| on_ballot[j]).collect();
    let mut round = Round::new(
        number,
        cand_idx
            .iter()
            .map(|&j| layout.candidates[j].1.clone())
            .collect(),
        layout.extra_names(),
        AreaTree::new(&opts.election_name, layout.level_names()),
    );
    let mut leaf: Vec<Option<u32>> = vec![None; paths.len()];
    let mut stats = SheetStats::default();
    let mut issues: Vec<Issue> = Vec::new();
    let mut quarantine: Vec<QuarantinedRow> = Vec::new();
    let mut votes = vec![0 as StoredCount; cand_idx.len()];
    let ballot_ids: Vec<&str> = cand_idx
        .iter()
        .map(|&j| layout.candidates[j].1.id.as_str())
        .collect();
    let mut findings: Vec<Finding> = Vec::new();
    let mut pending = found.pending.iter().peekable();
    let mut raw = found.raw.iter().peekable();
    let mut iss = found.issues.iter().peekable();
    for i in 0..table.len() {
        let is_pending = pending.next_if(|&&p| p == i).is_some();
        let raw_text = raw.next_if(|r| r.0 == i).map(|r| r.1.as_str());
        findings.clear();
        while let Some((_, ri)) = iss.next_if(|x| x.0 == i) {
            findings.push(ri.finding.clone());
        }
        if table.round[i] != number {
            continue;
        }
        stats.rows += 1;
        let all_votes = &table.votes[i * k_all..(i + 1) * k_all];
        for (o, &j) in votes.iter_mut().zip(&cand_idx) {
            *o = all_votes[j];
        }
        let mut core = [
            table.core[0][i],
            table.core[1][i],
            table.core[2][i],
            table.core[3][i],
        ];
        let mut status = table.status[i];
        if is_pending {
            let verdict = validate_sheet(
                &mut SheetInput {
                    core,
                    votes: &mut votes,
                    candidates: &ballot_ids,
                },
                &opts.validation,
                &mut findings,
            );
            // A registry finding (E106) made while parsing holds the sheet back too.
            status = if verdict == Verdict::Quarantined || findings.iter().any(Finding::is_error) {
                SheetStatus::Quarantined
            } else {
                SheetStatus::Counted
            };
        }
        if status != SheetStatus::Counted {
            // Absent is not zero: a sheet that is not counted keeps no vote counts.
            core[1..].iter_mut().for_each(|v| *v = MISSING);
            votes.iter_mut().for_each(|v| *v = MISSING);
        }
        match status {
            SheetStatus::Counted => {
                stats.accepted += 1;
                if !findings.is_empty() {
                    stats.with_warnings += 1;
                }
            }
            SheetStatus::Quarantined => stats.quarantined += 1,
            SheetStatus::Missing | SheetStatus::Annulled | SheetStatus::NotInstalled => {
                stats.missing += 1
            }
        }
        let line = u64::from(table.lines[i]);
        let station = &table.ids[i];
        for f in &findings {
            issues.push(Issue {
                code: f.code,
                file: file.to_string(),
                line,
                station: station.to_string(),
                detail: f.detail.clone(),
            });
        }
        if status == SheetStatus::Quarantined {
            let errors: Vec<&Finding> = findings
                .iter()
                .filter(|f| f.code.severity() == Severity::Error)
                .collect();
            quarantine.push(QuarantinedRow {
                file: file.to_string(),
                line,
                station: station.to_string(),
                codes: errors.iter().map(|f| f.code).collect(),
                reasons: errors.iter().map(|f| f.detail.clone()).collect(),
                raw: raw_text.unwrap_or_default().to_string(),
            });
        }
        let p = table.path[i] as usize;
        let area = *leaf[p].get_or_insert_with(|| round.tree.leaf(paths.path(p)));
        let extra = &table.extra[i * e..(i + 1) * e];
        round.push(station, area, status, line, core, &votes, extra);
    }
    let dups = round_duplicates(&round);
    resolve_duplicates(
        &mut round,
        dups,
        &mut stats,
        &mut issues,
        &mut quarantine,
        file,
        Place::Line,
        &|_, _| String::new(),
    );
    issues.sort_by_key(|i| i.line);
    quarantine.sort_by_key(|q| q.line);
    ImportedRound {
        round,
        stats,
        issues,
        quarantine,
    }
}

/// Where a sheet stands in its source, for messages: `line` in a CSV file, `unit` in a NIST
/// report.
#[derive(Clone, Copy)]
pub(crate) enum Place {
    Line,
    Unit,
}

impl Place {
    fn word(self) -> &'static str {
        match self {
            Place::Line => "line",
            Place::Unit => "unit",
        }
    }

    fn several(self) -> &'static str {
        match self {
            Place::Line => "on lines",
            Place::Unit => "as units",
        }
    }
}

/// The round's stations that share an id ([`find_duplicates`]), compared by every number and
/// their status.
pub(crate) fn round_duplicates(r: &Round) -> Vec<Duplicate> {
    let same = |a: usize, b: usize| {
        let s = &r.stations;
        s.registered[a] == s.registered[b]
            && s.cast[a] == s.cast[b]
            && s.invalid[a] == s.invalid[b]
            && s.valid[a] == s.valid[b]
            && s.status[a] == s.status[b]
            && r.votes_of(a) == r.votes_of(b)
            && r.extra_of(a) == r.extra_of(b)
    };
    find_duplicates(&r.stations.ids, same)
}

/// E105/W207: one station twice in one source (`dups`, from [`round_duplicates`]), for every
/// reader. `raw` gives the original text of a conflicting sheet that was not already
/// quarantined (empty for CSV: `restore_raw_text` puts the file's line back afterwards).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve_duplicates(
    round: &mut Round,
    dups: Vec<Duplicate>,
    stats: &mut SheetStats,
    issues: &mut Vec<Issue>,
    quarantine: &mut Vec<QuarantinedRow>,
    file: &str,
    place: Place,
    raw: &dyn Fn(&Round, usize) -> String,
) {
    if dups.is_empty() {
        return;
    }
    let mut keep = vec![true; round.len()];
    // Rows already quarantined, by line: one lookup per conflicting row, not a scan.
    let mut quarantined_at: HashMap<u64, usize> = quarantine
        .iter()
        .enumerate()
        .map(|(i, q)| (q.line, i))
        .collect();
    for d in dups {
        match d {
            Duplicate::Identical { keep: first, drop } => {
                for i in drop {
                    keep[i] = false;
                    stats.duplicates += 1;
                    uncount(stats, round.stations.status[i], false);
                    issues.push(Issue {
                        code: Code::W207,
                        file: file.to_string(),
                        line: u64::from(round.stations.line[i]),
                        station: round.stations.ids[i].to_string(),
                        detail: format!(
                            "same numbers as {} {}; counted once",
                            place.word(),
                            round.stations.line[first]
                        ),
                    });
                }
            }
            Duplicate::Conflicting { rows } => {
                let lines: Vec<String> = rows
                    .iter()
                    .map(|&i| round.stations.line[i].to_string())
                    .collect();
                for (n, &i) in rows.iter().enumerate() {
                    let was = round.stations.status[i];
                    uncount(stats, was, true);
                    let detail = format!(
                        "station appears {} {} with different numbers",
                        place.several(),
                        lines.join(", ")
                    );
                    let station = round.stations.ids[i].to_string();
                    let line = u64::from(round.stations.line[i]);
                    issues.push(Issue {
                        code: Code::E105,
                        file: file.to_string(),
                        line,
                        station: station.clone(),
                        detail: detail.clone(),
                    });
                    if let Some(&at) = quarantined_at.get(&line) {
                        let q: &mut QuarantinedRow = &mut quarantine[at];
                        q.codes.push(Code::E105);
                        q.reasons.push(detail);
                    } else {
                        quarantined_at.insert(line, quarantine.len());
                        quarantine.push(QuarantinedRow {
                            file: file.to_string(),
                            line,
                            station,
                            codes: vec![Code::E105],
                            reasons: vec![detail],
                            raw: raw(round, i),
                        });
                    }
                    if n == 0 {
                        round.quarantine_station(i);
                    } else {
                        keep[i] = false;
                    }
                }
            }
        }
    }
    round.retain_stations(&keep);
}

/// Moves one row out of its category; with `to_quarantine` it lands in `quarantined`.
fn uncount(stats: &mut SheetStats, status: SheetStatus, to_quarantine: bool) {
    match status {
        SheetStatus::Counted => stats.accepted -= 1,
        SheetStatus::Quarantined => stats.quarantined -= 1,
        SheetStatus::Missing | SheetStatus::Annulled | SheetStatus::NotInstalled => {
            stats.missing -= 1
        }
    }
    if to_quarantine {
        stats.quarantined += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain-line sampler must read exactly what the `csv` crate reads wherever it is used.
    #[test]
    fn plain_sample_equals_csv_sample() {
        let mut long = String::new();
        for i in 0..SAMPLE_ROWS + 50 {
            long.push_str(&format!("S{i},R{},{}\n", i % 7, i % 100));
        }
        let bodies: Vec<Vec<u8>> = vec![
            b"a,b,c\r\nd,e,f\r\n".to_vec(),
            b"a,b,c\n\n d , e ,f \nshort,row\ntoo,many,fields,here\nx,y,z".to_vec(),
            b"\na,b,c\n,,\n\xff\xfe,b,c\n".to_vec(),
            b"only one line without newline,b,c".to_vec(),
            "\u{a0}a\u{a0},\tb\x0b, c\u{3000}\n\u{2003},,x \r\n"
                .as_bytes()
                .to_vec(),
            long.into_bytes(),
        ];
        for body in &bodies {
            assert!(plain_lines(body));
            let (plain, plain_bytes) = sample_plain(body, 3);
            let (csv, csv_bytes) = sample_csv(body, 3);
            assert_eq!(plain, csv, "{}", String::from_utf8_lossy(body));
            assert_eq!(plain_bytes, csv_bytes);
            // UTF-8 text is sampled in one pass; other bytes line by line.
            assert_eq!(
                sample_plain_text(body, 3).is_some(),
                std::str::from_utf8(body).is_ok()
            );
        }
        assert_eq!(sample_plain(&bodies[5], 3).0.rows(), SAMPLE_ROWS);
        assert!(!plain_lines(b"a,\"b\",c\n"));
        assert!(!plain_lines(b"a,b,c\rd,e,f\n"));
    }
}

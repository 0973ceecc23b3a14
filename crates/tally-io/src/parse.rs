//! The hot path: parsing every row of a file in parallel chunks.
//!
//! The file is split at record boundaries (a newline outside quotes: the number of `"` before
//! it is even), each chunk is parsed by the `csv` crate on its own core into columns, and the
//! chunks are joined in file order, so the result does not depend on the number of threads.

use crate::layout::Layout;
use crate::status::StatedStatus;
use rayon::prelude::*;
use std::collections::HashSet;
use std::ops::ControlFlow;
use tally_model::validate::{
    normalise_station_id, normalised_id_finding, validate_sheet, Finding, SheetInput, Verdict,
};
use tally_model::{
    AreaPaths, Code, SheetStatus, StationIds, StoredCount, ValidationConfig, MISSING,
};

use crate::cell::plain_count;
use crate::cell::{count_error_text, trim};
pub use crate::cell::{parse_count, CountError};

/// One row's problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowIssue {
    pub line: u64,
    pub station: String,
    pub finding: Finding,
}

/// Every row of one file, all rounds, in file order. The parser writes each chunk's rows
/// straight into its own region of these columns, so no row is copied after parsing (a million
/// stations fill a hundred megabytes; every copy is paid in page faults).
#[derive(Default)]
pub struct Table {
    pub round: Vec<u8>,
    pub ids: StationIds,
    /// As [`tally_model::round::Stations::line`].
    pub lines: Vec<u32>,
    /// Index into the file's list of area paths.
    pub path: Vec<u32>,
    pub status: Vec<SheetStatus>,
    pub core: [Vec<StoredCount>; 4],
    /// Row-major, one entry per candidate column of the layout.
    pub votes: Vec<StoredCount>,
    pub extra: Vec<StoredCount>,
    /// A chunk numbers the area paths it finds from 0: `(end, base)` says that the rows up to
    /// `end` (from the previous entry's) add `base` to theirs, which [`Table::finish`] does.
    path_bases: Vec<(usize, u32)>,
    /// Rows in use. While parsing, the number columns run ahead of it (see
    /// [`Table::with_capacity`]); [`Table::finish`] cuts them to it.
    rows: usize,
}

impl Table {
    /// Room for about `rows` rows (a file's size over the sample's bytes per row). The number
    /// columns are allocated zeroed, which for large columns is fresh memory from the kernel
    /// that nobody writes: each page is first touched by the core that parses its rows, so the
    /// page faults are shared between the cores instead of paid up front by one, and the columns
    /// grow without being moved.
    pub fn with_capacity(rows: usize, k: usize, e: usize, ids: StationIds) -> Table {
        Table {
            round: vec![0; rows],
            ids,
            lines: vec![0; rows],
            path: vec![0; rows],
            status: Vec::with_capacity(rows),
            core: std::array::from_fn(|_| vec![0; rows]),
            votes: vec![0; rows * k],
            extra: vec![0; rows * e],
            path_bases: Vec::new(),
            rows: 0,
        }
    }

    /// Adds `n` rows; their cells are written by the parser.
    fn grow(&mut self, n: usize, k: usize, e: usize) {
        let len = self.rows + n;
        if self.round.len() < len {
            // More rows than the estimate: the columns move once.
            self.round.resize(len, 0);
            self.lines.resize(len, 0);
            self.path.resize(len, 0);
            for c in &mut self.core {
                c.resize(len, 0);
            }
            self.votes.resize(len * k, 0);
            self.extra.resize(len * e, 0);
        }
        self.status.resize(len, SheetStatus::Missing);
        self.rows = len;
    }

    /// Cuts the columns to the rows in use and makes the path indices the file's (after the
    /// last block).
    pub fn finish(&mut self, k: usize, e: usize) {
        let n = self.rows;
        let mut rest = &mut self.path[..n];
        let mut from = 0;
        let mut spans = Vec::with_capacity(self.path_bases.len());
        for &(end, base) in &self.path_bases {
            let (span, tail) = std::mem::take(&mut rest).split_at_mut(end - from);
            spans.push((span, base));
            (rest, from) = (tail, end);
        }
        spans
            .into_par_iter()
            .filter(|(_, base)| *base > 0)
            .for_each(|(span, base)| span.iter_mut().for_each(|p| *p += base));
        self.path_bases.clear();
        self.round.truncate(n);
        self.lines.truncate(n);
        self.path.truncate(n);
        self.status.truncate(n);
        for c in &mut self.core {
            c.truncate(n);
        }
        self.votes.truncate(n * k);
        self.extra.truncate(n * e);
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Disjoint mutable regions of `sizes[i]` rows each, from row `from` on.
    fn regions(&mut self, from: usize, sizes: &[usize], k: usize, e: usize) -> Vec<Region<'_>> {
        let mut out = Vec::with_capacity(sizes.len());
        let Table {
            round,
            lines,
            path,
            status,
            core,
            votes,
            extra,
            ..
        } = self;
        let [c0, c1, c2, c3] = core;
        let (mut round, mut lines, mut path, mut status) = (
            &mut round[from..],
            &mut lines[from..],
            &mut path[from..],
            &mut status[from..],
        );
        let (mut c0, mut c1, mut c2, mut c3) = (
            &mut c0[from..],
            &mut c1[from..],
            &mut c2[from..],
            &mut c3[from..],
        );
        let (mut votes, mut extra) = (&mut votes[from * k..], &mut extra[from * e..]);
        for &n in sizes {
            macro_rules! take {
                ($v:ident, $w:expr) => {{
                    let (head, tail) = std::mem::take(&mut $v).split_at_mut(n * $w);
                    $v = tail;
                    head
                }};
            }
            out.push(Region {
                round: take!(round, 1),
                lines: take!(lines, 1),
                path: take!(path, 1),
                status: take!(status, 1),
                core: [take!(c0, 1), take!(c1, 1), take!(c2, 1), take!(c3, 1)],
                votes: take!(votes, k),
                extra: take!(extra, e),
            });
        }
        out
    }

    /// Moves `n` rows from `from` down to `to` (`to < from`); ids are not in the regions.
    fn move_rows(&mut self, from: usize, to: usize, n: usize, k: usize, e: usize) {
        self.round.copy_within(from..from + n, to);
        self.lines.copy_within(from..from + n, to);
        self.path.copy_within(from..from + n, to);
        self.status.copy_within(from..from + n, to);
        for c in &mut self.core {
            c.copy_within(from..from + n, to);
        }
        self.votes.copy_within(from * k..(from + n) * k, to * k);
        self.extra.copy_within(from * e..(from + n) * e, to * e);
    }

    /// Drops the rows from `n` on (the number columns keep their room for the next block).
    fn truncate(&mut self, n: usize) {
        self.status.truncate(n);
        self.rows = n;
    }
}

/// One chunk's rows of the [`Table`] (the chunk collects its ids in [`Chunk::ids`]).
struct Region<'a> {
    round: &'a mut [u8],
    lines: &'a mut [u32],
    path: &'a mut [u32],
    status: &'a mut [SheetStatus],
    core: [&'a mut [StoredCount]; 4],
    votes: &'a mut [StoredCount],
    extra: &'a mut [StoredCount],
}

/// What parsing a chunk found besides the rows themselves. Row indices are positions in the
/// table once [`parse_block`] has joined the chunks.
#[derive(Default)]
pub struct Chunk {
    /// The station ids of the rows written, in order.
    pub ids: StationIds,
    /// Area paths first seen in this chunk (consecutive rows usually share one).
    pub paths: AreaPaths,
    /// Rows that could not become a station at all (no id, malformed): issue and raw CSV.
    pub rejected: Vec<(RowIssue, String)>,
    /// Issues of rows kept as stations (errors mark the row Quarantined; warnings only flag it).
    pub issues: Vec<(usize, RowIssue)>,
    /// Raw text of quarantined station rows, by row index.
    pub raw: Vec<(usize, String)>,
    /// Rows with empty candidate cells, validated once the round's candidates are known.
    pub pending: Vec<usize>,
    /// Indexed by round number: which candidate columns hold a count on at least one row
    /// (empty for a round without rows here). A vector, not a map: it is updated on every row.
    pub seen: Vec<Vec<bool>>,
    pub rows_read: u64,
    /// Rows written into the chunk's region.
    pub written: usize,
}

pub struct ParseContext<'a> {
    pub layout: &'a Layout,
    pub file: &'a str,
    pub default_round: u8,
    pub validation: &'a ValidationConfig,
    pub registry: Option<&'a HashSet<String>>,
    /// What the values of the status column mean.
    pub status_values: &'a crate::status::StatusValues,
    /// The candidates' ids in layout order (names of the vote fields in findings).
    pub candidate_ids: &'a [&'a str],
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

/// A block's complete records cut into chunks for the cores: each chunk's byte range, the most
/// rows it can hold (its newlines) and whether it has a quote.
pub struct Cut {
    /// Just past the last complete record (what follows is carried to the next block).
    pub end: usize,
    chunks: Vec<(usize, usize)>,
    /// Each chunk's newlines (its first line is the block's plus those of the chunks before).
    newlines: Vec<usize>,
    rows: Vec<usize>,
    quoted: Vec<bool>,
}

/// Cuts the records of `data[start..]` into about `parts` chunks. Nearly every file has no
/// quotes: then every newline ends a record, so the one pass over the bytes (newlines counted,
/// a quote looked for) runs on all cores, and the thread that reads the blocks never scans one.
/// A block with a quote is cut again the careful way (quotes counted, serially).
pub fn cut_block(data: &[u8], start: usize, eof: bool, parts: usize) -> Cut {
    let scan = |chunks: Vec<(usize, usize)>, end: usize| {
        let (newlines, (rows, quoted)) = chunks
            .par_iter()
            .map(|&(a, b)| {
                let chunk = &data[a..b];
                let lines = memchr::memchr_iter(b'\n', chunk).count();
                let unfinished = chunk.last().is_some_and(|&c| c != b'\n');
                (
                    lines,
                    (
                        lines + usize::from(unfinished),
                        memchr::memchr(b'"', chunk).is_some(),
                    ),
                )
            })
            .unzip();
        Cut {
            end,
            chunks,
            newlines,
            rows,
            quoted,
        }
    };
    let plain_end = if eof {
        data.len()
    } else {
        memchr::memrchr(b'\n', &data[start..]).map_or(start, |p| start + p + 1)
    };
    let plain = scan(split_lines(&data[..plain_end], start, parts), plain_end);
    // Past the last newline there is no record end, quoted or not: records up to it without a
    // quote all end where a newline is.
    if !plain.quoted.contains(&true) {
        return plain;
    }
    let end = if eof {
        data.len()
    } else {
        last_record_end(&data[start..]).map_or(start, |e| start + e)
    };
    scan(split(&data[..end], start, parts), end)
}

/// [`split`] for bytes without quotes: a chunk ends at the first newline after its share.
fn split_lines(data: &[u8], body_start: usize, parts: usize) -> Vec<(usize, usize)> {
    let len = data.len();
    let target = ((len - body_start) / parts.max(1)).max(1 << 16);
    let mut out = Vec::new();
    let mut start = body_start;
    while start < len {
        let cut = (start + target).min(len);
        let cut = memchr::memchr(b'\n', &data[cut..]).map_or(len, |p| cut + p + 1);
        out.push((start, cut));
        start = cut;
    }
    out
}

/// The end of the last complete record in `data` (just past a newline outside quotes).
fn last_record_end(data: &[u8]) -> Option<usize> {
    let mut quotes = memchr::memchr_iter(b'"', data).count();
    let mut end = data.len();
    while let Some(nl) = memchr::memrchr(b'\n', &data[..end]) {
        quotes -= memchr::memchr_iter(b'"', &data[nl + 1..end]).count();
        if quotes.is_multiple_of(2) {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// Where the next block of a file starts: its first line and the number of area paths already
/// found (row indices continue from the table's length).
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    pub line: u64,
    pub paths: u32,
}

/// Parses one block of records (the chunks of `cut`, in parallel) onto the end of `table`, in
/// file order, with their file line numbers; row indices in the chunks' findings become the
/// table's (path indices become the file's in [`Table::finish`]). `at` moves past the block.
pub fn parse_block(
    table: &mut Table,
    data: &[u8],
    cut: &Cut,
    at: &mut Cursor,
    ctx: &ParseContext<'_>,
) -> Vec<Chunk> {
    let k = ctx.layout.candidates.len();
    let e = ctx.layout.extra.len();
    // A chunk holds at most one row per line: its regions are sized by its newlines.
    let sizes = &cut.rows;
    let base = table.len();
    table.grow(sizes.iter().sum(), k, e);
    // Each chunk's first line is known before it is parsed: its rows are written with their
    // file line numbers, and only the area paths' indices are shifted once the file is read.
    let first_lines: Vec<u64> = cut
        .newlines
        .iter()
        .scan(at.line, |line, &n| {
            let first = *line;
            *line += n as u64;
            Some(first)
        })
        .collect();
    let mut chunks: Vec<Chunk> = cut
        .chunks
        .par_iter()
        .zip(&cut.quoted)
        .zip(&first_lines)
        .zip(table.regions(base, sizes, k, e))
        .map(|(((&(a, b), &quoted), &line), mut region)| {
            parse_chunk(&data[a..b], quoted, line, ctx, &mut region)
        })
        .collect();
    at.line += cut.newlines.iter().sum::<usize>() as u64;
    // Close the gaps left by blank lines, rejected rows and quoted newlines.
    let (mut offset, mut dst) = (base, base);
    for (c, &size) in chunks.iter_mut().zip(sizes) {
        if dst != offset && c.written > 0 {
            table.move_rows(offset, dst, c.written, k, e);
        }
        table.path_bases.push((dst + c.written, at.paths));
        table.ids.append(std::mem::take(&mut c.ids));
        c.issues.iter_mut().for_each(|(r, _)| *r += dst);
        c.raw.iter_mut().for_each(|(r, _)| *r += dst);
        c.pending.iter_mut().for_each(|r| *r += dst);
        offset += size;
        dst += c.written;
        at.paths += c.paths.len() as u32;
    }
    table.truncate(dst);
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

/// Where the commas and the newlines of a 64-byte block are: bit `j` of each mask is byte `j`.
/// On x86-64, sixteen bytes are compared at a time (SSE2, which every x86-64 processor has):
/// the masks of a million rows take 0.7x the time eight bytes at a time (SWAR) took, and
/// newlines are told apart from commas by their mask, not by reading the byte again.
#[inline]
fn separators(block: &[u8; 64]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline, so the instructions exist wherever this
        // code runs; the function reads nothing but `block`.
        unsafe { separators_sse2(block) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        separators_bytewise(block)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn separators_sse2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
    let word = |at: usize| {
        let bytes: [u8; 8] = block[at..at + 8].try_into().expect("8 bytes");
        i64::from_le_bytes(bytes)
    };
    let (mut commas, mut newlines) = (0u64, 0u64);
    for q in 0..4 {
        let v = _mm_set_epi64x(word(16 * q + 8), word(16 * q));
        let comma = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8)));
        let newline = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)));
        commas |= u64::from(comma as u16) << (16 * q);
        newlines |= u64::from(newline as u16) << (16 * q);
    }
    (commas, newlines)
}

/// Calls `visit(i, newline)` for each comma and newline of `bytes`, in order, until it breaks.
#[inline(always)]
pub(crate) fn each_separator(bytes: &[u8], mut visit: impl FnMut(usize, bool) -> ControlFlow<()>) {
    let blocks = bytes.len() / 64;
    for (n, block) in bytes.chunks_exact(64).enumerate() {
        let (commas, newlines) = separators(block.try_into().expect("64 bytes"));
        let mut hits = commas | newlines;
        while hits != 0 {
            let j = hits.trailing_zeros();
            if visit(n * 64 + j as usize, newlines >> j & 1 == 1).is_break() {
                return;
            }
            hits &= hits - 1;
        }
    }
    for (i, &b) in bytes.iter().enumerate().skip(blocks * 64) {
        if (b == b',' || b == b'\n') && visit(i, b == b'\n').is_break() {
            return;
        }
    }
}

/// [`separators`] one byte at a time: other processors, and the reference in tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn separators_bytewise(block: &[u8; 64]) -> (u64, u64) {
    let (mut commas, mut newlines) = (0u64, 0u64);
    for (j, &b) in block.iter().enumerate() {
        commas |= u64::from(b == b',') << j;
        newlines |= u64::from(b == b'\n') << j;
    }
    (commas, newlines)
}

/// One data row, from the fast splitter or from the `csv` crate.
trait Row {
    fn len(&self) -> usize;
    fn field(&self, i: usize) -> &[u8];
    /// The cell as a count when it is 1 to 9 plain digits ([`plain_count`]).
    fn plain(&self, i: usize) -> Option<StoredCount> {
        plain_count(self.field(i))
    }
    /// The row as CSV text, for the quarantine file.
    fn raw(&self) -> String;
    /// The text of cells `first` to `last` with the separators between them, where the row's
    /// text is at hand (not for the `csv` crate's unescaped fields).
    fn cells(&self, _first: usize, _last: usize) -> Option<&[u8]> {
        None
    }
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
    /// The whole chunk: a count cell is read as a word that may reach past the row.
    chunk: &'a [u8],
    /// The row's text is `chunk[start..end]`.
    start: usize,
    end: usize,
    /// Fields, relative to `start`.
    bounds: &'a [(usize, usize)],
}

impl Row for PlainRow<'_> {
    fn len(&self) -> usize {
        self.bounds.len()
    }
    fn field(&self, i: usize) -> &[u8] {
        self.bounds
            .get(i)
            .map_or(b"", |&(a, b)| &self.chunk[self.start + a..self.start + b])
    }
    #[inline(always)]
    fn plain(&self, i: usize) -> Option<StoredCount> {
        let &(a, b) = self.bounds.get(i)?;
        plain_count_at(self.chunk, self.start + a, self.start + b)
    }
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.chunk[self.start..self.end]).into_owned()
    }
    fn cells(&self, first: usize, last: usize) -> Option<&[u8]> {
        let (&(a, _), &(_, b)) = (self.bounds.get(first)?, self.bounds.get(last)?);
        self.chunk.get(self.start + a..self.start + b)
    }
}

/// Buffers reused from row to row.
struct RowState {
    votes: Vec<StoredCount>,
    extra: Vec<StoredCount>,
    findings: Vec<Finding>,
    /// The previous row's area cells, when it had a valid path (buffers reused across rows).
    last_path: Vec<Vec<u8>>,
    has_last_path: bool,
    /// The first and last area column, when the area columns are side by side: then a row's
    /// area cells are compared with the previous row's as one text ([`Row::cells`], kept in
    /// `last_cells`), not cell by cell.
    area_span: Option<(usize, usize)>,
    last_cells: Vec<u8>,
}

/// Parses one chunk into its region, its first line being `first_line`; path indices are the
/// chunk's. Without a quote (`quoted` false) commas and newlines are all separators.
fn parse_chunk(
    bytes: &[u8],
    quoted: bool,
    first_line: u64,
    ctx: &ParseContext<'_>,
    region: &mut Region<'_>,
) -> Chunk {
    let l = ctx.layout;
    let k = l.candidates.len();
    let e = l.extra.len();
    let mut c = Chunk {
        paths: AreaPaths::new(l.areas.len()),
        ..Chunk::default()
    };
    let mut st = RowState {
        votes: vec![0; k],
        extra: vec![MISSING; e],
        findings: Vec::new(),
        last_path: vec![Vec::new(); l.areas.len()],
        has_last_path: false,
        area_span: match (l.areas.first(), l.areas.last()) {
            (Some(&a), Some(&b)) if b >= a && b - a + 1 == l.areas.len() => Some((a, b)),
            _ => None,
        },
        last_cells: Vec::new(),
    };
    if !quoted {
        scan_plain(bytes, first_line, ctx, &mut c, region, &mut st);
        return c;
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut newlines = LineCounter::new(bytes);
    loop {
        let line = first_line + newlines.line_at(rdr.position().byte());
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
        let line = rec
            .position()
            .map_or(line, |p| first_line + newlines.line_at(p.byte()));
        if rec.len() == 1 && rec[0].is_empty() {
            continue; // blank line
        }
        c.rows_read += 1;
        handle_row(&mut c, region, &mut st, ctx, line, &CsvRow(&rec));
    }
    c
}

/// The rows of a chunk without quotes, where every comma and newline is a separator.
/// Separators are found 64 bytes at a time ([`separators`]) along the whole chunk, whatever the
/// fields: each block's search does not wait for the previous field to be read, which a
/// field-by-field walk would (rows are short, so this beats both a byte loop and a search call
/// per separator).
fn scan_plain(
    bytes: &[u8],
    first_line: u64,
    ctx: &ParseContext<'_>,
    c: &mut Chunk,
    region: &mut Region<'_>,
    st: &mut RowState,
) {
    let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(ctx.layout.header.len() + 1);
    let mut line_no = first_line;
    let mut start = 0usize;
    let mut field = 0usize;
    each_separator(bytes, |i, newline| {
        if !newline {
            bounds.push((field - start, i - start));
            field = i + 1;
        } else {
            let end = if i > start && bytes[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            if end > start {
                bounds.push((field - start, end - start));
                c.rows_read += 1;
                let row = PlainRow {
                    chunk: bytes,
                    start,
                    end,
                    bounds: &bounds,
                };
                handle_row(c, region, st, ctx, line_no, &row);
            }
            bounds.clear();
            line_no += 1;
            start = i + 1;
            field = start;
        }
        ControlFlow::Continue(())
    });
    if start < bytes.len() {
        bounds.push((field - start, bytes.len() - start));
        c.rows_read += 1;
        let row = PlainRow {
            chunk: bytes,
            start,
            end: bytes.len(),
            bounds: &bounds,
        };
        handle_row(c, region, st, ctx, line_no, &row);
    }
}

/// The count in `bytes[a..b]` when it is 1 to 8 plain digits, read as one word: eight bytes
/// from `a` are loaded (none past `bytes`: a cell near its end takes [`plain_count`]), the
/// digits checked all at once, and their value assembled with three multiplications instead
/// of one per digit. Cells are independent of each other, so a row's cells are read in parallel
/// by the processor, which a loop over digits, one waiting for the last, does not allow.
#[inline(always)]
fn plain_count_at(bytes: &[u8], a: usize, b: usize) -> Option<StoredCount> {
    let len = b.wrapping_sub(a);
    let Some(word) = bytes.get(a..a + 8).filter(|_| (1..=8).contains(&len)) else {
        return plain_count(bytes.get(a..b)?);
    };
    let word = u64::from_le_bytes(word.try_into().ok()?);
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x3030_3030_3030_3030;
    // A byte's high bit is set unless it is a digit (`x` of 0 to 9): exact, with no carry
    // from one byte into the next (the low seven bits are added apart from the high one).
    let not_digit = (((x & LOW7) + 0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
    let cell = u64::MAX >> (8 * (8 - len));
    if not_digit & cell != 0 {
        return None;
    }
    // The digits, first one lowest, moved up so that the bytes below them are leading zeros.
    let d = (x & cell) << (8 * (8 - len));
    let d = d.wrapping_mul(10).wrapping_add(d >> 8) & 0x00ff_00ff_00ff_00ff;
    let d = d.wrapping_mul(100).wrapping_add(d >> 16) & 0x0000_ffff_0000_ffff;
    let d = d.wrapping_mul(10_000).wrapping_add(d >> 32) & 0xffff_ffff;
    Some(d as StoredCount)
}

/// Line numbers from byte positions, counted by this module rather than taken from the `csv`
/// crate: its count slips by one when a CRLF pair straddles its internal buffer.
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    lines: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            lines: 0,
        }
    }

    /// The 0-based line of the record starting at byte `pos` (positions only move forward). A
    /// record's reported start may be the end of the previous line's terminator: skip it.
    fn line_at(&mut self, pos: u64) -> u64 {
        let mut pos = (pos as usize).min(self.bytes.len());
        while pos < self.bytes.len() && matches!(self.bytes[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos > self.at {
            self.lines += memchr::memchr_iter(b'\n', &self.bytes[self.at..pos]).count() as u64;
            self.at = pos;
        }
        self.lines
    }
}

fn handle_row<R: Row>(
    c: &mut Chunk,
    out: &mut Region<'_>,
    st: &mut RowState,
    ctx: &ParseContext<'_>,
    line: u64,
    rec: &R,
) {
    let l = ctx.layout;
    let width = l.header.len();
    let k = l.candidates.len();
    let station = std::str::from_utf8(trim(rec.field(l.station)));
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
        let id = station.unwrap_or_default().to_string();
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
    let cells = st.area_span.and_then(|(a, b)| rec.cells(a, b));
    let same_path = st.has_last_path
        && match cells {
            Some(text) => text == st.last_cells.as_slice(),
            None => l
                .areas
                .iter()
                .zip(&st.last_path)
                .all(|(&col, prev)| rec.field(col) == prev.as_slice()),
        };
    if !same_path {
        let name = |col: usize| std::str::from_utf8(rec.field(col));
        if l.areas.iter().any(|&col| name(col).is_err()) {
            reject(
                c,
                Code::E108,
                "an area name is not valid UTF-8".into(),
                station.to_string(),
            );
            st.has_last_path = false;
            return;
        }
        c.paths.push(
            l.areas
                .iter()
                .map(|&col| name(col).unwrap_or_default().trim()),
        );
        match cells {
            Some(text) => {
                st.last_cells.clear();
                st.last_cells.extend_from_slice(text);
            }
            None => {
                for (prev, &col) in st.last_path.iter_mut().zip(&l.areas) {
                    prev.clear();
                    prev.extend_from_slice(rec.field(col));
                }
            }
        }
        st.has_last_path = true;
    }
    let row = c.written;
    st.findings.clear();
    // Ids are borrowed from the row; only one not in normal form is copied (W210).
    let normal = normalise_station_id(station);
    if let Some(normal) = &normal {
        st.findings.push(normalised_id_finding(station, normal));
    }
    let station = normal.as_deref().unwrap_or(station);
    let mut present = 0usize;
    let mut number = |col: usize, what: &str, findings: &mut Vec<Finding>| -> StoredCount {
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
                    station.to_string(),
                );
                if !same_path {
                    c.paths.pop();
                    st.has_last_path = false;
                }
                return;
            }
        },
    };
    let mut core = [MISSING; 4];
    // Plain digits are read inline; `number` takes every other cell (empty, odd, wrong).
    let mut plain = 0usize;
    let mut inline = |v: StoredCount| {
        plain += 1;
        v
    };
    for (f, col) in l.core.iter().enumerate() {
        if let Some(col) = *col {
            core[f] = match rec.plain(col) {
                Some(v) => inline(v),
                None => number(col, tally_model_core_name(f), &mut st.findings),
            };
        }
    }
    for (j, (col, cand)) in l.candidates.iter().enumerate() {
        st.votes[j] = match rec.plain(*col) {
            Some(v) => inline(v),
            None => number(*col, &cand.id, &mut st.findings),
        };
    }
    for (j, &col) in l.extra.iter().enumerate() {
        st.extra[j] = match rec.plain(col) {
            Some(v) => inline(v),
            None => number(col, &l.header[col], &mut st.findings),
        };
    }
    // Registered alone is a known station without a result (a registry row).
    let results_present = plain + present
        - usize::from(l.core[0].is_some_and(|col| !trim(rec.field(col)).is_empty()));
    // A status column may say the sheet is not counted whatever its numbers (W209 when it has
    // some), or hold a value nobody named (E111: held back).
    let stated = l.status.and_then(|col| {
        let cell = String::from_utf8_lossy(rec.field(col));
        ctx.status_values.classify(&cell)
    });
    let not_counted = match stated {
        Some(Ok(s)) if s != StatedStatus::Counted => Some(s),
        Some(Err(value)) => {
            st.findings.push(Finding::on(
                Code::E111,
                ["status"],
                format!("status '{value}' is not one Tally knows (counted, pending, annulled, not installed); name it in the election definition's [status] table"),
            ));
            None
        }
        _ => None,
    };
    let mut pending = false;
    let status = if let Some(s) = not_counted {
        if results_present > 0 {
            st.findings.push(Finding::on(
                Code::W209,
                ["status"],
                format!(
                    "the sheet is {} but carries counts: they are not counted",
                    s.name()
                ),
            ));
        }
        core[1..].iter_mut().for_each(|v| *v = MISSING);
        st.votes.iter_mut().for_each(|v| *v = MISSING);
        st.extra.iter_mut().for_each(|v| *v = MISSING);
        s.sheet_status()
    } else if results_present == 0 {
        SheetStatus::Missing
    } else {
        if let Some(reg) = ctx.registry {
            if !reg.contains(station) {
                st.findings.push(Finding::new(
                    Code::E106,
                    format!("station '{station}' is not in the registry"),
                ));
            }
        }
        let r = usize::from(round);
        if c.seen.len() <= r {
            c.seen.resize(r + 1, Vec::new());
        }
        let seen = &mut c.seen[r];
        if seen.is_empty() {
            *seen = vec![false; k];
        }
        let mut all_votes = true;
        for (j, &v) in st.votes.iter().enumerate() {
            seen[j] |= v != MISSING;
            all_votes &= v != MISSING;
        }
        if st
            .findings
            .iter()
            .any(|f| matches!(f.code, Code::E101 | Code::E111))
        {
            SheetStatus::Quarantined
        } else if !all_votes {
            // Either a candidate not on this round's ballot (a multi-round file) or an
            // incomplete sheet (E110): decided once the whole round has been read.
            pending = true;
            SheetStatus::Quarantined
        } else {
            let verdict = validate_sheet(
                &mut SheetInput {
                    core,
                    votes: &mut st.votes,
                    candidates: ctx.candidate_ids,
                },
                ctx.validation,
                &mut st.findings,
            );
            // A registry finding (E106) made before the arithmetic holds the sheet back too.
            if verdict == Verdict::Quarantined || st.findings.iter().any(Finding::is_error) {
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
        st.votes.iter_mut().for_each(|v| *v = MISSING);
        st.extra.iter_mut().for_each(|v| *v = MISSING);
    }
    if pending {
        c.raw.push((row, rec.raw()));
    }
    for f in st.findings.drain(..) {
        c.issues.push((
            row,
            RowIssue {
                line,
                station: station.to_string(),
                finding: f,
            },
        ));
    }
    let e = l.extra.len();
    out.round[row] = round;
    c.ids.push(station);
    out.lines[row] = u32::try_from(line).unwrap_or(u32::MAX);
    out.path[row] = (c.paths.len() - 1) as u32;
    out.status[row] = status;
    for (column, value) in out.core.iter_mut().zip(core) {
        column[row] = value;
    }
    out.votes[row * k..(row + 1) * k].copy_from_slice(&st.votes);
    out.extra[row * e..(row + 1) * e].copy_from_slice(&st.extra);
    c.written += 1;
}

fn tally_model_core_name(f: usize) -> &'static str {
    crate::layout::CORE_NAMES[f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_found_exactly() {
        let mut block = [b'a'; 64];
        block[0] = b',';
        block[2] = b'\n';
        block[17] = b',';
        block[63] = b'\n';
        block[40] = 0xac; // 0x2c (a comma) with the high bit set
        block[41] = 0x8a; // the same for a newline
        assert_eq!(separators(&block), (1 | 1 << 17, 1 << 2 | 1 << 63));
        // Every byte value at every position, against the byte-by-byte reference.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4_000 {
            for (j, b) in block.iter_mut().enumerate() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = if round % 2 == 0 {
                    (state >> 56) as u8
                } else {
                    b",\n\r0a\"\x2c\xac"[(state % 8) as usize]
                };
                if round < 256 && j == round % 64 {
                    *b = round as u8;
                }
            }
            assert_eq!(separators(&block), separators_bytewise(&block), "{block:?}");
        }
    }

    #[test]
    fn a_count_read_as_a_word_is_the_count_read_digit_by_digit() {
        // Every cell of random buffers, near their ends too (where no word can be read).
        let alphabet = b"0123456789000,\n\r .-a\xff/:";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cells = 0;
        for _ in 0..2_000 {
            let len = (next() % 24) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for a in 0..=len {
                for b in a..=len.min(a + 10) {
                    assert_eq!(
                        plain_count_at(&buf, a, b),
                        plain_count(&buf[a..b]),
                        "{:?}",
                        String::from_utf8_lossy(&buf[a..b])
                    );
                    cells += usize::from(plain_count(&buf[a..b]).is_some());
                }
            }
        }
        assert!(cells > 1_000, "too few counts among the cells: {cells}");
        assert_eq!(plain_count_at(b"99999999,", 0, 8), Some(99_999_999));
        assert_eq!(plain_count_at(b"00000001,", 0, 8), Some(1));
        assert_eq!(plain_count_at(b"123456789", 0, 9), Some(123_456_789));
    }

    #[test]
    fn a_block_is_cut_after_its_last_record_quoted_or_not() {
        let plain = b"h\n1,a\n2,b\n3,c";
        let cut = cut_block(plain, 2, false, 2);
        assert_eq!(
            (cut.end, &cut.rows[..], &cut.quoted[..]),
            (10, &[2][..], &[false][..])
        );
        // At the end of the file the unfinished line is a record too.
        assert_eq!(cut_block(plain, 2, true, 2).end, plain.len());
        // The newline inside quotes does not end a record: the block ends before "2,".
        let quoted = b"h\n1,a\n2,\"b\nc";
        let cut = cut_block(quoted, 2, false, 2);
        assert_eq!((cut.end, &cut.quoted[..]), (6, &[false][..]));
        let cut = cut_block(b"h\n1,\"a\nb\"\n2,c\n", 2, false, 2);
        assert_eq!(
            (cut.end, &cut.rows[..], &cut.quoted[..]),
            (14, &[3][..], &[true][..])
        );
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

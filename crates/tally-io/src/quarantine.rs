//! The quarantine file: every rejected row with its codes, reasons and original text, so a
//! person can correct it and import it again. Written to a temporary file and renamed, so a
//! failed run never leaves a partial file, and never over an input.

use crate::output::{csv_text, write_file_atomically, OutputError};
use crate::QuarantinedRow;
use std::path::Path;

/// Writes the quarantine file at `path` (never over one of `inputs`; see
/// [`crate::output::write_file_atomically`]). Text cells that a spreadsheet would run as a
/// formula get a leading `'` ([`csv_text`]).
pub fn write_quarantine(
    path: &Path,
    inputs: &[&Path],
    rows: &[&QuarantinedRow],
) -> Result<(), OutputError> {
    write_file_atomically(path, inputs, |out| {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["file", "line", "station_id", "codes", "reasons", "row"])?;
        for q in rows {
            let codes: Vec<&str> = q.codes.iter().map(|c| c.as_str()).collect();
            w.write_record([
                &*csv_text(&q.file),
                &q.line.to_string(),
                &*csv_text(&q.station),
                &codes.join(" "),
                &*csv_text(&q.reasons.join("; ")),
                &*csv_text(&q.raw),
            ])?;
        }
        w.flush()
    })
}

//! The quarantine file: every rejected row with its codes, reasons and original text, so a
//! person can correct it and import it again. Written to a temporary file and renamed, so a
//! failed run never leaves a partial file.

use crate::QuarantinedRow;
use std::io;
use std::path::Path;

pub fn write_quarantine(path: &Path, rows: &[&QuarantinedRow]) -> io::Result<()> {
    let tmp = path.with_extension("partial");
    {
        let f = std::fs::File::create(&tmp)?;
        let mut w = csv::Writer::from_writer(io::BufWriter::new(f));
        w.write_record(["file", "line", "station_id", "codes", "reasons", "row"])?;
        for q in rows {
            let codes: Vec<&str> = q.codes.iter().map(|c| c.as_str()).collect();
            w.write_record([
                q.file.as_str(),
                &q.line.to_string(),
                q.station.as_str(),
                &codes.join(" "),
                &q.reasons.join("; "),
                q.raw.as_str(),
            ])?;
        }
        w.flush()?;
        let f = w
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        f.into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?
            .sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

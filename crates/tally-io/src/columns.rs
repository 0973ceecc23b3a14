//! Reading named count columns of any CSV (one row per unit), for the evidence commands that
//! take two margins from an arbitrary file (`tally transfers FILE --rows ... --cols ...`).
//!
//! Same bytes path as the tally-sheet import (plain, gzip, stdin: [`crate::read_input`]) and the
//! same count parsing and codes ([`crate::parse::parse_count`], E101), so a cell that the
//! importer rejects is rejected here with the same words. Unlike the importer nothing is
//! quarantined: these inputs have no sheet to hold back, and a solver cannot use a unit with a
//! hole, so the first bad cell stops the read with its file, line and column.

use crate::cell::count_error_text;
use crate::cell::parse_count;
use crate::{read_input, ImportError};
use tally_model::Code;

/// The requested columns of a file, one entry per data row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedColumns {
    /// The unit id of each row: the id column's cell, or `line N` when the file has none.
    pub ids: Vec<String>,
    /// The requested column names, as asked.
    pub names: Vec<String>,
    /// `values[row][k]`: the count in column `names[k]`.
    pub values: Vec<Vec<u64>>,
}

/// Reads `names` (matched case-insensitively, header cells trimmed) as counts from the file at
/// `path` (`-` for stdin, gzip detected by its magic bytes). The unit id is column `id` when
/// given, else a `station_id` column when there is one, else the row's line number.
pub fn read_columns(
    path: &str,
    names: &[String],
    id: Option<&str>,
) -> Result<NamedColumns, ImportError> {
    let data = read_input(path)?;
    columns_from_bytes(&data, path, names, id)
}

/// [`read_columns`] on bytes already read; `file` names them in errors.
pub fn columns_from_bytes(
    data: &[u8],
    file: &str,
    names: &[String],
    id: Option<&str>,
) -> Result<NamedColumns, ImportError> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(data);
    let header: Vec<String> = rdr
        .byte_headers()
        .map_err(|e| ImportError::fatal(Code::F002, file, format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(|s| s.trim().to_string())
                .map_err(|_| ImportError::fatal(Code::F005, file, "the header is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    if header.iter().all(String::is_empty) {
        return Err(ImportError::fatal(Code::F002, file, "no header line"));
    }
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ImportError::fatal(
                    Code::F004,
                    file,
                    format!("no column '{name}' (columns: {})", header.join(", ")),
                )
            })
    };
    let idx: Vec<usize> = names.iter().map(|n| find(n)).collect::<Result<_, _>>()?;
    let id_idx = match id {
        Some(name) => Some(find(name)?),
        None => header.iter().position(|h| h == "station_id"),
    };
    let mut out = NamedColumns {
        ids: Vec::new(),
        names: names.to_vec(),
        values: Vec::new(),
    };
    // The line where a record starts, as an editor shows it: counted from the byte offset,
    // because the reader skips blank lines without counting them and a record may span lines.
    let (mut seen, mut newlines) = (0usize, 0usize);
    let mut line_at = |byte: u64| {
        let mut byte = (byte as usize).min(data.len());
        // A record's position is where the reader started looking, before the blank lines.
        while byte < data.len() && matches!(data[byte], b'\n' | b'\r') {
            byte += 1;
        }
        if byte >= seen {
            newlines += memchr::memchr_iter(b'\n', &data[seen..byte]).count();
            seen = byte;
        }
        newlines + 1
    };
    for rec in rdr.byte_records() {
        // A ragged row stops the read like any bad cell (E108, the importer's code for it).
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(p.byte()));
            ImportError::fatal(Code::E108, file, format!("line {line}: {e}"))
        })?;
        let line = rec.position().map_or(0, |p| line_at(p.byte()));
        let count = |c: usize| -> Result<u64, ImportError> {
            let cell = rec.get(c).unwrap_or(b"");
            let problem = match parse_count(cell) {
                Ok(Some(v)) => return Ok(u64::from(v)),
                Ok(None) => "empty (a count is needed)",
                Err(e) => count_error_text(e),
            };
            Err(ImportError::fatal(
                Code::E101,
                file,
                format!(
                    "line {line}, column '{}': '{}' is {problem}",
                    header[c],
                    String::from_utf8_lossy(cell).trim()
                ),
            ))
        };
        out.values
            .push(idx.iter().map(|&c| count(c)).collect::<Result<_, _>>()?);
        out.ids.push(id_idx.and_then(|i| rec.get(i)).map_or_else(
            || format!("line {line}"),
            |b| String::from_utf8_lossy(b).into_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_named_columns_in_the_order_asked() {
        let data = b"station_id,A,b , c\ns1,1,2,3\ns2,4,5,6\n";
        let c = columns_from_bytes(data, "f.csv", &names(&["c", "a"]), None).unwrap();
        assert_eq!(c.ids, vec!["s1", "s2"]);
        assert_eq!(c.values, vec![vec![3, 1], vec![6, 4]]);
    }

    #[test]
    fn ids_from_a_named_column_or_the_line() {
        let data = b"name,x\nfoo,1\nbar,2\n";
        let c = columns_from_bytes(data, "f.csv", &names(&["x"]), Some("NAME")).unwrap();
        assert_eq!(c.ids, vec!["foo", "bar"]);
        let c = columns_from_bytes(data, "f.csv", &names(&["x"]), None).unwrap();
        assert_eq!(c.ids, vec!["line 2", "line 3"]);
    }

    #[test]
    fn a_bad_cell_names_file_line_and_column() {
        let data = b"x,y\n1,2\n3,-4\n";
        let e = columns_from_bytes(data, "f.csv", &names(&["x", "y"]), None).unwrap_err();
        assert_eq!(e.code, Code::E101);
        assert_eq!(e.file, "f.csv");
        assert_eq!(e.detail, "line 3, column 'y': '-4' is negative");
        // A blank line is no record for the csv reader, and the lines after it keep their number.
        let c = columns_from_bytes(b"x\n\n2\n", "f.csv", &names(&["x"]), None).unwrap();
        assert_eq!(c.ids, vec!["line 3"]);
        let e = columns_from_bytes(b"x,y\n1,\n", "f.csv", &names(&["y"]), None).unwrap_err();
        assert_eq!(
            e.detail,
            "line 2, column 'y': '' is empty (a count is needed)"
        );
    }

    #[test]
    fn a_ragged_row_is_e108() {
        let e = columns_from_bytes(b"x,y\n1,2\n3\n", "f.csv", &names(&["x"]), None).unwrap_err();
        assert_eq!(e.code, Code::E108);
        assert!(e.detail.starts_with("line 3: "), "{}", e.detail);
    }

    #[test]
    fn a_missing_column_is_f004() {
        let e = columns_from_bytes(b"x,y\n1,2\n", "f.csv", &names(&["z"]), None).unwrap_err();
        assert_eq!(e.code, Code::F004);
        assert!(e.detail.contains("no column 'z'"), "{}", e.detail);
        assert!(e.to_string().starts_with("F004 f.csv: "), "{e}");
    }
}

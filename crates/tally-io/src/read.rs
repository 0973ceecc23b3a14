//! Getting the bytes of an input: a path, `.gz` (detected by magic bytes, not by name), or `-`
//! for stdin. Whole files are read into memory: the parser splits them into chunks for the
//! cores, and even a million-station file is tens of megabytes.
//!
//! Every input is read under a ceiling (F008): a 6 MB `.csv.gz` can inflate to 12 GB, and
//! running out of memory aborts the process instead of answering with a code.

use crate::ImportError;
use std::io::Read;
use tally_model::Code;

/// The default ceiling on an input's size after decompression: a national election with a
/// million stations and a hundred candidates is well under 1 GB of CSV.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 2048 << 20;

/// Reads a path (or `-` for stdin) under the default ceiling.
pub fn read_input(path: &str) -> Result<Vec<u8>, ImportError> {
    read_input_limited(path, DEFAULT_MAX_INPUT_BYTES)
}

fn too_large(path: &str, limit: u64, what: &str) -> ImportError {
    ImportError::fatal(
        Code::F008,
        path,
        format!(
            "{what} is larger than the ceiling of {} MB; if the file is genuine, raise it with --max-input-mb",
            limit >> 20
        ),
    )
}

/// Reads a path (or `-` for stdin) and decompresses it, refusing more than `limit` bytes.
pub fn read_input_limited(path: &str, limit: u64) -> Result<Vec<u8>, ImportError> {
    let raw = if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| ImportError::fatal(Code::F001, path, format!("cannot read stdin: {e}")))?;
        if buf.len() as u64 > limit {
            return Err(too_large(path, limit, "the input on stdin"));
        }
        buf
    } else {
        let size = std::fs::metadata(path)
            .map_err(|e| ImportError::fatal(Code::F001, path, format!("cannot read file: {e}")))?
            .len();
        if size > limit {
            return Err(too_large(path, limit, "the file"));
        }
        std::fs::read(path)
            .map_err(|e| ImportError::fatal(Code::F001, path, format!("cannot read file: {e}")))?
    };
    decode_limited(raw, path, limit)
}

/// Decompresses gzip under the default ceiling (see [`decode_limited`]).
pub fn decode(raw: Vec<u8>, path: &str) -> Result<Vec<u8>, ImportError> {
    decode_limited(raw, path, DEFAULT_MAX_INPUT_BYTES)
}

/// Decompresses gzip (one or several members) when the bytes start with the gzip magic,
/// streaming, and stops with F008 as soon as the output passes `limit`.
pub fn decode_limited(raw: Vec<u8>, path: &str, limit: u64) -> Result<Vec<u8>, ImportError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity((raw.len() * 6).min(limit as usize));
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| {
                ImportError::fatal(Code::F001, path, format!("broken gzip stream: {e}"))
            })?;
        if out.len() as u64 > limit {
            return Err(too_large(path, limit, "the decompressed file"));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_stops_at_the_ceiling_with_f008() {
        // 64 MB of zeros compress to about 64 KB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let block = vec![b'0'; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&block).unwrap();
        }
        let raw = gz.finish().unwrap();
        assert!(raw.len() < 1 << 20);
        let err = decode_limited(raw.clone(), "bomb.csv.gz", 8 << 20).unwrap_err();
        assert_eq!(err.code, Code::F008);
        assert!(err.to_string().contains("--max-input-mb"), "{err}");
        // Under a ceiling that fits, the same bytes decode.
        assert_eq!(
            decode_limited(raw, "ok.csv.gz", 64 << 20).unwrap().len(),
            64 << 20
        );
    }
}

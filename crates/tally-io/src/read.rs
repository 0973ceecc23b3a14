//! Getting the bytes of an input: a path, `.gz` (detected by magic bytes, not by name), or `-`
//! for stdin. Whole files are read into memory: the parser splits them into chunks for the
//! cores, and even a million-station file is tens of megabytes.

use crate::ImportError;
use std::io::Read;
use tally_model::Code;

pub fn read_input(path: &str) -> Result<Vec<u8>, ImportError> {
    let raw = if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| ImportError::fatal(Code::F001, path, format!("cannot read stdin: {e}")))?;
        buf
    } else {
        std::fs::read(path)
            .map_err(|e| ImportError::fatal(Code::F001, path, format!("cannot read file: {e}")))?
    };
    decode(raw, path)
}

/// Decompresses gzip (one or several members) when the bytes start with the gzip magic.
pub fn decode(raw: Vec<u8>, path: &str) -> Result<Vec<u8>, ImportError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 6);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                ImportError::fatal(Code::F001, path, format!("broken gzip stream: {e}"))
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

//! Getting the bytes of an input: a path, `.gz` (detected by magic bytes, not by name), or `-`
//! for stdin. A file is read in blocks on a thread of its own ([`Blocks`]) so that the parser
//! never holds the whole file and a `.csv.gz` is inflated on one core while the other parses;
//! stdin and the embedded election are read whole.
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

/// Bytes of decompressed input per block handed to the parser.
pub const BLOCK_BYTES: usize = 4 << 20;

/// Free bytes at the front of every block: the previous block's unfinished record is copied
/// there, so a block is parsed where it was read instead of being appended to a buffer.
pub const HEADROOM: usize = 64 << 10;

/// A file's bytes, decompressed, in blocks of about [`BLOCK_BYTES`] (after [`HEADROOM`] free
/// bytes), read ahead by one block on a thread of its own; blocks handed back with
/// [`Blocks::recycle`] are read into again (fresh memory costs a page fault per 4 KB). Stops
/// with F008 as soon as the bytes pass the ceiling.
pub struct Blocks {
    rx: std::sync::mpsc::Receiver<Result<Vec<u8>, ImportError>>,
    spent: std::sync::mpsc::Sender<Vec<u8>>,
    /// The file's size on disk, and whether it is gzip.
    pub size: u64,
    pub gzip: bool,
}

impl Blocks {
    pub fn open(path: &str, limit: u64) -> Result<Blocks, ImportError> {
        let cannot = |e: std::io::Error| {
            ImportError::fatal(Code::F001, path, format!("cannot read file: {e}"))
        };
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        let size = file.metadata().map_err(cannot)?.len();
        if size > limit {
            return Err(too_large(path, limit, "the file"));
        }
        let mut magic = [0u8; 2];
        let got = read_full(&mut file, &mut magic).map_err(cannot)?;
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let head = magic[..got].to_vec();
        let mut source: Box<dyn Read + Send> = if gzip {
            let rest = std::io::BufReader::with_capacity(1 << 16, file);
            Box::new(flate2::read::MultiGzDecoder::new(
                std::io::Cursor::new(head).chain(rest),
            ))
        } else {
            Box::new(std::io::Cursor::new(head).chain(file))
        };
        // A rendezvous: the thread reads one block ahead and waits with it until the parser
        // takes it, so two blocks are in use at a time (reading is much faster than parsing).
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let (spent, returned) = std::sync::mpsc::channel::<Vec<u8>>();
        let name = path.to_string();
        std::thread::spawn(move || {
            let mut total = 0u64;
            loop {
                // Read into the block's spare room, not into zeroed bytes: zeroing 4 MB only
                // for `read` to overwrite them cost as much as the read.
                let mut block = returned.try_recv().unwrap_or_default();
                block.resize(HEADROOM, 0);
                block.reserve_exact(BLOCK_BYTES);
                let n = match (&mut source)
                    .take(BLOCK_BYTES as u64)
                    .read_to_end(&mut block)
                {
                    Ok(n) => n,
                    Err(e) => {
                        let what = if gzip {
                            "broken gzip stream"
                        } else {
                            "cannot read file"
                        };
                        let _ = tx.send(Err(ImportError::fatal(
                            Code::F001,
                            &name,
                            format!("{what}: {e}"),
                        )));
                        return;
                    }
                };
                total += n as u64;
                if total > limit {
                    let what = if gzip {
                        "the decompressed file"
                    } else {
                        "the file"
                    };
                    let _ = tx.send(Err(too_large(&name, limit, what)));
                    return;
                }
                if n == 0 {
                    return;
                }
                // The receiver stops listening after an error of its own: then stop reading.
                if tx.send(Ok(block)).is_err() {
                    return;
                }
            }
        });
        Ok(Blocks {
            rx,
            spent,
            size,
            gzip,
        })
    }

    /// Hands a block back to be read into again.
    pub fn recycle(&self, block: Vec<u8>) {
        let _ = self.spent.send(block);
    }
}

impl Iterator for Blocks {
    type Item = Result<Vec<u8>, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Makes the allocator hand freed large buffers back to the system at once (glibc only; a
/// no-op elsewhere). Call it once, first thing in a process that imports large files.
///
/// Why: the import frees its 4 MB read blocks, its sample and the chunks' scratch before the
/// station table and the report are complete. By default glibc raises its mmap threshold when
/// the first such buffer is freed, so later ones are carved from the heap and stay counted in
/// the process's memory after they are freed. A fixed threshold keeps every buffer of 256 KB
/// or more in its own mapping, returned on free: at a million stations the peak drops from
/// about 141 to 128 MB. Fixing that threshold also fixes the heap's trim threshold at 128 KB,
/// so the heap's top was handed back and faulted in again all through the import (some five
/// thousand page faults at a million stations): small blocks freed at the top now stay for the
/// next ones, up to 64 MB. The peak is the same: memory kept is memory already counted.
pub fn release_large_buffers_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of glibc's allocator; it is called before
    // the process starts its threads, and a failure (return 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
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

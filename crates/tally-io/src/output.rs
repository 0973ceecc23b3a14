//! Writing output files safely: never over an input, never over something that is not a
//! regular file, never leaving half a file, and never a cell a spreadsheet would run as a
//! formula.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an output file was not written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: refusing to write over the input {input}")]
    IsInput { path: String, input: String },
    #[error("{path}: refusing to replace something that is not a regular file ({kind})")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    false
}

/// Checks that `path` may be (re)placed: not one of `inputs` (by file identity, so another
/// spelling or a hard link is caught), and, if it exists, a regular file and not a symlink,
/// device, pipe or folder.
pub fn check_target(path: &Path, inputs: &[&Path]) -> Result<(), OutputError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Some("a symbolic link")
    } else if ft.is_dir() {
        Some("a folder")
    } else if !ft.is_file() {
        Some("a device, pipe or socket")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(OutputError::NotRegular {
            path: path.display().to_string(),
            kind,
        });
    }
    for input in inputs {
        if let Ok(m) = fs::metadata(input) {
            if same_file(&meta, &m) {
                return Err(OutputError::IsInput {
                    path: path.display().to_string(),
                    input: input.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file of our own beside `path` (created new, so nothing else is touched).
fn temp_beside(path: &Path) -> Result<(PathBuf, File), OutputError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "output".into());
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tally-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&tmp)(e)),
        }
    }
}

/// Writes `path` all at once: into a new temporary file beside it, synced, then renamed over
/// it. Refuses to write over any of `inputs` or over what is not a regular file; on any error
/// the temporary file is removed and `path` is untouched.
pub fn write_file_atomically<F>(path: &Path, inputs: &[&Path], write: F) -> Result<(), OutputError>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    check_target(path, inputs)?;
    let (tmp, f) = temp_beside(path)?;
    let result = (|| {
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    // The target may have changed kind while we wrote; check again just before the rename.
    if let Err(e) = check_target(path, inputs) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

pub use tally_model::report::csv_text;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tally-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn never_over_an_input_and_nothing_else_is_touched() {
        let d = dir("input");
        let input = d.join("a.csv");
        fs::write(&input, "station_id\n1\n").unwrap();
        let bystander = d.join("a.partial");
        fs::write(&bystander, "mine").unwrap();
        // The same file under another spelling.
        let other_spelling = d.join(".").join("a.csv");
        let err =
            write_file_atomically(&other_spelling, &[&input], |w| w.write_all(b"x")).unwrap_err();
        assert!(matches!(err, OutputError::IsInput { .. }), "{err}");
        assert_eq!(fs::read_to_string(&input).unwrap(), "station_id\n1\n");
        write_file_atomically(&d.join("q.csv"), &[&input], |w| w.write_all(b"ok")).unwrap();
        assert_eq!(fs::read_to_string(d.join("q.csv")).unwrap(), "ok");
        assert_eq!(fs::read_to_string(&bystander).unwrap(), "mine");
        // No temporary file is left behind.
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_devices_are_not_replaced() {
        let d = dir("links");
        let target = d.join("real.csv");
        fs::write(&target, "keep").unwrap();
        let link = d.join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_file_atomically(&link, &[], |w| w.write_all(b"x")).unwrap_err();
        assert!(matches!(err, OutputError::NotRegular { .. }), "{err}");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let err =
            write_file_atomically(Path::new("/dev/null"), &[], |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_failed_write_leaves_the_target_as_it_was() {
        let d = dir("fail");
        let out = d.join("out.csv");
        fs::write(&out, "before").unwrap();
        let err = write_file_atomically(&out, &[], |_| Err(io::Error::other("disk full")));
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(&out).unwrap(), "before");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_text("+1"), "'+1");
        assert_eq!(csv_text("-2+3"), "'-2+3");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("Adana"), "Adana");
        assert_eq!(csv_text(""), "");
    }
}

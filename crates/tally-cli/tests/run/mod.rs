//! Running the `tally` binary from the end-to-end tests: one copy of the helpers every test file
//! of the binary needs.
#![allow(dead_code)] // each test file uses some of them

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `tally` with `args` (the NIST report's date fixed, so reports compare).
pub fn tally(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A file of ../shared/data, or `None` with a message (the data sets are optional).
pub fn shared(rel: &str) -> Option<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if p.exists() {
        Some(p.to_string_lossy().into_owned())
    } else {
        eprintln!(
            "skipped: {} not present (../shared/data is optional)",
            p.display()
        );
        None
    }
}

/// A path in this test process's own temporary folder.
pub fn tmp(test: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tally-{test}-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

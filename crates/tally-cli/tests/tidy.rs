//! Architecture invariants checked on the source tree (in the spirit of rust-analyzer's tidy
//! tests): what ARCHITECTURE.md and docs/ state about the code, the code must do.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crates() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| root().join("crates").join(n).join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source text without line comments (doc comments may show `println!` in examples).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// Only tally-cli prints: libraries return data and errors, the binary decides what people see.
#[test]
fn no_printing_outside_tally_cli() {
    let mut found = Vec::new();
    for krate in crates().iter().filter(|c| *c != "tally-cli") {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(krate).join("src"), &mut files);
        // `testing.rs` modules are compiled only for tests (`test-support`), like `#[cfg(test)]`.
        for f in files.into_iter().filter(|f| !f.ends_with("testing.rs")) {
            let text = fs::read_to_string(&f).unwrap();
            // Unit tests inside a library may print on failure; the product may not.
            let product = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code_lines(product) {
                // `eprintln!(` contains `println!(`, `eprint!(` contains `print!(`.
                if ["println!(", "print!(", "dbg!("]
                    .iter()
                    .any(|m| line.contains(m))
                {
                    found.push(format!("{}:{n}: {}", f.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "printing outside tally-cli:\n{}",
        found.join("\n")
    );
}

/// Every validation code has a line in docs/validation-codes.md, and the docs list no code
/// the program does not have.
#[test]
fn every_code_is_documented_and_every_documented_code_exists() {
    let doc = fs::read_to_string(root().join("docs/validation-codes.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| {
            c.len() == 4
                && matches!(c.as_bytes()[0], b'E' | b'W' | b'F')
                && c[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(String::from)
        .collect();
    let coded: BTreeSet<String> = tally_model::Code::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let undocumented: Vec<&String> = coded.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&coded).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "codes without a line in docs/validation-codes.md: {undocumented:?}; documented codes the program does not have: {unknown:?}"
    );
}

/// The workspace dependencies of each crate (normal dependencies only).
fn workspace_deps(krate: &str) -> BTreeSet<String> {
    let toml = fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps && t.starts_with("tally-") {
            out.insert(t.split([' ', '=', '.']).next().unwrap().to_string());
        }
    }
    out
}

/// ARCHITECTURE.md's "Dependency direction" list is what the Cargo.toml files say, exactly.
#[test]
fn crate_dependencies_go_the_way_architecture_md_says() {
    let doc = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = doc
        .split("## Dependency direction")
        .nth(1)
        .expect("ARCHITECTURE.md has a '## Dependency direction' section");
    let section = section.split("\n## ").next().unwrap();
    let mut stated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("- `tally-")) {
        let names: Vec<String> = line
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.starts_with("tally-"))
            .map(String::from)
            .collect();
        stated.insert(names[0].clone(), names[1..].iter().cloned().collect());
    }
    for krate in crates() {
        let actual = workspace_deps(&krate);
        let said = stated.get(&krate).unwrap_or_else(|| {
            panic!("ARCHITECTURE.md does not state the dependencies of {krate}")
        });
        assert_eq!(
            &actual, said,
            "{krate}: Cargo.toml depends on {actual:?}, ARCHITECTURE.md says {said:?}"
        );
    }
}

/// The modules of one crate that a source file names (`crate::x`, `use super::x` at top level).
fn module_refs(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in code_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                out.insert(name);
            }
        }
        // `use crate::{a, b::c}`
        if let Some(group) = line.trim().strip_prefix("use crate::{") {
            for part in group.split([',', '}']) {
                let name = part.trim().split("::").next().unwrap_or("");
                if modules.contains(name) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// No import circles between the modules of a crate: a module that needs another's types
/// and is needed by it means one concept in two places.
#[test]
fn no_import_circles_between_modules() {
    let mut circles = Vec::new();
    for krate in crates() {
        let src = root().join("crates").join(&krate).join("src");
        let modules: BTreeSet<String> = fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
            .filter(|m| m != "lib" && m != "main")
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &modules {
            let text = fs::read_to_string(src.join(format!("{m}.rs"))).unwrap();
            let product = text.split("#[cfg(test)]").next().unwrap_or("");
            let mut refs = module_refs(product, &modules);
            refs.remove(m);
            edges.insert(m.clone(), refs);
        }
        for (a, outs) in &edges {
            for b in outs {
                if a < b && edges.get(b).is_some_and(|o| o.contains(a)) {
                    circles.push(format!("{krate}: {a} <-> {b}"));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

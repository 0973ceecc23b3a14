//! Names derived from file paths, shared by `tally results` and `tally init` so that the live
//! server and the command line name an election the same way.

/// The election's name when no definition gives one: the file and its folder,
/// "../shared/data/russia2018/r1.csv.gz" -> "russia2018/r1.csv.gz", enough to recognise a file
/// in a title without the reader's directory layout.
pub fn short_name(path: &str) -> String {
    if path == "-" {
        return "stdin".into();
    }
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

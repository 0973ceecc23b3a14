//! The New Zealand 2020 development half (`../shared/data/ei-nz2020-dev`): per electorate, the
//! party and candidate margins of every voting place and the true party x candidate table.

use std::path::{Path, PathBuf};
use tally_transfers::Margins;

pub struct Electorate {
    pub name: String,
    pub margins: Margins,
    /// `truth[party][candidate]`, votes.
    pub truth: Vec<Vec<f64>>,
}

/// The data folder, when present (it is in CI: `../shared` beside the repository).
pub fn dir() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = here.join("../../../shared/data/ei-nz2020-dev");
    d.join("README.md").is_file().then_some(d)
}

/// Splits one CSV line (fields may be quoted, with commas inside).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out
}

fn table(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head = fields(lines.next().unwrap_or_default());
    (head, lines.map(fields).collect())
}

fn count(s: &str) -> u64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {s:?}"))
}

/// Every electorate of the folder, in order.
pub fn load(dir: &Path) -> Vec<Electorate> {
    let mut out = Vec::new();
    for k in 1..=99 {
        let tag = format!("d{k:02}");
        let pf = dir.join(format!("{tag}_parties.csv"));
        if !pf.is_file() {
            continue;
        }
        let (parties, prow) = table(&pf);
        let (cands, crow) = table(&dir.join(format!("{tag}_candidates.csv")));
        let (thead, trows) = table(&dir.join(format!("{tag}_truth_votes.csv")));
        assert_eq!(prow.len(), crow.len(), "{tag}: voting places");
        assert_eq!(trows.len(), parties.len(), "{tag}: truth rows");
        let margins = Margins {
            unit_ids: (0..prow.len()).map(|i| format!("{tag}/{i}")).collect(),
            rows: parties,
            cols: cands,
            row_counts: prow
                .iter()
                .map(|r| r.iter().map(|v| count(v)).collect())
                .collect(),
            col_counts: crow
                .iter()
                .map(|r| r.iter().map(|v| count(v)).collect())
                .collect(),
        };
        let truth = trows
            .iter()
            .map(|r| r[1..].iter().map(|v| count(v) as f64).collect())
            .collect();
        out.push(Electorate {
            name: thead[0].clone(),
            margins,
            truth,
        });
    }
    out
}

/// Misallocated share in percent: `Σ |est − true| / (2 · total)`.
pub fn misallocation(votes: &[Vec<f64>], truth: &[Vec<f64>]) -> f64 {
    let mut err = 0.0;
    let mut tot = 0.0;
    for (er, tr) in votes.iter().zip(truth) {
        for (e, t) in er.iter().zip(tr) {
            err += (e - t).abs();
            tot += t;
        }
    }
    100.0 * err / (2.0 * tot)
}

/// (covered, cells): how many true proportions of the non-empty rows lie in the result's
/// interval (`lower`..`upper`).
#[allow(dead_code)]
pub fn coverage(r: &tally_transfers::TransferResult, truth: &[Vec<f64>]) -> (usize, usize) {
    let (mut covered, mut cells) = (0, 0);
    for (g, row) in truth.iter().enumerate() {
        let rt: f64 = row.iter().sum();
        if rt <= 0.0 {
            continue;
        }
        for (c, &v) in row.iter().enumerate() {
            let p = v / rt;
            cells += 1;
            covered += (r.lower[g][c] - 1e-9 <= p && p <= r.upper[g][c] + 1e-9) as usize;
        }
    }
    (covered, cells)
}

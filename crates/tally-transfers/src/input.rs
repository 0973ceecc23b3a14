//! Input: two margins over the same units, and a helper that builds them from two rounds.

use std::collections::HashMap;
use std::fmt;

/// Two margins over the same units: row totals (e.g. round-1 options incl. "abstained", "invalid") and
/// column totals (round-2 options incl. "abstained", "invalid"). For each unit, sum of rows == sum of cols
/// is required (the caller reconciles different electorates, see [`from_two_rounds`]); a unit violating it
/// is an input error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Margins {
    pub unit_ids: Vec<String>,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `row_counts[u][r]`
    pub row_counts: Vec<Vec<u64>>,
    /// `col_counts[u][c]`
    pub col_counts: Vec<Vec<u64>>,
}

/// Why a [`Margins`] (or a pair of rounds) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// Fewer than two row or two column categories.
    TooFewCategories { rows: usize, cols: usize },
    /// More rows or columns than [`crate::MAX_DIM`].
    TooManyCategories {
        rows: usize,
        cols: usize,
        max: usize,
    },
    /// No unit left (after dropping unmatched stations or empty units).
    NoUnits,
    /// `unit_ids`, `row_counts` and `col_counts` disagree in length.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A unit's row vector or column vector has the wrong number of entries.
    WidthMismatch {
        unit: String,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A unit whose row total differs from its column total.
    Unbalanced {
        unit: String,
        row_total: u64,
        col_total: u64,
    },
    /// A round's station has `cast > registered` or `invalid > cast`, or its candidate votes
    /// do not add up to `cast - invalid`.
    InconsistentStation {
        round: u8,
        station: String,
        reason: String,
    },
    /// The second round does not have exactly two candidates.
    NotARunoff { candidates: usize },
    /// The same station id appears twice in one round.
    DuplicateStation { round: u8, station: String },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::TooFewCategories { rows, cols } => {
                write!(f, "need at least 2 rows and 2 columns, got {rows} x {cols}")
            }
            InputError::TooManyCategories { rows, cols, max } => {
                write!(
                    f,
                    "at most {max} rows and {max} columns are supported, got {rows} x {cols}"
                )
            }
            InputError::NoUnits => write!(f, "no usable unit"),
            InputError::LengthMismatch {
                what,
                expected,
                found,
            } => {
                write!(f, "{what}: expected {expected} entries, found {found}")
            }
            InputError::WidthMismatch {
                unit,
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "unit {unit}: {what} has {found} entries, expected {expected}"
                )
            }
            InputError::Unbalanced {
                unit,
                row_total,
                col_total,
            } => write!(
                f,
                "unit {unit}: row total {row_total} != column total {col_total}"
            ),
            InputError::InconsistentStation {
                round,
                station,
                reason,
            } => {
                write!(f, "round {round}, station {station}: {reason}")
            }
            InputError::NotARunoff { candidates } => {
                write!(
                    f,
                    "round 2 must have exactly 2 candidates, has {candidates}"
                )
            }
            InputError::DuplicateStation { round, station } => {
                write!(f, "round {round}: station {station} appears twice")
            }
        }
    }
}

impl std::error::Error for InputError {}

impl Margins {
    /// Checks shapes and the per-unit balance `sum(rows) == sum(cols)`.
    pub fn validate(&self) -> Result<(), InputError> {
        let (nr, nc) = (self.rows.len(), self.cols.len());
        if nr < 2 || nc < 2 {
            return Err(InputError::TooFewCategories { rows: nr, cols: nc });
        }
        let n = self.unit_ids.len();
        if n == 0 {
            return Err(InputError::NoUnits);
        }
        for (what, len) in [
            ("row_counts", self.row_counts.len()),
            ("col_counts", self.col_counts.len()),
        ] {
            if len != n {
                return Err(InputError::LengthMismatch {
                    what,
                    expected: n,
                    found: len,
                });
            }
        }
        for u in 0..n {
            let unit = || self.unit_ids[u].clone();
            if self.row_counts[u].len() != nr {
                return Err(InputError::WidthMismatch {
                    unit: unit(),
                    what: "row_counts",
                    expected: nr,
                    found: self.row_counts[u].len(),
                });
            }
            if self.col_counts[u].len() != nc {
                return Err(InputError::WidthMismatch {
                    unit: unit(),
                    what: "col_counts",
                    expected: nc,
                    found: self.col_counts[u].len(),
                });
            }
            let rt: u64 = self.row_counts[u].iter().sum();
            let ct: u64 = self.col_counts[u].iter().sum();
            if rt != ct {
                return Err(InputError::Unbalanced {
                    unit: unit(),
                    row_total: rt,
                    col_total: ct,
                });
            }
        }
        Ok(())
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.unit_ids.len()
    }

    /// True when there is no unit.
    pub fn is_empty(&self) -> bool {
        self.unit_ids.is_empty()
    }
}

/// One round's tally sheets, column-oriented: `votes[c][s]` is candidate `c`'s count at station `s`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoundCounts {
    pub station_ids: Vec<String>,
    pub registered: Vec<u64>,
    pub cast: Vec<u64>,
    pub invalid: Vec<u64>,
    pub candidates: Vec<String>,
    /// `votes[c][s]`
    pub votes: Vec<Vec<u64>>,
}

/// Margins built from two rounds, with what was dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoRoundMargins {
    pub margins: Margins,
    pub units_used: usize,
    pub units_dropped: usize,
    /// Station ids present in round 1 only.
    pub only_in_round1: Vec<String>,
    /// Station ids present in round 2 only.
    pub only_in_round2: Vec<String>,
    /// True when a "new voters" row was added (registered grew somewhere).
    pub has_new_voters: bool,
    /// True when an "exit" column was added (registered shrank somewhere).
    pub has_exit: bool,
}

/// Label of the row holding voters registered in round 2 but not in round 1 (per unit growth).
pub const NEW_VOTERS: &str = "new voters";
/// Label of the column holding voters registered in round 1 but not in round 2 (per unit shrink).
pub const EXIT: &str = "exit";
/// Label of the abstention row/column.
pub const ABSTAINED: &str = "abstained";
/// Label of the invalid-ballot row/column.
pub const INVALID: &str = "invalid";

fn check_round(round: u8, rc: &RoundCounts) -> Result<(), InputError> {
    let n = rc.station_ids.len();
    for (what, len) in [
        ("registered", rc.registered.len()),
        ("cast", rc.cast.len()),
        ("invalid", rc.invalid.len()),
    ] {
        if len != n {
            return Err(InputError::LengthMismatch {
                what,
                expected: n,
                found: len,
            });
        }
    }
    if rc.votes.len() != rc.candidates.len() {
        return Err(InputError::LengthMismatch {
            what: "votes (one vector per candidate)",
            expected: rc.candidates.len(),
            found: rc.votes.len(),
        });
    }
    for v in &rc.votes {
        if v.len() != n {
            return Err(InputError::LengthMismatch {
                what: "votes[c]",
                expected: n,
                found: v.len(),
            });
        }
    }
    for s in 0..n {
        let bad = |reason: String| InputError::InconsistentStation {
            round,
            station: rc.station_ids[s].clone(),
            reason,
        };
        if rc.cast[s] > rc.registered[s] {
            return Err(bad(format!(
                "cast {} > registered {}",
                rc.cast[s], rc.registered[s]
            )));
        }
        if rc.invalid[s] > rc.cast[s] {
            return Err(bad(format!(
                "invalid {} > cast {}",
                rc.invalid[s], rc.cast[s]
            )));
        }
        let valid: u64 = rc.votes.iter().map(|v| v[s]).sum();
        if valid != rc.cast[s] - rc.invalid[s] {
            return Err(bad(format!(
                "candidate votes sum to {valid}, cast - invalid = {}",
                rc.cast[s] - rc.invalid[s]
            )));
        }
    }
    Ok(())
}

/// Builds [`Margins`] from two rounds matched by station id.
///
/// Rows: each round-1 candidate, then `"abstained"` (registered − cast), then `"invalid"`.
/// Columns: the two round-2 candidates, then `"abstained"`, then `"invalid"`.
///
/// **Electorate rule.** Per unit let `d = registered₂ − registered₁`. When `d > 0` the row
/// `"new voters"` gets `d` (people who could vote only in round 2), otherwise 0; when `d < 0` the
/// column `"exit"` gets `−d` (people registered in round 1 who could not vote in round 2),
/// otherwise 0. Both sides then total `max(registered₁, registered₂)`, so every unit balances
/// exactly. The extra row/column is added only when some unit needs it.
///
/// Stations present in only one round are dropped and their ids reported; the output is in
/// round-1 order.
pub fn from_two_rounds(
    round1: &RoundCounts,
    round2: &RoundCounts,
) -> Result<TwoRoundMargins, InputError> {
    check_round(1, round1)?;
    check_round(2, round2)?;
    if round2.candidates.len() != 2 {
        return Err(InputError::NotARunoff {
            candidates: round2.candidates.len(),
        });
    }
    let mut idx2: HashMap<&str, usize> = HashMap::with_capacity(round2.station_ids.len());
    for (s, id) in round2.station_ids.iter().enumerate() {
        if idx2.insert(id.as_str(), s).is_some() {
            return Err(InputError::DuplicateStation {
                round: 2,
                station: id.clone(),
            });
        }
    }
    let mut seen1: HashMap<&str, ()> = HashMap::with_capacity(round1.station_ids.len());
    let mut pairs = Vec::new();
    let mut only1 = Vec::new();
    for (s, id) in round1.station_ids.iter().enumerate() {
        if seen1.insert(id.as_str(), ()).is_some() {
            return Err(InputError::DuplicateStation {
                round: 1,
                station: id.clone(),
            });
        }
        match idx2.get(id.as_str()) {
            Some(&t) => pairs.push((s, t)),
            None => only1.push(id.clone()),
        }
    }
    let only2: Vec<String> = round2
        .station_ids
        .iter()
        .filter(|id| !seen1.contains_key(id.as_str()))
        .cloned()
        .collect();
    if pairs.is_empty() {
        return Err(InputError::NoUnits);
    }
    let has_new = pairs
        .iter()
        .any(|&(s, t)| round2.registered[t] > round1.registered[s]);
    let has_exit = pairs
        .iter()
        .any(|&(s, t)| round2.registered[t] < round1.registered[s]);

    let mut rows: Vec<String> = round1.candidates.clone();
    rows.push(ABSTAINED.into());
    rows.push(INVALID.into());
    if has_new {
        rows.push(NEW_VOTERS.into());
    }
    let mut cols: Vec<String> = round2.candidates.clone();
    cols.push(ABSTAINED.into());
    cols.push(INVALID.into());
    if has_exit {
        cols.push(EXIT.into());
    }
    let mut unit_ids = Vec::with_capacity(pairs.len());
    let mut row_counts = Vec::with_capacity(pairs.len());
    let mut col_counts = Vec::with_capacity(pairs.len());
    for &(s, t) in &pairs {
        unit_ids.push(round1.station_ids[s].clone());
        let (reg1, reg2) = (round1.registered[s], round2.registered[t]);
        let mut r: Vec<u64> = round1.votes.iter().map(|v| v[s]).collect();
        r.push(reg1 - round1.cast[s]);
        r.push(round1.invalid[s]);
        if has_new {
            r.push(reg2.saturating_sub(reg1));
        }
        let mut c: Vec<u64> = round2.votes.iter().map(|v| v[t]).collect();
        c.push(reg2 - round2.cast[t]);
        c.push(round2.invalid[t]);
        if has_exit {
            c.push(reg1.saturating_sub(reg2));
        }
        row_counts.push(r);
        col_counts.push(c);
    }
    let margins = Margins {
        unit_ids,
        rows,
        cols,
        row_counts,
        col_counts,
    };
    margins.validate()?;
    Ok(TwoRoundMargins {
        units_used: pairs.len(),
        units_dropped: only1.len() + only2.len(),
        margins,
        only_in_round1: only1,
        only_in_round2: only2,
        has_new_voters: has_new,
        has_exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(
        ids: &[&str],
        reg: &[u64],
        cast: &[u64],
        inv: &[u64],
        cands: &[&str],
        votes: Vec<Vec<u64>>,
    ) -> RoundCounts {
        RoundCounts {
            station_ids: ids.iter().map(|s| s.to_string()).collect(),
            registered: reg.to_vec(),
            cast: cast.to_vec(),
            invalid: inv.to_vec(),
            candidates: cands.iter().map(|s| s.to_string()).collect(),
            votes,
        }
    }

    #[test]
    fn two_rounds_balance_and_drop() {
        let r1 = round(
            &["a", "b", "c"],
            &[100, 50, 10],
            &[80, 40, 5],
            &[2, 0, 0],
            &["X", "Y", "Z"],
            vec![vec![40, 20, 1], vec![30, 10, 2], vec![8, 10, 2]],
        );
        let r2 = round(
            &["b", "a", "d"],
            &[55, 90, 7],
            &[30, 70, 3],
            &[1, 0, 0],
            &["X", "Y"],
            vec![vec![10, 40, 1], vec![19, 30, 2]],
        );
        let m = from_two_rounds(&r1, &r2).unwrap();
        assert_eq!(m.units_used, 2);
        assert_eq!(m.units_dropped, 2);
        assert_eq!(m.only_in_round1, vec!["c".to_string()]);
        assert_eq!(m.only_in_round2, vec!["d".to_string()]);
        assert!(m.has_new_voters && m.has_exit);
        assert_eq!(
            m.margins.rows,
            vec!["X", "Y", "Z", "abstained", "invalid", "new voters"]
        );
        assert_eq!(
            m.margins.cols,
            vec!["X", "Y", "abstained", "invalid", "exit"]
        );
        // unit a: reg 100 -> 90: exit 10; unit b: 50 -> 55: new 5.
        assert_eq!(m.margins.row_counts[0], vec![40, 30, 8, 20, 2, 0]);
        assert_eq!(m.margins.col_counts[0], vec![40, 30, 20, 0, 10]);
        assert_eq!(m.margins.row_counts[1], vec![20, 10, 10, 10, 0, 5]);
        assert_eq!(m.margins.col_counts[1], vec![10, 19, 25, 1, 0]);
        m.margins.validate().unwrap();
    }

    #[test]
    fn unbalanced_unit_is_an_error() {
        let m = Margins {
            unit_ids: vec!["u".into()],
            rows: vec!["a".into(), "b".into()],
            cols: vec!["c".into(), "d".into()],
            row_counts: vec![vec![1, 2]],
            col_counts: vec![vec![1, 1]],
        };
        assert!(matches!(m.validate(), Err(InputError::Unbalanced { .. })));
    }

    #[test]
    fn inconsistent_station_is_reported() {
        let r1 = round(
            &["a"],
            &[10],
            &[11],
            &[0],
            &["X", "Y"],
            vec![vec![5], vec![6]],
        );
        let r2 = round(
            &["a"],
            &[10],
            &[5],
            &[0],
            &["X", "Y"],
            vec![vec![2], vec![3]],
        );
        assert!(matches!(
            from_two_rounds(&r1, &r2),
            Err(InputError::InconsistentStation { round: 1, .. })
        ));
    }
}

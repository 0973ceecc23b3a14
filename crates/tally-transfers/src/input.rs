//! Input: two margins over the same units, and the one place where two rounds of tally sheets
//! become those margins.

use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use tally_model::{match_stations, Code, Round, SheetStatus, MISSING};

/// Two margins over the same units: row totals (e.g. round-1 options incl. "abstained", "invalid") and
/// column totals (round-2 options incl. "abstained", "invalid"). The solvers need sum of rows == sum
/// of cols in each unit: [`from_two_rounds`] reconciles different electorates itself, and
/// [`crate::estimate`] balances other margins by the stated rule of [`Options::balance`](crate::Options)
/// ([`Margins::balanced`]); [`Margins::validate`] still reports an unbalanced unit as an error.
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Fewer than two row or two column categories.
    #[error("need at least 2 rows and 2 columns, got {rows} x {cols}")]
    TooFewCategories { rows: usize, cols: usize },
    /// More rows or columns than [`crate::MAX_DIM`].
    #[error("at most {max} rows and {max} columns are supported, got {rows} x {cols}")]
    TooManyCategories {
        rows: usize,
        cols: usize,
        max: usize,
    },
    /// No unit left (after dropping unmatched stations or empty units).
    #[error("no usable unit")]
    NoUnits,
    /// `unit_ids`, `row_counts` and `col_counts` disagree in length.
    #[error("{what}: expected {expected} entries, found {found}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A unit's row vector or column vector has the wrong number of entries.
    #[error("unit {unit}: {what} has {found} entries, expected {expected}")]
    WidthMismatch {
        unit: String,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A unit whose row total differs from its column total.
    #[error(
        "unit {unit}: row total {row_total} != column total {col_total} (the two margins must \
         balance; `estimate` balances them by a stated rule, net or proportional)"
    )]
    Unbalanced {
        unit: String,
        row_total: u64,
        col_total: u64,
    },
    /// The second round does not have exactly two candidates.
    #[error("round 2 must have exactly 2 candidates, has {candidates}")]
    NotARunoff { candidates: usize },
    /// The same station id appears twice in one round (units are stations: the solver needs
    /// one unit per id; the importer never produces this, a hand-built round can).
    #[error("round {round}: station {station} appears twice")]
    DuplicateStation { round: u8, station: String },
}

impl Margins {
    /// Checks shapes and the per-unit balance `sum(rows) == sum(cols)`.
    pub fn validate(&self) -> Result<(), InputError> {
        self.validate_shape()?;
        for u in 0..self.len() {
            let rt: u64 = self.row_counts[u].iter().sum();
            let ct: u64 = self.col_counts[u].iter().sum();
            if rt != ct {
                return Err(InputError::Unbalanced {
                    unit: self.unit_ids[u].clone(),
                    row_total: rt,
                    col_total: ct,
                });
            }
        }
        Ok(())
    }

    /// Checks shapes only: at least 2 rows and 2 columns, one unit, every vector its width.
    pub fn validate_shape(&self) -> Result<(), InputError> {
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
        }
        Ok(())
    }

    /// The margins made to balance by `rule` (see [`Balance`]), with what the rule did; the
    /// margins themselves (borrowed) and `None` when every unit already balances. Checks shapes
    /// first.
    pub fn balanced(
        &self,
        rule: Balance,
    ) -> Result<(Cow<'_, Margins>, Option<BalanceInfo>), InputError> {
        self.validate_shape()?;
        let totals: Vec<(u64, u64)> = (0..self.len())
            .map(|u| {
                (
                    self.row_counts[u].iter().sum(),
                    self.col_counts[u].iter().sum(),
                )
            })
            .collect();
        let units = totals.iter().filter(|(r, c)| r != c).count();
        if units == 0 {
            return Ok((Cow::Borrowed(self), None));
        }
        let mut m = self.clone();
        let (mut entries, mut exits, mut emptied) = (0u64, 0u64, 0usize);
        match rule {
            Balance::Net => {
                let need_row = totals.iter().any(|(r, c)| c > r);
                let need_col = totals.iter().any(|(r, c)| r > c);
                if need_row {
                    m.rows.push(NET_ENTRIES.into());
                }
                if need_col {
                    m.cols.push(NET_EXITS.into());
                }
                for (u, &(r, c)) in totals.iter().enumerate() {
                    if need_row {
                        m.row_counts[u].push(c.saturating_sub(r));
                    }
                    if need_col {
                        m.col_counts[u].push(r.saturating_sub(c));
                    }
                    entries += c.saturating_sub(r);
                    exits += r.saturating_sub(c);
                }
            }
            Balance::Proportional => {
                for (u, &(r, c)) in totals.iter().enumerate() {
                    if r == c {
                        continue;
                    }
                    let (small, target) = if r < c {
                        (&mut m.row_counts[u], c)
                    } else {
                        (&mut m.col_counts[u], r)
                    };
                    if r.min(c) == 0 {
                        // Nothing to scale: the unit carries no information on one side.
                        m.row_counts[u].iter_mut().for_each(|v| *v = 0);
                        m.col_counts[u].iter_mut().for_each(|v| *v = 0);
                        emptied += 1;
                        continue;
                    }
                    scale_largest_remainder(small, target);
                    if r < c {
                        entries += c - r;
                    } else {
                        exits += r - c;
                    }
                }
            }
        }
        let moved = entries + exits;
        let message = match rule {
            Balance::Net => format!(
                "the two margins differ in {units} unit(s): balanced by the net rule (net entries \
                 and exits): {entries} voter(s) in the row \"{NET_ENTRIES}\" and {exits} in the \
                 column \"{NET_EXITS}\", {moved} in all"
            ),
            Balance::Proportional => {
                let mut msg = format!(
                    "the two margins differ in {units} unit(s): balanced by the proportional rule \
                     (the smaller side of each unit scaled to the larger total, largest-remainder \
                     rounding): {entries} voter(s) added to rows, {exits} to columns, {moved} in all"
                );
                if emptied > 0 {
                    msg.push_str(&format!(
                        "; {emptied} unit(s) with one empty side cannot be scaled and are left out"
                    ));
                }
                msg
            }
        };
        Ok((
            Cow::Owned(m),
            Some(BalanceInfo {
                rule: rule.name().to_string(),
                units,
                voters_moved: moved,
                entries,
                exits,
                units_left_out: emptied,
                message,
            }),
        ))
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

/// Scales `v` (total > 0) to `target` in integers: each entry `v_i * target / total` rounded down,
/// the units still missing given to the largest remainders (ties: first entry first).
fn scale_largest_remainder(v: &mut [u64], target: u64) {
    let total: u128 = v.iter().map(|&x| x as u128).sum();
    let t = target as u128;
    let mut rem: Vec<(u128, usize)> = Vec::with_capacity(v.len());
    let mut sum = 0u128;
    for (i, x) in v.iter_mut().enumerate() {
        let p = *x as u128 * t;
        *x = (p / total) as u64;
        sum += p / total;
        rem.push((p % total, i));
    }
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rem.iter().take((t - sum) as usize) {
        v[i] += 1;
    }
}

/// How margins whose per-unit totals differ are made to balance ([`Margins::balanced`];
/// `Options::balance`, `tally transfers --balance`). Default: [`Balance::Net`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Net entries and exits (lphom's rule): per unit the difference goes to the side that is
    /// short, as an extra row [`NET_ENTRIES`] (more column voters than row voters) or an extra
    /// column [`NET_EXITS`] (more row voters); each is added only when some unit needs it.
    #[default]
    Net,
    /// The smaller side of each unit scaled to the larger total, rounded to integers by largest
    /// remainder; no extra row or column. A unit with one side empty is left out.
    Proportional,
}

impl Balance {
    /// Both rules, in a stable order.
    pub const ALL: [Balance; 2] = [Balance::Net, Balance::Proportional];

    /// Stable name used in output and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balance::Net => "net",
            Balance::Proportional => "proportional",
        }
    }
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Balance::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown balancing rule '{s}': use net or proportional"))
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a balancing rule did (`TransferResult::balance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceInfo {
    /// `net` or `proportional`.
    pub rule: String,
    /// Units whose two margins differed.
    pub units: usize,
    /// Voters the rule added: `entries + exits`.
    pub voters_moved: u64,
    /// Voters added on the row side (net: the row "new/net entries"; proportional: scaled rows).
    pub entries: u64,
    /// Voters added on the column side (net: the column "net exits"; proportional: scaled columns).
    pub exits: u64,
    /// Proportional only: units with one empty side, left out (their counts set to zero).
    pub units_left_out: usize,
    /// What the rule did, for people.
    pub message: String,
}

/// Row added by the net rule: voters in a unit's column margin beyond its row margin.
pub const NET_ENTRIES: &str = "new/net entries";
/// Column added by the net rule: voters in a unit's row margin beyond its column margin.
pub const NET_EXITS: &str = "net exits";

/// Margins built from two rounds, with what was dropped and which input rules applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoRoundMargins {
    pub margins: Margins,
    pub units_used: usize,
    pub units_dropped: usize,
    /// Unit ids (station ids, or area paths) present in round 1 only.
    pub only_in_round1: Vec<String>,
    /// Unit ids present in round 2 only.
    pub only_in_round2: Vec<String>,
    /// True when a "new voters" row was added (registered grew somewhere).
    pub has_new_voters: bool,
    /// True when an "exit" column was added (registered shrank somewhere).
    pub has_exit: bool,
    /// Counted sheets (both rounds, units used) whose electorate is their ballots cast, not
    /// their registered voters: the W206 rule of [`electorate`].
    pub w206_sheets: usize,
    /// Counted sheets (both rounds) left out because registered, cast, invalid or a candidate
    /// count is absent: absent is not zero, and the margins need every one of them.
    pub incomplete_sheets: usize,
}

/// Label of the row holding voters registered in round 2 but not in round 1 (per unit growth).
pub const NEW_VOTERS: &str = "new voters";
/// Label of the column holding voters registered in round 1 but not in round 2 (per unit shrink).
pub const EXIT: &str = "exit";
/// Label of the abstention row/column.
pub const ABSTAINED: &str = "abstained";
/// Label of the invalid-ballot row/column.
pub const INVALID: &str = "invalid";

/// The code of the electorate rule ([`electorate`]).
pub const ELECTORATE_RULE: Code = Code::W206;

/// **Electorate rule (W206).** The electorate of a sheet is `max(registered, cast)`.
///
/// A sheet with more ballots cast than registered voters is accepted by the importer when the
/// excess is within the W206 tolerance (voters added on the day, e.g. with a certificate); it is
/// an error (E104) beyond it and never reaches here. Those voters could vote, so they belong to
/// the electorate, and abstention `electorate − cast` is never negative. [`from_two_rounds`]
/// counts the sheets this changed (`w206_sheets`) and the result reports it.
pub fn electorate(registered: u64, cast: u64) -> u64 {
    registered.max(cast)
}

/// The units of one round: counted sheets summed per unit (one station, or one area of the
/// level); `sums[u * (3 + k) ..]` holds electorate, cast, invalid, then the `k` candidates.
struct Units {
    ids: Vec<String>,
    sums: Vec<u64>,
    /// Sheets of each unit whose electorate came from the W206 rule.
    w206: Vec<usize>,
    incomplete: usize,
}

impl Units {
    /// A new unit with zero sums; returns its index.
    fn push(&mut self, id: String, width: usize) -> usize {
        self.ids.push(id);
        self.sums.resize(self.sums.len() + width, 0);
        self.w206.push(0);
        self.ids.len() - 1
    }
}

fn units(round: &Round, level: Option<u8>) -> Units {
    let s = &round.stations;
    let k = round.candidates.len();
    let width = 3 + k;
    let mut out = Units {
        ids: Vec::new(),
        sums: Vec::new(),
        w206: Vec::new(),
        incomplete: 0,
    };
    // Only areas are merged; a repeated station id stays two units so that the matching
    // reports it instead of adding two sheets together.
    let mut area_unit: HashMap<u32, usize> = HashMap::new();
    for i in 0..round.len() {
        if s.status[i] != SheetStatus::Counted {
            continue;
        }
        let votes = round.votes_of(i);
        if [s.registered[i], s.cast[i], s.invalid[i]].contains(&MISSING) || votes.contains(&MISSING)
        {
            out.incomplete += 1;
            continue;
        }
        let u = match level {
            None => out.push(s.ids[i].to_string(), width),
            Some(depth) => {
                let area = round.tree.ancestor_at(s.area[i], depth);
                match area_unit.get(&area) {
                    Some(&u) => u,
                    None => {
                        let u = out.push(round.tree.path_string(area), width);
                        area_unit.insert(area, u);
                        u
                    }
                }
            }
        };
        let (reg, cast) = (u64::from(s.registered[i]), u64::from(s.cast[i]));
        if electorate(reg, cast) != reg {
            out.w206[u] += 1;
        }
        let sums = &mut out.sums[u * width..(u + 1) * width];
        sums[0] += electorate(reg, cast);
        sums[1] += cast;
        sums[2] += u64::from(s.invalid[i]);
        for (c, &v) in votes.iter().enumerate() {
            sums[3 + c] += u64::from(v);
        }
    }
    out
}

/// Builds [`Margins`] from two rounds of counted sheets, matched by station id
/// ([`tally_model::match_stations`]); with `level` (a depth of the area tree, 1 = first level)
/// the sheets are first summed per area of that level and the areas are matched by path.
///
/// Rows: each round-1 candidate, then `"abstained"` (electorate − cast), then `"invalid"`.
/// Columns: the two round-2 candidates, then `"abstained"`, then `"invalid"`. The electorate of
/// a sheet is [`electorate`] (W206).
///
/// **Electorate rule between rounds.** Per unit let `d = electorate₂ − electorate₁`. When
/// `d > 0` the row `"new voters"` gets `d` (people who could vote only in round 2), otherwise 0;
/// when `d < 0` the column `"exit"` gets `−d` (people registered in round 1 who could not vote in
/// round 2), otherwise 0. Both sides then total `max(electorate₁, electorate₂)`, so every unit
/// balances exactly. The extra row/column is added only when some unit needs it.
///
/// Sheets are taken as the importer validated them (their arithmetic is not checked again);
/// counted sheets with an absent core or candidate count are left out and counted. Units present
/// in only one round are dropped and their ids reported; the output is in round-1 order.
pub fn from_two_rounds(
    round1: &Round,
    round2: &Round,
    level: Option<u8>,
) -> Result<TwoRoundMargins, InputError> {
    if round2.candidates.len() != 2 {
        return Err(InputError::NotARunoff {
            candidates: round2.candidates.len(),
        });
    }
    let (u1, u2) = (units(round1, level), units(round2, level));
    let matched = match_stations(&u1.ids, &u2.ids);
    if let Some(&(side, i)) = matched.repeated.first() {
        let ids = if side == 0 { &u1.ids } else { &u2.ids };
        return Err(InputError::DuplicateStation {
            round: side + 1,
            station: ids[i].clone(),
        });
    }
    let pairs = &matched.pairs;
    if pairs.is_empty() {
        return Err(InputError::NoUnits);
    }
    let (k1, k2) = (round1.candidates.len(), round2.candidates.len());
    let sums1 = |s: usize| &u1.sums[s * (3 + k1)..(s + 1) * (3 + k1)];
    let sums2 = |t: usize| &u2.sums[t * (3 + k2)..(t + 1) * (3 + k2)];
    let has_new = pairs.iter().any(|&(s, t)| sums2(t)[0] > sums1(s)[0]);
    let has_exit = pairs.iter().any(|&(s, t)| sums2(t)[0] < sums1(s)[0]);

    let mut rows: Vec<String> = round1.candidates.iter().map(|c| c.id.clone()).collect();
    rows.push(ABSTAINED.into());
    rows.push(INVALID.into());
    if has_new {
        rows.push(NEW_VOTERS.into());
    }
    let mut cols: Vec<String> = round2.candidates.iter().map(|c| c.id.clone()).collect();
    cols.push(ABSTAINED.into());
    cols.push(INVALID.into());
    if has_exit {
        cols.push(EXIT.into());
    }
    let mut unit_ids = Vec::with_capacity(pairs.len());
    let mut row_counts = Vec::with_capacity(pairs.len());
    let mut col_counts = Vec::with_capacity(pairs.len());
    let mut w206_sheets = 0;
    for &(s, t) in pairs {
        unit_ids.push(u1.ids[s].clone());
        let (a, b) = (sums1(s), sums2(t));
        let (reg1, reg2) = (a[0], b[0]);
        let mut r: Vec<u64> = a[3..].to_vec();
        r.push(reg1 - a[1]);
        r.push(a[2]);
        if has_new {
            r.push(reg2.saturating_sub(reg1));
        }
        let mut c: Vec<u64> = b[3..].to_vec();
        c.push(reg2 - b[1]);
        c.push(b[2]);
        if has_exit {
            c.push(reg1.saturating_sub(reg2));
        }
        row_counts.push(r);
        col_counts.push(c);
        w206_sheets += u1.w206[s] + u2.w206[t];
    }
    let margins = Margins {
        unit_ids,
        rows,
        cols,
        row_counts,
        col_counts,
    };
    margins.validate()?;
    let ids = |units: &Units, idx: &[usize]| -> Vec<String> {
        idx.iter().map(|&i| units.ids[i].to_string()).collect()
    };
    Ok(TwoRoundMargins {
        units_used: pairs.len(),
        units_dropped: matched.only_a.len() + matched.only_b.len(),
        margins,
        only_in_round1: ids(&u1, &matched.only_a),
        only_in_round2: ids(&u2, &matched.only_b),
        has_new_voters: has_new,
        has_exit,
        w206_sheets,
        incomplete_sheets: u1.incomplete + u2.incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_model::{AreaTree, Candidate, StoredCount, ROOT};

    /// A round of counted sheets at the root area; `votes[c][s]`.
    fn round(
        ids: &[&str],
        reg: &[StoredCount],
        cast: &[StoredCount],
        inv: &[StoredCount],
        cands: &[&str],
        votes: Vec<Vec<StoredCount>>,
    ) -> Round {
        let candidates = cands.iter().map(|c| Candidate::new(c)).collect();
        let mut r = Round::new(1, candidates, vec![], AreaTree::new("all", vec![]));
        for s in 0..ids.len() {
            let v: Vec<StoredCount> = votes.iter().map(|vc| vc[s]).collect();
            let core = [reg[s], cast[s], inv[s], cast[s] - inv[s]];
            r.push(ids[s], ROOT, SheetStatus::Counted, 0, core, &v, &[]);
        }
        r
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
        let m = from_two_rounds(&r1, &r2, None).unwrap();
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

    /// Three units: u1 has 3 more row voters (15 against 12), u2 has 4 more column voters
    /// (6 against 10), u3 balances.
    fn unbalanced() -> Margins {
        Margins {
            unit_ids: vec!["u1".into(), "u2".into(), "u3".into()],
            rows: vec!["a".into(), "b".into()],
            cols: vec!["x".into(), "y".into()],
            row_counts: vec![vec![10, 5], vec![3, 3], vec![2, 2]],
            col_counts: vec![vec![8, 4], vec![4, 6], vec![1, 3]],
        }
    }

    #[test]
    fn the_net_rule_adds_entries_and_exits_exactly() {
        let m = unbalanced();
        let (b, info) = m.balanced(Balance::Net).unwrap();
        b.validate().unwrap();
        assert_eq!(b.rows, vec!["a", "b", NET_ENTRIES]);
        assert_eq!(b.cols, vec!["x", "y", NET_EXITS]);
        let entries: Vec<u64> = b.row_counts.iter().map(|r| r[2]).collect();
        let exits: Vec<u64> = b.col_counts.iter().map(|c| c[2]).collect();
        assert_eq!(entries, vec![0, 4, 0]);
        assert_eq!(exits, vec![3, 0, 0]);
        // The original counts are untouched.
        assert_eq!(b.row_counts[0][..2], [10, 5]);
        assert_eq!(b.col_counts[1][..2], [4, 6]);
        let info = info.unwrap();
        assert_eq!(
            (
                info.rule.as_str(),
                info.units,
                info.entries,
                info.exits,
                info.voters_moved
            ),
            ("net", 2, 4, 3, 7)
        );
        assert!(info.message.contains("net rule"));
        // Balanced margins are used as they are, with no rule.
        let ok = Margins {
            unit_ids: vec!["u3".into()],
            rows: m.rows.clone(),
            cols: m.cols.clone(),
            row_counts: vec![vec![2, 2]],
            col_counts: vec![vec![1, 3]],
        };
        let (same, none) = ok.balanced(Balance::Net).unwrap();
        assert!(matches!(same, Cow::Borrowed(_)) && none.is_none());
    }

    #[test]
    fn the_proportional_rule_scales_with_largest_remainders() {
        let mut m = unbalanced();
        // u1: columns 7 + 4 = 11 scaled to 15: 9.55 and 5.45 -> 9 + 5, the 1 left to the larger
        // remainder: 10 + 5.
        m.col_counts[0] = vec![7, 4];
        let (b, info) = m.balanced(Balance::Proportional).unwrap();
        b.validate().unwrap();
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.cols.len(), 2);
        assert_eq!(b.col_counts[0], vec![10, 5]);
        // u2: rows 3 + 3 scaled to 10: 5 + 5.
        assert_eq!(b.row_counts[1], vec![5, 5]);
        let info = info.unwrap();
        assert_eq!((info.entries, info.exits, info.voters_moved), (4, 4, 8));
        assert_eq!("proportional".parse::<Balance>(), Ok(Balance::Proportional));
        assert!("nett"
            .parse::<Balance>()
            .unwrap_err()
            .contains("net or proportional"));
    }

    #[test]
    fn estimate_runs_on_unbalanced_margins_and_says_which_rule() {
        let opts = crate::Options {
            bootstrap: 0,
            ..crate::Options::default()
        };
        let res = crate::estimate(&unbalanced(), &opts).unwrap();
        assert_eq!(res.rows.last().unwrap(), NET_ENTRIES);
        assert_eq!(res.cols.last().unwrap(), NET_EXITS);
        let row_total: f64 = res.votes[2].iter().sum();
        assert!((row_total - 4.0).abs() < 1e-6, "{row_total}");
        let col_total: f64 = res.votes.iter().map(|r| r[2]).sum();
        assert!((col_total - 3.0).abs() < 1e-6, "{col_total}");
        let json = serde_json::to_value(&res).unwrap();
        assert_eq!(json["balance"]["rule"], "net");
        assert_eq!(json["balance"]["voters_moved"], 7);
        assert!(crate::render_text(&res).contains("Balancing rule net"));
    }

    // Was `inconsistent_station_is_reported` (cast > registered was an error here): sheets come
    // validated by the importer, which accepts this one under the W206 tolerance, and the
    // electorate rule now takes the ballots cast as the electorate and counts the sheet.
    #[test]
    fn cast_above_registered_is_the_w206_electorate() {
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
        assert_eq!(electorate(10, 11), 11);
        assert_eq!(electorate(10, 9), 10);
        let m = from_two_rounds(&r1, &r2, None).unwrap();
        assert_eq!(m.w206_sheets, 1);
        assert!(m.has_exit && !m.has_new_voters);
        assert_eq!(m.margins.row_counts[0], vec![5, 6, 0, 0]);
        assert_eq!(m.margins.col_counts[0], vec![2, 3, 5, 0, 1]);
    }

    #[test]
    fn the_w206_count_is_in_the_result_and_its_table() {
        let r1 = round(
            &["a", "b", "c"],
            &[10, 20, 30],
            &[11, 15, 20],
            &[0, 1, 0],
            &["X", "Y"],
            vec![vec![5, 4, 12], vec![6, 10, 8]],
        );
        let r2 = round(
            &["a", "b", "c"],
            &[12, 20, 30],
            &[12, 21, 22],
            &[0, 0, 2],
            &["X", "Y"],
            vec![vec![2, 15, 10], vec![10, 6, 10]],
        );
        let opts = crate::Options {
            bootstrap: 0,
            ..crate::Options::default()
        };
        let res = from_two_rounds(&r1, &r2, None)
            .unwrap()
            .estimate(&opts)
            .unwrap();
        assert_eq!(res.rules_applied.len(), 1);
        assert_eq!(res.rules_applied[0].code, Code::W206);
        // a in round 1, b in round 2 (a in round 2 has exactly its registered voters).
        assert_eq!(res.rules_applied[0].stations, 2);
        let json = serde_json::to_value(&res).unwrap();
        assert_eq!(json["rules_applied"][0]["code"], "W206");
        assert_eq!(json["rules_applied"][0]["stations"], 2);
        assert!(crate::render_text(&res).contains("note: W206 — 2 station sheet(s)"));
    }

    #[test]
    fn a_sheet_that_does_not_add_up_cannot_balance() {
        // Votes 5 + 6 for 8 ballots cast: the importer quarantines such a sheet (E102/E103); if a
        // hand-built round carries one, the unit's margins disagree and the solver refuses it.
        let r1 = round(
            &["a"],
            &[10],
            &[8],
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
            from_two_rounds(&r1, &r2, None),
            Err(InputError::Unbalanced { .. })
        ));
    }

    #[test]
    fn structural_errors() {
        let r1 = round(
            &["a", "a"],
            &[10, 10],
            &[5, 5],
            &[0, 0],
            &["X", "Y"],
            vec![vec![2, 2], vec![3, 3]],
        );
        let r2 = round(
            &["a"],
            &[10],
            &[5],
            &[0],
            &["X", "Y"],
            vec![vec![2], vec![3]],
        );
        assert_eq!(
            from_two_rounds(&r1, &r2, None),
            Err(InputError::DuplicateStation {
                round: 1,
                station: "a".into()
            })
        );
        let three = round(
            &["a"],
            &[10],
            &[5],
            &[0],
            &["X", "Y", "Z"],
            vec![vec![2], vec![3], vec![0]],
        );
        assert_eq!(
            from_two_rounds(&r2, &three, None),
            Err(InputError::NotARunoff { candidates: 3 })
        );
        let other = round(
            &["b"],
            &[10],
            &[5],
            &[0],
            &["X", "Y"],
            vec![vec![2], vec![3]],
        );
        assert_eq!(from_two_rounds(&r2, &other, None), Err(InputError::NoUnits));
        assert_eq!(
            InputError::NotARunoff { candidates: 3 }.to_string(),
            "round 2 must have exactly 2 candidates, has 3"
        );
    }

    #[test]
    fn areas_of_a_level_are_summed_and_matched_by_path() {
        // Two regions; region S has a station in round 1 only, which still counts in S.
        let build = |rows: &[(&str, &str, [StoredCount; 3], [StoredCount; 2])]| {
            let tree = AreaTree::new("all", vec!["region".into(), "town".into()]);
            let mut r = Round::new(
                1,
                vec![Candidate::new("X"), Candidate::new("Y")],
                vec![],
                tree,
            );
            for (id, region, [reg, cast, inv], votes) in rows {
                let leaf = r.tree.leaf([*region, "t"]);
                r.push(
                    id,
                    leaf,
                    SheetStatus::Counted,
                    0,
                    [*reg, *cast, *inv, cast - inv],
                    votes,
                    &[],
                );
            }
            r
        };
        let mut r1 = build(&[
            ("1", "N", [10, 8, 0], [5, 3]),
            ("2", "S", [20, 10, 1], [4, 5]),
            ("3", "S", [5, 5, 0], [5, 0]),
            ("4", "N", [9, 9, 0], [9, 0]),
        ]);
        // Station 4: counted but without its cast (absent, not zero): left out and counted.
        r1.stations.cast[3] = MISSING;
        let r2 = build(&[
            ("2", "S", [25, 20, 0], [10, 10]),
            ("1", "N", [10, 6, 1], [2, 3]),
        ]);
        let m = from_two_rounds(&r1, &r2, Some(1)).unwrap();
        assert_eq!(m.margins.unit_ids, vec!["N", "S"]);
        assert_eq!(m.incomplete_sheets, 1);
        assert_eq!((m.units_used, m.units_dropped), (2, 0));
        assert_eq!(m.margins.row_counts[0], vec![5, 3, 2, 0]);
        assert_eq!(m.margins.col_counts[0], vec![2, 3, 4, 1]);
        assert_eq!(m.margins.row_counts[1], vec![9, 5, 10, 1]);
        assert_eq!(m.margins.col_counts[1], vec![10, 10, 5, 0]);
        // By station, station 3 has no partner.
        let m = from_two_rounds(&r1, &r2, None).unwrap();
        assert_eq!(m.only_in_round1, vec!["3".to_string()]);
    }
}

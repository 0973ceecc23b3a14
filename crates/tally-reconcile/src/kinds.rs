//! The kind of a difference between two copies of one tally sheet: what a typist or a clerk most
//! likely did. Kinds are read from the candidates' numbers, because the totals of a typed sheet
//! usually follow its candidate lines (a typist who misreads 766 as 166 also gets a valid total
//! that is 600 lower, or the sheet fails validation).

use serde::Serialize;
use std::fmt;

/// The kinds of difference, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Zeros in one source where the other has votes.
    Missing,
    /// Two candidates' numbers exchanged.
    Swap,
    /// The numbers moved one column (to the left or to the right).
    Shift,
    /// Two digits of one number exchanged (129 vs 192): the difference is a multiple of 9.
    Transposition,
    /// One digit of one number misread (766 vs 166).
    Digit,
    /// None of the above.
    Other,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Missing,
        Kind::Swap,
        Kind::Shift,
        Kind::Transposition,
        Kind::Digit,
        Kind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Swap => "swap",
            Kind::Shift => "shift",
            Kind::Transposition => "transposition",
            Kind::Digit => "digit",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most specific kind that explains a difference, how sure that reading is (0 to 1), and the
/// other kinds that also fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    pub kind: Kind,
    /// A fixed score per pattern: 1 when only that kind can produce the numbers, lower when the
    /// pattern could arise by chance or when several errors are needed to explain the sheet.
    pub confidence: f64,
    pub also: Vec<Kind>,
}

fn digits(v: u64) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// How one number became another, if it was a single typing slip.
pub fn single_number(a: u64, b: u64) -> Option<Kind> {
    if a == b {
        return None;
    }
    let (da, db) = (digits(a), digits(b));
    if da.len() != db.len() {
        return None;
    }
    let at: Vec<usize> = (0..da.len()).filter(|&i| da[i] != db[i]).collect();
    match at.as_slice() {
        [_] => Some(Kind::Digit),
        [i, j] if da[*i] == db[*j] && da[*j] == db[*i] => Some(Kind::Transposition),
        _ => None,
    }
}

/// True when `b` is `a` moved one column to the right (`b[j] = a[j-1]`) or to the left over the
/// differing range, with at least two numbers carried over, so that a plain swap of two
/// neighbours is not read as a shift.
fn is_shift(a: &[u64], b: &[u64], differing: &[usize]) -> bool {
    if differing.len() < 3 {
        return false;
    }
    let (lo, hi) = (differing[0], differing[differing.len() - 1]);
    let right = (lo + 1..=hi).all(|j| b[j] == a[j - 1]);
    let left = (lo..hi).all(|j| b[j] == a[j + 1]);
    right || left
}

/// Classifies the difference between the candidates' numbers of one sheet in the official
/// source (`a`) and in the other source (`b`). `None` when the numbers are equal.
pub fn classify<T: Copy + Into<u64>>(a: &[T], b: &[T]) -> Option<Classification> {
    let wide = |v: &[T]| -> Vec<u64> { v.iter().map(|&x| x.into()).collect() };
    let (a, b) = (&wide(a)[..], &wide(b)[..]);
    let differing: Vec<usize> = (0..a.len().min(b.len()))
        .filter(|&j| a[j] != b[j])
        .collect();
    if differing.is_empty() {
        return None;
    }
    let (sa, sb): (u64, u64) = (a.iter().sum(), b.iter().sum());
    let mut fits: Vec<(Kind, f64)> = Vec::new();
    if (sa == 0) != (sb == 0) {
        fits.push((Kind::Missing, 1.0));
    }
    if let [i, j] = differing.as_slice() {
        if a[*i] == b[*j] && a[*j] == b[*i] {
            fits.push((Kind::Swap, 0.95));
        }
    }
    if is_shift(a, b, &differing) {
        fits.push((Kind::Shift, 0.95));
    }
    let slips: Vec<Option<Kind>> = differing
        .iter()
        .map(|&j| single_number(a[j], b[j]))
        .collect();
    if slips.iter().all(Option::is_some) {
        // One slip is the usual typing error; every extra slip on the same sheet makes a chance
        // coincidence likelier, so the reading is less sure.
        let sure = if differing.len() == 1 { 0.9 } else { 0.6 };
        // The largest change names the sheet's kind when several slips are needed.
        let biggest = differing
            .iter()
            .zip(&slips)
            .max_by_key(|(&j, _)| a[j].abs_diff(b[j]))
            .and_then(|(_, k)| *k)
            .unwrap_or(Kind::Digit);
        // A one-digit slip in a small number (say 3 vs 8) is also what any other change looks
        // like, so it is less telling than a slip in a large one.
        let small = differing.iter().all(|&j| a[j] < 10 && b[j] < 10);
        fits.push((biggest, if small { sure * 0.6 } else { sure }));
    }
    fits.sort_by_key(|f| f.0);
    fits.dedup_by_key(|f| f.0);
    Some(match fits.first() {
        Some(&(kind, confidence)) => Classification {
            kind,
            confidence,
            also: fits[1..].iter().map(|f| f.0).collect(),
        },
        None => Classification {
            kind: Kind::Other,
            confidence: 1.0,
            also: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(a: &[u64], b: &[u64]) -> Kind {
        classify(a, b).unwrap().kind
    }

    #[test]
    fn each_kind_is_recognised() {
        assert_eq!(kind(&[129, 50, 7], &[192, 50, 7]), Kind::Transposition);
        assert_eq!(kind(&[766, 50, 7], &[166, 50, 7]), Kind::Digit);
        assert_eq!(kind(&[300, 150, 7], &[150, 300, 7]), Kind::Swap);
        assert_eq!(kind(&[300, 150, 70, 9], &[0, 300, 150, 70]), Kind::Shift);
        assert_eq!(kind(&[300, 150, 70, 9], &[150, 70, 9, 0]), Kind::Shift);
        assert_eq!(kind(&[300, 150, 7], &[0, 0, 0]), Kind::Missing);
        assert_eq!(kind(&[0, 0, 0], &[300, 150, 7]), Kind::Missing);
        assert_eq!(kind(&[300, 150, 7], &[317, 150, 7]), Kind::Other);
        // 150 vs 149 changes two digits: two candidates moved by one vote is no known slip.
        assert_eq!(kind(&[300, 150, 7], &[301, 149, 7]), Kind::Other);
        assert!(classify::<u64>(&[1, 2], &[1, 2]).is_none());
    }

    #[test]
    fn a_transposition_is_a_multiple_of_nine() {
        for (a, b) in [(129u64, 192u64), (4051, 4501), (70, 7)] {
            if single_number(a, b) == Some(Kind::Transposition) {
                assert_eq!(a.abs_diff(b) % 9, 0, "{a} {b}");
            }
        }
        // 70 vs 7 changes the number of digits: not a slip of one digit.
        assert_eq!(single_number(70, 7), None);
        assert_eq!(single_number(4051, 4501), Some(Kind::Transposition));
    }

    #[test]
    fn confidence_drops_with_more_slips_and_small_numbers() {
        let one = classify::<u64>(&[766, 50], &[166, 50]).unwrap();
        let two = classify::<u64>(&[766, 58], &[166, 50]).unwrap();
        let small = classify::<u64>(&[3, 50], &[8, 50]).unwrap();
        assert!(one.confidence > two.confidence);
        assert!(one.confidence > small.confidence);
        assert_eq!(two.kind, Kind::Digit);
    }

    #[test]
    fn several_kinds_may_fit_and_the_most_specific_wins() {
        // 12 and 21 exchanged between two candidates is a swap, and each number is also a
        // transposition of the other.
        let c = classify::<u64>(&[12, 21, 5], &[21, 12, 5]).unwrap();
        assert_eq!(c.kind, Kind::Swap);
        assert_eq!(c.also, vec![Kind::Transposition]);
    }
}

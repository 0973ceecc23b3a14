//! Matching the stations of two rounds, or of two sources of one round, by station id.
//!
//! One function for every comparison Tally makes between two station lists: the results
//! report's round-1/round-2 matching (with W205), the transfers between rounds, and the
//! reconciliation of two sources. Ids are compared exactly as stored.

use crate::station_ids::IdList;
use ahash::{AHashMap as HashMap, AHashSet as HashSet};

/// How the stations of `a` and `b` correspond.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StationMatch {
    /// `(index in a, index in b)` for every id present in both, in `a`'s order.
    pub pairs: Vec<(usize, usize)>,
    /// Indices into `a` of ids absent from `b`, in `a`'s order.
    pub only_a: Vec<usize>,
    /// Indices into `b` of ids absent from `a`, in `b`'s order.
    pub only_b: Vec<usize>,
    /// Ids that occur more than once in `a` (side 0) or in `b` (side 1): `(side, index)` of each
    /// repeat after the first. Only the first occurrence takes part in `pairs`.
    pub repeated: Vec<(u8, usize)>,
}

impl StationMatch {
    /// True when every station of each side has exactly one partner.
    pub fn is_complete(&self) -> bool {
        self.only_a.is_empty() && self.only_b.is_empty() && self.repeated.is_empty()
    }
}

/// Matches two station-id lists. Runs in O(n) with one hash map over `b`.
pub fn match_stations<A, B>(a: &A, b: &B) -> StationMatch
where
    A: IdList + ?Sized,
    B: IdList + ?Sized,
{
    let mut m = StationMatch::default();
    let (na, nb) = (a.count(), b.count());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(nb);
    for j in 0..nb {
        if index.insert(b.id(j), j).is_some() {
            m.repeated.push((1, j));
        }
    }
    // The first occurrence in b is the partner; re-insert those that a later repeat displaced.
    if !m.repeated.is_empty() {
        for j in (0..nb).rev() {
            index.insert(b.id(j), j);
        }
    }
    // A repeat in a is an id whose partner is already taken, or an unmatched id seen before:
    // only the unmatched ids need a set of their own.
    let mut taken = vec![false; nb];
    let mut unmatched: HashSet<&str> = HashSet::new();
    for i in 0..na {
        let id = a.id(i);
        match index.get(id) {
            Some(&j) if taken[j] => m.repeated.push((0, i)),
            Some(&j) => {
                taken[j] = true;
                m.pairs.push((i, j));
            }
            None if !unmatched.insert(id) => m.repeated.push((0, i)),
            None => m.only_a.push(i),
        }
    }
    let repeated_b: std::collections::HashSet<usize> = m
        .repeated
        .iter()
        .filter(|(side, _)| *side == 1)
        .map(|&(_, j)| j)
        .collect();
    m.only_b = (0..nb)
        .filter(|j| !taken[*j] && !repeated_b.contains(j))
        .collect();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_one_sided_stations() {
        let a = ["1", "2", "3"];
        let b = ["3", "4", "1"];
        let m = match_stations(&a, &b);
        assert_eq!(m.pairs, vec![(0, 2), (2, 0)]);
        assert_eq!(m.only_a, vec![1]);
        assert_eq!(m.only_b, vec![1]);
        assert!(m.repeated.is_empty());
        assert!(!m.is_complete());
    }

    #[test]
    fn repeats_are_reported_and_the_first_occurrence_pairs() {
        let a = vec!["x".to_string(), "y".into(), "x".into()];
        let b = vec!["y".to_string(), "x".into(), "y".into()];
        let m = match_stations(&a, &b);
        assert_eq!(m.pairs, vec![(0, 1), (1, 0)]);
        assert_eq!(m.repeated, vec![(1, 2), (0, 2)]);
        assert!(m.only_a.is_empty());
        assert!(m.only_b.is_empty());
    }

    #[test]
    fn ids_are_compared_exactly() {
        let m = match_stations(&["A1"], &["a1"]);
        assert!(m.pairs.is_empty());
        assert_eq!((m.only_a.len(), m.only_b.len()), (1, 1));
    }
}

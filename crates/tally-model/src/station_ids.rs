//! The station-id column: every id of a round in one text buffer with their end offsets.
//!
//! One `String` per station cost a heap allocation and about 40 bytes each: at a million
//! stations, an eighth of the import's time in the allocator and tens of megabytes. Ids are
//! read far more often than written, always as `&str`.

use std::ops::Index;

/// Station ids in one buffer; `ids[i]` is the `i`-th id as a `&str`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StationIds {
    text: String,
    /// End of each id in `text` (the start is the previous end).
    ends: Vec<usize>,
}

impl StationIds {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `ids` ids of `bytes` bytes in all.
    pub fn with_capacity(ids: usize, bytes: usize) -> Self {
        StationIds {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(ids),
        }
    }

    /// [`StationIds::with_capacity`] with the room for the ends written once now, so that its
    /// pages are faulted in by this thread rather than by whoever adds the ids: the import does
    /// it on a core that would otherwise wait for the file's layout. (The text's room is a
    /// guess at the ids' length, so it is left to be touched as it fills: touching the ends
    /// alone gained as much.)
    pub fn with_touched_capacity(ids: usize, bytes: usize) -> Self {
        let text = String::with_capacity(bytes);
        let mut ends = vec![usize::MAX; ids];
        ends.clear();
        StationIds { text, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of id text in all.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    #[inline]
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            ids: self,
            front: 0,
            back: self.len(),
        }
    }

    /// Adds every id of `other` (consumed, so its memory goes) to the end of this column.
    pub fn append(&mut self, other: StationIds) {
        self.extend_from(&other);
    }

    /// Adds a copy of every id of `other` to the end of this column.
    pub fn extend_from(&mut self, other: &StationIds) {
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    /// Keeps the first `n` ids.
    pub fn truncate(&mut self, n: usize) {
        self.ends.truncate(n);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// Keeps the ids whose `keep` entry is true, in order.
    pub fn retain_by(&mut self, keep: &[bool]) {
        let mut out = StationIds::with_capacity(self.len(), self.text.len());
        for (i, id) in self.iter().enumerate() {
            if keep[i] {
                out.push(id);
            }
        }
        *self = out;
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl Index<usize> for StationIds {
    type Output = str;

    #[inline]
    fn index(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl std::fmt::Debug for StationIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for StationIds {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut ids = StationIds::new();
        for id in iter {
            ids.push(id.as_ref());
        }
        ids
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for StationIds {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl<'a> IntoIterator for &'a StationIds {
    type Item = &'a str;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The ids in order, as `&str`.
#[derive(Clone)]
pub struct Iter<'a> {
    ids: &'a StationIds,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        Some(&self.ids[self.front - 1])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> DoubleEndedIterator for Iter<'a> {
    fn next_back(&mut self) -> Option<&'a str> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(&self.ids[self.back])
    }
}

/// A list of station ids, as the matching function reads it.
pub trait IdList {
    fn count(&self) -> usize;
    fn id(&self, i: usize) -> &str;
}

impl IdList for StationIds {
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn id(&self, i: usize) -> &str {
        &self[i]
    }
}

impl<T: AsRef<str>> IdList for [T] {
    fn count(&self) -> usize {
        self.len()
    }
    fn id(&self, i: usize) -> &str {
        self[i].as_ref()
    }
}

impl<T: AsRef<str>, const N: usize> IdList for [T; N] {
    fn count(&self) -> usize {
        N
    }
    fn id(&self, i: usize) -> &str {
        self[i].as_ref()
    }
}

impl<T: AsRef<str>> IdList for Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
    fn id(&self, i: usize) -> &str {
        self[i].as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_room_starts_empty() {
        let mut a = StationIds::with_touched_capacity(1000, 8000);
        assert!(a.is_empty());
        assert_eq!(a.text_len(), 0);
        a.push("S1");
        assert_eq!(&a[0], "S1");
    }

    #[test]
    fn ids_round_trip_through_the_buffer() {
        let mut a: StationIds = ["S1", "", "Çankaya-12"].iter().collect();
        assert_eq!(a.len(), 3);
        assert_eq!(&a[0], "S1");
        assert_eq!(&a[1], "");
        assert_eq!(a.get(2), Some("Çankaya-12"));
        assert_eq!(a.get(3), None);
        let b: StationIds = ["x", "yz"].iter().collect();
        a.append(b);
        assert_eq!(a, vec!["S1", "", "Çankaya-12", "x", "yz"]);
        assert_eq!(
            a.iter().rev().collect::<Vec<_>>(),
            ["yz", "x", "Çankaya-12", "", "S1"]
        );
        a.retain_by(&[true, false, true, false, true]);
        assert_eq!(a, vec!["S1", "Çankaya-12", "yz"]);
        assert_eq!(format!("{a:?}"), r#"["S1", "Çankaya-12", "yz"]"#);
        a.truncate(2);
        assert_eq!(a, vec!["S1", "Çankaya-12"]);
        assert_eq!(a.text_len(), "S1Çankaya-12".len());
        let c: StationIds = ["z"].iter().collect();
        a.extend_from(&c);
        assert_eq!(a, vec!["S1", "Çankaya-12", "z"]);
        a.truncate(0);
        assert!(a.is_empty() && a.text_len() == 0);
    }
}

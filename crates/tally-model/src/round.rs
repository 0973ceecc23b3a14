//! One round of an election in columnar form: what the importer produces and counting reads.
//!
//! Columnar because the hot paths (counting a million stations, forensics, transfers) read one
//! field of every station; a sheet is a row view over the columns ([`Round::sheet`]).

use crate::area::{AreaId, AreaTree};
use crate::station_ids::StationIds;
use serde::Serialize;

/// One count as the station table stores it. 32 bits because a station's count (or even a
/// country's) stays far below 4 billion, and the columns are most of an import's memory: a
/// million stations with 8 candidates fill 48 MB instead of 96 MB. Sums are `u64`.
pub type StoredCount = u32;

/// Marks an absent count (an empty cell: "not in the source"). Never a real count: the importer
/// rejects counts this large with E101.
pub const MISSING: StoredCount = StoredCount::MAX;

/// The largest count accepted as a vote count (anything above is E101): the largest stored
/// count below [`MISSING`], 4,294,967,294.
pub const MAX_COUNT: u64 = MISSING as u64 - 1;

/// A derived count (a sum, a synthetic number) as a stored count, held at [`MAX_COUNT`]. Counts
/// read from a source are never passed through this: above `MAX_COUNT` they are E101.
pub fn saturate(v: u64) -> StoredCount {
    v.min(MAX_COUNT) as StoredCount
}

/// A count that passed the E101 check (at most [`MAX_COUNT`]), or [`MISSING`] for `None`.
pub fn stored(v: Option<u64>) -> StoredCount {
    v.map_or(MISSING, saturate)
}

/// The sum of stored counts, exact (as `u64`); absent counts must have been excluded.
pub fn sum_counts(v: &[StoredCount]) -> u64 {
    v.iter().map(|&x| u64::from(x)).sum()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
}

impl Candidate {
    pub fn new(id: &str) -> Self {
        Candidate {
            id: id.to_string(),
            name: id.to_string(),
            colour: None,
        }
    }
}

/// Where a sheet comes from. Official and observer sheets are never merged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Official,
    Observer(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SheetStatus {
    /// Accepted and counted.
    Counted,
    /// Known station without a result (every count empty).
    Missing,
    /// Declared void by the source: never counted.
    Annulled,
    /// The station did not open (the source says so): never counted.
    #[serde(rename = "not_installed")]
    NotInstalled,
    /// Held back by a validation error; see the quarantine report.
    Quarantined,
}

/// One tally sheet's core counts, `None` where the source has no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheetCounts<'a> {
    pub registered: Option<u64>,
    pub cast: Option<u64>,
    pub invalid: Option<u64>,
    pub valid: Option<u64>,
    pub votes: &'a [StoredCount],
}

/// Stations of one round; every `Vec` has one entry per station (`votes` and `extra` are
/// row-major with `candidates.len()` and `extra_lines.len()` entries per station).
#[derive(Clone, Debug, Default)]
pub struct Stations {
    pub ids: StationIds,
    pub area: Vec<AreaId>,
    pub status: Vec<SheetStatus>,
    /// 1-based line of the sheet in its source file (0 when not from a file); 32 bits like the
    /// counts, held at `u32::MAX` past four billion lines.
    pub line: Vec<u32>,
    pub registered: Vec<StoredCount>,
    pub cast: Vec<StoredCount>,
    pub invalid: Vec<StoredCount>,
    pub valid: Vec<StoredCount>,
    pub votes: Vec<StoredCount>,
    pub extra: Vec<StoredCount>,
}

#[derive(Clone, Debug)]
pub struct Round {
    /// 1 for the first round, 2 for the runoff.
    pub number: u8,
    pub candidates: Vec<Candidate>,
    /// Optional count lines beside the core ones (blank, null, postal, ballots issued...).
    pub extra_lines: Vec<String>,
    pub tree: AreaTree,
    pub stations: Stations,
}

fn opt(v: StoredCount) -> Option<u64> {
    (v != MISSING).then_some(u64::from(v))
}

impl Round {
    pub fn new(
        number: u8,
        candidates: Vec<Candidate>,
        extra_lines: Vec<String>,
        tree: AreaTree,
    ) -> Self {
        Round {
            number,
            candidates,
            extra_lines,
            tree,
            stations: Stations::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.stations.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stations.ids.is_empty()
    }

    pub fn votes_of(&self, station: usize) -> &[StoredCount] {
        let k = self.candidates.len();
        &self.stations.votes[station * k..(station + 1) * k]
    }

    pub fn extra_of(&self, station: usize) -> &[StoredCount] {
        let e = self.extra_lines.len();
        &self.stations.extra[station * e..(station + 1) * e]
    }

    pub fn sheet(&self, station: usize) -> SheetCounts<'_> {
        let s = &self.stations;
        SheetCounts {
            registered: opt(s.registered[station]),
            cast: opt(s.cast[station]),
            invalid: opt(s.invalid[station]),
            valid: opt(s.valid[station]),
            votes: self.votes_of(station),
        }
    }

    /// Appends a station; `votes` must have one entry per candidate, `extra` one per extra line.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: &str,
        area: AreaId,
        status: SheetStatus,
        line: u64,
        core: [StoredCount; 4],
        votes: &[StoredCount],
        extra: &[StoredCount],
    ) {
        debug_assert_eq!(votes.len(), self.candidates.len());
        debug_assert_eq!(extra.len(), self.extra_lines.len());
        let s = &mut self.stations;
        s.ids.push(id);
        s.area.push(area);
        s.status.push(status);
        s.line.push(u32::try_from(line).unwrap_or(u32::MAX));
        s.registered.push(core[0]);
        s.cast.push(core[1]);
        s.invalid.push(core[2]);
        s.valid.push(core[3]);
        s.votes.extend_from_slice(votes);
        s.extra.extend_from_slice(extra);
    }

    /// Keeps the stations whose `keep` entry is true, in order.
    pub fn retain_stations(&mut self, keep: &[bool]) {
        let k = self.candidates.len();
        let e = self.extra_lines.len();
        let s = &mut self.stations;
        fn filter<T: Clone>(v: &mut Vec<T>, keep: &[bool], width: usize) {
            let mut out = Vec::with_capacity(v.len());
            for (i, chunk) in v.chunks(width.max(1)).enumerate() {
                if keep[i] {
                    out.extend_from_slice(chunk);
                }
            }
            *v = out;
        }
        s.ids.retain_by(keep);
        filter(&mut s.area, keep, 1);
        filter(&mut s.status, keep, 1);
        filter(&mut s.line, keep, 1);
        filter(&mut s.registered, keep, 1);
        filter(&mut s.cast, keep, 1);
        filter(&mut s.invalid, keep, 1);
        filter(&mut s.valid, keep, 1);
        if k > 0 {
            filter(&mut s.votes, keep, k);
        }
        if e > 0 {
            filter(&mut s.extra, keep, e);
        }
    }

    /// Marks a station quarantined: its counts no longer count (absent, not zero); registered
    /// stays as the progress base of a known station.
    pub fn quarantine_station(&mut self, i: usize) {
        let k = self.candidates.len();
        let e = self.extra_lines.len();
        let s = &mut self.stations;
        s.status[i] = SheetStatus::Quarantined;
        s.cast[i] = MISSING;
        s.invalid[i] = MISSING;
        s.valid[i] = MISSING;
        s.votes[i * k..(i + 1) * k]
            .iter_mut()
            .for_each(|v| *v = MISSING);
        s.extra[i * e..(i + 1) * e]
            .iter_mut()
            .for_each(|v| *v = MISSING);
    }

    pub fn candidate_index(&self, id: &str) -> Option<usize> {
        self.candidates
            .iter()
            .position(|c| c.id.eq_ignore_ascii_case(id))
    }
}

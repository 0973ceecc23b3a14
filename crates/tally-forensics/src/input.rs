//! What the forensics reads of a [`tally_model::Round`]: which stations, grouped how, and why a
//! round cannot be analysed.
//!
//! The round itself is the input (one description of a round in the whole workspace); this module
//! only decides which of its stations are usable and caches their indices and groups.

use tally_model::{AreaId, Round, SheetStatus, StoredCount, MAX_COUNT, MISSING};

/// Why a round cannot be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A column of the station table has a different length from `stations.ids`.
    #[error("column `{column}` of the station table has {found} values but there are {expected} stations")]
    LengthMismatch {
        column: &'static str,
        expected: usize,
        found: usize,
    },
    /// `stations.votes` is not `candidates` entries per station.
    #[error("column `votes` has {found} values but {stations} stations x {candidates} candidates need {}", stations * candidates)]
    VotesLength {
        stations: usize,
        candidates: usize,
        found: usize,
    },
    /// A station hangs under an area that is not in the area tree.
    #[error("station `{station}` is in area #{area}, but the area tree has only {nodes} nodes")]
    AreaOutOfRange {
        station: String,
        area: AreaId,
        nodes: usize,
    },
    /// A count of a used station is absent or larger than any real count (the importer rejects
    /// such counts; a hand-built round may not).
    #[error("station `{station}`: {column} is {}", if *value == MISSING { "absent".to_string() } else { format!("{value}, above the largest accepted count ({MAX_COUNT})") })]
    BadCount {
        station: String,
        column: String,
        value: StoredCount,
    },
    /// The round has no candidates.
    #[error("the round has no candidates")]
    NoCandidates,
    /// The leader index in the options is not a candidate.
    #[error("leader index {leader}, but the round has only {candidates} candidates")]
    LeaderOutOfRange { leader: usize, candidates: usize },
    /// The group level in the options is deeper than the area tree.
    #[error("group level {depth}, but the area tree has only {levels} levels")]
    LevelOutOfRange { depth: u8, levels: usize },
    /// No counted station gives registered, cast and valid.
    #[error("forensics needs registered, cast and valid counts per station; none of the {counted} counted stations has all three (e.g. observer transcriptions without registered voters)")]
    NoUsableStations { counted: usize },
}

/// Which stations of a round the forensics uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StationSelection {
    /// Stations in the round, whatever their status.
    pub stations: usize,
    /// Stations with a counted sheet ([`SheetStatus::Counted`]).
    pub counted: usize,
    /// Counted stations that give registered, cast and valid: the input of every analysis.
    pub usable: usize,
    /// Counted stations left out because registered, cast or valid is absent.
    pub left_out: usize,
}

/// Counts which stations of `round` are analysed (the same rule as [`crate::try_analyse`]).
pub fn station_selection(round: &Round) -> StationSelection {
    let s = &round.stations;
    let mut sel = StationSelection {
        stations: round.len(),
        ..StationSelection::default()
    };
    for i in 0..s.status.len().min(round.len()) {
        if s.status[i] != SheetStatus::Counted {
            continue;
        }
        sel.counted += 1;
        if is_usable(round, i) {
            sel.usable += 1;
        } else {
            sel.left_out += 1;
        }
    }
    sel
}

/// A counted station is usable when its three core counts are present; absent is not zero, so a
/// station without them is left out rather than read as zero.
fn is_usable(round: &Round, i: usize) -> bool {
    let s = &round.stations;
    ![s.registered[i], s.cast[i], s.valid[i]].contains(&MISSING)
}

/// The usable stations of a round, checked: indices into the round's station table, and their
/// group when a group level is asked for.
pub(crate) struct Usable {
    /// Round indices of the usable stations, in round order.
    pub index: Vec<usize>,
    /// Group index per station of the round (meaningful at the usable ones, so lookups by round
    /// index stay O(1)) and group names, groups numbered in order of first appearance.
    pub groups: Option<(Vec<u32>, Vec<String>)>,
}

/// Checks the shape of `round` and selects its usable stations.
pub(crate) fn usable(round: &Round, group_level: Option<u8>) -> Result<Usable, InputError> {
    let s = &round.stations;
    let n = s.ids.len();
    let k = round.candidates.len();
    let check = |column: &'static str, found: usize| {
        if found == n {
            Ok(())
        } else {
            Err(InputError::LengthMismatch {
                column,
                expected: n,
                found,
            })
        }
    };
    check("area", s.area.len())?;
    check("status", s.status.len())?;
    check("registered", s.registered.len())?;
    check("cast", s.cast.len())?;
    check("valid", s.valid.len())?;
    if k == 0 {
        return Err(InputError::NoCandidates);
    }
    if s.votes.len() != n * k {
        return Err(InputError::VotesLength {
            stations: n,
            candidates: k,
            found: s.votes.len(),
        });
    }
    if let Some(depth) = group_level {
        if depth as usize > round.tree.levels.len() {
            return Err(InputError::LevelOutOfRange {
                depth,
                levels: round.tree.levels.len(),
            });
        }
    }
    let nodes = round.tree.nodes.len();
    let mut index = Vec::new();
    let mut counted = 0;
    for i in 0..n {
        if s.status[i] != SheetStatus::Counted {
            continue;
        }
        counted += 1;
        if !is_usable(round, i) {
            continue;
        }
        // A stored count past MAX_COUNT is MISSING: a used station needs every core count and
        // vote; the importer never produces this, so it can only come from a hand-built round.
        let bad = |column: String, value: StoredCount| InputError::BadCount {
            station: s.ids[i].to_string(),
            column,
            value,
        };
        for (name, v) in [
            ("registered", s.registered[i]),
            ("cast", s.cast[i]),
            ("valid", s.valid[i]),
        ] {
            if u64::from(v) > MAX_COUNT {
                return Err(bad(name.to_string(), v));
            }
        }
        if let Some((c, &v)) = round
            .votes_of(i)
            .iter()
            .enumerate()
            .find(|(_, &v)| u64::from(v) > MAX_COUNT)
        {
            return Err(bad(format!("votes of `{}`", round.candidates[c].id), v));
        }
        if group_level.is_some() && s.area[i] as usize >= nodes {
            return Err(InputError::AreaOutOfRange {
                station: s.ids[i].to_string(),
                area: s.area[i],
                nodes,
            });
        }
        index.push(i);
    }
    if index.is_empty() {
        return Err(InputError::NoUsableStations { counted });
    }
    let groups = group_level.map(|depth| {
        let mut of = vec![0u32; n];
        let mut lookup = std::collections::HashMap::new();
        let mut names = Vec::new();
        for &i in &index {
            let area = round.tree.ancestor_at(s.area[i], depth);
            let g = *lookup.entry(area).or_insert_with(|| {
                names.push(round.tree.path_string(area));
                names.len() as u32 - 1
            });
            of[i] = g;
        }
        (of, names)
    });
    Ok(Usable { index, groups })
}

/// Index of the candidate with the most votes over `stations` (the first one on ties).
pub(crate) fn most_votes(round: &Round, stations: &[usize]) -> usize {
    let k = round.candidates.len();
    let mut totals = vec![0u64; k];
    for &i in stations {
        for (t, v) in totals.iter_mut().zip(round.votes_of(i)) {
            *t += u64::from(*v);
        }
    }
    let mut best = 0usize;
    for (c, &t) in totals.iter().enumerate() {
        if t > totals[best] {
            best = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_model::{AreaTree, Candidate};

    fn round() -> Round {
        let mut r = Round::new(
            1,
            vec![Candidate::new("a"), Candidate::new("b")],
            Vec::new(),
            AreaTree::new("All", vec!["region".into(), "district".into()]),
        );
        let mut push =
            |id: &str, path: [&str; 2], status, core: [StoredCount; 4], votes: [StoredCount; 2]| {
                let area = r.tree.leaf(path);
                r.push(id, area, status, 0, core, &votes, &[]);
            };
        use SheetStatus::*;
        push("s1", ["R2", "D1"], Counted, [100, 60, 0, 60], [40, 20]);
        push("s2", ["R1", "D2"], Counted, [100, MISSING, 0, 50], [30, 20]);
        push(
            "s3",
            ["R1", "D3"],
            Missing,
            [100, MISSING, MISSING, MISSING],
            [0, 0],
        );
        push("s4", ["R1", "D3"], Counted, [0, 0, 0, 0], [0, 0]);
        push(
            "s5",
            ["R2", "D1"],
            Quarantined,
            [100, MISSING, MISSING, MISSING],
            [0, 0],
        );
        r
    }

    /// Only counted stations with registered, cast and valid are read; groups are numbered in
    /// order of first appearance among them and named by their path.
    #[test]
    fn selects_counted_stations_with_core_counts() {
        let r = round();
        assert_eq!(
            station_selection(&r),
            StationSelection {
                stations: 5,
                counted: 3,
                usable: 2,
                left_out: 1
            }
        );
        let u = usable(&r, Some(2)).unwrap();
        assert_eq!(u.index, vec![0, 3]);
        let (of, names) = u.groups.unwrap();
        assert_eq!((of[0], of[3]), (0, 1));
        assert_eq!(names, vec!["R2/D1".to_string(), "R1/D3".to_string()]);
        assert_eq!(most_votes(&r, &u.index), 0);
    }

    /// Errors name what is wrong and where.
    #[test]
    fn errors_say_what_and_where() {
        let mut r = round();
        let e = usable(&r, Some(3)).err().unwrap();
        assert_eq!(
            e.to_string(),
            "group level 3, but the area tree has only 2 levels"
        );
        r.stations.votes[1] = MISSING;
        let e = usable(&r, None).err().unwrap();
        assert!(
            e.to_string().starts_with("station `s1`: votes of `b` is "),
            "{e}"
        );
        r.stations.cast.pop();
        let e = usable(&r, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            "column `cast` of the station table has 4 values but there are 5 stations"
        );
        let mut none = round();
        none.stations.status = vec![SheetStatus::Missing; 5];
        let e = usable(&none, None).err().unwrap();
        assert!(
            e.to_string().contains("needs registered, cast and valid"),
            "{e}"
        );
    }
}

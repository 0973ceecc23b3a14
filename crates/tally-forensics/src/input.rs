//! The input of the forensics: station-level counts of one round, columnar.

use std::fmt;

/// Station-level counts of one round, columnar. Only stations with a counted sheet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StationCounts {
    pub station_ids: Vec<String>,
    pub registered: Vec<u64>, // eligible voters
    pub cast: Vec<u64>,       // ballots cast (turnout numerator)
    pub valid: Vec<u64>,
    pub candidates: Vec<String>, // candidate ids
    pub votes: Vec<Vec<u64>>,    // votes[c][s] for candidate c at station s
    /// Optional grouping for per-area reports and neighbour comparisons: group index per station and group names.
    pub groups: Option<(Vec<u32>, Vec<String>)>,
}

/// Why a [`StationCounts`] cannot be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// A column has a different length from `station_ids`.
    LengthMismatch {
        column: String,
        expected: usize,
        found: usize,
    },
    /// `votes` has a different number of rows from `candidates`.
    CandidateMismatch { candidates: usize, vote_rows: usize },
    /// A group index points past the list of group names.
    GroupOutOfRange { station: usize, group: u32 },
    /// No candidates.
    NoCandidates,
    /// The leader index in the options is not a candidate.
    LeaderOutOfRange { leader: usize, candidates: usize },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::LengthMismatch {
                column,
                expected,
                found,
            } => write!(
                f,
                "column `{column}` has {found} values but there are {expected} stations"
            ),
            InputError::CandidateMismatch {
                candidates,
                vote_rows,
            } => write!(f, "{candidates} candidates but {vote_rows} rows of votes"),
            InputError::GroupOutOfRange { station, group } => write!(
                f,
                "station #{station} has group index {group}, past the list of group names"
            ),
            InputError::NoCandidates => write!(f, "no candidates"),
            InputError::LeaderOutOfRange { leader, candidates } => {
                write!(f, "leader index {leader} but only {candidates} candidates")
            }
        }
    }
}

impl std::error::Error for InputError {}

impl StationCounts {
    /// Number of stations.
    pub fn len(&self) -> usize {
        self.station_ids.len()
    }

    /// True when there is no station.
    pub fn is_empty(&self) -> bool {
        self.station_ids.is_empty()
    }

    /// Checks that all columns agree in length and that group indices are in range.
    pub fn validate(&self) -> Result<(), InputError> {
        let n = self.station_ids.len();
        let check = |name: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(InputError::LengthMismatch {
                    column: name.to_string(),
                    expected: n,
                    found: len,
                })
            }
        };
        check("registered", self.registered.len())?;
        check("cast", self.cast.len())?;
        check("valid", self.valid.len())?;
        if self.candidates.is_empty() {
            return Err(InputError::NoCandidates);
        }
        if self.votes.len() != self.candidates.len() {
            return Err(InputError::CandidateMismatch {
                candidates: self.candidates.len(),
                vote_rows: self.votes.len(),
            });
        }
        for (c, row) in self.votes.iter().enumerate() {
            check(&format!("votes[{}]", self.candidates[c]), row.len())?;
        }
        if let Some((idx, names)) = &self.groups {
            check("groups", idx.len())?;
            if let Some((station, &group)) = idx
                .iter()
                .enumerate()
                .find(|(_, &g)| g as usize >= names.len())
            {
                return Err(InputError::GroupOutOfRange { station, group });
            }
        }
        Ok(())
    }

    /// Index of the candidate with the most votes in total (the first one on ties).
    pub fn most_votes(&self) -> usize {
        let mut best = 0usize;
        let mut best_total = 0u64;
        for (c, row) in self.votes.iter().enumerate() {
            let total: u64 = row.iter().sum();
            if c == 0 || total > best_total {
                best = c;
                best_total = total;
            }
        }
        best
    }
}

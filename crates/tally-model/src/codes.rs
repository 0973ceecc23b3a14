//! Stable validation codes. Extend, never renumber: users grep their logs for these.
//!
//! `E1xx` errors quarantine the sheet; `W2xx` warnings accept it with a flag; `F0xx` are
//! file-level problems that stop the import of that file (nothing of it is counted).

use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Code {
    /// A count is negative, not an integer, or too large to be a vote count.
    E101,
    /// The candidates' votes do not add up to the valid votes.
    E102,
    /// Valid plus invalid votes do not add up to the ballots cast.
    E103,
    /// More ballots cast than registered voters, beyond the tolerance for voters added on the day.
    E104,
    /// The same station appears twice in one source with different numbers (both are held back).
    E105,
    /// The station (or its area) is not in the station registry.
    E106,
    /// A candidate (column or id) that the election definition does not know.
    E107,
    /// A malformed row: wrong number of fields or text that is not UTF-8.
    E108,
    /// The row has no station id.
    E109,
    /// An incomplete sheet: some counts are present but a candidate's count is missing.
    E110,
    /// The sheet's status cell holds a value Tally does not know (name it in the election
    /// definition's `[status]` table).
    E111,
    /// Turnout of 99% or more.
    W201,
    /// One candidate has 99% or more of the valid votes.
    W202,
    /// Unusually many invalid ballots (10% of cast or more by default).
    W203,
    /// No ballot cast at a station with registered voters.
    W204,
    /// Registered voters differ between the rounds by more than the tolerance.
    W205,
    /// More ballots cast than registered voters, within the tolerance (voters added on the day).
    W206,
    /// The same sheet appears twice with identical numbers; it is counted once.
    W207,
    /// A candidate's count is empty in the source but implied by the valid total (the other
    /// candidates already add up to it, or only one count is missing).
    W208,
    /// The sheet's status says it is not counted (pending, annulled, not installed) but the row
    /// carries counts: they are not counted.
    W209,
    /// The station id had invisible or compatibility characters (a zero-width space, a
    /// fullwidth digit, an accent typed as two code points): it is read in its normal form.
    W210,
    /// The file cannot be read (I/O error, broken gzip stream).
    F001,
    /// The file is empty or has no header line.
    F002,
    /// Two columns have the same name.
    F003,
    /// A required column is missing (station_id, or any candidate column).
    F004,
    /// The header is not valid UTF-8.
    F005,
    /// The layout cannot be inferred with confidence; name the columns in an election definition.
    F006,
    /// The election definition (TOML) is invalid or does not match the file.
    F007,
    /// The input is larger than the ceiling on input size (after decompression); raise it with
    /// `--max-input-mb` if the file is genuine.
    F008,
    /// The header has more columns than Tally reads (10,000).
    F009,
    /// A JSON input that is not a readable NIST SP 1500-100 v2 `ElectionReport` (malformed JSON,
    /// another `@type`, a unit tree that does not hold together).
    F010,
    /// The NIST report's contest is of a kind Tally does not count: a ballot measure, party or
    /// retention contest, ranked choice or another vote variation, several seats or votes.
    F011,
    /// The NIST report has several candidate contests: choose one by its `@id` (they are listed).
    F012,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// File-level: the file is not imported.
    Fatal,
    /// The sheet is quarantined.
    Error,
    /// The sheet is accepted and flagged.
    Warning,
}

impl Code {
    pub const ALL: [Code; 33] = [
        Code::E101,
        Code::E102,
        Code::E103,
        Code::E104,
        Code::E105,
        Code::E106,
        Code::E107,
        Code::E108,
        Code::E109,
        Code::E110,
        Code::E111,
        Code::W201,
        Code::W202,
        Code::W203,
        Code::W204,
        Code::W205,
        Code::W206,
        Code::W207,
        Code::W208,
        Code::W209,
        Code::W210,
        Code::F001,
        Code::F002,
        Code::F003,
        Code::F004,
        Code::F005,
        Code::F006,
        Code::F007,
        Code::F008,
        Code::F009,
        Code::F010,
        Code::F011,
        Code::F012,
    ];

    pub fn severity(self) -> Severity {
        match self.as_str().as_bytes()[0] {
            b'E' => Severity::Error,
            b'W' => Severity::Warning,
            _ => Severity::Fatal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::E101 => "E101",
            Code::E102 => "E102",
            Code::E103 => "E103",
            Code::E104 => "E104",
            Code::E105 => "E105",
            Code::E106 => "E106",
            Code::E107 => "E107",
            Code::E108 => "E108",
            Code::E109 => "E109",
            Code::E110 => "E110",
            Code::E111 => "E111",
            Code::W201 => "W201",
            Code::W202 => "W202",
            Code::W203 => "W203",
            Code::W204 => "W204",
            Code::W205 => "W205",
            Code::W206 => "W206",
            Code::W207 => "W207",
            Code::W208 => "W208",
            Code::W209 => "W209",
            Code::W210 => "W210",
            Code::F001 => "F001",
            Code::F002 => "F002",
            Code::F003 => "F003",
            Code::F004 => "F004",
            Code::F005 => "F005",
            Code::F006 => "F006",
            Code::F007 => "F007",
            Code::F008 => "F008",
            Code::F009 => "F009",
            Code::F010 => "F010",
            Code::F011 => "F011",
            Code::F012 => "F012",
        }
    }

    /// One line for people, used in reports and in docs/validation-codes.md.
    pub fn title(self) -> &'static str {
        match self {
            Code::E101 => "a count is negative, not an integer, or too large",
            Code::E102 => "sum of candidate votes differs from valid votes",
            Code::E103 => "valid + invalid differs from ballots cast",
            Code::E104 => "ballots cast exceed registered voters beyond the tolerance",
            Code::E105 => "same station twice in one source with different numbers",
            Code::E106 => "unknown station or area",
            Code::E107 => "unknown candidate",
            Code::E108 => "malformed row (field count, encoding)",
            Code::E109 => "missing station id",
            Code::E110 => "incomplete sheet: a candidate count is missing",
            Code::E111 => "unknown sheet status value",
            Code::W201 => "turnout of 99% or more",
            Code::W202 => "one candidate has 99% or more of valid votes",
            Code::W203 => "unusually high share of invalid ballots",
            Code::W204 => "no ballot cast at a station with registered voters",
            Code::W205 => "registered voters differ between rounds beyond the tolerance",
            Code::W206 => "ballots cast exceed registered voters within the tolerance",
            Code::W207 => "identical duplicate sheet counted once",
            Code::W208 => "candidate count missing in the source, implied by the valid total",
            Code::W209 => {
                "sheet not counted by its status (pending, annulled, not installed) carries counts"
            }
            Code::W210 => "station id normalised (invisible or compatibility characters)",
            Code::F001 => "file cannot be read",
            Code::F002 => "empty file or no header",
            Code::F003 => "duplicate column name",
            Code::F004 => "required column missing",
            Code::F005 => "header is not valid UTF-8",
            Code::F006 => "layout cannot be inferred",
            Code::F007 => "invalid election definition",
            Code::F008 => "input larger than the size ceiling",
            Code::F009 => "too many columns",
            Code::F010 => "not a readable NIST SP 1500-100 election report",
            Code::F011 => "NIST contest of a kind Tally does not count",
            Code::F012 => "several NIST candidate contests: choose one",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_severity_follows_the_letter() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        assert_eq!(Code::E104.severity(), Severity::Error);
        assert_eq!(Code::W206.severity(), Severity::Warning);
        assert_eq!(Code::F003.severity(), Severity::Fatal);
        assert_eq!(format!("{:?}", Code::W201), Code::W201.as_str());
    }
}

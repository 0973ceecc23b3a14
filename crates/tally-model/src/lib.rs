//! # tally-model
//!
//! The election model of Tally and everything that can be computed from it without I/O:
//! the area tree, rounds of tally sheets in columnar form, the validation codes and rules,
//! exact integer counting at every level, the majority/runoff rule, and the results report
//! (the stable JSON schema shared by the CLI and the server).
//!
//! Architecture invariant: this crate is pure. No files, no network, no clock, no global state,
//! no floats in counting (shares are computed at the edge, in [`report`]).

pub mod area;
pub mod codes;
pub mod count;
pub mod matching;
pub mod nist;
pub mod report;
pub mod round;
pub mod rule;
pub mod station_ids;
pub mod validate;

pub use area::{AreaId, AreaPaths, AreaTree, ROOT};
pub use codes::{Code, Severity};
pub use count::{count, Totals};
pub use matching::{match_stations, StationMatch};
pub use report::csv_text;
pub use round::{
    saturate, stored, sum_counts, Candidate, Round, SheetCounts, SheetStatus, Source, StoredCount,
    MAX_COUNT, MISSING,
};
pub use rule::{Outcome, Ratio, Rule, TieBreak};
pub use station_ids::{IdList, StationIds};
pub use validate::{validate_sheet, Finding, SheetInput, ValidationConfig, Verdict};

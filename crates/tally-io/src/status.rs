//! A sheet's status as real results files carry it (counted, pending, annulled, not installed),
//! read from a status column: recognised from common values, or named in the election
//! definition's `[status]` table.

use std::collections::HashMap;
use tally_model::SheetStatus;

/// Header names recognised as a status column (an election definition may name another).
pub const STATUS_COLUMNS: [&str; 6] = [
    "status",
    "sheet_status",
    "result_status",
    "station_status",
    "count_status",
    "estado_acta",
];

/// What a status cell says about its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatedStatus {
    /// The sheet is final: its counts are validated and counted as usual.
    Counted,
    /// Not reported yet: a known station without a result.
    Pending,
    /// Declared void by the source: never counted.
    Annulled,
    /// The station did not open: never counted.
    NotInstalled,
}

impl StatedStatus {
    /// The status the station gets in the round when its counts are not counted.
    pub fn sheet_status(self) -> SheetStatus {
        match self {
            StatedStatus::Counted => SheetStatus::Counted,
            StatedStatus::Pending => SheetStatus::Missing,
            StatedStatus::Annulled => SheetStatus::Annulled,
            StatedStatus::NotInstalled => SheetStatus::NotInstalled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StatedStatus::Counted => "counted",
            StatedStatus::Pending => "pending",
            StatedStatus::Annulled => "annulled",
            StatedStatus::NotInstalled => "not installed",
        }
    }
}

const BUILT_IN: [(StatedStatus, &[&str]); 4] = [
    (
        StatedStatus::Counted,
        &[
            "counted",
            "final",
            "complete",
            "completed",
            "reported",
            "ok",
            "valid",
            "processed",
            "accepted",
            "published",
            "normal",
            "contabilizada",
            "computada",
        ],
    ),
    (
        StatedStatus::Pending,
        &[
            "pending",
            "not reported",
            "not counted",
            "awaiting",
            "in progress",
            "missing",
            "unreported",
            "pendiente",
            "por contabilizar",
        ],
    ),
    (
        StatedStatus::Annulled,
        &[
            "annulled",
            "void",
            "voided",
            "cancelled",
            "canceled",
            "nullified",
            "invalidated",
            "anulada",
            "anulado",
            "annulee",
            "annulée",
            "nula",
        ],
    ),
    (
        StatedStatus::NotInstalled,
        &[
            "not installed",
            "not opened",
            "not held",
            "did not open",
            "closed",
            "no instalada",
            "no instalado",
            "mesa no instalada",
        ],
    ),
];

/// Status values, normalised (lower case, `_` and `-` as spaces, spaces collapsed).
#[derive(Clone, Debug)]
pub struct StatusValues {
    map: HashMap<String, StatedStatus>,
}

fn normalise(v: &str) -> String {
    v.trim()
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl StatusValues {
    /// The built-in values plus those an election definition adds (which win on a clash).
    pub fn new(extra: &[(StatedStatus, &[String])]) -> Self {
        let mut map = HashMap::new();
        for (s, values) in BUILT_IN {
            for v in values {
                map.insert(normalise(v), s);
            }
        }
        for (s, values) in extra {
            for v in *values {
                map.insert(normalise(v), *s);
            }
        }
        StatusValues { map }
    }

    /// `None` for an empty cell (no statement), `Some(Err(text))` for a value nobody named.
    pub fn classify(&self, cell: &str) -> Option<Result<StatedStatus, String>> {
        let key = normalise(cell);
        if key.is_empty() {
            return None;
        }
        Some(self.map.get(&key).copied().ok_or(key))
    }
}

impl Default for StatusValues {
    fn default() -> Self {
        StatusValues::new(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_values_and_defined_ones() {
        let v = StatusValues::default();
        assert_eq!(v.classify(" Counted "), Some(Ok(StatedStatus::Counted)));
        assert_eq!(
            v.classify("NOT_INSTALLED"),
            Some(Ok(StatedStatus::NotInstalled))
        );
        assert_eq!(v.classify("Anulada"), Some(Ok(StatedStatus::Annulled)));
        assert_eq!(v.classify(""), None);
        assert_eq!(v.classify("weird"), Some(Err("weird".to_string())));
        let mine = ["Acta observada".to_string()];
        let v = StatusValues::new(&[(StatedStatus::Pending, &mine)]);
        assert_eq!(
            v.classify("acta  observada"),
            Some(Ok(StatedStatus::Pending))
        );
    }
}

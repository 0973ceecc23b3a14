//! The election definition: a small TOML file that names what inference would otherwise guess
//! (display names, colours, the rule, which columns are areas, counts, candidates).
//!
//! ```toml
//! name = "Turkey, presidential election 2023"
//! rule = "majority"            # or "argentina", "costa-rica", or a threshold such as "40%"
//! threshold_inclusive = false  # with a threshold: "at least" instead of "more than"
//! tie = "undecided"            # or "lot:SEED": a reproducible draw (simulations only)
//!
//! [columns]
//! station = "station_id"
//! areas = ["province", "district"]
//! extra = ["ballots_issued"]
//! ignore = ["school_id"]
//! status = "estado"           # found by name (status, sheet_status...) when not given
//!
//! [status]                     # values beyond the common ones (counted, annulled, ...)
//! pending = ["observada"]
//!
//! [[candidates]]
//! id = "erdogan"
//! name = "Recep Tayyip Erdoğan"
//! colour = "#f4a300"
//! ```

use crate::ImportError;
use serde::Deserialize;
use tally_model::{Candidate, Code, Ratio, Rule, TieBreak};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElectionDef {
    pub name: Option<String>,
    pub rule: Option<String>,
    #[serde(default)]
    pub threshold_inclusive: bool,
    /// How the rule breaks ties: "undecided" (default: the law decides) or "lot:SEED".
    pub tie: Option<String>,
    #[serde(default)]
    pub columns: ColumnsDef,
    #[serde(default)]
    pub candidates: Vec<CandidateDef>,
    /// Values of the status column beyond the common ones Tally knows.
    #[serde(default)]
    pub status: StatusDef,
}

/// `[status]`: which values of the status column mean what (added to the built-in values).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusDef {
    #[serde(default)]
    pub counted: Vec<String>,
    #[serde(default)]
    pub pending: Vec<String>,
    #[serde(default)]
    pub annulled: Vec<String>,
    #[serde(default)]
    pub not_installed: Vec<String>,
}

impl StatusDef {
    pub fn values(&self) -> crate::status::StatusValues {
        use crate::status::StatedStatus as S;
        crate::status::StatusValues::new(&[
            (S::Counted, &self.counted),
            (S::Pending, &self.pending),
            (S::Annulled, &self.annulled),
            (S::NotInstalled, &self.not_installed),
        ])
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnsDef {
    pub station: Option<String>,
    pub round: Option<String>,
    pub areas: Option<Vec<String>>,
    pub registered: Option<String>,
    pub cast: Option<String>,
    pub invalid: Option<String>,
    pub valid: Option<String>,
    /// The sheet-status column (counted / pending / annulled / not installed).
    pub status: Option<String>,
    #[serde(default)]
    pub extra: Vec<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CandidateDef {
    pub id: String,
    pub name: Option<String>,
    pub colour: Option<String>,
}

impl CandidateDef {
    pub fn to_candidate(&self) -> Candidate {
        Candidate {
            id: self.id.clone(),
            name: self.name.clone().unwrap_or_else(|| self.id.clone()),
            colour: self.colour.clone(),
        }
    }
}

impl ElectionDef {
    pub fn parse(text: &str, path: &str) -> Result<Self, ImportError> {
        let def: ElectionDef = toml::from_str(text)
            .map_err(|e| ImportError::fatal(Code::F007, path, e.to_string()))?;
        def.rule(path)?;
        Ok(def)
    }

    pub fn load(path: &str) -> Result<Self, ImportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ImportError::fatal(Code::F007, path, format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// The rule named by the definition (majority when absent).
    pub fn rule(&self, path: &str) -> Result<Rule, ImportError> {
        let mut rule = match self.rule.as_deref() {
            None => Rule::majority(),
            Some(name) => match Rule::by_name(name) {
                Some(r) => r,
                None => Ratio::from_percent_str(name)
                    .map(|share| Rule::threshold(share, self.threshold_inclusive))
                    .ok_or_else(|| {
                        ImportError::fatal(
                            Code::F007,
                            path,
                            format!("unknown rule '{name}': use majority, argentina, costa-rica or a percentage such as \"40%\""),
                        )
                    })?,
            },
        };
        rule.tie = match self.tie.as_deref() {
            None | Some("undecided") => TieBreak::Undecided,
            Some(t) => match t
                .strip_prefix("lot:")
                .and_then(|seed| seed.trim().parse().ok())
            {
                Some(seed) => TieBreak::Lot { seed },
                None => {
                    return Err(ImportError::fatal(
                        Code::F007,
                        path,
                        format!("unknown tie rule '{t}': use \"undecided\" or \"lot:SEED\""),
                    ))
                }
            },
        };
        Ok(rule)
    }

    pub fn candidate(&self, id: &str) -> Option<&CandidateDef> {
        self.candidates
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_definition() {
        let d = ElectionDef::parse(
            r##"
name = "Test"
rule = "40%"
threshold_inclusive = true
[columns]
areas = ["province"]
ignore = ["x"]
[[candidates]]
id = "a"
name = "Alice"
colour = "#ff0000"
"##,
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            d.columns.areas.as_deref(),
            Some(&["province".to_string()][..])
        );
        assert_eq!(d.candidate("A").unwrap().to_candidate().name, "Alice");
        let r = d.rule("t.toml").unwrap();
        assert_eq!(r.clauses[0].share, Ratio::new(40, 100));
        assert!(r.clauses[0].inclusive);
    }

    #[test]
    fn rejects_unknown_keys_and_rules() {
        let e = ElectionDef::parse("nmae = 1", "t.toml").unwrap_err();
        assert_eq!(e.code, Code::F007);
        let e = ElectionDef::parse("rule = \"plurality-ish\"", "t.toml").unwrap_err();
        assert!(e.detail.contains("unknown rule"));
        let e = ElectionDef::parse("tie = \"coin\"", "t.toml").unwrap_err();
        assert!(e.detail.contains("unknown tie rule"));
        let d = ElectionDef::parse("rule = \"argentina\"\ntie = \"lot:9\"", "t.toml").unwrap();
        assert_eq!(d.rule("t.toml").unwrap().tie, TieBreak::Lot { seed: 9 });
    }
}

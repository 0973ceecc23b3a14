//! The results report: the stable JSON schema `tally.results/1` (docs/results-json.md) shared by
//! `tally results --format json` and the server's `GET /results`. Shares are computed here, at
//! the edge, from exact integer totals.

use crate::area::{AreaId, ROOT};
use crate::count::Totals;
use crate::matching::match_stations;
use crate::round::Round;
use crate::round::MISSING;
use crate::rule::{decide_first_round, decide_runoff, Outcome, Rule};
use crate::validate::{check_registered_between_rounds, ValidationConfig};
use serde::Serialize;
use std::borrow::Cow;

pub const SCHEMA: &str = "tally.results/1";

/// What happened to the input rows of one round (from the importer or the store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SheetStats {
    /// Rows read (data lines, header excluded).
    pub rows: u64,
    /// Sheets accepted and counted (including those with warnings).
    pub accepted: u64,
    /// Accepted sheets that carry at least one warning.
    pub with_warnings: u64,
    /// Rows held back by an error (see the quarantine report).
    pub quarantined: u64,
    /// Known stations with no result yet (every count empty).
    pub missing: u64,
    /// Identical duplicate rows counted once (W207).
    pub duplicates: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TotalsOut {
    pub registered: u64,
    pub cast: u64,
    pub invalid: u64,
    pub valid: u64,
    /// Percent of registered, over stations that give both; null when unknown.
    pub turnout: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CandidateOut {
    pub id: String,
    pub name: String,
    pub votes: u64,
    /// Percent of valid votes, full precision.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Margin {
    pub first: String,
    pub second: String,
    pub votes: u64,
    /// Difference of the two shares, in percentage points.
    pub points: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub stations_counted: u64,
    pub stations_known: u64,
    pub stations_pct: f64,
    pub registered_counted: u64,
    pub registered_known: u64,
    pub registered_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AreaOut {
    /// Path from the first level, `/`-separated.
    pub area: String,
    pub level: String,
    pub totals: TotalsOut,
    pub candidates: Vec<CandidateOut>,
    pub leader: Option<String>,
    pub margin: Option<Margin>,
    pub progress: Progress,
}

#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    pub round: u8,
    /// The area reported (`""` for the whole election).
    pub area: String,
    pub rule: String,
    pub totals: TotalsOut,
    pub candidates: Vec<CandidateOut>,
    pub margin: Option<Margin>,
    pub outcome: OutcomeOut,
    pub progress: Progress,
    pub sheets: SheetStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_lines: Vec<ExtraLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub areas: Option<Vec<AreaOut>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtraLine {
    pub name: String,
    pub total: u64,
}

fn pct(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        100.0 * num as f64 / den as f64
    }
}

fn totals_out(t: &Totals) -> TotalsOut {
    TotalsOut {
        registered: t.registered,
        cast: t.cast,
        invalid: t.invalid,
        valid: t.valid,
        turnout: t.turnout_pct(),
    }
}

fn candidates_out(round: &Round, t: &Totals) -> Vec<CandidateOut> {
    let base: u64 = t.votes.iter().sum();
    t.ranking()
        .into_iter()
        .map(|i| CandidateOut {
            id: round.candidates[i].id.clone(),
            name: round.candidates[i].name.clone(),
            votes: t.votes[i],
            share: pct(t.votes[i], base),
        })
        .collect()
}

fn margin(round: &Round, t: &Totals) -> Option<Margin> {
    let order = t.ranking();
    if order.len() < 2 {
        return None;
    }
    let base: u64 = t.votes.iter().sum();
    let (a, b) = (order[0], order[1]);
    Some(Margin {
        first: round.candidates[a].id.clone(),
        second: round.candidates[b].id.clone(),
        votes: t.votes[a] - t.votes[b],
        points: pct(t.votes[a], base) - pct(t.votes[b], base),
    })
}

fn progress(t: &Totals) -> Progress {
    Progress {
        stations_counted: t.stations_counted,
        stations_known: t.stations_known,
        stations_pct: pct(t.stations_counted, t.stations_known),
        registered_counted: t.registered,
        registered_known: t.registered_known,
        registered_pct: (t.registered_known > 0).then(|| pct(t.registered, t.registered_known)),
    }
}

/// The rule applied to the sheets counted so far, and whether that is the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutcomeOut {
    #[serde(flatten)]
    pub decision: Outcome,
    /// False while some known stations have no counted sheet (missing, quarantined, annulled):
    /// the decision is then only who leads in the sheets counted so far, not the result (see
    /// `tally project` for what the rest may change).
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The rule's verdict for a round: round 1 applies the majority rule, later rounds elect the
/// leader.
pub fn outcome(round: &Round, rule: &Rule, t: &Totals) -> Outcome {
    let ids: Vec<String> = round.candidates.iter().map(|c| c.id.clone()).collect();
    if round.number >= 2 {
        decide_runoff(rule, &ids, &t.votes)
    } else {
        decide_first_round(rule, &ids, &t.votes)
    }
}

/// Builds the report of `round` for `area` (ROOT for everything), with the areas of one level
/// below it when `level_depth` is given.
pub fn round_report(
    round: &Round,
    totals: &[Totals],
    rule: &Rule,
    sheets: SheetStats,
    area: AreaId,
    level_depth: Option<u8>,
) -> RoundReport {
    let t = &totals[area as usize];
    let areas = level_depth.map(|depth| {
        round
            .tree
            .nodes_at(depth)
            .filter(|&id| {
                area == ROOT
                    || round
                        .tree
                        .ancestor_at(id, round.tree.nodes[area as usize].depth)
                        == area
            })
            .map(|id| {
                let at = &totals[id as usize];
                AreaOut {
                    area: round.tree.path_string(id),
                    level: round.tree.levels[depth as usize - 1].clone(),
                    totals: totals_out(at),
                    candidates: candidates_out(round, at),
                    leader: (at.votes.iter().sum::<u64>() > 0)
                        .then(|| round.candidates[at.ranking()[0]].id.clone()),
                    margin: margin(round, at),
                    progress: progress(at),
                }
            })
            .collect()
    });
    RoundReport {
        round: round.number,
        area: round.tree.path_string(area),
        rule: rule.name.clone(),
        totals: totals_out(t),
        candidates: candidates_out(round, t),
        margin: margin(round, t),
        outcome: OutcomeOut {
            decision: outcome(round, rule, t),
            is_final: t.stations_counted == t.stations_known,
        },
        progress: progress(t),
        sheets,
        extra_lines: round
            .extra_lines
            .iter()
            .zip(&t.extra)
            .map(|(name, &total)| ExtraLine {
                name: name.clone(),
                total,
            })
            .collect(),
        areas,
    }
}

/// Stations matched between two rounds by id.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Matching {
    pub matched: u64,
    pub only_in_round1: Vec<String>,
    pub only_in_round2: Vec<String>,
    /// W205 findings: stations whose registered voters changed beyond the tolerance.
    pub registered_changed: Vec<RegisteredChange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegisteredChange {
    pub station_id: String,
    pub round1: u64,
    pub round2: u64,
}

/// Stations of round 1 and round 2 matched by station id, with the W205 check of registered
/// voters between the rounds.
pub fn matching(a: &Round, b: &Round, cfg: &ValidationConfig) -> Matching {
    let found = match_stations(&a.stations.ids, &b.stations.ids);
    let mut m = Matching {
        matched: found.pairs.len() as u64,
        only_in_round1: found
            .only_a
            .iter()
            .map(|&i| a.stations.ids[i].to_string())
            .collect(),
        only_in_round2: found
            .only_b
            .iter()
            .map(|&j| b.stations.ids[j].to_string())
            .collect(),
        registered_changed: Vec::new(),
    };
    for &(i, j) in &found.pairs {
        let (r1, r2) = (a.stations.registered[i], b.stations.registered[j]);
        let (r1, r2) = (u64::from(r1), u64::from(r2));
        if r1 != u64::from(MISSING)
            && r2 != u64::from(MISSING)
            && check_registered_between_rounds(r1, r2, cfg).is_some()
        {
            m.registered_changed.push(RegisteredChange {
                station_id: a.stations.ids[i].to_string(),
                round1: r1,
                round2: r2,
            });
        }
    }
    m
}

/// One counted round as the report reads it: its stations, the totals of its area nodes
/// (indexed by `AreaId`: from [`crate::count`] or kept incrementally by the live server; the
/// root's alone where the scope is the whole election, see [`totals_for`]) and what happened
/// to the input sheets.
#[derive(Clone, Copy, Debug)]
pub struct CountedRound<'a> {
    pub round: &'a Round,
    pub totals: &'a [Totals],
    pub sheets: SheetStats,
}

/// Which part of the results a report shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportScope<'a> {
    /// One round only (`None`: every round, with the matching of round 1 and 2).
    pub round: Option<u8>,
    /// An area path such as `Adana/Ceyhan` (`None` or empty: the whole election).
    pub area: Option<&'a str>,
    /// Name of a level whose areas are listed below the area.
    pub level: Option<&'a str>,
}

impl ReportScope<'_> {
    /// The whole election without a level: the report reads the root's totals alone.
    pub fn whole_election(&self) -> bool {
        matches!(self.area, None | Some("")) && matches!(self.level, None | Some(""))
    }
}

/// The totals a report of `scope` reads, indexed by `AreaId`: every area node's, or only the
/// root's for the whole election without a level (a million stations are then added without
/// the totals of a hundred thousand areas nobody asked for).
pub fn totals_for(round: &Round, scope: &ReportScope<'_>) -> Vec<Totals> {
    if scope.whole_election() {
        vec![crate::count::count_root(round)]
    } else {
        crate::count::count(round)
    }
}

/// A report scope that names something the election does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("no round {0}")]
    NoRound(u8),
    #[error(
        "no area '{area}' in round {round} (areas are written as a path such as 'Adana/Ceyhan')"
    )]
    NoArea { area: String, round: u8 },
    #[error("no level '{level}' in round {round}: the levels are {levels}")]
    NoLevel {
        level: String,
        round: u8,
        levels: String,
    },
    #[error("round {0} was counted for the whole election only, not area by area")]
    AreasNotCounted(u8),
}

/// The `tally.results/1` document: the one builder, used by `tally results` and by the live
/// server alike. `matching` (round 1 against round 2) is shown when every round is reported.
pub fn results_report(
    election: &str,
    rule: &Rule,
    rounds: &[CountedRound<'_>],
    matching: Option<&Matching>,
    scope: &ReportScope<'_>,
) -> Result<ResultsReport, ScopeError> {
    let mut out = Vec::new();
    for r in rounds {
        let round = r.round;
        if scope.round.is_some_and(|n| n != round.number) {
            continue;
        }
        let tree = &round.tree;
        if r.totals.len() < tree.len() && !scope.whole_election() {
            return Err(ScopeError::AreasNotCounted(round.number));
        }
        let area = match scope.area {
            None | Some("") => ROOT,
            Some(path) => tree.find(path).ok_or_else(|| ScopeError::NoArea {
                area: path.to_string(),
                round: round.number,
            })?,
        };
        let depth = match scope.level {
            None | Some("") => None,
            Some(name) => Some(tree.level_depth(name).ok_or_else(|| ScopeError::NoLevel {
                level: name.to_string(),
                round: round.number,
                levels: if tree.levels.is_empty() {
                    "none".to_string()
                } else {
                    tree.levels.join(", ")
                },
            })?),
        };
        out.push(round_report(round, r.totals, rule, r.sheets, area, depth));
    }
    if let Some(n) = scope.round {
        if out.is_empty() {
            return Err(ScopeError::NoRound(n));
        }
    }
    Ok(ResultsReport {
        schema: SCHEMA,
        election: election.to_string(),
        rounds: out,
        matching: if scope.round.is_none() {
            matching.cloned()
        } else {
            None
        },
    })
}

/// The whole document.
#[derive(Clone, Debug, Serialize)]
pub struct ResultsReport {
    pub schema: &'static str,
    pub election: String,
    pub rounds: Vec<RoundReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matching: Option<Matching>,
}

/// A text cell made safe for spreadsheets: a cell starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return is run as a formula by Excel and LibreOffice (CSV injection), so it gets a
/// leading `'`. The original text is the cell without that one leading `'`.
pub fn csv_text(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::area::AreaTree;
    use crate::round::{Candidate, SheetStatus};

    /// Two regions, one station each, both counted: a 400, b 450, c 150.
    fn two_regions() -> Round {
        let mut tree = AreaTree::new("All", vec!["region".into()]);
        let n = tree.leaf(["North"]);
        let s = tree.leaf(["South"]);
        let mut r = Round::new(
            1,
            vec![
                Candidate::new("a"),
                Candidate::new("b"),
                Candidate::new("c"),
            ],
            vec![],
            tree,
        );
        r.push(
            "1",
            n,
            SheetStatus::Counted,
            2,
            [1000, 800, 0, 800],
            &[400, 300, 100],
            &[],
        );
        r.push(
            "2",
            s,
            SheetStatus::Counted,
            3,
            [500, 200, 0, 200],
            &[0, 150, 50],
            &[],
        );
        r
    }

    #[test]
    fn report_has_shares_outcome_and_areas() {
        let r = two_regions();
        let t = crate::count::count(&r);
        let rep = round_report(
            &r,
            &t,
            &Rule::majority(),
            SheetStats::default(),
            ROOT,
            Some(1),
        );
        assert_eq!(rep.candidates[0].id, "b");
        assert!((rep.candidates[0].share - 45.0).abs() < 1e-12);
        let sum: f64 = rep.candidates.iter().map(|c| c.share).sum();
        assert!((sum - 100.0).abs() < 1e-9);
        assert_eq!(
            rep.outcome.decision,
            Outcome::Runoff {
                runoff: ["b".into(), "a".into()],
                by_lot: false
            }
        );
        let areas = rep.areas.unwrap();
        assert_eq!(areas.len(), 2);
        assert_eq!(areas[0].leader.as_deref(), Some("a"));
        assert!((rep.totals.turnout.unwrap() - 66.666_666).abs() < 1e-3);
        assert!(rep.outcome.is_final);
        let json = serde_json_like(&rep.outcome.decision);
        assert!(json.contains("runoff"));
    }

    fn serde_json_like(o: &Outcome) -> String {
        format!("{o:?}").to_lowercase()
    }

    /// A report of the whole election reads the root's totals alone: counted that way it is
    /// the report counted area by area; a scope with areas refuses root-only totals.
    #[test]
    fn whole_election_report_from_the_root_alone() {
        let r = two_regions();
        let report = |totals: &[Totals], scope: &ReportScope<'_>| {
            let rounds = [CountedRound {
                round: &r,
                totals,
                sheets: SheetStats::default(),
            }];
            results_report("E", &Rule::majority(), &rounds, None, scope)
        };
        let whole = ReportScope::default();
        let root = totals_for(&r, &whole);
        assert_eq!(root.len(), 1);
        let every = crate::count::count(&r);
        let text = |rep: Result<ResultsReport, ScopeError>| format!("{:?}", rep.unwrap());
        assert_eq!(text(report(&root, &whole)), text(report(&every, &whole)));
        let rep = report(&root, &whole).unwrap();
        assert_eq!(rep.rounds[0].candidates[0].votes, 450);
        assert_eq!(rep.rounds[0].totals.valid, 1000);
        let by_region = ReportScope {
            level: Some("region"),
            ..ReportScope::default()
        };
        assert_eq!(totals_for(&r, &by_region).len(), r.tree.len());
        assert_eq!(
            report(&root, &by_region).err(),
            Some(ScopeError::AreasNotCounted(1))
        );
        assert!(report(&every, &by_region).is_ok());
    }
}

//! Live aggregates: one columnar [`Round`] per round holding every registry station and the
//! current official sheet of each, with totals of every area updated incrementally when a sheet
//! is accepted (subtract the station's old contribution along its path, add the new one). Reads
//! build the `tally.results/1` report from these totals and never touch the database.
//!
//! The per-station contribution is `tally_model::count::station_totals`, the same definition
//! `count` adds; a test checks that the incremental totals equal a full `count` after any
//! sequence of sheets.

use crate::model::{Registry, Sheet, SheetRecord};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use tally_model::count::station_totals;
use tally_model::report::{
    matching, results_report, CountedRound, Matching, ReportScope, ResultsReport, ScopeError,
    SheetStats,
};
use tally_model::{
    saturate, stored, AreaTree, Round, SheetStatus, StoredCount, Totals, ValidationConfig, MISSING,
    ROOT,
};

#[derive(Clone)]
pub struct LiveRound {
    pub round: Round,
    pub totals: Vec<Totals>,
    pub index: HashMap<String, usize>,
    /// Registry registered voters per station (a sheet may state another number).
    registry_registered: Vec<StoredCount>,
    has_warnings: Vec<bool>,
    pub with_warnings: u64,
}

/// One line where the sources of a station disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictLine {
    pub line: String,
    /// Value per source (null = absent on that sheet).
    pub values: BTreeMap<String, Option<u64>>,
}

#[derive(Clone, Default)]
pub struct StationState {
    /// Current version per source.
    pub latest: BTreeMap<String, (u32, Sheet)>,
    pub conflicts: Vec<ConflictLine>,
    /// Warning codes of the current version per source (what the station table shows).
    pub warnings: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
pub struct Live {
    pub election: String,
    pub rule: tally_model::Rule,
    pub rounds: Vec<LiveRound>,
    pub stations: HashMap<(u8, String), StationState>,
    pub matching: Option<Matching>,
    pub last_seq: i64,
    /// Hash of journal entry `last_seq` (what observers publish to anchor the chain).
    pub head_hash: String,
    pub versions: u64,
    pub official_sheets: u64,
    pub observer_sheets: u64,
}

/// Builds a round from the registry with every station `Missing`.
pub fn registry_round(reg: &Registry, number: u8) -> Option<(Round, HashMap<String, usize>)> {
    let def = reg.round(number)?;
    let tree = AreaTree::new(&reg.election, def.levels.clone());
    let mut round = Round::new(
        number,
        def.candidates.iter().map(|c| c.to_candidate()).collect(),
        def.extra_lines.clone(),
        tree,
    );
    let k = def.candidates.len();
    let e = def.extra_lines.len();
    let mut index = HashMap::new();
    for s in reg.stations.iter().filter(|s| s.round == number) {
        if index.contains_key(&s.station_id) {
            continue;
        }
        let leaf = round.tree.leaf(&s.area);
        index.insert(s.station_id.clone(), round.len());
        round.push(
            &s.station_id,
            leaf,
            SheetStatus::Missing,
            0,
            [stored(s.registered), MISSING, MISSING, MISSING],
            &vec![MISSING; k],
            &vec![MISSING; e],
        );
    }
    Some((round, index))
}

/// Writes a sheet's numbers into station `i` of `round` (status Counted).
pub fn set_station(round: &mut Round, i: usize, sheet: &Sheet, registry_registered: StoredCount) {
    let k = round.candidates.len();
    let e = round.extra_lines.len();
    let s = &mut round.stations;
    s.status[i] = SheetStatus::Counted;
    s.registered[i] = sheet.registered.map_or(registry_registered, saturate);
    s.cast[i] = stored(sheet.cast);
    s.invalid[i] = stored(sheet.invalid);
    s.valid[i] = stored(sheet.valid);
    for j in 0..k {
        let id = &round.candidates[j].id;
        s.votes[i * k + j] = sheet.votes.get(id).copied().map_or(0, saturate);
    }
    for j in 0..e {
        let name = &round.extra_lines[j];
        s.extra[i * e + j] = stored(sheet.extra.get(name).copied());
    }
}

impl LiveRound {
    pub fn new(reg: &Registry, number: u8) -> Option<LiveRound> {
        let (round, index) = registry_round(reg, number)?;
        let totals = tally_model::count(&round);
        let registry_registered = round.stations.registered.clone();
        let n = round.len();
        Some(LiveRound {
            round,
            totals,
            index,
            registry_registered,
            has_warnings: vec![false; n],
            with_warnings: 0,
        })
    }

    /// Makes `sheet` the counted sheet of its station, updating every total on its path.
    pub fn accept(&mut self, sheet: &Sheet, warnings: bool) {
        let Some(&i) = self.index.get(&sheet.station_id) else {
            return;
        };
        let old = station_totals(&self.round, i);
        set_station(&mut self.round, i, sheet, self.registry_registered[i]);
        let new = station_totals(&self.round, i);
        let mut node = self.round.stations.area[i];
        loop {
            let t = &mut self.totals[node as usize];
            t.subtract(&old);
            t.add(&new);
            if node == ROOT {
                break;
            }
            node = self.round.tree.nodes[node as usize].parent;
        }
        if self.has_warnings[i] != warnings {
            self.has_warnings[i] = warnings;
            if warnings {
                self.with_warnings += 1;
            } else {
                self.with_warnings -= 1;
            }
        }
    }

    pub fn stats(&self) -> SheetStats {
        let t = &self.totals[ROOT as usize];
        SheetStats {
            rows: t.stations_known,
            accepted: t.stations_counted,
            with_warnings: self.with_warnings,
            quarantined: 0,
            missing: t.stations_known - t.stations_counted,
            duplicates: 0,
        }
    }
}

/// Lines of a sheet by name, for comparing sources.
fn lines(s: &Sheet) -> BTreeMap<String, Option<u64>> {
    let mut m = BTreeMap::new();
    m.insert("registered".to_string(), s.registered);
    m.insert("cast".to_string(), s.cast);
    m.insert("invalid".to_string(), s.invalid);
    m.insert("valid".to_string(), s.valid);
    for (k, v) in &s.votes {
        m.insert(format!("votes.{k}"), Some(*v));
    }
    for (k, v) in &s.extra {
        m.insert(format!("extra.{k}"), Some(*v));
    }
    m
}

/// Lines on which the current sheets of the sources disagree (absent lines are not compared).
pub fn conflicts(latest: &BTreeMap<String, (u32, Sheet)>) -> Vec<ConflictLine> {
    if latest.len() < 2 {
        return Vec::new();
    }
    let per: Vec<(&String, BTreeMap<String, Option<u64>>)> =
        latest.iter().map(|(src, (_, s))| (src, lines(s))).collect();
    let mut names: Vec<&String> = per.iter().flat_map(|(_, l)| l.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let values: BTreeMap<String, Option<u64>> = per
            .iter()
            .map(|(src, l)| ((*src).clone(), l.get(name).copied().flatten()))
            .collect();
        let mut present = values.values().flatten();
        if let Some(first) = present.next() {
            if present.any(|v| v != first) {
                out.push(ConflictLine {
                    line: name.clone(),
                    values,
                });
            }
        }
    }
    out
}

impl Live {
    pub fn new(reg: &Registry, cfg: &ValidationConfig) -> Live {
        let rounds: Vec<LiveRound> = reg
            .rounds
            .iter()
            .filter_map(|d| LiveRound::new(reg, d.number))
            .collect();
        let matching =
            (rounds.len() >= 2).then(|| matching(&rounds[0].round, &rounds[1].round, cfg));
        Live {
            election: reg.election.clone(),
            rule: reg.rule.clone(),
            rounds,
            stations: HashMap::new(),
            matching,
            last_seq: 0,
            head_hash: crate::model::GENESIS.to_string(),
            versions: 0,
            official_sheets: 0,
            observer_sheets: 0,
        }
    }

    /// Applies a committed sheet version.
    /// Applies a committed sheet version; true when it made the sources of its station disagree
    /// where they agreed before (a new conflict, announced on the event stream).
    pub fn apply(&mut self, rec: &SheetRecord) -> bool {
        let s = &rec.sheet;
        self.versions += 1;
        let st = self
            .stations
            .entry((s.round, s.station_id.clone()))
            .or_default();
        let is_new = st
            .latest
            .insert(rec.source.clone(), (rec.version, s.clone()))
            .is_none();
        st.warnings.insert(rec.source.clone(), rec.warnings.clone());
        let had_conflict = !st.conflicts.is_empty();
        st.conflicts = conflicts(&st.latest);
        let new_conflict = !had_conflict && !st.conflicts.is_empty();
        if rec.source == "official" {
            if is_new {
                self.official_sheets += 1;
            }
            if let Some(r) = self.rounds.iter_mut().find(|r| r.round.number == s.round) {
                r.accept(s, !rec.warnings.is_empty());
            }
        } else if is_new {
            self.observer_sheets += 1;
        }
        self.last_seq = self.last_seq.max(rec.journal_seq);
        new_conflict
    }

    /// The observers' copy of round `number`: every registry station, with the observer sheet
    /// where one was sent (when several observers sent one, the observer with the lowest user
    /// id: their own disagreements are conflicts of the station view).
    fn observer_round(&self, reg: &Registry, number: u8) -> Option<Round> {
        let live = self.rounds.iter().find(|r| r.round.number == number)?;
        let (mut round, index) = registry_round(reg, number)?;
        for ((r, station), st) in &self.stations {
            if *r != number {
                continue;
            }
            let observer = st
                .latest
                .iter()
                .filter(|(src, _)| src.as_str() != "official")
                .min_by_key(|(src, _)| {
                    src.trim_start_matches("observer:u")
                        .parse::<i64>()
                        .unwrap_or(i64::MAX)
                });
            if let (Some((_, (_, sheet))), Some(&i)) = (observer, index.get(station)) {
                set_station(&mut round, i, sheet, live.registry_registered[i]);
            }
        }
        Some(round)
    }

    /// The NIST SP 1500-100 report of the official sheets, built by the same function as
    /// `tally results --format nist`.
    pub fn nist(
        &self,
        meta: &tally_model::nist::NistMeta<'_>,
    ) -> tally_model::nist::ElectionReport {
        let rounds = self.counted_rounds();
        tally_model::nist::nist_report(&self.election, &self.rule, &rounds, meta)
    }

    /// Reconciliation of the official sheets against the observers' of round `number`, by the
    /// same function as `tally reconcile`.
    pub fn reconciliation(
        &self,
        reg: &Registry,
        number: u8,
    ) -> Result<tally_reconcile::Reconciliation, String> {
        let official = &self
            .rounds
            .iter()
            .find(|r| r.round.number == number)
            .ok_or_else(|| format!("no round {number}"))?
            .round;
        let other = self
            .observer_round(reg, number)
            .ok_or_else(|| format!("no round {number}"))?;
        let none = HashMap::new();
        tally_reconcile::reconcile(
            tally_reconcile::Side {
                round: official,
                codes: &none,
            },
            tally_reconcile::Side {
                round: &other,
                codes: &none,
            },
            &tally_reconcile::Options {
                rule: &self.rule,
                level: None,
                boxes: None,
            },
        )
        .map_err(|e| e.to_string())
    }

    /// The projection of round `number` from the official sheets in so far, by the same
    /// function as `tally project`; the latest earlier round with counted stations is the
    /// baseline (round 1 for the runoff).
    pub fn projection(&self, number: u8) -> Result<tally_project::Projection, String> {
        let partial = &self
            .rounds
            .iter()
            .find(|r| r.round.number == number)
            .ok_or_else(|| format!("no round {number}"))?
            .round;
        let baseline = self
            .rounds
            .iter()
            .filter(|r| r.round.number < number)
            .filter(|r| r.round.stations.status.contains(&SheetStatus::Counted))
            .max_by_key(|r| r.round.number)
            .map(|r| &r.round);
        let pop = tally_project::Population::build(&tally_project::Inputs {
            partial,
            baseline,
            registry: None,
            level: None,
        })
        .map_err(|e| e.to_string())?;
        Ok(tally_project::project(
            &pop,
            &self.rule,
            &tally_project::Options::default(),
        ))
    }

    /// Every round with its totals, as the report builders read them.
    fn counted_rounds(&self) -> Vec<CountedRound<'_>> {
        self.rounds
            .iter()
            .map(|r| CountedRound {
                round: &r.round,
                totals: &r.totals,
                sheets: r.stats(),
            })
            .collect()
    }

    /// The `tally.results/1` report, built by the same function as `tally results`.
    pub fn results(&self, scope: &ReportScope<'_>) -> Result<ResultsReport, ScopeError> {
        let rounds = self.counted_rounds();
        results_report(
            &self.election,
            &self.rule,
            &rounds,
            self.matching.as_ref(),
            scope,
        )
    }
}

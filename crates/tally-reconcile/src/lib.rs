//! # tally-reconcile
//!
//! Reconciling two sources of the same tally sheets (the official results and an observer
//! group's or a party's copies, or two publications of the same results): every station in
//! exactly one class, the kind of each difference, the effect of the differences on every
//! decision of the rule, the worst case, and a sentence that says it.
//!
//! Pure: it reads two `tally_model::Round`s that tally-io already imported and validated,
//! matches them with the one matching function, `tally_model::match_stations`, and returns a
//! [`Reconciliation`] (the `tally.reconcile/1` document, docs/reconcile-json.md). No files, no
//! printing. Counts are exact integers; floats appear only in confidences and coverage shares.

pub mod aggregate;
pub mod impact;
pub mod kinds;
pub mod plant;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tally_model::{
    match_stations, AreaId, Code, Outcome, Round, Rule, SheetStatus, StationMatch, StoredCount,
    MISSING,
};

pub use aggregate::{Aggregated, Check, UnitCheck};
pub use impact::WorstCase;
pub use kinds::{classify, Classification, Kind};
pub use plant::{observer_copy, PlantConfig, Planted};

pub const SCHEMA: &str = "tally.reconcile/1";

/// One source: its round and the validation codes of its sheets by station id (the codes of
/// tally-io's issues and quarantine), so that a sheet that fails validation is kept and flagged.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    pub round: &'a Round,
    pub codes: &'a HashMap<String, Vec<Code>>,
}

#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    pub rule: &'a Rule,
    /// A level name: report every area of it (ranked so that clusters stand out).
    pub level: Option<&'a str>,
    /// Ballot boxes (stations) per official unit, by the official station id, when the official
    /// source is coarser than the other (e.g. turkey2023/districts-meta.csv.gz).
    pub boxes: Option<&'a HashMap<String, u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconcileError {
    Candidates { official: String, other: String },
    NoLevel { level: String, levels: String },
    Rounds { official: u8, other: u8 },
}

impl std::error::Error for ReconcileError {}

/// Error text for people (the CLI prints it as is).
impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReconcileError::Candidates { official, other } => write!(
                f,
                "the two sources do not list the same candidates (official: {official}; other: {other})"
            ),
            ReconcileError::NoLevel { level, levels } => {
                write!(f, "no level '{level}' in the official source: the levels are {levels}")
            }
            ReconcileError::Rounds { official, other } => write!(
                f,
                "the sources are different rounds (official round {official}, other round {other}): reconcile two copies of the same round"
            ),
        }
    }
}

/// The class of a station (or, when the official source is coarser, of an official unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Counted in both sources with the same numbers.
    Agree,
    /// Counted in both sources with different numbers.
    Differ,
    /// Counted in the official source only (absent, blank or held back in the other).
    OnlyOfficial,
    /// Counted in the other source only.
    OnlyOther,
    /// Known to one source or both, counted in neither.
    MissingBoth,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Agree => "agree",
            Class::Differ => "differ",
            Class::OnlyOfficial => "only_official",
            Class::OnlyOther => "only_other",
            Class::MissingBoth => "missing_both",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StationCounts {
    /// Stations (units) in the official source, and in the other.
    pub in_official: u64,
    pub in_other: u64,
    /// Ids found in both sources.
    pub matched: u64,
    /// Counted in both: `agree + differ`.
    pub compared: u64,
    pub agree: u64,
    pub differ: u64,
    pub only_official: u64,
    pub only_other: u64,
    pub missing_both: u64,
    /// Stations with at least one validation code in the official source, and in the other.
    pub flagged_official: u64,
    pub flagged_other: u64,
    /// Ids repeated within a source (only the first takes part).
    pub repeated: u64,
}

impl StationCounts {
    /// The counts known once the two sources are matched (the classes are filled in after).
    fn matched(official: &Side<'_>, other: &Side<'_>, m: &StationMatch) -> StationCounts {
        let flagged = |side: &Side<'_>| {
            side.round
                .stations
                .ids
                .iter()
                .filter(|id| side.codes.contains_key(*id))
                .count() as u64
        };
        StationCounts {
            in_official: official.round.len() as u64,
            in_other: other.round.len() as u64,
            matched: m.pairs.len() as u64,
            repeated: m.repeated.len() as u64,
            flagged_official: flagged(official),
            flagged_other: flagged(other),
            ..Default::default()
        }
    }
}

/// One field that differs: `field` is `registered`, `cast`, `invalid`, `valid` or
/// `votes.<candidate id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub official: u64,
    pub other: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub station_id: String,
    /// The official area path.
    pub area: String,
    pub kind: Kind,
    pub confidence: f64,
    /// Other kinds that also fit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Kind>,
    pub fields: Vec<FieldDiff>,
    /// Other minus official, per candidate id.
    pub net: BTreeMap<String, i64>,
    /// Sum of the absolute changes of the candidates' votes (the size of the difference).
    pub size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes_official: Vec<Code>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes_other: Vec<Code>,
}

/// A station counted in one source only, or in neither.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OneSided {
    pub station_id: String,
    pub area: String,
    pub class: Class,
    /// The sheet's status in each source; `null` when the station is not in that file.
    pub status_official: Option<SheetStatus>,
    pub status_other: Option<SheetStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes_official: Vec<Code>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes_other: Vec<Code>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Margin {
    pub first: String,
    pub second: String,
    pub votes: u64,
}

/// One area of `--level`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AreaRow {
    pub area: String,
    pub compared: u64,
    pub differ: u64,
    pub only_official: u64,
    pub only_other: u64,
    pub net: BTreeMap<String, i64>,
    /// Change of the official leader's lead over the runner-up in this area (other minus
    /// official).
    pub lead_change: i64,
    /// How far the number of differing stations is above what the overall rate of differences
    /// predicts for this many compared stations, in standard deviations (Poisson): clusters of
    /// differences rank first, scattered typing errors stay near 0. An anomaly, not a verdict.
    pub excess_z: f64,
}

/// The `tally.reconcile/1` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reconciliation {
    pub schema: &'static str,
    /// `stations` (matched by station id) or `aggregated` (the other source summed to the
    /// official source's coarser units).
    pub mode: &'static str,
    pub round: u8,
    pub rule: String,
    /// Candidate ids in the official order, and their display names.
    pub candidates: Vec<String>,
    pub candidate_names: Vec<String>,
    pub stations: StationCounts,
    /// Number of differences of each kind.
    pub kinds: BTreeMap<Kind, u64>,
    /// Differing stations, largest first.
    pub differences: Vec<Difference>,
    pub one_sided: Vec<OneSided>,
    /// Other minus official, per candidate, over the stations counted in both.
    pub net: BTreeMap<String, i64>,
    pub totals_official: BTreeMap<String, u64>,
    /// The official totals with the other source's numbers wherever they differ, plus its
    /// sheets where the official source has none.
    pub totals_other: BTreeMap<String, u64>,
    /// The other source on its own.
    pub totals_other_source: BTreeMap<String, u64>,
    pub margin_official: Option<Margin>,
    /// The official leader's lead over the official runner-up under `totals_other` (negative
    /// when the runner-up would lead).
    pub lead_other: i64,
    pub outcome_official: Outcome,
    pub outcome_other: Outcome,
    pub outcome_other_source: Outcome,
    pub flips: bool,
    /// Which decisions flip: `winner`, `decided_in_round_1`, `runoff_pair`, `tie`.
    pub flipped: Vec<&'static str>,
    pub worst_case: WorstCase,
    /// The finding in words, numbers included.
    pub sentence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub areas: Option<Vec<AreaRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregated: Option<Aggregated>,
}

/// Candidate `j` of the official round is candidate `map[j]` of the other.
fn candidate_map(a: &Round, b: &Round) -> Result<Vec<usize>, ReconcileError> {
    let ids = |r: &Round| {
        r.candidates
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let map: Option<Vec<usize>> = a
        .candidates
        .iter()
        .map(|c| b.candidate_index(&c.id))
        .collect();
    match map {
        Some(m) if a.candidates.len() == b.candidates.len() => Ok(m),
        _ => Err(ReconcileError::Candidates {
            official: ids(a),
            other: ids(b),
        }),
    }
}

fn codes_of(side: &Side<'_>, id: &str) -> Vec<Code> {
    let mut v = side.codes.get(id).cloned().unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

const CORE: [&str; 4] = ["registered", "cast", "invalid", "valid"];

fn core(r: &Round, i: usize) -> [StoredCount; 4] {
    let s = &r.stations;
    [s.registered[i], s.cast[i], s.invalid[i], s.valid[i]]
}

/// The most that a station's votes can be: cast where a source gives it, else registered, else
/// the largest valid count either source gives.
fn stake(a: Option<(&Round, usize)>, b: Option<(&Round, usize)>) -> u64 {
    let sides = [a, b];
    let best = |field: usize| {
        sides
            .iter()
            .flatten()
            .map(|&(r, i)| core(r, i)[field])
            .filter(|&v| v != MISSING)
            .max()
            .map(u64::from)
    };
    best(1).or_else(|| best(0)).unwrap_or_else(|| {
        sides
            .iter()
            .flatten()
            .filter(|(r, i)| r.stations.status[*i] == SheetStatus::Counted)
            .map(|&(r, i)| {
                r.votes_of(i)
                    .iter()
                    .filter(|&&v| v != MISSING)
                    .map(|&v| u64::from(v))
                    .sum()
            })
            .max()
            .unwrap_or(0)
    })
}

/// Path strings of area nodes at one depth, computed once per node.
struct AreaNames<'a> {
    round: &'a Round,
    depth: u8,
    cache: HashMap<AreaId, String>,
}

impl<'a> AreaNames<'a> {
    fn new(round: &'a Round, depth: u8) -> Self {
        AreaNames {
            round,
            depth,
            cache: HashMap::new(),
        }
    }

    fn of(&mut self, station: usize) -> String {
        let leaf = self.round.stations.area[station];
        let node = self.round.tree.ancestor_at(leaf, self.depth);
        let round = self.round;
        self.cache
            .entry(node)
            .or_insert_with(|| round.tree.path_string(node))
            .clone()
    }
}

/// Accumulates the rows of `--level`.
#[derive(Default)]
pub(crate) struct AreaAcc {
    rows: Vec<(String, [u64; 4], Vec<i64>)>,
    index: HashMap<String, usize>,
}

impl AreaAcc {
    pub(crate) fn add(&mut self, area: String, class: Class, net: Option<&[i64]>, k: usize) {
        let at = match self.index.get(&area) {
            Some(&i) => i,
            None => {
                self.rows.push((area.clone(), [0; 4], vec![0; k]));
                self.index.insert(area, self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[at];
        match class {
            Class::Agree => row.1[0] += 1,
            Class::Differ => {
                row.1[0] += 1;
                row.1[1] += 1;
            }
            Class::OnlyOfficial => row.1[2] += 1,
            Class::OnlyOther => row.1[3] += 1,
            Class::MissingBoth => {}
        }
        if let Some(n) = net {
            row.2.iter_mut().zip(n).for_each(|(a, b)| *a += b);
        }
    }

    pub(crate) fn finish(self, ids: &[String], lead: Option<(usize, usize)>) -> Vec<AreaRow> {
        let (compared, differ) = self
            .rows
            .iter()
            .fold((0u64, 0u64), |(c, d), r| (c + r.1[0], d + r.1[1]));
        let rate = if compared == 0 {
            0.0
        } else {
            differ as f64 / compared as f64
        };
        let mut out: Vec<AreaRow> = self
            .rows
            .into_iter()
            .map(|(area, c, net)| {
                let expected = c[0] as f64 * rate;
                let excess_z = if expected > 0.0 {
                    (c[1] as f64 - expected) / expected.sqrt()
                } else {
                    0.0
                };
                AreaRow {
                    area,
                    compared: c[0],
                    differ: c[1],
                    only_official: c[2],
                    only_other: c[3],
                    lead_change: lead.map_or(0, |(a, b)| net[a] - net[b]),
                    net: ids.iter().cloned().zip(net).collect(),
                    excess_z,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.excess_z
                .total_cmp(&a.excess_z)
                .then(b.differ.cmp(&a.differ))
                .then(a.area.cmp(&b.area))
        });
        out
    }
}

fn level_depth(round: &Round, level: Option<&str>) -> Result<Option<u8>, ReconcileError> {
    match level {
        None | Some("") => Ok(None),
        Some(name) => {
            round
                .tree
                .level_depth(name)
                .map(Some)
                .ok_or_else(|| ReconcileError::NoLevel {
                    level: name.to_string(),
                    levels: if round.tree.levels.is_empty() {
                        "none".into()
                    } else {
                        round.tree.levels.join(", ")
                    },
                })
        }
    }
}

/// The official source is coarser than the other when no station id is shared (`m`, the
/// stations matched by id) and the other source's area tree has more levels (official by
/// district, observers by ballot box).
pub fn is_coarser(official: &Round, other: &Round, m: &StationMatch) -> bool {
    m.pairs.is_empty()
        && !official.tree.levels.is_empty()
        && other.tree.levels.len() > official.tree.levels.len()
}

/// Reconciles `other` against `official` (the reference).
pub fn reconcile(
    official: Side<'_>,
    other: Side<'_>,
    opts: &Options<'_>,
) -> Result<Reconciliation, ReconcileError> {
    let (a, b) = (official.round, other.round);
    if a.number != b.number {
        return Err(ReconcileError::Rounds {
            official: a.number,
            other: b.number,
        });
    }
    let map = candidate_map(a, b)?;
    let depth = level_depth(a, opts.level)?;
    // Matching a million ids is the largest cost of a reconciliation: done once, here.
    let m = match_stations(&a.stations.ids, &b.stations.ids);
    if is_coarser(a, b, &m) {
        return aggregate::reconcile_aggregated(official, other, opts, &map, depth);
    }
    let k = a.candidates.len();
    let ids: Vec<String> = a.candidates.iter().map(|c| c.id.clone()).collect();
    let mut counts = StationCounts::matched(&official, &other, &m);
    let counted = |r: &Round, i: usize| r.stations.status[i] == SheetStatus::Counted;
    let mut names_a = AreaNames::new(a, a.tree.levels.len() as u8);
    let mut names_b = AreaNames::new(b, b.tree.levels.len() as u8);
    let mut level_a = depth.map(|d| AreaNames::new(a, d));
    let mut level_b = depth.map(|d| AreaNames::new(b, b.tree.levels.len().min(d as usize) as u8));
    let mut areas = AreaAcc::default();
    let mut net = vec![0i64; k];
    let mut only_other_votes = vec![0u64; k];
    let mut differences = Vec::new();
    let mut one_sided = Vec::new();
    let mut stake_votes = 0u64;
    let mut stake_stations = 0u64;
    let mut kinds: BTreeMap<Kind, u64> = BTreeMap::new();
    // A station counted in one source only, or in neither (a macro: it needs the area-name
    // caches that the loop also uses).
    macro_rules! one {
        ($class:expr, $ia:expr, $jb:expr) => {{
            let (class, ia, jb): (Class, Option<usize>, Option<usize>) = ($class, $ia, $jb);
            match class {
                Class::OnlyOfficial => counts.only_official += 1,
                Class::OnlyOther => counts.only_other += 1,
                _ => counts.missing_both += 1,
            }
            let id = match (ia, jb) {
                (Some(i), _) => a.stations.ids[i].to_string(),
                (None, Some(j)) => b.stations.ids[j].to_string(),
                (None, None) => String::new(),
            };
            one_sided.push(OneSided {
                area: match (ia, jb) {
                    (Some(i), _) => names_a.of(i),
                    (None, Some(j)) => names_b.of(j),
                    (None, None) => String::new(),
                },
                class,
                status_official: ia.map(|i| a.stations.status[i]),
                status_other: jb.map(|j| b.stations.status[j]),
                codes_official: codes_of(&official, &id),
                codes_other: codes_of(&other, &id),
                station_id: id,
            });
        }};
    }
    for &(i, j) in &m.pairs {
        let class = match (counted(a, i), counted(b, j)) {
            (true, true) => {
                let va = a.votes_of(i);
                let (ca, cb) = (core(a, i), core(b, j));
                // Most stations agree: check without allocating before building the difference.
                let raw = b.votes_of(j);
                let same = (0..k).all(|x| va[x] == raw[map[x]])
                    && (0..4).all(|f| ca[f] == MISSING || cb[f] == MISSING || ca[f] == cb[f]);
                if same {
                    counts.agree += 1;
                    if let Some(l) = level_a.as_mut() {
                        areas.add(l.of(i), Class::Agree, None, k);
                    }
                    continue;
                }
                let vb: Vec<StoredCount> = map.iter().map(|&x| raw[x]).collect();
                let mut fields = Vec::new();
                for f in 0..4 {
                    if ca[f] != MISSING && cb[f] != MISSING && ca[f] != cb[f] {
                        fields.push(FieldDiff {
                            field: CORE[f].into(),
                            official: ca[f].into(),
                            other: cb[f].into(),
                        });
                    }
                }
                let d: Vec<i64> = (0..k).map(|x| vb[x] as i64 - va[x] as i64).collect();
                for x in 0..k {
                    if va[x] != vb[x] {
                        fields.push(FieldDiff {
                            field: format!("votes.{}", ids[x]),
                            official: va[x].into(),
                            other: vb[x].into(),
                        });
                    }
                }
                net.iter_mut().zip(&d).for_each(|(n, x)| *n += x);
                if fields.is_empty() {
                    counts.agree += 1;
                    if let Some(l) = level_a.as_mut() {
                        areas.add(l.of(i), Class::Agree, None, k);
                    }
                    continue;
                }
                let c = classify(va, &vb).unwrap_or_else(|| {
                    // Only totals differ: read the first differing total as one number.
                    let f = &fields[0];
                    Classification {
                        kind: kinds::single_number(f.official, f.other).unwrap_or(Kind::Other),
                        confidence: 0.5,
                        also: Vec::new(),
                    }
                });
                *kinds.entry(c.kind).or_default() += 1;
                counts.differ += 1;
                stake_stations += 1;
                stake_votes += stake(Some((a, i)), Some((b, j)));
                if let Some(l) = level_a.as_mut() {
                    areas.add(l.of(i), Class::Differ, Some(&d), k);
                }
                let id = &a.stations.ids[i];
                differences.push(Difference {
                    station_id: id.to_string(),
                    area: names_a.of(i),
                    kind: c.kind,
                    confidence: c.confidence,
                    also: c.also,
                    fields,
                    size: d.iter().map(|x| x.unsigned_abs()).sum(),
                    net: ids.iter().cloned().zip(d).collect(),
                    codes_official: codes_of(&official, id),
                    codes_other: codes_of(&other, id),
                });
                continue;
            }
            (true, false) => Class::OnlyOfficial,
            (false, true) => Class::OnlyOther,
            (false, false) => Class::MissingBoth,
        };
        if class == Class::OnlyOther {
            let vb = b.votes_of(j);
            only_other_votes
                .iter_mut()
                .zip(&map)
                .for_each(|(s, &x)| *s += u64::from(vb[x]));
        }
        if matches!(class, Class::OnlyOfficial | Class::OnlyOther) {
            stake_stations += 1;
            stake_votes += stake(Some((a, i)), Some((b, j)));
        }
        if let Some(l) = level_a.as_mut() {
            areas.add(l.of(i), class, None, k);
        }
        one!(class, Some(i), Some(j));
    }
    for &i in &m.only_a {
        let class = if counted(a, i) {
            stake_stations += 1;
            stake_votes += stake(Some((a, i)), None);
            Class::OnlyOfficial
        } else {
            Class::MissingBoth
        };
        if let Some(l) = level_a.as_mut() {
            areas.add(l.of(i), class, None, k);
        }
        one!(class, Some(i), None);
    }
    for &j in &m.only_b {
        let class = if counted(b, j) {
            stake_stations += 1;
            stake_votes += stake(None, Some((b, j)));
            let vb = b.votes_of(j);
            only_other_votes
                .iter_mut()
                .zip(&map)
                .for_each(|(s, &x)| *s += u64::from(vb[x]));
            Class::OnlyOther
        } else {
            Class::MissingBoth
        };
        if let Some(l) = level_b.as_mut() {
            areas.add(l.of(j), class, None, k);
        }
        one!(class, None, Some(j));
    }
    counts.compared = counts.agree + counts.differ;
    differences.sort_by(|x, y| y.size.cmp(&x.size).then(x.station_id.cmp(&y.station_id)));

    let official_votes = counted_votes(a, None);
    let other_source_votes = counted_votes(b, Some(&map));
    let replaced: Vec<u64> = (0..k)
        .map(|x| (official_votes[x] as i64 + net[x]) as u64 + only_other_votes[x])
        .collect();
    let mut r = finish(
        FinishInput {
            official: a,
            rule: opts.rule,
            mode: "stations",
            counts,
            kinds,
            differences,
            one_sided,
            net,
            official_votes,
            replaced,
            other_source_votes,
            stake_stations,
            stake_votes,
        },
        None,
    );
    if depth.is_some() {
        r.areas = Some(areas.finish(&r.candidates, lead_pair(&r)));
    }
    r.sentence = sentence(&r);
    Ok(r)
}

/// Votes per candidate over the counted stations, in the official candidate order (`map` gives
/// the other source's index of each official candidate).
pub(crate) fn counted_votes(r: &Round, map: Option<&[usize]>) -> Vec<u64> {
    let k = r.candidates.len();
    let mut t = vec![0u64; k];
    for i in 0..r.len() {
        if r.stations.status[i] == SheetStatus::Counted {
            let v = r.votes_of(i);
            for (x, s) in t.iter_mut().enumerate() {
                *s += u64::from(v[map.map_or(x, |m| m[x])]);
            }
        }
    }
    t
}

pub(crate) struct FinishInput<'a> {
    pub official: &'a Round,
    pub rule: &'a Rule,
    pub mode: &'static str,
    pub counts: StationCounts,
    pub kinds: BTreeMap<Kind, u64>,
    pub differences: Vec<Difference>,
    pub one_sided: Vec<OneSided>,
    pub net: Vec<i64>,
    pub official_votes: Vec<u64>,
    pub replaced: Vec<u64>,
    pub other_source_votes: Vec<u64>,
    pub stake_stations: u64,
    pub stake_votes: u64,
}

fn lead_pair(r: &Reconciliation) -> Option<(usize, usize)> {
    let m = r.margin_official.as_ref()?;
    let pos = |id: &str| r.candidates.iter().position(|c| c == id);
    Some((pos(&m.first)?, pos(&m.second)?))
}

fn ranking(votes: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..votes.len()).collect();
    order.sort_by(|&x, &y| votes[y].cmp(&votes[x]).then(x.cmp(&y)));
    order
}

pub(crate) fn finish(f: FinishInput<'_>, aggregated: Option<Aggregated>) -> Reconciliation {
    let a = f.official;
    let ids: Vec<String> = a.candidates.iter().map(|c| c.id.clone()).collect();
    let names: Vec<String> = a.candidates.iter().map(|c| c.name.clone()).collect();
    let order = ranking(&f.official_votes);
    let margin_official = (order.len() >= 2).then(|| Margin {
        first: ids[order[0]].clone(),
        second: ids[order[1]].clone(),
        votes: f.official_votes[order[0]] - f.official_votes[order[1]],
    });
    let lead_other = if order.len() >= 2 {
        f.replaced[order[0]] as i64 - f.replaced[order[1]] as i64
    } else {
        0
    };
    let outcome_official = impact::decide(f.rule, a.number, &ids, &f.official_votes);
    let outcome_other = impact::decide(f.rule, a.number, &ids, &f.replaced);
    let outcome_other_source = impact::decide(f.rule, a.number, &ids, &f.other_source_votes);
    let flipped = impact::flipped(&outcome_official, &outcome_other);
    let worst_case = impact::worst_case(
        f.rule,
        a.number,
        &ids,
        &names,
        &f.official_votes,
        f.stake_stations,
        f.stake_votes,
    );
    let by_id = |v: &[u64]| -> BTreeMap<String, u64> {
        ids.iter().cloned().zip(v.iter().copied()).collect()
    };
    Reconciliation {
        schema: SCHEMA,
        mode: f.mode,
        round: a.number,
        rule: f.rule.name.clone(),
        stations: f.counts,
        kinds: f.kinds,
        differences: f.differences,
        one_sided: f.one_sided,
        net: ids.iter().cloned().zip(f.net.iter().copied()).collect(),
        totals_official: by_id(&f.official_votes),
        totals_other: by_id(&f.replaced),
        totals_other_source: by_id(&f.other_source_votes),
        margin_official,
        lead_other,
        outcome_official,
        outcome_other,
        outcome_other_source,
        flips: !flipped.is_empty(),
        flipped,
        worst_case,
        sentence: String::new(),
        areas: None,
        aggregated,
        candidates: ids,
        candidate_names: names,
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn signed(v: i64) -> String {
    if v < 0 {
        format!("-{}", thousands(v.unsigned_abs()))
    } else {
        thousands(v as u64)
    }
}

fn outcome_words(o: &Outcome, name: &dyn Fn(&str) -> String) -> String {
    match o {
        Outcome::Elected { winner, .. } => format!("{} elected", name(winner)),
        Outcome::Runoff { runoff, .. } => {
            format!(
                "a runoff between {} and {}",
                name(&runoff[0]),
                name(&runoff[1])
            )
        }
        Outcome::Undecided { reason, .. } => format!("undecided ({reason})"),
    }
}

/// The finding in words: what differs, what it does to the margin and the outcome, and what the
/// votes in dispute could do at most.
pub fn sentence(r: &Reconciliation) -> String {
    let name = |id: &str| -> String {
        r.candidates
            .iter()
            .position(|c| c == id)
            .map_or(id.to_string(), |i| r.candidate_names[i].clone())
    };
    let unit = if r.mode == "aggregated" {
        "official units"
    } else {
        "stations"
    };
    let s = &r.stations;
    let mut out = format!(
        "{} of {} {} compared differ",
        thousands(s.differ),
        thousands(s.compared),
        unit
    );
    if s.only_official + s.only_other > 0 {
        out.push_str(&format!(
            " ({} counted only officially, {} only in the other source)",
            thousands(s.only_official),
            thousands(s.only_other)
        ));
    }
    out.push_str("; ");
    match &r.margin_official {
        Some(m) => {
            let (x, y) = (m.votes as i64, r.lead_other);
            let change = if y < x {
                format!(
                    "would shrink by {} votes, from {} to {}",
                    thousands((x - y) as u64),
                    thousands(m.votes),
                    signed(y)
                )
            } else if y > x {
                format!(
                    "would grow by {} votes, from {} to {}",
                    thousands((y - x) as u64),
                    thousands(m.votes),
                    signed(y)
                )
            } else {
                format!("would stay {} votes", thousands(m.votes))
            };
            out.push_str(&format!(
                "if the other source were right everywhere, {}'s margin over {} {change}",
                name(&m.first),
                name(&m.second),
            ));
        }
        None => out.push_str("there is no margin to compare"),
    }
    if r.flips {
        out.push_str(&format!(
            ": the outcome would change ({} instead of {}; {}).",
            outcome_words(&r.outcome_other, &name),
            outcome_words(&r.outcome_official, &name),
            r.flipped.join(", ")
        ));
    } else {
        out.push_str(&format!(
            ": the outcome stands ({}).",
            outcome_words(&r.outcome_official, &name)
        ));
    }
    let w = &r.worst_case;
    out.push_str(&format!(
        " {} {} in dispute hold at most {} votes",
        thousands(w.stations),
        unit,
        thousands(w.votes_at_stake)
    ));
    match (&w.votes_to_flip, w.could_flip) {
        (Some(v), true) => out.push_str(&format!(
            ": enough, if every one went against the official outcome, to change a decision (it takes {}).",
            w.scenario.clone().unwrap_or_else(|| thousands(*v))
        )),
        (Some(v), false) => out.push_str(&format!(
            ": not enough to change any decision of the rule (the fewest votes that would: {}).",
            w.scenario.clone().unwrap_or_else(|| thousands(*v))
        )),
        (None, _) => out.push('.'),
    }
    if let Some(ag) = &r.aggregated {
        if ag.bound_violations.is_empty() {
            out.push_str(" No official unit has fewer votes for a candidate than the observers counted in it.");
        } else {
            out.push_str(&format!(
                " In {} official units the observers counted more votes for a candidate than the official total: listed first, to be checked sheet by sheet.",
                thousands(ag.bound_violations.len() as u64)
            ));
        }
    }
    out
}

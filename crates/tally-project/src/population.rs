//! The stations a projection is about: every station of the election with its size, its area,
//! its covariates from the baseline, and its counts where it has reported.
//!
//! Built once per input (a partial count, or a final count a backtest replays) so the model can be
//! refitted for any set of reported stations without touching the rounds again.

use tally_model::{
    match_stations, saturate, sum_counts, AreaId, AreaTree, Candidate, Round, SheetStatus,
    StoredCount, MISSING, ROOT,
};

/// How many baseline candidates become covariates; the rest are summed into one "others" column
/// (a round 1 with 30 candidates would otherwise give the model 30 near-empty columns).
const MAX_BASELINE_COLUMNS: usize = 12;

/// Where a station's size (registered voters) came from, when the partial count lacks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SizeFrom {
    Partial,
    Registry,
    Baseline,
    /// Unknown everywhere: the median size of its area's stations (an assumption, reported).
    AreaMedian,
}

/// The population of stations with everything the model reads.
#[derive(Clone, Debug)]
pub struct Population<'a> {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) round: u8,
    pub(crate) ids: Vec<&'a str>,
    /// Registered voters used as the station's size (at least its cast ballots once counted).
    pub(crate) size: Vec<f64>,
    /// The station's area at the level of the area effects (index into `groups`).
    pub(crate) group: Vec<u32>,
    pub(crate) groups: Vec<String>,
    /// The areas, and each station's leaf in it (strata, orders by area).
    pub(crate) tree: AreaTree,
    pub(crate) leaf: Vec<AreaId>,
    pub(crate) levels: Vec<String>,
    pub(crate) level: Option<String>,
    /// Dense covariates, row-major `n x p`.
    pub(crate) x: Vec<f64>,
    pub(crate) p: usize,
    /// Candidate votes, row-major `n x k`; `MISSING` where the station has not reported.
    pub(crate) votes: Vec<StoredCount>,
    /// Ballots cast (valid votes where the source has no cast count); `MISSING` when not reported.
    pub(crate) turnout: Vec<StoredCount>,
    /// Stations that will be counted: annulled and not-installed stations are out of play.
    pub(crate) in_play: Vec<bool>,
    /// Stations counted in the input.
    pub(crate) counted: Vec<bool>,
    pub(crate) has_baseline: Vec<bool>,
    pub(crate) sizes_from: [usize; 4],
}

/// What the population is built from.
pub struct Inputs<'a> {
    /// The round being projected (counted stations have reported; the others have not).
    pub partial: &'a Round,
    /// An earlier result for the same stations, matched by station id.
    pub baseline: Option<&'a Round>,
    /// The full station list with registered voters, when the partial count lacks stations.
    pub registry: Option<&'a Round>,
    /// The area level of the area effects (`None`: chosen from the tree, see [`default_level`]).
    pub level: Option<&'a str>,
}

/// The deepest level whose areas hold at least ten stations on average (areas that small still
/// let the model learn an area effect from its first reports); the first level when none does.
pub fn default_level(round: &Round) -> Option<String> {
    let n = round.len();
    let tree = &round.tree;
    let mut chosen = tree.levels.first().cloned();
    for (i, name) in tree.levels.iter().enumerate() {
        let areas = tree.nodes_at(i as u8 + 1).count();
        if areas > 0 && n >= 10 * areas {
            chosen = Some(name.clone());
        }
    }
    chosen
}

/// Errors that stop a projection before it starts.
#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("no area level named {0:?}; the levels are: {1}")]
    UnknownLevel(String, String),
    #[error("the partial count has no candidates")]
    NoCandidates,
    #[error("no station to project: the partial count and the registry list none")]
    Empty,
}

fn known(v: StoredCount) -> Option<u64> {
    (v != MISSING).then_some(u64::from(v))
}

impl<'a> Population<'a> {
    pub fn build(inp: &Inputs<'a>) -> Result<Population<'a>, PopulationError> {
        let partial = inp.partial;
        if partial.candidates.is_empty() {
            return Err(PopulationError::NoCandidates);
        }
        // The station list: the registry's when given (with partial stations it lacks appended),
        // else the partial count's own.
        let list: &Round = inp.registry.unwrap_or(partial);
        let tree = &list.tree;
        let level = match inp.level {
            Some(l) => {
                tree.level_depth(l).ok_or_else(|| {
                    PopulationError::UnknownLevel(l.to_string(), tree.levels.join(", "))
                })?;
                Some(l.to_string())
            }
            None => default_level(list),
        };
        let depth = level
            .as_deref()
            .and_then(|l| tree.level_depth(l))
            .unwrap_or(0);

        let k = partial.candidates.len();
        // The areas: the list's tree (partial stations the registry lacks are added to it).
        let mut tree = tree.clone();
        let mut ids: Vec<&'a str> = Vec::new();
        let mut leaf: Vec<AreaId> = Vec::new();
        let mut reg: Vec<Option<u64>> = Vec::new();
        let mut reg_from: Vec<SizeFrom> = Vec::new();
        let mut src: Vec<Option<usize>> = Vec::new(); // index in partial
        let mut in_play: Vec<bool> = Vec::new();

        match inp.registry {
            Some(registry) => {
                let m = match_stations(&registry.stations.ids, &partial.stations.ids);
                let mut partner = vec![None; registry.len()];
                for &(i, j) in &m.pairs {
                    partner[i] = Some(j);
                }
                let mut repeated = vec![false; registry.len()];
                for &(side, i) in &m.repeated {
                    if side == 0 {
                        repeated[i] = true;
                    }
                }
                for (i, &j) in partner.iter().enumerate() {
                    if repeated[i] {
                        continue;
                    }
                    ids.push(&registry.stations.ids[i]);
                    leaf.push(registry.stations.area[i]);
                    match j.and_then(|j| known(partial.stations.registered[j])) {
                        Some(r) => {
                            reg.push(Some(r));
                            reg_from.push(SizeFrom::Partial);
                        }
                        None => {
                            reg.push(known(registry.stations.registered[i]));
                            reg_from.push(SizeFrom::Registry);
                        }
                    }
                    src.push(j);
                    in_play.push(playing(
                        j.map(|j| partial.stations.status[j])
                            .unwrap_or(registry.stations.status[i]),
                    ));
                }
                for &j in &m.only_b {
                    ids.push(&partial.stations.ids[j]);
                    leaf.push(tree.leaf(partial.tree.path(partial.stations.area[j])));
                    reg.push(known(partial.stations.registered[j]));
                    reg_from.push(SizeFrom::Partial);
                    src.push(Some(j));
                    in_play.push(playing(partial.stations.status[j]));
                }
            }
            None => {
                // An imported round has each station once; a repeat (a hand-built round) is
                // skipped rather than counted twice.
                let mut seen = ahash::AHashSet::with_capacity(partial.len());
                for j in 0..partial.len() {
                    if !seen.insert(&partial.stations.ids[j]) {
                        continue;
                    }
                    ids.push(&partial.stations.ids[j]);
                    leaf.push(partial.stations.area[j]);
                    reg.push(known(partial.stations.registered[j]));
                    reg_from.push(SizeFrom::Partial);
                    src.push(Some(j));
                    in_play.push(playing(partial.stations.status[j]));
                }
            }
        }
        let n = ids.len();
        if n == 0 {
            return Err(PopulationError::Empty);
        }

        // Counts of the stations that have reported.
        let mut votes = vec![MISSING; n * k];
        let mut turnout = vec![MISSING; n];
        let mut counted = vec![false; n];
        for i in 0..n {
            let Some(j) = src[i] else { continue };
            if partial.stations.status[j] != SheetStatus::Counted {
                continue;
            }
            let v = partial.votes_of(j);
            if v.contains(&MISSING) {
                continue;
            }
            counted[i] = true;
            votes[i * k..(i + 1) * k].copy_from_slice(v);
            let valid = sum_counts(v);
            turnout[i] = saturate(known(partial.stations.cast[j]).unwrap_or(valid).max(valid));
        }

        // Baseline covariates.
        let mut has_baseline = vec![false; n];
        let mut base_shares: Vec<f64> = Vec::new();
        let mut base_width = 0usize;
        let mut base_turnout = vec![0.0; n];
        let mut base_names: Vec<String> = Vec::new();
        if let Some(b) = inp.baseline {
            let kb = b.candidates.len();
            // Columns: the largest baseline candidates nationally, the rest summed.
            let mut national = vec![0u64; kb];
            for s in 0..b.len() {
                if b.stations.status[s] == SheetStatus::Counted {
                    for (acc, &v) in national.iter_mut().zip(b.votes_of(s)) {
                        *acc += known(v).unwrap_or(0);
                    }
                }
            }
            let mut order: Vec<usize> = (0..kb).collect();
            order.sort_by(|&a, &c| national[c].cmp(&national[a]).then(a.cmp(&c)));
            let keep = if kb > MAX_BASELINE_COLUMNS {
                MAX_BASELINE_COLUMNS - 1
            } else {
                kb
            };
            let mut column = vec![keep; kb];
            for (pos, &c) in order.iter().enumerate().take(keep) {
                column[c] = pos;
                base_names.push(format!("baseline {}", b.candidates[c].id));
            }
            let width = if kb > keep { keep + 1 } else { keep };
            if kb > keep {
                base_names.push("baseline others".into());
            }
            base_shares = vec![0.0; width * n];
            base_width = width;
            let m = match_stations(&ids, &b.stations.ids);
            for &(i, s) in &m.pairs {
                if b.stations.status[s] != SheetStatus::Counted {
                    continue;
                }
                let v = b.votes_of(s);
                if v.contains(&MISSING) {
                    continue;
                }
                let valid = sum_counts(v);
                let cast = known(b.stations.cast[s]).unwrap_or(valid).max(valid);
                let size = known(b.stations.registered[s]).unwrap_or(0).max(cast);
                if size == 0 {
                    continue;
                }
                has_baseline[i] = true;
                for (c, &vc) in v.iter().enumerate() {
                    base_shares[i * width + column[c]] += vc as f64 / size as f64;
                }
                base_turnout[i] = cast as f64 / size as f64;
                if reg[i].is_none() {
                    reg[i] = known(b.stations.registered[s]).filter(|&r| r > 0);
                    reg_from[i] = SizeFrom::Baseline;
                }
            }
        }

        // Sizes: registered voters, at least the ballots cast; unknown sizes from the area median.
        let mut groups: Vec<String> = Vec::new();
        let mut group = vec![0u32; n];
        {
            let mut index = vec![u32::MAX; tree.len() + 1];
            for (i, &l) in leaf.iter().enumerate() {
                let a = if depth == 0 {
                    ROOT
                } else {
                    tree.ancestor_at(l, depth)
                };
                if index[a as usize] == u32::MAX {
                    index[a as usize] = groups.len() as u32;
                    groups.push(tree.path_string(a));
                }
                group[i] = index[a as usize];
            }
        }
        let mut size = vec![0.0; n];
        let mut by_group: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
        for i in 0..n {
            let r = reg[i].unwrap_or(0).max(known(turnout[i]).unwrap_or(0));
            if r > 0 {
                size[i] = r as f64;
                by_group[group[i] as usize].push(r as f64);
            }
        }
        let mut all: Vec<f64> = by_group.iter().flatten().copied().collect();
        let overall = median(&mut all).unwrap_or(1.0);
        let medians: Vec<f64> = by_group
            .iter_mut()
            .map(|v| median(v).unwrap_or(overall))
            .collect();
        let mut sizes_from = [0usize; 4];
        for i in 0..n {
            if size[i] == 0.0 {
                size[i] = medians[group[i] as usize].max(1.0);
                reg_from[i] = SizeFrom::AreaMedian;
            }
            if in_play[i] {
                sizes_from[reg_from[i] as usize] += 1;
            }
        }

        // Dense covariates: intercept, [has baseline], baseline shares and turnout, log size.
        let any_b = has_baseline.iter().any(|&h| h);
        let all_b = has_baseline.iter().all(|&h| h);
        let mut feature_names = vec!["intercept".to_string()];
        if any_b && !all_b {
            feature_names.push("has baseline".into());
        }
        if any_b {
            feature_names.extend(base_names.iter().cloned());
            feature_names.push("baseline turnout".into());
        }
        feature_names.push("log size".into());
        // Size enters as a piecewise-linear curve: hinges below the 10th, 25th and 50th
        // percentiles of log size let the smallest stations (care homes, hospitals, ships: often
        // the last in and unlike the rest) differ from a straight line.
        let mut logs: Vec<f64> = size.iter().map(|s| s.ln()).collect();
        let knots: Vec<f64> = [0.10, 0.25, 0.50]
            .iter()
            .map(|q| {
                let at = ((n - 1) as f64 * q) as usize;
                *logs.select_nth_unstable_by(at, |a, b| a.total_cmp(b)).1
            })
            .collect();
        for q in [10, 25, 50] {
            feature_names.push(format!("log size below its {q}th percentile"));
        }
        let p = feature_names.len();
        let mean_log = logs.iter().sum::<f64>() / n as f64;
        let mut x = Vec::with_capacity(n * p);
        for i in 0..n {
            x.push(1.0);
            if any_b && !all_b {
                x.push(if has_baseline[i] { 1.0 } else { 0.0 });
            }
            if any_b {
                x.extend_from_slice(&base_shares[i * base_width..(i + 1) * base_width]);
                x.push(base_turnout[i]);
            }
            let l = size[i].ln();
            x.push(l - mean_log);
            for &k in &knots {
                x.push((k - l).max(0.0));
            }
        }

        Ok(Population {
            candidates: partial.candidates.clone(),
            round: partial.number,
            ids,
            size,
            group,
            groups,
            levels: tree.levels.clone(),
            tree,
            leaf,
            level: if depth == 0 { None } else { level },
            x,
            p,
            votes,
            turnout,
            in_play,
            counted,
            has_baseline,
            sizes_from,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    pub fn ids(&self) -> &[&'a str] {
        &self.ids
    }

    /// Which stations have reported in the input (counted sheets).
    pub fn counted(&self) -> &[bool] {
        &self.counted
    }

    /// Stations that will be counted (not annulled, not "not installed").
    pub fn in_play(&self) -> &[bool] {
        &self.in_play
    }

    /// Registered voters used as each station's size.
    pub fn sizes(&self) -> &[f64] {
        &self.size
    }

    /// Station `i`'s area at `depth` (1 = the first level; 0 = the whole election).
    pub fn area_at(&self, i: usize, depth: u8) -> AreaId {
        if depth == 0 {
            ROOT
        } else {
            self.tree.ancestor_at(self.leaf[i], depth)
        }
    }

    /// The path of an area, for output.
    pub fn area_name(&self, a: AreaId) -> String {
        self.tree.path_string(a)
    }

    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    pub(crate) fn k(&self) -> usize {
        self.candidates.len()
    }

    pub(crate) fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.p..(i + 1) * self.p]
    }

    pub(crate) fn votes_of(&self, i: usize) -> &[StoredCount] {
        let k = self.k();
        &self.votes[i * k..(i + 1) * k]
    }
}

fn playing(s: SheetStatus) -> bool {
    !matches!(s, SheetStatus::Annulled | SheetStatus::NotInstalled)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    Some(*m)
}

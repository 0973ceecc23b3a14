//! Counting: exact integer totals for every area at every level, in one parallel pass over the
//! stations plus one reverse pass over the tree (children before parents).

use crate::area::AreaId;
use crate::area::AreaTree;
use crate::round::{Round, SheetStatus, StoredCount, MISSING};
use rayon::prelude::*;
use serde::Serialize;
use std::ops::Range;

/// Totals of one area (or of the whole election) for one round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Stations known in this area (counted, missing, annulled or quarantined).
    pub stations_known: u64,
    /// Stations with a counted sheet.
    pub stations_counted: u64,
    /// Registered voters of counted stations (where the source gives them).
    pub registered: u64,
    /// Registered voters of all known stations (where the source gives them): progress base.
    pub registered_known: u64,
    pub cast: u64,
    pub invalid: u64,
    pub valid: u64,
    /// Cast and registered over the counted stations that give both (the turnout base).
    pub turnout_cast: u64,
    pub turnout_registered: u64,
    /// Votes per candidate, in the round's candidate order.
    pub votes: Vec<u64>,
    /// Extra count lines, in the round's `extra_lines` order (absent cells count as 0).
    pub extra: Vec<u64>,
}

impl Totals {
    /// All zero, with room for `k` candidates and `e` extra lines.
    fn zero(k: usize, e: usize) -> Totals {
        Totals {
            votes: vec![0; k],
            extra: vec![0; e],
            ..Totals::default()
        }
    }

    /// Adds what station `i` contributes to its area's totals (see [`Totals::add_stations`]).
    #[inline]
    fn add_station(&mut self, round: &Round, i: usize) {
        self.add_stations(round, i..i + 1);
    }

    /// Adds what the stations `rows` contribute, the columns sliced once for them all (a run of
    /// one area's stations, as files list them): the one definition of a station's
    /// contribution, used by [`count`], [`count_root`] and [`station_totals`] (the live
    /// server's incremental updates). Absent counts add nothing; only counted sheets add votes.
    #[inline]
    fn add_stations(&mut self, round: &Round, rows: Range<usize>) {
        let s = &round.stations;
        let k = round.candidates.len();
        let e = round.extra_lines.len();
        let known = |v: StoredCount| if v == MISSING { 0 } else { u64::from(v) };
        let status = &s.status[rows.clone()];
        let registered = &s.registered[rows.clone()];
        let cast = &s.cast[rows.clone()];
        let invalid = &s.invalid[rows.clone()];
        let valid = &s.valid[rows.clone()];
        let votes = &s.votes[rows.start * k..rows.end * k];
        let extra = &s.extra[rows.start * e..rows.end * e];
        self.stations_known += rows.len() as u64;
        for (j, (&st, &reg)) in status.iter().zip(registered).enumerate() {
            self.registered_known += known(reg);
            if st != SheetStatus::Counted {
                continue;
            }
            let c = cast[j];
            self.stations_counted += 1;
            self.registered += known(reg);
            self.cast += known(c);
            self.invalid += known(invalid[j]);
            self.valid += known(valid[j]);
            if reg != MISSING && c != MISSING {
                self.turnout_cast += u64::from(c);
                self.turnout_registered += u64::from(reg);
            }
            for (acc, &v) in self.votes.iter_mut().zip(&votes[j * k..(j + 1) * k]) {
                *acc += known(v);
            }
            for (acc, &v) in self.extra.iter_mut().zip(&extra[j * e..(j + 1) * e]) {
                *acc += known(v);
            }
        }
    }

    /// Turnout in percent, over the stations that give both registered and cast.
    pub fn turnout_pct(&self) -> Option<f64> {
        (self.turnout_registered > 0)
            .then(|| 100.0 * self.turnout_cast as f64 / self.turnout_registered as f64)
    }

    /// Share of valid votes in percent, full precision (display rounding is the caller's).
    pub fn share_pct(&self, candidate: usize) -> Option<f64> {
        let base: u64 = self.votes.iter().sum();
        (base > 0).then(|| 100.0 * self.votes[candidate] as f64 / base as f64)
    }

    /// Candidate indices by votes, highest first (ties by candidate order).
    pub fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.votes.len()).collect();
        order.sort_by(|&a, &b| self.votes[b].cmp(&self.votes[a]).then(a.cmp(&b)));
        order
    }
}

/// Totals of every node of the round's area tree, indexed by `AreaId` (node 0 = whole election).
///
/// Stations are added straight into their area's [`Totals`] (no flat scratch table beside the
/// result: at a million stations that copy was the import's largest transient).
pub fn count(round: &Round) -> Vec<Totals> {
    let k = round.candidates.len();
    let e = round.extra_lines.len();
    let nodes = round.tree.len();
    let n = round.len();
    let zero = Totals::zero(k, e);
    let mut totals: Vec<Totals> = (0..nodes)
        .into_par_iter()
        .with_min_len(4096)
        .map(|_| zero.clone())
        .collect();
    // Each core adds the stations of its own range of area nodes: no set of totals is
    // duplicated or merged, and every core reads the (small) area column whole. A few ranges
    // a core, so that one range with more stations than the others does not hold the rest up.
    let parts = if n >= 65_536 {
        rayon::current_num_threads().max(1) * 4
    } else {
        1
    };
    let area = &round.stations.area;
    let per = nodes.div_ceil(parts).max(1);
    let runs = area_runs(area);
    totals.par_chunks_mut(per).enumerate().for_each(|(p, own)| {
        let lo = p * per;
        let hi = lo + own.len();
        match &runs {
            Some(starts) => {
                for w in starts.windows(2) {
                    let (a, b) = (w[0] as usize, w[1] as usize);
                    let at = area[a] as usize;
                    if (lo..hi).contains(&at) {
                        own[at - lo].add_stations(round, a..b);
                    }
                }
            }
            None => {
                for (i, &a) in area.iter().enumerate() {
                    let a = a as usize;
                    if (lo..hi).contains(&a) {
                        own[a - lo].add_station(round, i);
                    }
                }
            }
        }
    });
    propagate(&round.tree, &mut totals);
    totals
}

/// The whole election's totals alone: [`count`]'s root, without the totals of every area
/// (what a report of the whole election without a level reads). Each core adds a range of
/// the stations into totals of its own, in one run: no area is looked at.
pub fn count_root(round: &Round) -> Totals {
    let k = round.candidates.len();
    let e = round.extra_lines.len();
    let n = round.len();
    let per = n
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(1 << 14);
    (0..n.div_ceil(per))
        .into_par_iter()
        .map(|p| {
            let mut t = Totals::zero(k, e);
            t.add_stations(round, p * per..((p + 1) * per).min(n));
            t
        })
        .reduce(
            || Totals::zero(k, e),
            |mut a, b| {
                a.add(&b);
                a
            },
        )
}

/// Where each run of consecutive stations of one area starts, and `n` last; `None` when runs
/// are short (stations not listed area by area), where a run is no cheaper than a station.
fn area_runs(area: &[AreaId]) -> Option<Vec<u32>> {
    let n = area.len();
    let per = n
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(1 << 14);
    let parts: Option<Vec<Vec<u32>>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|p| {
            let (lo, hi) = (p * per, ((p + 1) * per).min(n));
            let mut starts = Vec::new();
            for i in lo..hi {
                if i == 0 || area[i] != area[i - 1] {
                    if starts.len() >= (hi - lo) / 4 {
                        return None;
                    }
                    starts.push(i as u32);
                }
            }
            Some(starts)
        })
        .collect();
    let mut starts = parts?.concat();
    starts.push(u32::try_from(n).ok()?);
    Some(starts)
}

/// What station `i` alone contributes to the totals of its area (and of every ancestor).
pub fn station_totals(round: &Round, i: usize) -> Totals {
    let mut t = Totals::zero(round.candidates.len(), round.extra_lines.len());
    t.add_station(round, i);
    t
}

impl Totals {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &Totals) {
        self.zip_with(other, |a, b| *a += b);
    }

    /// Subtracts `other`, which must have been added before (so nothing underflows).
    pub fn subtract(&mut self, other: &Totals) {
        self.zip_with(other, |a, b| *a -= b);
    }

    fn zip_with(&mut self, o: &Totals, f: impl Fn(&mut u64, u64)) {
        f(&mut self.stations_known, o.stations_known);
        f(&mut self.stations_counted, o.stations_counted);
        f(&mut self.registered, o.registered);
        f(&mut self.registered_known, o.registered_known);
        f(&mut self.cast, o.cast);
        f(&mut self.invalid, o.invalid);
        f(&mut self.valid, o.valid);
        f(&mut self.turnout_cast, o.turnout_cast);
        f(&mut self.turnout_registered, o.turnout_registered);
        if self.votes.len() < o.votes.len() {
            self.votes.resize(o.votes.len(), 0);
        }
        if self.extra.len() < o.extra.len() {
            self.extra.resize(o.extra.len(), 0);
        }
        self.votes
            .iter_mut()
            .zip(&o.votes)
            .for_each(|(a, &b)| f(a, b));
        self.extra
            .iter_mut()
            .zip(&o.extra)
            .for_each(|(a, &b)| f(a, b));
    }
}

/// Adds every node into its parent, deepest first; relies on parent index < child index.
fn propagate(tree: &AreaTree, totals: &mut [Totals]) {
    for id in (1..tree.len()).rev() {
        let parent = tree.nodes[id].parent as usize;
        let (head, tail) = totals.split_at_mut(id);
        head[parent].add(&tail[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::area::AreaTree;
    use crate::round::{Candidate, Round};

    pub(crate) fn small_round() -> Round {
        let mut tree = AreaTree::new("All", vec!["region".into(), "district".into()]);
        let a = tree.leaf(["North", "A"]);
        let b = tree.leaf(["North", "B"]);
        let c = tree.leaf(["South", "C"]);
        let mut r = Round::new(
            1,
            vec![Candidate::new("x"), Candidate::new("y")],
            vec!["blank".into()],
            tree,
        );
        r.push(
            "1",
            a,
            SheetStatus::Counted,
            2,
            [100, 80, 5, 75],
            &[50, 25],
            &[3],
        );
        r.push(
            "2",
            a,
            SheetStatus::Counted,
            3,
            [200, 150, 10, 140],
            &[40, 100],
            &[MISSING],
        );
        r.push(
            "3",
            b,
            SheetStatus::Missing,
            4,
            [300, MISSING, MISSING, MISSING],
            &[0, 0],
            &[MISSING],
        );
        r.push(
            "4",
            c,
            SheetStatus::Counted,
            5,
            [MISSING, MISSING, MISSING, 60],
            &[30, 30],
            &[1],
        );
        r
    }

    #[test]
    fn totals_at_every_level() {
        let r = small_round();
        let t = count(&r);
        let all = &t[0];
        assert_eq!(all.stations_known, 4);
        assert_eq!(all.stations_counted, 3);
        assert_eq!(all.registered, 300);
        assert_eq!(all.registered_known, 600);
        assert_eq!(all.valid, 275);
        assert_eq!(all.votes, vec![120, 155]);
        assert_eq!(all.extra, vec![4]);
        // Turnout only over stations with both registered and cast.
        assert_eq!((all.turnout_cast, all.turnout_registered), (230, 300));
        let north = &t[r.tree.find("North").unwrap() as usize];
        assert_eq!(north.votes, vec![90, 125]);
        assert_eq!(north.stations_known, 3);
        let south = &t[r.tree.find("South").unwrap() as usize];
        assert_eq!(south.turnout_pct(), None);
        assert_eq!(south.share_pct(0), Some(50.0));
        assert_eq!(all.ranking(), vec![1, 0]);
    }

    /// Stations listed area by area are added run by run, stations in no order one by one:
    /// both give the totals station-by-station addition gives.
    #[test]
    fn runs_and_single_stations_give_the_same_totals() {
        let build = |order: &[usize]| {
            let mut tree = AreaTree::new("All", vec!["district".into()]);
            let areas: Vec<AreaId> = (0..5).map(|a| tree.leaf([format!("D{a}")])).collect();
            let mut r = Round::new(
                1,
                vec![Candidate::new("x"), Candidate::new("y")],
                vec![],
                tree,
            );
            for &i in order {
                let status = if i % 7 == 3 {
                    SheetStatus::Quarantined
                } else {
                    SheetStatus::Counted
                };
                let v = i as StoredCount;
                let cast = if i % 11 == 5 { MISSING } else { 2 * v + 10 };
                r.push(
                    &format!("S{i}"),
                    areas[i % 5],
                    status,
                    0,
                    [3 * v + 20, cast, 0, 2 * v + 10],
                    &[v, v + 10],
                    &[],
                );
            }
            r
        };
        let n = 200;
        // Area by area: runs of forty.
        let mut grouped: Vec<usize> = (0..n).collect();
        grouped.sort_by_key(|i| i % 5);
        // Each station in another area than the one before: no runs.
        let mixed: Vec<usize> = (0..n).collect();
        assert!(area_runs(&build(&grouped).stations.area).is_some());
        assert!(area_runs(&build(&mixed).stations.area).is_none());
        let expected = |r: &Round| {
            let mut t = vec![Totals::zero(2, 0); r.tree.len()];
            for i in 0..r.len() {
                let a = r.stations.area[i] as usize;
                t[a].add(&station_totals(r, i));
                t[0].add(&station_totals(r, i));
            }
            t
        };
        for order in [&grouped, &mixed] {
            let r = build(order);
            assert_eq!(count(&r), expected(&r));
        }
        let all = &count(&build(&grouped))[0];
        let counted: Vec<usize> = (0..n).filter(|i| i % 7 != 3).collect();
        assert_eq!(all.stations_known, n as u64);
        assert_eq!(all.stations_counted, counted.len() as u64);
        assert_eq!(all.votes[0], counted.iter().map(|&i| i as u64).sum::<u64>());
        assert_eq!(
            all.registered_known,
            (0..n).map(|i| 3 * i as u64 + 20).sum::<u64>()
        );
        let both: Vec<usize> = counted.iter().copied().filter(|i| i % 11 != 5).collect();
        assert_eq!(
            all.turnout_cast,
            both.iter().map(|&i| 2 * i as u64 + 10).sum::<u64>()
        );
    }

    #[test]
    fn the_root_alone_is_the_root_of_every_area() {
        let r = small_round();
        assert_eq!(count_root(&r), count(&r)[0]);
        assert_eq!(count_root(&r).votes, vec![120, 155]);
        let empty = Round::new(
            1,
            vec![Candidate::new("x")],
            vec![],
            AreaTree::new("All", vec![]),
        );
        assert_eq!(count_root(&empty), count(&empty)[0]);
    }
}

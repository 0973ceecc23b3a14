//! Backtests: a final count replayed in an arrival order, projected at each step, and checked
//! against the end. What a newsroom wants to know before trusting a model on the night: how
//! often the intervals held, how wide they were, and whether any call was wrong.

use crate::call::CallKind;
use crate::population::Population;
use crate::{call, project_reported, Options};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;
use tally_model::Rule;

/// The order in which stations report.
#[derive(Clone, Debug, PartialEq)]
pub enum Order {
    /// Every order equally likely.
    Random,
    /// Large stations first, as cities count and transmit first: stations sorted by registered
    /// voters times a random factor `exp(N(0, 0.5^2))`, largest first (the hard case: the first
    /// stations in are unlike the last).
    UrbanFirst,
    /// Whole areas of a level one after another, areas in random order, stations within an area
    /// in random order.
    ByArea(String),
    /// A fixed order of station indices (from a file of station ids); one replay.
    Fixed(Vec<usize>),
}

impl Order {
    pub fn name(&self) -> String {
        match self {
            Order::Random => "random".into(),
            Order::UrbanFirst => "urban-first".into(),
            Order::ByArea(l) => format!("by-area:{l}"),
            Order::Fixed(_) => "file".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub order: Order,
    /// Percent of stations reported at each step.
    pub steps: Vec<f64>,
    pub replays: usize,
    pub seed: u64,
    pub confidence: f64,
}

/// One step over all replays.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Percent of stations in.
    pub reported: f64,
    /// Share of (replay, candidate) pairs whose interval held the final share.
    pub coverage: f64,
    /// Share of replays whose turnout interval held the final turnout.
    pub turnout_coverage: f64,
    /// Mean width of the leader's share interval, percentage points.
    pub mean_width: f64,
    /// Mean absolute error of the projected shares, percentage points.
    pub mean_error: f64,
    pub calls_elected: usize,
    pub calls_runoff: usize,
    pub too_close: usize,
    pub wrong_calls: usize,
}

/// One replay's projection at one step (kept for the night replayed in words).
#[derive(Clone, Debug, Serialize)]
pub struct Moment {
    pub reported: f64,
    pub stations: usize,
    /// Leader so far and the share so far.
    pub leader_now: String,
    pub share_now: f64,
    pub call: crate::Call,
    pub wrong: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Backtest {
    pub order: String,
    pub replays: usize,
    pub seed: u64,
    pub confidence: f64,
    pub stations: usize,
    /// The final result the replays are checked against.
    pub final_call: crate::Call,
    pub steps: Vec<Step>,
    /// The first replay, step by step.
    pub first_replay: Vec<Moment>,
    pub method: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("no area level named {0:?}; the levels are: {1}")]
    UnknownLevel(String, String),
    #[error("step {0} is not a percentage between 0 and 100")]
    BadStep(f64),
    #[error("the final count has no counted station")]
    Empty,
}

/// Replays `pop` (a final count, every station counted) in `cfg.order`.
pub fn run(pop: &Population, rule: &Rule, cfg: &Config) -> Result<Backtest, BacktestError> {
    for &s in &cfg.steps {
        if !(0.0..=100.0).contains(&s) || !s.is_finite() {
            return Err(BacktestError::BadStep(s));
        }
    }
    // Only what was counted in the end takes part: a station never counted has no final
    // result to check against.
    let mut counted_only = pop.clone();
    for (p, &c) in counted_only.in_play.iter_mut().zip(&pop.counted) {
        *p &= c;
    }
    let pop = &counted_only;
    let stations: Vec<usize> = (0..pop.len())
        .filter(|&i| pop.in_play[i] && pop.counted[i])
        .collect();
    if stations.is_empty() {
        return Err(BacktestError::Empty);
    }
    let depth = match &cfg.order {
        Order::ByArea(l) => Some(
            pop.levels
                .iter()
                .position(|x| x.eq_ignore_ascii_case(l))
                .map(|d| d + 1)
                .ok_or_else(|| BacktestError::UnknownLevel(l.clone(), pop.levels.join(", ")))?,
        ),
        _ => None,
    };
    let opts = Options {
        confidence: cfg.confidence,
    };
    let all = vec![true; pop.len()];
    let truth = project_reported(pop, &all, rule, &opts);
    let final_shares: Vec<f64> = truth.candidates.iter().map(|c| c.share).collect();
    let final_turnout = truth.turnout.share;
    let final_call = truth.call.clone();
    let replays = if matches!(cfg.order, Order::Fixed(_)) {
        1
    } else {
        cfg.replays.max(1)
    };

    let runs: Vec<Vec<(crate::Projection, bool)>> = (0..replays)
        .into_par_iter()
        .map(|r| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(r as u64));
            let order = arrival(pop, &stations, &cfg.order, depth, &mut rng);
            cfg.steps
                .iter()
                .map(|&s| {
                    let take = ((s / 100.0) * order.len() as f64).round() as usize;
                    let mut reported = vec![false; pop.len()];
                    for &i in &order[..take.min(order.len())] {
                        reported[i] = true;
                    }
                    let p = project_reported(pop, &reported, rule, &opts);
                    let wrong = is_wrong(&p.call, &final_call);
                    (p, wrong)
                })
                .collect()
        })
        .collect();

    let k = final_shares.len();
    let steps = cfg
        .steps
        .iter()
        .enumerate()
        .map(|(si, &s)| {
            let mut step = Step {
                reported: s,
                coverage: 0.0,
                turnout_coverage: 0.0,
                mean_width: 0.0,
                mean_error: 0.0,
                calls_elected: 0,
                calls_runoff: 0,
                too_close: 0,
                wrong_calls: 0,
            };
            let (mut covered, mut t_covered) = (0usize, 0usize);
            for run in &runs {
                let (p, wrong) = &run[si];
                for (c, &truth) in p.candidates.iter().zip(&final_shares) {
                    if c.lower - 1e-9 <= truth && truth <= c.upper + 1e-9 {
                        covered += 1;
                    }
                    step.mean_error += (c.share - truth).abs();
                }
                if p.turnout.lower - 1e-9 <= final_turnout
                    && final_turnout <= p.turnout.upper + 1e-9
                {
                    t_covered += 1;
                }
                let lead = p
                    .candidates
                    .iter()
                    .max_by(|a, b| a.share.total_cmp(&b.share))
                    .map_or(0.0, |c| c.upper - c.lower);
                step.mean_width += lead;
                match p.call.kind {
                    CallKind::Elected => step.calls_elected += 1,
                    CallKind::Runoff => step.calls_runoff += 1,
                    CallKind::TooClose => step.too_close += 1,
                }
                step.wrong_calls += usize::from(*wrong);
            }
            let n = runs.len() as f64;
            step.coverage = covered as f64 / (n * k as f64);
            step.turnout_coverage = t_covered as f64 / n;
            step.mean_width /= n;
            step.mean_error /= n * k as f64;
            step
        })
        .collect();
    let first_replay = runs[0]
        .iter()
        .zip(&cfg.steps)
        .map(|((p, wrong), &s)| {
            let lead = p
                .candidates
                .iter()
                .max_by(|a, b| a.share_now.total_cmp(&b.share_now));
            Moment {
                reported: s,
                stations: p.reported.stations,
                leader_now: lead.map_or(String::new(), |c| c.name.clone()),
                share_now: lead.map_or(0.0, |c| c.share_now),
                call: p.call.clone(),
                wrong: *wrong,
            }
        })
        .collect();
    let method = runs
        .iter()
        .flat_map(|r| r.iter())
        .map(|(p, _)| p.method)
        .find(|m| *m != "complete" && *m != "bounds")
        .unwrap_or("complete");
    Ok(Backtest {
        order: cfg.order.name(),
        replays: runs.len(),
        seed: cfg.seed,
        confidence: cfg.confidence,
        stations: stations.len(),
        final_call,
        steps,
        first_replay,
        method,
    })
}

/// A call is wrong when it names a winner or finalists the final count does not.
pub fn is_wrong(call: &crate::Call, truth: &crate::Call) -> bool {
    match call.kind {
        CallKind::TooClose => false,
        CallKind::Elected => truth.kind != CallKind::Elected || truth.winner != call.winner,
        CallKind::Runoff => {
            let same = match (&call.runoff, &truth.runoff) {
                (Some([a, b]), Some([c, d])) => (a == c && b == d) || (a == d && b == c),
                _ => false,
            };
            truth.kind != CallKind::Runoff || !same
        }
    }
}

fn arrival(
    pop: &Population,
    stations: &[usize],
    order: &Order,
    depth: Option<usize>,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    match order {
        Order::Random => {
            let mut v = stations.to_vec();
            v.shuffle(rng);
            v
        }
        Order::UrbanFirst => {
            let mut keyed: Vec<(f64, usize)> = stations
                .iter()
                .map(|&i| {
                    (
                        pop.size[i].ln() + 0.5 * rng.sample::<f64, _>(StandardNormal),
                        i,
                    )
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            keyed.into_iter().map(|(_, i)| i).collect()
        }
        Order::ByArea(_) => {
            let d = depth.unwrap_or(1) as u8;
            let mut areas: Vec<tally_model::AreaId> = stations
                .iter()
                .map(|&i| pop.area_at(i, d))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            areas.shuffle(rng);
            let rank: std::collections::HashMap<tally_model::AreaId, usize> =
                areas.iter().enumerate().map(|(r, &a)| (a, r)).collect();
            let mut keyed: Vec<(usize, f64, usize)> = stations
                .iter()
                .map(|&i| (rank[&pop.area_at(i, d)], rng.gen::<f64>(), i))
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            keyed.into_iter().map(|(_, _, i)| i).collect()
        }
        Order::Fixed(v) => {
            let playing: std::collections::HashSet<usize> = stations.iter().copied().collect();
            let mut seen = std::collections::HashSet::new();
            let mut out: Vec<usize> = v
                .iter()
                .copied()
                .filter(|i| playing.contains(i) && seen.insert(*i))
                .collect();
            // Stations the file does not list come last, in their own order.
            out.extend(stations.iter().copied().filter(|i| !seen.contains(i)));
            out
        }
    }
}

/// The final count's call, for reports.
pub fn final_call(pop: &Population, rule: &Rule) -> crate::Call {
    let k = pop.k();
    let mut votes = vec![0u64; k];
    for i in 0..pop.len() {
        if pop.in_play[i] && pop.counted[i] {
            for (a, &v) in votes.iter_mut().zip(pop.votes_of(i)) {
                *a += u64::from(v);
            }
        }
    }
    call::from_count(rule, pop.round, &pop.candidates, &votes)
}

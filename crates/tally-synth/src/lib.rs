//! Deterministic synthetic elections with known parameters.
//!
//! A synthetic election is the test bed for everything in Tally that must be checked against a
//! known answer: counting (totals are known exactly), forensics (planted anomalies at a known
//! fraction of stations) and transfers (round 2 is drawn from a planted round-1 -> round-2 table,
//! and the realised true cells are returned).
//!
//! Shape of the generator:
//! - an area tree `region > district > commune > station` with plausible, heterogeneous sizes;
//! - turnout and candidate preferences vary on the logit scale with region, district and station
//!   effects, so neighbouring stations look alike and regions differ, as in real elections;
//! - counts are drawn binomially/multinomially, so the station-level sampling noise is the one
//!   the forensic null models assume.
//!
//! Determinism: the same [`SynthConfig`] gives the same bytes on every machine and thread count.
//! Each district draws from its own ChaCha8 stream (seed, stream = district index), so the work is
//! parallel without depending on scheduling.

mod anomaly;
mod csv_out;
mod transfer;

pub use anomaly::Anomaly;
pub use csv_out::write_csv;
pub use transfer::TransferTruth;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, LogNormal, Normal};

/// What to generate. `Default` gives a small two-level-noise election of 1,000 stations.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub stations: usize,
    pub candidates: usize,
    pub seed: u64,
    /// 1, or 2 for a runoff between the round-1 top two drawn through a planted transfer table.
    pub rounds: u8,
    /// Anomalies planted in round 1 (round 2 stays clean so transfers have a known truth).
    pub anomalies: Vec<Anomaly>,
    /// Mean turnout (share of registered voters who cast a ballot).
    pub mean_turnout: f64,
    /// Spread of station-level preferences on the log-odds scale (region, district, station).
    pub preference_spread: [f64; 3],
    /// Dirichlet concentration of station-level transfer proportions around the planted table;
    /// larger means less unit-level variation.
    pub transfer_concentration: f64,
    /// Planted round-1 -> round-2 table (rows: round-1 candidates, abstained, invalid; columns:
    /// finalist A, finalist B, abstained, invalid). `None` derives a plausible one from the seed.
    pub transfer_table: Option<Vec<Vec<f64>>>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            stations: 1000,
            candidates: 4,
            seed: 1,
            rounds: 1,
            anomalies: Vec::new(),
            mean_turnout: 0.68,
            preference_spread: [0.25, 0.2, 0.15],
            transfer_concentration: 60.0,
            transfer_table: None,
        }
    }
}

/// One synthetic polling station's tally sheet for one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthStation {
    pub station_id: String,
    /// Area path, coarsest first, one entry per [`SynthElection::level_names`].
    pub areas: Vec<String>,
    pub registered: u64,
    pub cast: u64,
    pub invalid: u64,
    pub valid: u64,
    /// Votes per candidate, in the order of [`SynthRound::candidates`].
    pub votes: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct SynthRound {
    pub round: u8,
    pub candidates: Vec<String>,
    pub stations: Vec<SynthStation>,
}

#[derive(Clone, Debug)]
pub struct SynthElection {
    pub level_names: Vec<String>,
    pub rounds: Vec<SynthRound>,
    /// The planted and realised round-1 -> round-2 transfers (only with `rounds == 2`).
    pub transfer: Option<TransferTruth>,
    /// Indices of the round-1 stations where an anomaly was planted, with its kind.
    pub planted: Vec<(usize, &'static str)>,
}

/// Station-level latent parameters, shared by both rounds.
struct StationPlan {
    areas: [u32; 3],
    registered: u64,
    turnout: f64,
    /// Unnormalised preference weights per round-1 candidate.
    preference: Vec<f64>,
    invalid_rate: f64,
}

pub const LEVEL_NAMES: [&str; 3] = ["region", "district", "commune"];

/// Generates the election described by `cfg`.
pub fn generate(cfg: &SynthConfig) -> SynthElection {
    let k = cfg.candidates.max(2);
    let plans = plan_stations(cfg, k);
    let candidates: Vec<String> = (1..=k).map(|i| format!("c{i}")).collect();
    let ids: Vec<String> = (0..plans.len()).map(|i| format!("S{:07}", i + 1)).collect();
    let areas: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                format!("Region {}", p.areas[0] + 1),
                format!("District {}", p.areas[1] + 1),
                format!("Commune {}", p.areas[2] + 1),
            ]
        })
        .collect();

    let mut round1: Vec<SynthStation> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = station_rng(cfg.seed, 1, i);
            draw_sheet(&mut rng, p, &ids[i], &areas[i])
        })
        .collect();

    let clean_round1 = round1.clone();
    let planted = anomaly::plant(&cfg.anomalies, &mut round1, cfg.seed);

    let mut rounds = vec![SynthRound {
        round: 1,
        candidates: candidates.clone(),
        stations: round1,
    }];
    let mut transfer = None;
    if cfg.rounds >= 2 {
        let (r2, truth) = transfer::runoff(cfg, &candidates, &clean_round1);
        rounds.push(r2);
        transfer = Some(truth);
    }
    SynthElection {
        level_names: LEVEL_NAMES.iter().map(|s| s.to_string()).collect(),
        rounds,
        transfer,
        planted,
    }
}

/// Each station draws from its own stream so generation order never matters.
pub(crate) fn station_rng(seed: u64, round: u8, station: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(round) << 56));
    rng.set_stream(station as u64 + 1);
    rng
}

fn plan_stations(cfg: &SynthConfig, k: usize) -> Vec<StationPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let normal = |sd: f64| Normal::new(0.0, sd.max(1e-12)).expect("finite sd");
    let base_turnout = logit(cfg.mean_turnout.clamp(0.05, 0.95));
    // National preferences: candidate 1 leads, then a decreasing tail.
    let national: Vec<f64> = (0..k).map(|c| (-(c as f64) * 0.55).exp().ln()).collect();
    let size = LogNormal::new(6.6_f64, 0.45).expect("valid lognormal");

    let mut plans = Vec::with_capacity(cfg.stations);
    let (mut region, mut district, mut commune) = (0u32, 0u32, 0u32);
    let mut region_effect = draw_effects(&mut rng, k, cfg.preference_spread[0]);
    let mut district_effect = draw_effects(&mut rng, k, cfg.preference_spread[1]);
    let mut region_turnout = normal(0.35).sample(&mut rng);
    let mut district_turnout = normal(0.2).sample(&mut rng);
    let mut districts_left = rng.gen_range(6..16);
    let mut communes_left = rng.gen_range(3..12);
    let mut stations_left = rng.gen_range(2..25);
    while plans.len() < cfg.stations {
        if stations_left == 0 {
            stations_left = rng.gen_range(2..25);
            commune += 1;
            communes_left -= 1;
            if communes_left == 0 {
                communes_left = rng.gen_range(3..12);
                district += 1;
                district_effect = draw_effects(&mut rng, k, cfg.preference_spread[1]);
                district_turnout = normal(0.2).sample(&mut rng);
                districts_left -= 1;
                if districts_left == 0 {
                    districts_left = rng.gen_range(6..16);
                    region += 1;
                    region_effect = draw_effects(&mut rng, k, cfg.preference_spread[0]);
                    region_turnout = normal(0.35).sample(&mut rng);
                }
            }
        }
        stations_left -= 1;
        let registered = (size.sample(&mut rng) as u64).clamp(40, 4000);
        let turnout = sigmoid(
            base_turnout + region_turnout + district_turnout + normal(0.25).sample(&mut rng),
        );
        let station_effect = draw_effects(&mut rng, k, cfg.preference_spread[2]);
        let preference = (0..k)
            .map(|c| {
                (national[c] + region_effect[c] + district_effect[c] + station_effect[c]).exp()
            })
            .collect();
        let invalid_rate = (0.015 + normal(0.008).sample(&mut rng)).clamp(0.0, 0.08);
        plans.push(StationPlan {
            areas: [region, district, commune],
            registered,
            turnout,
            preference,
            invalid_rate,
        });
    }
    plans
}

fn draw_effects(rng: &mut ChaCha8Rng, k: usize, sd: f64) -> Vec<f64> {
    let normal = Normal::new(0.0, sd.max(1e-12)).expect("finite sd");
    (0..k).map(|_| normal.sample(rng)).collect()
}

fn draw_sheet(rng: &mut ChaCha8Rng, p: &StationPlan, id: &str, areas: &[String]) -> SynthStation {
    let cast = binomial(rng, p.registered, p.turnout);
    let invalid = binomial(rng, cast, p.invalid_rate);
    let valid = cast - invalid;
    let total: f64 = p.preference.iter().sum();
    let shares: Vec<f64> = p.preference.iter().map(|w| w / total).collect();
    let votes = multinomial(rng, valid, &shares);
    SynthStation {
        station_id: id.to_string(),
        areas: areas.to_vec(),
        registered: p.registered,
        cast,
        invalid,
        valid,
        votes,
    }
}

pub(crate) fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p).expect("p in (0,1)").sample(rng)
}

/// Multinomial draw by conditional binomials; the counts always sum to `n`.
pub(crate) fn multinomial(rng: &mut ChaCha8Rng, n: u64, shares: &[f64]) -> Vec<u64> {
    let mut out = vec![0u64; shares.len()];
    let mut left = n;
    let mut mass_left: f64 = shares.iter().sum();
    for (i, &s) in shares.iter().enumerate() {
        if i + 1 == shares.len() {
            out[i] = left;
            break;
        }
        let p = if mass_left > 0.0 { s / mass_left } else { 0.0 };
        let x = binomial(rng, left, p.clamp(0.0, 1.0));
        out[i] = x;
        left -= x;
        mass_left -= s;
    }
    out
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_election_other_seed_differs() {
        let cfg = SynthConfig {
            stations: 500,
            seed: 7,
            rounds: 2,
            ..Default::default()
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.rounds[0].stations, b.rounds[0].stations);
        assert_eq!(a.rounds[1].stations, b.rounds[1].stations);
        let c = generate(&SynthConfig { seed: 8, ..cfg });
        assert_ne!(a.rounds[0].stations, c.rounds[0].stations);
    }

    #[test]
    fn every_sheet_adds_up_and_the_tree_is_nested() {
        let e = generate(&SynthConfig {
            stations: 3000,
            candidates: 5,
            seed: 3,
            rounds: 2,
            ..Default::default()
        });
        for r in &e.rounds {
            assert_eq!(r.stations.len(), 3000);
            for s in &r.stations {
                assert_eq!(s.votes.iter().sum::<u64>(), s.valid, "{}", s.station_id);
                assert_eq!(s.valid + s.invalid, s.cast);
                assert!(s.cast <= s.registered);
                assert_eq!(s.votes.len(), r.candidates.len());
            }
        }
        // A commune name belongs to exactly one district, a district to one region.
        let mut parent = std::collections::HashMap::new();
        for s in &e.rounds[0].stations {
            let prev = parent.insert(s.areas[2].clone(), s.areas[1].clone());
            assert!(prev.is_none() || prev.as_ref() == Some(&s.areas[1]));
        }
        let regions: std::collections::HashSet<_> =
            e.rounds[0].stations.iter().map(|s| &s.areas[0]).collect();
        assert!(regions.len() >= 2, "several regions");
    }

    #[test]
    fn turnout_and_sizes_are_plausible_and_candidate_one_leads() {
        let e = generate(&SynthConfig {
            stations: 5000,
            seed: 11,
            ..Default::default()
        });
        let st = &e.rounds[0].stations;
        let reg: u64 = st.iter().map(|s| s.registered).sum();
        let cast: u64 = st.iter().map(|s| s.cast).sum();
        let turnout = cast as f64 / reg as f64;
        assert!((0.55..0.8).contains(&turnout), "turnout {turnout}");
        let mean_size = reg as f64 / st.len() as f64;
        assert!(
            (500.0..1200.0).contains(&mean_size),
            "mean size {mean_size}"
        );
        let totals: Vec<u64> = (0..4)
            .map(|c| st.iter().map(|s| s.votes[c]).sum())
            .collect();
        assert!(totals[0] > totals[1] && totals[1] > totals[3], "{totals:?}");
    }
}

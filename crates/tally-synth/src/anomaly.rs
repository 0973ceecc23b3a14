//! Anomalies planted into a clean synthetic round, with known strength, so forensic tests can
//! be calibrated: quiet on clean data, loud on planted data.

use crate::{binomial, station_rng, SynthStation};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Anomalies are applied to round 1 in the order given; candidate index 0 ("c1") is the
/// beneficiary ("leader").
#[derive(Clone, Debug, PartialEq)]
pub enum Anomaly {
    /// Ballot stuffing after Klimek et al. (PNAS 2012). At a fraction `incremental` of stations a
    /// share `x ~ |N(0, alpha)|` (capped at 1) of the non-voters is turned into leader ballots and
    /// the same share of every opponent's votes is moved to the leader; at a fraction `extreme`
    /// of stations the same happens with `x = 1 - |N(0, 0.05)|` (nearly everything).
    Stuffing {
        incremental: f64,
        extreme: f64,
        alpha: f64,
    },
    /// At a fraction of stations the leader's share of valid votes is set to the nearest whole
    /// percent (votes move between the leader and the opponents, pro rata); with `turnout`, the
    /// cast count is first set to the nearest whole percent of registered (ballots added to or
    /// taken from the leader).
    Rounding { fraction: f64, turnout: bool },
}

/// Plants `anomalies` into `stations` (round 1). Returns the affected station indices and kinds.
pub(crate) fn plant(
    anomalies: &[Anomaly],
    stations: &mut [SynthStation],
    seed: u64,
) -> Vec<(usize, &'static str)> {
    let mut planted = Vec::new();
    for (a_index, anomaly) in anomalies.iter().enumerate() {
        // Round tag 100+ keeps anomaly streams apart from the sheets' own streams.
        let tag = 100 + a_index as u8;
        for (i, s) in stations.iter_mut().enumerate() {
            let mut rng = station_rng(seed, tag, i);
            match *anomaly {
                Anomaly::Stuffing {
                    incremental,
                    extreme,
                    alpha,
                } => {
                    let u: f64 = rng.gen();
                    let x = if u < extreme {
                        let n = Normal::new(0.0_f64, 0.05).expect("sd > 0");
                        planted.push((i, "extreme"));
                        1.0 - n.sample(&mut rng).abs()
                    } else if u < extreme + incremental {
                        let n = Normal::new(0.0, alpha.max(1e-9)).expect("sd > 0");
                        planted.push((i, "incremental"));
                        n.sample(&mut rng).abs()
                    } else {
                        continue;
                    };
                    stuff(s, x.clamp(0.0, 1.0), &mut rng);
                }
                Anomaly::Rounding { fraction, turnout } => {
                    if rng.gen::<f64>() < fraction && round_to_whole_percent(s, turnout) {
                        planted.push((i, "rounding"));
                    }
                }
            }
        }
    }
    planted.sort_unstable();
    planted
}

fn stuff(s: &mut SynthStation, x: f64, rng: &mut rand_chacha::ChaCha8Rng) {
    let abstainers = s.registered - s.cast;
    let added = binomial(rng, abstainers, x);
    let mut stolen = 0;
    for v in s.votes.iter_mut().skip(1) {
        let moved = binomial(rng, *v, x);
        *v -= moved;
        stolen += moved;
    }
    s.votes[0] += added + stolen;
    s.cast += added;
    s.valid += added;
}

/// Returns false when the station cannot be rounded (no votes, or share/turnout at the bounds).
fn round_to_whole_percent(s: &mut SynthStation, turnout: bool) -> bool {
    if turnout && s.registered > 0 {
        let target = ((s.cast * 100 + s.registered / 2) / s.registered).min(100);
        let new_cast = (target * s.registered + 50) / 100;
        if new_cast < s.invalid {
            return false;
        }
        if new_cast >= s.cast {
            let d = new_cast - s.cast;
            s.votes[0] += d;
            s.valid += d;
        } else {
            let d = (s.cast - new_cast).min(s.votes[0]);
            s.votes[0] -= d;
            s.valid -= d;
        }
        s.cast = s.valid + s.invalid;
    }
    if s.valid == 0 {
        return turnout;
    }
    let pct = (s.votes[0] * 100 + s.valid / 2) / s.valid;
    if pct >= 100 {
        return turnout;
    }
    let leader = (pct * s.valid + 50) / 100;
    let opponents_total = s.valid - leader;
    let old_opponents: u64 = s.votes[1..].iter().sum();
    s.votes[0] = leader;
    if old_opponents == 0 {
        if let Some(v) = s.votes.get_mut(1) {
            *v = opponents_total;
        }
        return true;
    }
    // Largest-remainder apportionment keeps the sheet's arithmetic exact.
    let mut parts: Vec<(u64, u128, usize)> = s.votes[1..]
        .iter()
        .enumerate()
        .map(|(j, &v)| {
            let num = u128::from(v) * u128::from(opponents_total);
            let q = (num / u128::from(old_opponents)) as u64;
            (q, num % u128::from(old_opponents), j + 1)
        })
        .collect();
    let mut left = opponents_total - parts.iter().map(|p| p.0).sum::<u64>();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    for p in parts.iter_mut() {
        let extra = u64::from(left > 0);
        left -= extra;
        s.votes[p.2] = p.0 + extra;
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::{generate, Anomaly, SynthConfig};

    #[test]
    fn stuffing_raises_leader_and_turnout_only_where_planted() {
        let base = SynthConfig {
            stations: 4000,
            seed: 5,
            ..Default::default()
        };
        let clean = generate(&base);
        let dirty = generate(&SynthConfig {
            anomalies: vec![Anomaly::Stuffing {
                incremental: 0.2,
                extreme: 0.05,
                alpha: 0.3,
            }],
            ..base
        });
        let planted: std::collections::HashSet<usize> = dirty.planted.iter().map(|p| p.0).collect();
        let share = planted.len() as f64 / 4000.0;
        assert!((0.2..0.3).contains(&share), "planted share {share}");
        for (i, (c, d)) in clean.rounds[0]
            .stations
            .iter()
            .zip(&dirty.rounds[0].stations)
            .enumerate()
        {
            assert_eq!(d.votes.iter().sum::<u64>(), d.valid);
            assert_eq!(d.valid + d.invalid, d.cast);
            assert!(d.cast <= d.registered);
            if planted.contains(&i) {
                assert!(d.votes[0] >= c.votes[0]);
            } else {
                assert_eq!(c, d);
            }
        }
        let extreme_turnout: Vec<f64> = dirty
            .planted
            .iter()
            .filter(|p| p.1 == "extreme")
            .map(|p| {
                let s = &dirty.rounds[0].stations[p.0];
                s.cast as f64 / s.registered as f64
            })
            .collect();
        let mean = extreme_turnout.iter().sum::<f64>() / extreme_turnout.len() as f64;
        assert!(
            mean > 0.9,
            "extreme stations reach ~100% turnout, got {mean}"
        );
    }

    #[test]
    fn rounding_hits_whole_percents() {
        let e = generate(&SynthConfig {
            stations: 2000,
            seed: 9,
            anomalies: vec![Anomaly::Rounding {
                fraction: 0.1,
                turnout: true,
            }],
            ..Default::default()
        });
        let mut near = 0;
        for &(i, _) in &e.planted {
            let s = &e.rounds[0].stations[i];
            assert_eq!(s.votes.iter().sum::<u64>(), s.valid);
            assert_eq!(s.valid + s.invalid, s.cast);
            let share = 100.0 * s.votes[0] as f64 / s.valid as f64;
            if (share - share.round()).abs() <= 0.05 + 100.0 / s.valid as f64 {
                near += 1;
            }
        }
        assert!(e.planted.len() > 150);
        assert_eq!(near, e.planted.len());
    }
}

//! The synthetic test bed: an observer's copy of a round with data-entry errors of each kind
//! planted at a chosen rate, and the truth (which station got which kind). Deterministic: the
//! same round, config and seed give the same copy (one splitmix64 stream per station, so the
//! copy does not depend on the order in which stations are visited).

use crate::kinds::{single_number, Kind};
use tally_model::{saturate, Round, SheetStatus, StoredCount, MISSING};

#[derive(Clone, Debug)]
pub struct PlantConfig {
    /// Counted stations that get an error, per million (50,000 = 5%).
    pub rate_per_million: u64,
    /// The kinds to plant, each chosen with the same probability.
    pub kinds: Vec<Kind>,
    pub seed: u64,
    /// Plant only errors that give this candidate (index in the round) more votes: a copy
    /// biased towards one candidate, for the flip tests.
    pub favour: Option<usize>,
}

impl Default for PlantConfig {
    fn default() -> Self {
        PlantConfig {
            rate_per_million: 50_000,
            kinds: Kind::ALL.to_vec(),
            seed: 1,
            favour: None,
        }
    }
}

/// One planted error: the station and the kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planted {
    pub station_id: String,
    pub kind: Kind,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn number(d: &[u8]) -> u64 {
    std::str::from_utf8(d)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The candidate numbers of one sheet with one error of `kind`, or `None` when this sheet
/// cannot carry that kind (say, a swap where every candidate has the same count).
fn plant(
    v: &[StoredCount],
    kind: Kind,
    favour: Option<usize>,
    rng: &mut Rng,
) -> Option<Vec<StoredCount>> {
    let k = v.len();
    let v: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
    let mut t = v.clone();
    let pick = |rng: &mut Rng| favour.unwrap_or_else(|| rng.below(k as u64) as usize);
    match kind {
        Kind::Missing => {
            if favour.is_some() || v.iter().all(|&x| x == 0) {
                return None;
            }
            t.iter_mut().for_each(|x| *x = 0);
        }
        Kind::Swap => {
            let (a, b) = match favour {
                Some(f) => {
                    let better: Vec<usize> = (0..k).filter(|&x| v[x] > v[f]).collect();
                    if better.is_empty() {
                        return None;
                    }
                    (better[rng.below(better.len() as u64) as usize], f)
                }
                None => {
                    let a = rng.below(k as u64) as usize;
                    let b = (a + 1 + rng.below(k as u64 - 1) as usize) % k;
                    (a, b)
                }
            };
            if v[a] == v[b] {
                return None;
            }
            t.swap(a, b);
        }
        Kind::Shift => {
            if favour.is_some() || k < 3 {
                return None;
            }
            t[0] = 0;
            t[1..].copy_from_slice(&v[..k - 1]);
        }
        Kind::Transposition => {
            let c = pick(rng);
            let mut d = v[c].to_string().into_bytes();
            let places: Vec<usize> = (0..d.len().saturating_sub(1))
                .filter(|&p| d[p] != d[p + 1] && !(p == 0 && d[1] == b'0'))
                .collect();
            if places.is_empty() {
                return None;
            }
            let p = places[rng.below(places.len() as u64) as usize];
            d.swap(p, p + 1);
            t[c] = number(&d);
        }
        Kind::Digit => {
            let c = pick(rng);
            let mut d = v[c].to_string().into_bytes();
            let p = rng.below(d.len() as u64) as usize;
            let lowest = if p == 0 && d.len() > 1 { b'1' } else { b'0' };
            let choices: Vec<u8> = (lowest..=b'9').filter(|&x| x != d[p]).collect();
            d[p] = choices[rng.below(choices.len() as u64) as usize];
            t[c] = number(&d);
        }
        Kind::Other => {
            let c = pick(rng);
            // A change that no single slip explains: redraw until it is none of the others.
            for _ in 0..20 {
                let delta = 1 + rng.below((v[c] / 4).max(20));
                let up = favour.is_some() || rng.below(2) == 0 || v[c] < delta;
                let new = if up { v[c] + delta } else { v[c] - delta };
                if single_number(v[c], new).is_none() {
                    t[c] = new;
                    break;
                }
            }
        }
    }
    if let Some(f) = favour {
        if t[f] <= v[f] {
            return None;
        }
    }
    // The truth records what was done, not what the classifier will read: a shift over equal
    // neighbours that looks like a swap counts against the classifier, as it would in real life.
    (t != v).then(|| t.into_iter().map(saturate).collect())
}

/// An observer's copy of `round` with errors planted at `cfg.rate_per_million` of its counted
/// stations. The copy's totals follow its candidate lines (valid = their sum; cast = valid +
/// invalid where both are given), as when observers type the candidates and let the form add
/// up, so the copy passes validation. Returns the copy and the truth, in station order.
pub fn observer_copy(round: &Round, cfg: &PlantConfig) -> (Round, Vec<Planted>) {
    let mut copy = round.clone();
    let mut truth = Vec::new();
    if cfg.kinds.is_empty() {
        return (copy, truth);
    }
    let k = round.candidates.len();
    for i in 0..round.len() {
        if round.stations.status[i] != SheetStatus::Counted {
            continue;
        }
        let mut rng = Rng(cfg.seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        if rng.below(1_000_000) >= cfg.rate_per_million {
            continue;
        }
        let kind = cfg.kinds[rng.below(cfg.kinds.len() as u64) as usize];
        let Some(t) = plant(round.votes_of(i), kind, cfg.favour, &mut rng) else {
            continue;
        };
        let s = &mut copy.stations;
        s.votes[i * k..(i + 1) * k].copy_from_slice(&t);
        let valid = saturate(t.iter().map(|&x| u64::from(x)).sum());
        if kind == Kind::Missing && s.invalid[i] != MISSING {
            s.invalid[i] = 0;
        }
        if s.valid[i] != MISSING {
            s.valid[i] = valid;
        }
        if s.cast[i] != MISSING && s.invalid[i] != MISSING {
            s.cast[i] = saturate(u64::from(valid) + u64::from(s.invalid[i]));
        }
        truth.push(Planted {
            station_id: round.stations.ids[i].to_string(),
            kind,
        });
    }
    (copy, truth)
}

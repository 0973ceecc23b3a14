//! The parallel vote tabulation (quick count): a stratified random sample of stations drawn
//! before the night, and the stratified ratio estimator on the sampled stations reported so far.
//!
//! Allocation is proportional: stratum `h` with `N_h` of the `N` stations gets `n N_h / N`
//! stations, rounded by largest remainder so the sizes add up to `n`, and at least 2 when it has
//! 2 (one station gives no variance). Stations are drawn without replacement within each stratum.
//!
//! The estimator of candidate `j`'s share is the ratio of two expanded totals,
//! `R_j = sum_h N_h ybar_hj / sum_h N_h xbar_h` (`y` the candidate's votes, `x` the valid votes),
//! with the linearised variance
//! `V(R_j) = 1/X^2 sum_h N_h^2 (1 - n_h/N_h) s_h^2(d) / n_h`, `d_i = y_i - R_j x_i`, where `n_h`
//! counts the sampled stations of the stratum that have reported: the finite-population
//! correction `1 - n_h/N_h` and the within-stratum variance are those of the textbook stratified
//! ratio estimator used by quick counts.

use crate::call::{self, Call};
use crate::population::Population;
use crate::{normal_quantile, Band, CandidateProjection, Projection, Reported, FORMAT};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use tally_model::{match_stations, Rule};

/// One stratum of a drawn sample.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stratum {
    pub name: String,
    /// Stations in the stratum (the frame).
    pub stations: usize,
    /// Stations drawn.
    pub sample: usize,
}

/// A drawn sample: station ids with their stratum, and the strata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub level: Option<String>,
    /// `(station id, stratum name)` in frame order.
    pub stations: Vec<(String, String)>,
    pub strata: Vec<Stratum>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SampleError {
    #[error("a sample of {size} stations is asked for, but the frame has only {frame}")]
    TooLarge { size: usize, frame: usize },
    #[error(
        "a sample of {size} stations cannot give 2 stations to each of the {strata} strata at \
         level {level}; draw at least {need}, or stratify by a coarser level"
    )]
    TooSmallForStrata {
        size: usize,
        strata: usize,
        level: String,
        need: usize,
    },
    #[error("no area level named {0:?}; the levels are: {1}")]
    UnknownLevel(String, String),
    #[error("the sample lists no station of this count (no station id matches)")]
    NothingMatches,
}

/// Draws `size` stations of the population (those in play), stratified by `level`.
pub fn draw(
    pop: &Population,
    size: usize,
    level: Option<&str>,
    seed: u64,
) -> Result<Sample, SampleError> {
    let depth = match level {
        Some(l) => pop
            .levels
            .iter()
            .position(|x| x.eq_ignore_ascii_case(l))
            .map(|d| d + 1)
            .ok_or_else(|| SampleError::UnknownLevel(l.into(), pop.levels.join(", ")))?,
        None => 0,
    };
    let mut names: Vec<String> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<tally_model::AreaId, usize> = HashMap::new();
    let mut stratum = vec![usize::MAX; pop.len()];
    for (i, slot) in stratum.iter_mut().enumerate() {
        if !pop.in_play[i] {
            continue;
        }
        let a = pop.area_at(i, depth as u8);
        let h = *index.entry(a).or_insert_with(|| {
            names.push(pop.area_name(a));
            members.push(Vec::new());
            members.len() - 1
        });
        members[h].push(i);
        *slot = h;
    }
    let frame: usize = members.iter().map(Vec::len).sum();
    if size > frame {
        return Err(SampleError::TooLarge { size, frame });
    }
    let alloc = allocate(&members.iter().map(Vec::len).collect::<Vec<_>>(), size).ok_or(
        SampleError::TooSmallForStrata {
            size,
            strata: members.len(),
            level: level.unwrap_or("-").to_string(),
            need: members.iter().map(|m| m.len().min(2)).sum(),
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = vec![false; pop.len()];
    for (m, &n_h) in members.iter_mut().zip(&alloc) {
        let (picked, _) = m.partial_shuffle(&mut rng, n_h);
        for &i in picked.iter() {
            chosen[i] = true;
        }
    }
    let stations = (0..pop.len())
        .filter(|&i| chosen[i])
        .map(|i| (pop.ids[i].to_string(), names[stratum[i]].clone()))
        .collect();
    let strata = names
        .iter()
        .cloned()
        .zip(&members)
        .zip(&alloc)
        .map(|((name, m), &n_h)| Stratum {
            name,
            stations: m.len(),
            sample: n_h,
        })
        .collect();
    Ok(Sample {
        level: level.map(str::to_string),
        stations,
        strata,
    })
}

/// Proportional allocation by largest remainder with at least 2 per stratum that has 2.
fn allocate(sizes: &[usize], n: usize) -> Option<Vec<usize>> {
    let total: usize = sizes.iter().sum();
    let floor: Vec<usize> = sizes.iter().map(|&s| s.min(2)).collect();
    if floor.iter().sum::<usize>() > n {
        return None;
    }
    if total == 0 {
        return Some(vec![0; sizes.len()]);
    }
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&s| n as f64 * s as f64 / total as f64)
        .collect();
    let mut alloc: Vec<usize> = exact
        .iter()
        .zip(&floor)
        .zip(sizes)
        .map(|((&e, &f), &s)| (e.floor() as usize).max(f).min(s))
        .collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut sum: usize = alloc.iter().sum();
    // Too many (the minimum of 2 pushed some up): take from the largest strata.
    while sum > n {
        let h = (0..sizes.len())
            .filter(|&h| alloc[h] > floor[h])
            .max_by(|&a, &b| {
                (alloc[a] as f64 - exact[a])
                    .total_cmp(&(alloc[b] as f64 - exact[b]))
                    .then(b.cmp(&a))
            })?;
        alloc[h] -= 1;
        sum -= 1;
    }
    while sum < n {
        let mut moved = false;
        for &h in &order {
            if sum < n && alloc[h] < sizes[h] {
                alloc[h] += 1;
                sum += 1;
                moved = true;
            }
        }
        if !moved {
            return None;
        }
    }
    Some(alloc)
}

/// The stratified ratio estimate from the sampled stations reported so far.
/// `sample` rows are `(station id, stratum, stations in the stratum)`.
pub fn quick_count(
    pop: &Population,
    sample: &[(String, String, usize)],
    rule: &Rule,
    confidence: f64,
) -> Result<Projection, SampleError> {
    let k = pop.k();
    let ids: Vec<&str> = sample.iter().map(|s| s.0.as_str()).collect();
    let m = match_stations(&ids, &pop.ids);
    if m.pairs.is_empty() {
        return Err(SampleError::NothingMatches);
    }
    // Strata: frame sizes from the sample file, reported sampled stations from the count.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut frame: Vec<usize> = Vec::new();
    let mut drawn: Vec<usize> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (_, stratum, n_h) in sample {
        let h = *index.entry(stratum.as_str()).or_insert_with(|| {
            frame.push(*n_h);
            drawn.push(0);
            members.push(Vec::new());
            frame.len() - 1
        });
        drawn[h] += 1;
    }
    for &(s, i) in &m.pairs {
        if pop.counted[i] && pop.in_play[i] {
            let h = index[sample[s].1.as_str()];
            members[h].push(i);
        }
    }
    let reported_sample: usize = members.iter().map(Vec::len).sum();
    let empty: Vec<usize> = (0..frame.len())
        .filter(|&h| members[h].is_empty())
        .collect();

    // Expanded totals: X (valid), Y_j (votes), cast and registered.
    let q = k + 2; // k candidates, cast, registered
    let value = |i: usize, t: usize| -> f64 {
        if t < k {
            pop.votes_of(i)[t] as f64
        } else if t == k {
            pop.turnout[i] as f64
        } else {
            pop.size[i]
        }
    };
    let mut expanded = vec![0.0; q];
    for (h, mem) in members.iter().enumerate() {
        if mem.is_empty() {
            continue;
        }
        let nh = frame[h] as f64;
        for (t, e) in expanded.iter_mut().enumerate() {
            let mean = mem.iter().map(|&i| value(i, t)).sum::<f64>() / mem.len() as f64;
            *e += nh * mean;
        }
    }
    let valid_hat: f64 = expanded[..k].iter().sum();
    let shares: Vec<f64> = (0..k)
        .map(|j| {
            if valid_hat > 0.0 {
                expanded[j] / valid_hat
            } else {
                0.0
            }
        })
        .collect();
    // Variance of a ratio sum(coef . y) / x with linearised residuals d = coef.y - r x.
    let ratio_var = |coef: &[f64], r: f64, x_of: &dyn Fn(usize) -> f64, x_total: f64| -> f64 {
        let mut v = 0.0;
        let mut pooled = (0.0, 0usize);
        let mut singles = Vec::new();
        for (h, mem) in members.iter().enumerate() {
            let nh = mem.len();
            if nh == 0 {
                continue;
            }
            let d: Vec<f64> = mem
                .iter()
                .map(|&i| (0..coef.len()).map(|t| coef[t] * value(i, t)).sum::<f64>() - r * x_of(i))
                .collect();
            let big_n = frame[h] as f64;
            let fpc = (1.0 - nh as f64 / big_n).max(0.0);
            if nh >= 2 {
                let mean = d.iter().sum::<f64>() / nh as f64;
                let s2 = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nh - 1) as f64;
                pooled.0 += s2;
                pooled.1 += 1;
                v += big_n * big_n * fpc * s2 / nh as f64;
            } else {
                singles.push((big_n, fpc));
            }
        }
        // A stratum with one reported station has no variance of its own: it borrows the mean
        // within-stratum variance of the others.
        let s2_pooled = if pooled.1 > 0 {
            pooled.0 / pooled.1 as f64
        } else {
            0.0
        };
        for (big_n, fpc) in singles {
            v += big_n * big_n * fpc * s2_pooled;
        }
        if x_total > 0.0 {
            v / (x_total * x_total)
        } else {
            0.0
        }
    };
    let valid_of = |i: usize| pop.votes_of(i).iter().map(|&x| u64::from(x)).sum::<u64>() as f64;
    let contrast = |j: usize, l: Option<usize>, zq: f64| -> (f64, f64) {
        let mut coef = vec![0.0; k];
        coef[j] = 1.0;
        if let Some(l) = l {
            coef[l] = -1.0;
        }
        let r = shares[j] - l.map_or(0.0, |l| shares[l]);
        let sd = ratio_var(&coef, r, &valid_of, valid_hat).sqrt();
        let (lo, hi) = if l.is_some() { (-1.0, 1.0) } else { (0.0, 1.0) };
        ((r - zq * sd).clamp(lo, hi), (r + zq * sd).clamp(lo, hi))
    };
    let z = normal_quantile(0.5 + confidence / 2.0);
    let candidates = (0..k)
        .map(|j| {
            let (lo, hi) = contrast(j, None, z);
            let now: u64 = (0..pop.len())
                .filter(|&i| pop.counted[i] && pop.in_play[i])
                .map(|i| pop.votes_of(i)[j])
                .map(u64::from)
                .sum();
            CandidateProjection {
                id: pop.candidates[j].id.clone(),
                name: pop.candidates[j].name.clone(),
                votes_now: now,
                share_now: f64::NAN,
                share: 100.0 * shares[j],
                lower: 100.0 * lo,
                upper: 100.0 * hi,
                votes: (shares[j] * valid_hat).round() as u64,
                votes_lower: (lo * valid_hat).round() as u64,
                votes_upper: (hi * valid_hat).round() as u64,
            }
        })
        .collect::<Vec<_>>();
    // Share so far over everything counted (not only the sample), for comparison.
    let now_total: u64 = candidates.iter().map(|c| c.votes_now).sum();
    let candidates = candidates
        .into_iter()
        .map(|mut c| {
            c.share_now = if now_total > 0 {
                100.0 * c.votes_now as f64 / now_total as f64
            } else {
                0.0
            };
            c
        })
        .collect();
    let turnout = {
        let r = if expanded[k + 1] > 0.0 {
            expanded[k] / expanded[k + 1]
        } else {
            0.0
        };
        let mut coef = vec![0.0; k + 1];
        coef[k] = 1.0;
        let sd = ratio_var(&coef, r, &|i| pop.size[i], expanded[k + 1]).sqrt();
        Band {
            share: 100.0 * r,
            lower: 100.0 * (r - z * sd).max(0.0),
            upper: 100.0 * (r + z * sd).min(1.0),
        }
    };
    let call: Call = call::decide(
        rule,
        pop.round,
        &pop.candidates,
        &shares,
        confidence,
        &contrast,
    );
    let in_play: Vec<usize> = (0..pop.len()).filter(|&i| pop.in_play[i]).collect();
    let reg_total: f64 = in_play.iter().map(|&i| pop.size[i]).sum();
    let reg_in: f64 = in_play
        .iter()
        .filter(|&&i| pop.counted[i])
        .map(|&i| pop.size[i])
        .sum();
    let mut assumptions = vec![
        format!(
            "Quick count: stratified ratio estimator over {reported_sample} of the {} sampled \
             stations reported so far, in {} strata; standard errors with the finite-population \
             correction.",
            sample.len(),
            frame.len()
        ),
        "It assumes the sampled stations that have reported are like those that have not (no \
         reporting bias within a stratum)."
            .into(),
    ];
    if !empty.is_empty() {
        assumptions.push(format!(
            "{} strata have no sampled station in yet; the estimate covers the others only.",
            empty.len()
        ));
    }
    Ok(Projection {
        format: FORMAT,
        round: pop.round,
        confidence,
        method: "quick-count",
        level: None,
        reported: Reported {
            stations: in_play.iter().filter(|&&i| pop.counted[i]).count(),
            stations_total: in_play.len(),
            registered: reg_in.round() as u64,
            registered_total: reg_total.round() as u64,
            registered_share: if reg_total > 0.0 {
                100.0 * reg_in / reg_total
            } else {
                0.0
            },
        },
        candidates,
        turnout,
        call,
        assumptions,
        sample: Some(crate::SampleProgress {
            drawn: sample.len(),
            reported: reported_sample,
            strata: frame.len(),
            strata_without_report: empty.len(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_proportional_and_adds_up() {
        assert_eq!(allocate(&[50, 30, 20], 10), Some(vec![5, 3, 2]));
        let a = allocate(&[1000, 3, 3], 10).unwrap();
        assert_eq!(a.iter().sum::<usize>(), 10);
        assert_eq!(&a[1..], &[2, 2]);
        assert_eq!(allocate(&[5, 5, 5], 4), None);
        assert_eq!(allocate(&[1, 1], 2), Some(vec![1, 1]));
    }
}

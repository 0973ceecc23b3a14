//! The race call: what the projection allows one to say about the outcome, and nothing more.
//!
//! A call is made only when every interval it rests on lies on one side of the decision. Several
//! intervals together must hold at once, so each is taken at a stricter level (Bonferroni: with
//! `m` intervals at `1 - (1 - confidence) / m` each, all hold together with at least the stated
//! confidence).

use crate::normal_quantile;
use serde::Serialize;
use tally_model::rule::{decide_first_round, decide_runoff};
use tally_model::{Candidate, Outcome, Rule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallKind {
    /// A winner: elected in round 1 under the rule, or ahead in the runoff.
    Elected,
    /// No one can reach the rule's threshold and the two finalists are certain.
    Runoff,
    /// Anything else.
    TooClose,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Elected => "elected",
            CallKind::Runoff => "runoff",
            CallKind::TooClose => "too-close",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    pub kind: CallKind,
    pub winner: Option<String>,
    pub runoff: Option<[String; 2]>,
    /// The call in words, with the share interval it rests on.
    pub words: String,
}

/// The interval of `share_j - share_l` (or of `share_j` alone) as fractions, at a normal quantile.
pub(crate) type Contrast<'a> = dyn Fn(usize, Option<usize>, f64) -> (f64, f64) + 'a;

fn name(c: &[Candidate], j: usize) -> &str {
    &c[j].name
}

fn band(contrast: &Contrast<'_>, j: usize, z: f64) -> String {
    let (lo, hi) = contrast(j, None, z);
    format!("{:.1}-{:.1}%", 100.0 * lo, 100.0 * hi)
}

/// The call from a projection. `shares` are the projected shares (fractions); `round` 2 and
/// later are decided by plurality, round 1 by the rule's clauses.
pub(crate) fn decide(
    rule: &Rule,
    round: u8,
    candidates: &[Candidate],
    shares: &[f64],
    confidence: f64,
    contrast: &Contrast<'_>,
) -> Call {
    let k = shares.len();
    let z_shown = normal_quantile(0.5 + confidence / 2.0);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]).then(a.cmp(&b)));
    let too_close = |words: String| Call {
        kind: CallKind::TooClose,
        winner: None,
        runoff: None,
        words,
    };
    if k == 0 {
        return too_close("Nothing to call: no candidates.".into());
    }
    let lead = order[0];
    let z_for = |m: usize| normal_quantile(1.0 - (1.0 - confidence) / (2.0 * m.max(1) as f64));
    // The leader is ahead of everyone: k - 1 differences.
    let ahead_of_all = |j: usize, z: f64| {
        (0..k)
            .filter(|&l| l != j)
            .all(|l| contrast(j, Some(l), z).0 > 0.0)
    };

    if round >= 2 || k == 1 {
        let z = z_for(k - 1);
        if k == 1 || ahead_of_all(lead, z) {
            return Call {
                kind: CallKind::Elected,
                winner: Some(candidates[lead].id.clone()),
                runoff: None,
                words: format!(
                    "Projected: {} elected ({}'s final share {})",
                    name(candidates, lead),
                    name(candidates, lead),
                    band(contrast, lead, z_shown)
                ),
            };
        }
        return too_close(format!(
            "Too close to call: {} {}, {} {}",
            name(candidates, lead),
            band(contrast, lead, z_shown),
            name(candidates, order[1]),
            band(contrast, order[1], z_shown)
        ));
    }

    // Round 1. Elected: some clause holds for the leader on every interval it needs, and the
    // leader is ahead of everyone (a threshold below one half could be passed by two).
    let checks = 1 + 2 * (k - 1);
    let z = z_for(checks);
    let clause_certain = |j: usize| {
        rule.clauses.iter().any(|c| {
            let thr = c.share.percent() / 100.0;
            let share_ok = contrast(j, None, z).0 > thr;
            let lead_ok = c.lead.is_none_or(|l| {
                let need = l.percent() / 100.0;
                (0..k)
                    .filter(|&o| o != j)
                    .all(|o| contrast(j, Some(o), z).0 > need)
            });
            share_ok && lead_ok
        })
    };
    if ahead_of_all(lead, z) && clause_certain(lead) {
        return Call {
            kind: CallKind::Elected,
            winner: Some(candidates[lead].id.clone()),
            runoff: None,
            words: format!(
                "Projected: {} elected in the first round ({}'s final share {})",
                name(candidates, lead),
                name(candidates, lead),
                band(contrast, lead, z_shown)
            ),
        };
    }
    // Runoff: no clause is possible for anyone, and the top two are ahead of every other.
    let clause_possible = |j: usize| {
        rule.clauses.iter().any(|c| {
            let thr = c.share.percent() / 100.0;
            let share_possible = if c.inclusive {
                contrast(j, None, z).1 >= thr
            } else {
                contrast(j, None, z).1 > thr
            };
            let lead_possible = c.lead.is_none_or(|l| {
                let need = l.percent() / 100.0;
                (0..k)
                    .filter(|&o| o != j)
                    .all(|o| contrast(j, Some(o), z).1 > need)
            });
            share_possible && lead_possible
        })
    };
    if k >= 2 {
        let (a, b) = (order[0], order[1]);
        let nobody = (0..k).all(|j| !clause_possible(j));
        let finalists_certain = order[2..]
            .iter()
            .all(|&o| contrast(a, Some(o), z).0 > 0.0 && contrast(b, Some(o), z).0 > 0.0);
        if nobody && finalists_certain {
            return Call {
                kind: CallKind::Runoff,
                winner: None,
                runoff: Some([candidates[a].id.clone(), candidates[b].id.clone()]),
                words: format!(
                    "Projected: runoff between {} and {} ({}'s final share {})",
                    name(candidates, a),
                    name(candidates, b),
                    name(candidates, a),
                    band(contrast, a, z_shown)
                ),
            };
        }
        if nobody {
            return too_close(format!(
                "Too close to call: a runoff, but who meets {} is open: {} {}, {} {}",
                name(candidates, a),
                name(candidates, b),
                band(contrast, b, z_shown),
                name(candidates, order.get(2).copied().unwrap_or(b)),
                band(contrast, order.get(2).copied().unwrap_or(b), z_shown)
            ));
        }
    }
    too_close(format!(
        "Too close to call: {} {}",
        name(candidates, lead),
        band(contrast, lead, z_shown)
    ))
}

/// The call when every station is in: the rule's outcome on the count.
pub(crate) fn from_count(rule: &Rule, round: u8, candidates: &[Candidate], votes: &[u64]) -> Call {
    let ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    let outcome = if round >= 2 {
        decide_runoff(rule, &ids, votes)
    } else {
        decide_first_round(rule, &ids, votes)
    };
    let valid: u64 = votes.iter().sum();
    let share = |id: &str| {
        let j = ids.iter().position(|i| i == id).unwrap_or(0);
        if valid > 0 {
            100.0 * votes[j] as f64 / valid as f64
        } else {
            0.0
        }
    };
    let display = |id: &str| {
        candidates
            .iter()
            .find(|c| c.id == id)
            .map_or(id.to_string(), |c| c.name.clone())
    };
    match outcome {
        Outcome::Elected { winner, .. } => Call {
            words: format!(
                "Counted: {} elected with {:.2}% of valid votes",
                display(&winner),
                share(&winner)
            ),
            kind: CallKind::Elected,
            winner: Some(winner),
            runoff: None,
        },
        Outcome::Runoff { runoff, .. } => Call {
            words: format!(
                "Counted: runoff between {} and {}",
                display(&runoff[0]),
                display(&runoff[1])
            ),
            kind: CallKind::Runoff,
            winner: None,
            runoff: Some(runoff),
        },
        Outcome::Undecided { reason, .. } => Call {
            kind: CallKind::TooClose,
            winner: None,
            runoff: None,
            words: format!("Counted, undecided: {reason}"),
        },
    }
}

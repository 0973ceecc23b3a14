//! What the differences do to the rule's decisions: the outcome under each set of numbers, which
//! decisions flip, and the worst case (could the votes at stake alone change a decision?).

use crate::thousands;
use serde::Serialize;
use tally_model::rule::{decide_first_round, decide_runoff};
use tally_model::{Outcome, Rule};

/// The rule's verdict on totals: round 1 applies the majority rule, later rounds elect the
/// leader (as `tally_model::report::outcome`, which needs a whole `Totals`).
pub fn decide(rule: &Rule, round: u8, ids: &[String], votes: &[u64]) -> Outcome {
    if round >= 2 {
        decide_runoff(rule, ids, votes)
    } else {
        decide_first_round(rule, ids, votes)
    }
}

/// The decisions of the rule that differ between two outcomes: `winner` (another candidate is
/// elected), `decided_in_round_1` (elected outright versus a runoff), `runoff_pair` (another
/// pair reaches the runoff; the order within the pair does not matter), `tie` (one outcome is
/// undecided and the other is not, or the tied candidates differ). Empty when nothing flips.
pub fn flipped(a: &Outcome, b: &Outcome) -> Vec<&'static str> {
    use Outcome::*;
    match (a, b) {
        (Elected { winner: x, .. }, Elected { winner: y, .. }) => {
            if x == y {
                vec![]
            } else {
                vec!["winner"]
            }
        }
        (Runoff { runoff: x, .. }, Runoff { runoff: y, .. }) => {
            let same = (x[0] == y[0] && x[1] == y[1]) || (x[0] == y[1] && x[1] == y[0]);
            if same {
                vec![]
            } else {
                vec!["runoff_pair"]
            }
        }
        (Elected { winner, .. }, Runoff { runoff, .. })
        | (Runoff { runoff, .. }, Elected { winner, .. }) => {
            let mut v = vec!["decided_in_round_1"];
            if !runoff.contains(winner) {
                v.push("winner");
            }
            v
        }
        (Undecided { tied: x, .. }, Undecided { tied: y, .. }) => {
            if x == y {
                vec![]
            } else {
                vec!["tie"]
            }
        }
        _ => vec!["tie"],
    }
}

/// The Arlo kind of bound: the votes in the stations in dispute (differing, or counted in one
/// source only), and whether they alone could change a decision of the rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorstCase {
    /// Stations (or units) whose votes are at stake.
    pub stations: u64,
    /// An upper bound on their votes: ballots cast where a source gives them, else registered
    /// voters, else the largest count of valid votes either source gives.
    pub votes_at_stake: u64,
    /// True when moving, adding or removing at most `votes_at_stake` votes changes a decision.
    pub could_flip: bool,
    /// The fewest votes found that change a decision of the official outcome, over every way of
    /// moving votes between two candidates, adding votes to one or removing votes from one.
    pub votes_to_flip: Option<u64>,
    /// How those votes would have to move, in words.
    pub scenario: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Move(usize, usize),
    Add(usize),
    Remove(usize),
}

fn apply(votes: &[u64], change: Change, s: u64) -> Vec<u64> {
    let mut v = votes.to_vec();
    match change {
        Change::Move(a, b) => {
            let m = s.min(v[a]);
            v[a] -= m;
            v[b] += m;
        }
        Change::Add(b) => v[b] += s,
        Change::Remove(a) => v[a] -= s.min(v[a]),
    }
    v
}

fn describe(change: Change, s: u64, names: &[String]) -> String {
    match change {
        Change::Move(a, b) => format!(
            "{} votes moved from {} to {}",
            thousands(s),
            names[a],
            names[b]
        ),
        Change::Add(b) => format!("{} more votes for {}", thousands(s), names[b]),
        Change::Remove(a) => format!("{} fewer votes for {}", thousands(s), names[a]),
    }
}

/// The worst case for `votes_at_stake` over the official totals `votes`.
///
/// For every change (a move between two candidates, an addition, a removal) the fewest votes
/// that flip a decision are found by bisection; a decision that flips back for even larger
/// changes could hide a smaller flipping count, so `could_flip` is also checked at the stake
/// itself, and every reported count is one at which the outcome was seen to flip.
pub fn worst_case(
    rule: &Rule,
    round: u8,
    ids: &[String],
    names: &[String],
    votes: &[u64],
    stations: u64,
    votes_at_stake: u64,
) -> WorstCase {
    let base = decide(rule, round, ids, votes);
    let flips_at = |c: Change, s: u64| {
        !flipped(&base, &decide(rule, round, ids, &apply(votes, c, s))).is_empty()
    };
    let k = votes.len();
    let mut changes = Vec::with_capacity(k * (k + 1));
    for a in 0..k {
        for b in 0..k {
            if a != b {
                changes.push(Change::Move(a, b));
            }
        }
        changes.push(Change::Add(a));
        changes.push(Change::Remove(a));
    }
    // Any decision flips once every vote has moved, so the total bounds the search.
    let total: u64 = votes.iter().sum::<u64>().max(1);
    let hi_all = total.saturating_mul(2);
    let mut best: Option<(u64, Change)> = None;
    let mut could_flip = false;
    for &c in &changes {
        if votes_at_stake > 0 && flips_at(c, votes_at_stake) {
            could_flip = true;
        }
        if !flips_at(c, hi_all) {
            continue;
        }
        let (mut lo, mut hi) = (0u64, hi_all);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if flips_at(c, mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        if best.is_none_or(|(s, _)| hi < s) {
            best = Some((hi, c));
        }
    }
    if let Some((s, _)) = best {
        could_flip |= s <= votes_at_stake;
    }
    WorstCase {
        stations,
        votes_at_stake,
        could_flip,
        votes_to_flip: best.map(|(s, _)| s),
        scenario: best.map(|(s, c)| describe(c, s, names)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flips_name_the_decisions() {
        let r = Rule::majority();
        let runoff = decide(&r, 1, &ids(), &[496, 400, 104]);
        let elected = decide(&r, 1, &ids(), &[501, 400, 99]);
        let other_pair = decide(&r, 1, &ids(), &[496, 200, 304]);
        let swapped_pair = decide(&r, 1, &ids(), &[400, 496, 104]);
        assert_eq!(flipped(&runoff, &elected), vec!["decided_in_round_1"]);
        assert_eq!(flipped(&runoff, &other_pair), vec!["runoff_pair"]);
        assert!(flipped(&runoff, &swapped_pair).is_empty());
        let b_wins = decide(&r, 1, &ids(), &[100, 800, 100]);
        assert_eq!(
            flipped(&elected, &b_wins),
            vec!["winner"],
            "a elected, then b elected"
        );
    }

    #[test]
    fn votes_to_flip_a_runoff_into_a_first_round_win() {
        // 4,960 of 10,000: the leader needs 41 more (5,001 of 10,000) if they come from a rival,
        // or 81 added votes (5,041 of 10,081).
        let w = worst_case(
            &Rule::majority(),
            1,
            &ids(),
            &ids(),
            &[4960, 4000, 1040],
            3,
            40,
        );
        assert_eq!(w.votes_to_flip, Some(41));
        assert!(!w.could_flip);
        let w = worst_case(
            &Rule::majority(),
            1,
            &ids(),
            &ids(),
            &[4960, 4000, 1040],
            3,
            41,
        );
        assert!(w.could_flip);
        assert!(w.scenario.unwrap().contains("41 votes moved"));
    }
}

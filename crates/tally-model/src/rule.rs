//! The majority and runoff rule: who is elected in round 1, who goes to the runoff, and who wins
//! the runoff. Thresholds are exact rationals compared with integer arithmetic, so 50% exactly
//! is never "more than 50%".

use serde::{Deserialize, Serialize};

/// A share threshold `num/den` of valid votes, e.g. 1/2 or 45/100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio {
    pub num: u64,
    pub den: u64,
}

impl Ratio {
    pub const fn new(num: u64, den: u64) -> Self {
        Ratio { num, den }
    }

    /// Parses "50", "45.5" (percent) into an exact ratio.
    pub fn from_percent_str(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches('%');
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if frac.len() > 6 || int.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = format!("{int}{frac}");
        let num: u64 = digits.parse().ok()?;
        let den = 100 * 10u64.pow(frac.len() as u32);
        (num <= den).then_some(Ratio { num, den })
    }

    /// `votes / total` compared with this ratio: `Greater` when strictly above.
    fn cmp_share(self, votes: u64, total: u64) -> std::cmp::Ordering {
        (votes as u128 * self.den as u128).cmp(&(total as u128 * self.num as u128))
    }

    pub fn percent(self) -> f64 {
        100.0 * self.num as f64 / self.den as f64
    }
}

/// One way to be elected in round 1: a share above (or at least) `share`, and optionally a lead
/// over the second of more than `lead` (both as shares of valid votes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clause {
    pub share: Ratio,
    /// `true`: at least `share`; `false`: strictly more than `share`.
    pub inclusive: bool,
    /// Lead over the runner-up strictly greater than this.
    pub lead: Option<Ratio>,
}

/// What happens on a tie that the rule must break (first place, or second place in round 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TieBreak {
    /// Report the tie; the law decides (by lot, by age, by a new vote...).
    Undecided,
    /// Break it by a seeded, reproducible draw (for simulations, never for real results).
    Lot { seed: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub clauses: Vec<Clause>,
    pub tie: TieBreak,
}

impl Rule {
    /// More than half of valid votes, else a runoff of the top two (Turkey, Poland, Peru, France).
    pub fn majority() -> Self {
        Rule {
            name: "majority".into(),
            clauses: vec![Clause {
                share: Ratio::new(1, 2),
                inclusive: false,
                lead: None,
            }],
            tie: TieBreak::Undecided,
        }
    }

    /// Argentina (Constitution, arts. 97–98): more than 45%, or at least 40% with a lead of more
    /// than 10 points over the runner-up.
    pub fn argentina() -> Self {
        Rule {
            name: "argentina".into(),
            clauses: vec![
                Clause {
                    share: Ratio::new(45, 100),
                    inclusive: false,
                    lead: None,
                },
                Clause {
                    share: Ratio::new(40, 100),
                    inclusive: true,
                    lead: Some(Ratio::new(10, 100)),
                },
            ],
            tie: TieBreak::Undecided,
        }
    }

    /// Costa Rica (Constitution, art. 138): more than 40% of valid votes.
    pub fn costa_rica() -> Self {
        Rule {
            name: "costa-rica".into(),
            clauses: vec![Clause {
                share: Ratio::new(40, 100),
                inclusive: false,
                lead: None,
            }],
            tie: TieBreak::Undecided,
        }
    }

    /// A single threshold rule: more than `share` (or at least, with `inclusive`).
    pub fn threshold(share: Ratio, inclusive: bool) -> Self {
        Rule {
            name: format!("threshold-{}", share.percent()),
            clauses: vec![Clause {
                share,
                inclusive,
                lead: None,
            }],
            tie: TieBreak::Undecided,
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "majority" | "turkey" | "poland" | "peru" | "france" => Some(Self::majority()),
            "argentina" => Some(Self::argentina()),
            "costa-rica" | "costarica" | "costa_rica" => Some(Self::costa_rica()),
            _ => None,
        }
    }

    /// Plain words for the report.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .clauses
            .iter()
            .map(|c| {
                let op = if c.inclusive { "at least" } else { "more than" };
                match c.lead {
                    None => format!("{op} {}% of valid votes", fmt_pct(c.share)),
                    Some(l) => format!(
                        "{op} {}% with a lead of more than {} points",
                        fmt_pct(c.share),
                        fmt_pct(l)
                    ),
                }
            })
            .collect();
        parts.join(", or ")
    }
}

fn fmt_pct(r: Ratio) -> String {
    let p = r.percent();
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// The rule's verdict. Serialised with `kind` = "elected" | "runoff" | "undecided".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Outcome {
    Elected {
        winner: String,
        /// True when the winner was drawn by lot between tied candidates.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        by_lot: bool,
    },
    Runoff {
        runoff: [String; 2],
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        by_lot: bool,
    },
    Undecided {
        reason: String,
        tied: Vec<String>,
    },
}

/// Candidates ranked by votes, highest first; ties keep the input order, which is then never
/// used to decide (ties go through [`TieBreak`]).
fn ranking(votes: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..votes.len()).collect();
    order.sort_by(|&a, &b| votes[b].cmp(&votes[a]).then(a.cmp(&b)));
    order
}

fn tied_with(votes: &[u64], order: &[usize], pos: usize) -> Vec<usize> {
    order
        .iter()
        .copied()
        .filter(|&c| votes[c] == votes[order[pos]])
        .collect()
}

/// splitmix64: a tiny deterministic mixer so the lot needs no RNG dependency.
fn draw(seed: u64, n: usize) -> usize {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

/// Round 1 under `rule`. `ids[i]` names candidate `i`, `votes[i]` its votes; the base of the
/// shares is the sum of candidate votes (= valid votes on a consistent sheet).
pub fn decide_first_round(rule: &Rule, ids: &[String], votes: &[u64]) -> Outcome {
    let valid: u64 = votes.iter().sum();
    if votes.len() < 2 {
        return match ids.first() {
            Some(id) if valid > 0 => Outcome::Elected {
                winner: id.clone(),
                by_lot: false,
            },
            _ => undecided("no votes", vec![]),
        };
    }
    if valid == 0 {
        return undecided("no valid votes", vec![]);
    }
    let order = ranking(votes);
    let (first, second) = (order[0], order[1]);
    let leaders = tied_with(votes, &order, 0);
    let lead = votes[first] - votes[second];
    let qualifies = rule.clauses.iter().any(|c| {
        let share_ok = match c.share.cmp_share(votes[first], valid) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => c.inclusive,
            std::cmp::Ordering::Less => false,
        };
        let lead_ok = c
            .lead
            .is_none_or(|l| l.cmp_share(lead, valid) == std::cmp::Ordering::Greater);
        share_ok && lead_ok
    });
    if qualifies && leaders.len() == 1 {
        return Outcome::Elected {
            winner: ids[first].clone(),
            by_lot: false,
        };
    }
    // Runoff: the top two. A tie that straddles second place must be broken.
    if leaders.len() >= 2 {
        if leaders.len() == 2 {
            return Outcome::Runoff {
                runoff: [ids[leaders[0]].clone(), ids[leaders[1]].clone()],
                by_lot: false,
            };
        }
        return break_tie(
            rule,
            ids,
            &leaders,
            2,
            "tie for first place among more than two",
        );
    }
    let seconds = tied_with(votes, &order, 1);
    if seconds.len() == 1 {
        return Outcome::Runoff {
            runoff: [ids[first].clone(), ids[second].clone()],
            by_lot: false,
        };
    }
    match break_tie(rule, ids, &seconds, 1, "tie for second place") {
        Outcome::Elected { winner, by_lot } => Outcome::Runoff {
            runoff: [ids[first].clone(), winner],
            by_lot,
        },
        other => other,
    }
}

/// The runoff elects the candidate with the most votes; a tie is undecided unless drawn by lot.
pub fn decide_runoff(rule: &Rule, ids: &[String], votes: &[u64]) -> Outcome {
    if votes.iter().sum::<u64>() == 0 {
        return undecided("no valid votes", vec![]);
    }
    let order = ranking(votes);
    let leaders = tied_with(votes, &order, 0);
    if leaders.len() == 1 {
        return Outcome::Elected {
            winner: ids[order[0]].clone(),
            by_lot: false,
        };
    }
    break_tie(rule, ids, &leaders, 1, "tie for first place")
}

/// Picks `seats` (1 or 2) among `tied` according to the tie rule.
fn break_tie(rule: &Rule, ids: &[String], tied: &[usize], seats: usize, what: &str) -> Outcome {
    let names: Vec<String> = tied.iter().map(|&i| ids[i].clone()).collect();
    match rule.tie {
        TieBreak::Undecided => undecided(what, names),
        TieBreak::Lot { seed } => {
            let mut pool = names;
            let a = pool.remove(draw(seed, pool.len()));
            if seats == 1 {
                Outcome::Elected {
                    winner: a,
                    by_lot: true,
                }
            } else {
                let b = pool.remove(draw(seed.wrapping_add(1), pool.len()));
                Outcome::Runoff {
                    runoff: [a, b],
                    by_lot: true,
                }
            }
        }
    }
}

fn undecided(reason: &str, tied: Vec<String>) -> Outcome {
    Outcome::Undecided {
        reason: reason.into(),
        tied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| ["a", "b", "c", "d", "e"][i].to_string())
            .collect()
    }

    fn elected(w: &str) -> Outcome {
        Outcome::Elected {
            winner: w.into(),
            by_lot: false,
        }
    }

    fn runoff(a: &str, b: &str) -> Outcome {
        Outcome::Runoff {
            runoff: [a.into(), b.into()],
            by_lot: false,
        }
    }

    #[test]
    fn majority_needs_strictly_more_than_half() {
        let r = Rule::majority();
        assert_eq!(
            decide_first_round(&r, &ids(3), &[501, 300, 199]),
            elected("a")
        );
        // Exactly 50%: not elected.
        assert_eq!(
            decide_first_round(&r, &ids(3), &[500, 300, 200]),
            runoff("a", "b")
        );
        // Turkey 2023 round 1.
        let v = [27_133_842, 24_595_176, 2_831_239, 235_783];
        assert_eq!(decide_first_round(&r, &ids(4), &v), runoff("a", "b"));
        // The runner-up may be listed first in the file.
        assert_eq!(
            decide_first_round(&r, &ids(3), &[300, 450, 250]),
            runoff("b", "a")
        );
    }

    #[test]
    fn argentina_45_or_40_with_ten_points() {
        let r = Rule::argentina();
        assert_eq!(
            decide_first_round(&r, &ids(3), &[451, 400, 149]),
            elected("a")
        );
        assert_eq!(
            decide_first_round(&r, &ids(3), &[450, 400, 150]),
            runoff("a", "b")
        );
        // 40% with a lead of 10.1 points: elected.
        assert_eq!(
            decide_first_round(&r, &ids(4), &[400, 299, 200, 101]),
            elected("a")
        );
        // 40% with a lead of exactly 10 points: runoff.
        assert_eq!(
            decide_first_round(&r, &ids(4), &[400, 300, 200, 100]),
            runoff("a", "b")
        );
        // 39.9% with a huge lead: runoff.
        assert_eq!(
            decide_first_round(&r, &ids(4), &[399, 200, 200, 201]),
            runoff("a", "d")
        );
        // Argentina 2015: Scioli 37.08, Macri 34.15 -> runoff.
        assert_eq!(
            decide_first_round(&r, &ids(3), &[3708, 3415, 2877]),
            runoff("a", "b")
        );
    }

    #[test]
    fn costa_rica_more_than_40() {
        let r = Rule::costa_rica();
        assert_eq!(
            decide_first_round(&r, &ids(3), &[401, 400, 199]),
            elected("a")
        );
        assert_eq!(
            decide_first_round(&r, &ids(3), &[400, 350, 250]),
            runoff("a", "b")
        );
        let inclusive = Rule::threshold(Ratio::new(40, 100), true);
        assert_eq!(
            decide_first_round(&inclusive, &ids(3), &[400, 350, 250]),
            elected("a")
        );
    }

    #[test]
    fn ties_are_undecided_unless_drawn_by_lot() {
        let r = Rule::majority();
        assert_eq!(
            decide_runoff(&r, &ids(2), &[500, 500]),
            Outcome::Undecided {
                reason: "tie for first place".into(),
                tied: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(decide_runoff(&r, &ids(2), &[499, 501]), elected("b"));
        // Two tied leaders both go to the runoff without a draw.
        assert_eq!(
            decide_first_round(&r, &ids(3), &[400, 400, 200]),
            runoff("a", "b")
        );
        let lot = Rule {
            tie: TieBreak::Lot { seed: 3 },
            ..Rule::majority()
        };
        match decide_first_round(&lot, &ids(3), &[500, 250, 250]) {
            Outcome::Runoff { runoff, by_lot } => {
                assert!(by_lot);
                assert_eq!(runoff[0], "a");
                assert!(runoff[1] == "b" || runoff[1] == "c");
            }
            other => panic!("{other:?}"),
        }
        let a = decide_runoff(&lot, &ids(2), &[7, 7]);
        assert_eq!(
            a,
            decide_runoff(&lot, &ids(2), &[7, 7]),
            "the lot is reproducible"
        );
        assert!(matches!(a, Outcome::Elected { by_lot: true, .. }));
    }

    #[test]
    fn degenerate_inputs() {
        let r = Rule::majority();
        assert!(matches!(
            decide_first_round(&r, &ids(2), &[0, 0]),
            Outcome::Undecided { .. }
        ));
        assert_eq!(decide_first_round(&r, &ids(1), &[10]), elected("a"));
    }

    #[test]
    fn percent_strings_are_exact() {
        assert_eq!(Ratio::from_percent_str("50"), Some(Ratio::new(50, 100)));
        assert_eq!(
            Ratio::from_percent_str("45.5%"),
            Some(Ratio::new(455, 1000))
        );
        assert_eq!(Ratio::from_percent_str("abc"), None);
        assert_eq!(Ratio::from_percent_str("101"), None);
        assert!(Rule::argentina().describe().contains("more than 45%"));
    }
}

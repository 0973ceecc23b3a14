//! Properties of counting that must hold for any input: children add up to their parent,
//! shares add up to 100, and the order of the input rows changes nothing.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tally_model::report::{round_report, SheetStats};
use tally_model::{count, AreaTree, Candidate, Round, Rule, SheetStatus, ROOT};

#[derive(Clone, Debug)]
struct Row {
    region: u8,
    district: u8,
    counted: bool,
    registered: u32,
    invalid: u32,
    votes: Vec<u32>,
}

fn rows(k: usize) -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            0u8..4,
            0u8..5,
            prop::bool::weighted(0.9),
            0u32..50,
            prop::collection::vec(0u32..2000, k),
        ),
        1..120,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(region, district, counted, invalid, votes)| {
                let valid: u32 = votes.iter().sum();
                Row {
                    region,
                    district,
                    counted,
                    registered: valid + invalid + 100,
                    invalid,
                    votes,
                }
            })
            .collect()
    })
}

fn build(rows: &[Row], k: usize) -> Round {
    let mut tree = AreaTree::new("All", vec!["region".into(), "district".into()]);
    let leaves: Vec<u32> = rows
        .iter()
        .map(|r| tree.leaf(&[format!("R{}", r.region), format!("D{}", r.district)]))
        .collect();
    let cands = (0..k).map(|i| Candidate::new(&format!("c{i}"))).collect();
    let mut round = Round::new(1, cands, vec![], tree);
    for (i, r) in rows.iter().enumerate() {
        let valid: u32 = r.votes.iter().sum();
        let status = if r.counted {
            SheetStatus::Counted
        } else {
            SheetStatus::Missing
        };
        round.push(
            &format!("s{i}"),
            leaves[i],
            status,
            i as u64 + 2,
            [r.registered, valid + r.invalid, r.invalid, valid],
            &r.votes,
            &[],
        );
    }
    round
}

/// Totals keyed by area path, so two rounds built in different orders can be compared.
fn by_path(round: &Round) -> BTreeMap<String, tally_model::Totals> {
    let t = count(round);
    (0..round.tree.len() as u32)
        .map(|id| (round.tree.path_string(id), t[id as usize].clone()))
        .collect()
}

proptest! {
    #[test]
    fn children_add_up_to_their_parent(rows in rows(3)) {
        let round = build(&rows, 3);
        let t = count(&round);
        let mut sums: Vec<Vec<u64>> = vec![vec![0; 3]; round.tree.len()];
        let mut valid = vec![0u64; round.tree.len()];
        let mut known = vec![0u64; round.tree.len()];
        for (id, node) in round.tree.nodes.iter().enumerate().skip(1) {
            let p = node.parent as usize;
            for (acc, v) in sums[p].iter_mut().zip(&t[id].votes) {
                *acc += v;
            }
            valid[p] += t[id].valid;
            known[p] += t[id].stations_known;
        }
        for (id, node) in round.tree.nodes.iter().enumerate() {
            if node.depth < 2 {
                prop_assert_eq!(&sums[id], &t[id].votes);
                prop_assert_eq!(valid[id], t[id].valid);
                prop_assert_eq!(known[id], t[id].stations_known);
            }
        }
        // And the root equals a plain sum over the counted rows.
        let expected: u64 = rows.iter().filter(|r| r.counted).map(|r| u64::from(r.votes[0])).sum();
        prop_assert_eq!(t[0].votes[0], expected);
        prop_assert_eq!(t[0].stations_known, rows.len() as u64);
    }

    #[test]
    fn shares_sum_to_100(rows in rows(4)) {
        let round = build(&rows, 4);
        let t = count(&round);
        let rep = round_report(&round, &t, &Rule::majority(), SheetStats::default(), ROOT, Some(2));
        let check = |cands: &[tally_model::report::CandidateOut]| {
            let total: u64 = cands.iter().map(|c| c.votes).sum();
            let sum: f64 = cands.iter().map(|c| c.share).sum();
            total == 0 || (sum - 100.0).abs() < 1e-9
        };
        prop_assert!(check(&rep.candidates));
        for a in rep.areas.unwrap() {
            prop_assert!(check(&a.candidates));
        }
    }

    #[test]
    fn permuting_rows_changes_nothing(rows in rows(3), seed in any::<u64>()) {
        let mut shuffled = rows.clone();
        // Fisher-Yates with a tiny LCG: the permutation is part of the generated case.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        let a = by_path(&build(&rows, 3));
        let b = by_path(&build(&shuffled, 3));
        prop_assert_eq!(a, b);
    }
}

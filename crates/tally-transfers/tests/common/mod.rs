//! A synthetic round as the transfers input (a `tally_model::Round`, as the importer would give
//! it); shared by the recovery tests and the benchmark.

use tally_model::{saturate, AreaTree, Candidate, Round, SheetStatus, ROOT};
use tally_synth::SynthRound;

pub fn to_round(r: &SynthRound) -> Round {
    let candidates = r.candidates.iter().map(|c| Candidate::new(c)).collect();
    let mut round = Round::new(
        r.round,
        candidates,
        Vec::new(),
        AreaTree::new("all", vec![]),
    );
    for s in &r.stations {
        round.push(
            &s.station_id,
            ROOT,
            SheetStatus::Counted,
            0,
            [s.registered, s.cast, s.invalid, s.valid].map(saturate),
            &s.votes.iter().map(|&v| saturate(v)).collect::<Vec<_>>(),
            &[],
        );
    }
    round
}

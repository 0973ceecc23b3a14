//! A synthetic round as the transfers input; shared by the recovery tests and the benchmark.

use tally_synth::SynthRound;
use tally_transfers::RoundCounts;

pub fn round_counts(r: &SynthRound) -> RoundCounts {
    RoundCounts {
        station_ids: r.stations.iter().map(|s| s.station_id.clone()).collect(),
        registered: r.stations.iter().map(|s| s.registered).collect(),
        cast: r.stations.iter().map(|s| s.cast).collect(),
        invalid: r.stations.iter().map(|s| s.invalid).collect(),
        candidates: r.candidates.clone(),
        votes: (0..r.candidates.len())
            .map(|c| r.stations.iter().map(|s| s.votes[c]).collect())
            .collect(),
    }
}

//! Temporary: lphom timing at 200k units.
use tally_synth::{generate, SynthConfig, SynthRound};
use tally_transfers::{estimate, from_two_rounds, Method, Options, RoundCounts};
fn rc(r: &SynthRound) -> RoundCounts {
    RoundCounts {
        station_ids: r.stations.iter().map(|s| s.station_id.clone()).collect(),
        registered: r.stations.iter().map(|s| s.registered).collect(),
        cast: r.stations.iter().map(|s| s.cast).collect(),
        invalid: r.stations.iter().map(|s| s.invalid).collect(),
        candidates: r.candidates.clone(),
        votes: (0..r.candidates.len()).map(|c| r.stations.iter().map(|s| s.votes[c]).collect()).collect(),
    }
}
fn main() {
    let e = generate(&SynthConfig { stations: 200_000, candidates: 3, seed: 42, rounds: 2, ..Default::default() });
    let m = from_two_rounds(&rc(&e.rounds[0]), &rc(&e.rounds[1])).unwrap().margins;
    let t = std::time::Instant::now();
    let r = estimate(&m, &Options { method: Method::Lphom, ..Options::default() }).unwrap();
    println!("{:?} {:?}", t.elapsed(), r.lp);
}

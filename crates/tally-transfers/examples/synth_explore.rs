use tally_synth::{generate, SynthConfig};
use tally_transfers::{estimate_two_rounds, Method, Options, RoundCounts};
fn rc(r: &tally_synth::SynthRound) -> RoundCounts {
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
    let a: Vec<String> = std::env::args().skip(1).collect();
    let e = generate(&SynthConfig { stations: a[0].parse().unwrap(), candidates: 3, seed: a[1].parse().unwrap(), rounds: 2, ..Default::default() });
    let t = e.transfer.as_ref().unwrap();
    println!("truth rows {:?} cols {:?}", t.rows, t.cols);
    for (r, row) in t.votes.iter().enumerate() { let s: u64 = row.iter().sum(); println!("{:>10} {:?} n={s}", t.rows[r], row.iter().map(|v| format!("{:.3}", *v as f64 / s as f64)).collect::<Vec<_>>()); }
    let mut o = Options { method: a[2].parse().unwrap(), ..Options::default() };
    if a.len() > 3 { o.bayes.warmup = a[3].parse().unwrap(); o.bayes.samples = a[4].parse().unwrap(); }
    let res = estimate_two_rounds(&rc(&e.rounds[0]), &rc(&e.rounds[1]), &o).unwrap();
    print!("{}", tally_transfers::render_text(&res));
    let _ = Method::Lphom;
}

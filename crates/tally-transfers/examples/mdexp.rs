//! Temporary experiment harness (md-bayes mixing); removed before hand-over.
use std::time::Instant;
use tally_synth::{generate, SynthConfig, SynthRound};
use tally_transfers::{estimate, from_two_rounds, Margins, Method, Options, RoundCounts};

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
fn env(n: &str, d: usize) -> usize { std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d) }

fn senc() -> (Margins, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string("tests/data/senc.csv").unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim_matches('"').to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows = [col("white"), col("black"), col("natam")];
    let cols = [col("dem"), col("rep"), col("non")];
    let cells = ["whdem","whrep","whnon","bldem","blrep","blnon","natamdem","natamrep","natamnon"].map(col);
    let mut m = Margins { unit_ids: vec![], rows: vec!["w".into(),"b".into(),"n".into()], cols: vec!["d".into(),"r".into(),"n".into()], row_counts: vec![], col_counts: vec![] };
    let mut truth = vec![vec![0.0;3];3];
    for line in lines {
        let f: Vec<&str> = line.split(',').map(|s| s.trim_matches('"')).collect();
        let n = |k: usize| f[k].parse::<u64>().unwrap();
        m.unit_ids.push(format!("{}/{}", f[0], f[1]));
        m.row_counts.push(rows.iter().map(|&k| n(k)).collect());
        m.col_counts.push(cols.iter().map(|&k| n(k)).collect());
        for (k, &c) in cells.iter().enumerate() { truth[k/3][k%3] += n(c) as f64; }
    }
    (m, truth)
}

fn main() {
    let which = std::env::var("DATA").unwrap_or("senc".into());
    let (m, truth) = if which == "senc" { senc() } else {
        let e = generate(&SynthConfig { stations: env("UNITS", 1000), candidates: 3, seed: env("SEED", 1) as u64, rounds: 2, ..Default::default() });
        let t = e.transfer.as_ref().unwrap().votes.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect();
        (from_two_rounds(&rc(&e.rounds[0]), &rc(&e.rounds[1])).unwrap().margins, t)
    };
    let mut o = Options { method: Method::MdBayes, ..Options::default() };
    o.bayes.warmup = env("WARM", 300);
    o.bayes.samples = env("SAMP", 300);
    o.bayes.moves_per_unit = env("MOVES", 0);
    let t = Instant::now();
    let r = estimate(&m, &o).unwrap();
    let s = t.elapsed().as_secs_f64();
    let mut err = 0.0; let mut tot = 0.0;
    for (i, row) in truth.iter().enumerate() { for (j, &v) in row.iter().enumerate() { err += (r.votes[i][j]-v).abs(); tot += v; } }
    let dg = r.diagnostics.unwrap();
    println!("{which} {:.2}s EI {:.2}% maxRhat {:.3} minESS {:.0}", s, 100.0*err/(2.0*tot), dg.max_rhat, dg.min_ess);
    if env("VERB", 0) > 0 { let tp: Vec<Vec<f64>> = truth.iter().map(|r| { let t: f64 = r.iter().sum(); r.iter().map(|v| (v / t * 1000.0).round() / 1000.0).collect() }).collect(); println!("truth p {tp:?} rows {:?} cols {:?}", m.rows, m.cols); println!("ess {:?}\nalpha {:?}\np {:?}", dg.ess, dg.alpha, r.proportions); }
}

//! Test helpers: the russia2018 loader and the tally-synth adapter.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use tally_forensics::StationCounts;

/// Path of the russia2018 data set, relative to this crate.
pub fn russia_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/russia2018/r1.csv.gz")
}

/// Loads a uniform CSV(.gz) with columns round, station_id, <areas...>, registered, ..., cast, ...,
/// valid, <candidates...> (candidates = every column after `valid`), grouped by `group_col`.
pub fn load_uniform_csv_gz(path: &std::path::Path, group_col: &str) -> Option<StationCounts> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().expect("header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let (c_id, c_reg, c_cast, c_valid, c_group) = (
        col("station_id"),
        col("registered"),
        col("cast"),
        col("valid"),
        col(group_col),
    );
    let cand_cols: Vec<usize> = (c_valid + 1..headers.len()).collect();
    let mut out = StationCounts {
        candidates: cand_cols.iter().map(|&c| headers[c].to_string()).collect(),
        votes: vec![Vec::new(); cand_cols.len()],
        ..Default::default()
    };
    let mut group_idx = Vec::new();
    let mut group_names: Vec<String> = Vec::new();
    let mut lookup = std::collections::HashMap::new();
    for rec in rdr.records() {
        let rec = rec.expect("record");
        let num = |c: usize| rec[c].trim().parse::<u64>().expect("count");
        out.station_ids.push(rec[c_id].to_string());
        out.registered.push(num(c_reg));
        out.cast.push(num(c_cast));
        out.valid.push(num(c_valid));
        for (k, &c) in cand_cols.iter().enumerate() {
            out.votes[k].push(num(c));
        }
        let g = rec[c_group].to_string();
        let next = group_names.len() as u32;
        let gi = *lookup.entry(g.clone()).or_insert_with(|| {
            group_names.push(g);
            next
        });
        group_idx.push(gi);
    }
    out.groups = Some((group_idx, group_names));
    Some(out)
}

/// russia2018 grouped by region, or None when the shared data is absent.
pub fn load_russia() -> Option<StationCounts> {
    let p = russia_path();
    if !p.exists() {
        return None;
    }
    load_uniform_csv_gz(&p, "region")
}

/// Adapter from the synthetic generator: groups = the area at `level` (0 region, 1 district, 2 commune).
pub fn to_counts(round: &tally_synth::SynthRound, level: usize) -> StationCounts {
    let k = round.candidates.len();
    let mut out = StationCounts {
        candidates: round.candidates.clone(),
        votes: vec![Vec::with_capacity(round.stations.len()); k],
        ..Default::default()
    };
    let mut names: Vec<String> = Vec::new();
    let mut lookup = std::collections::HashMap::new();
    let mut idx = Vec::with_capacity(round.stations.len());
    for s in &round.stations {
        out.station_ids.push(s.station_id.clone());
        out.registered.push(s.registered);
        out.cast.push(s.cast);
        out.valid.push(s.valid);
        for (c, v) in s.votes.iter().enumerate() {
            out.votes[c].push(*v);
        }
        let name = s.areas.get(level).cloned().unwrap_or_default();
        let next = names.len() as u32;
        let g = *lookup.entry(name.clone()).or_insert_with(|| {
            names.push(name);
            next
        });
        idx.push(g);
    }
    out.groups = Some((idx, names));
    out
}

/// A synthetic election's first round as counts.
pub fn synth(stations: usize, seed: u64, anomalies: Vec<tally_synth::Anomaly>) -> StationCounts {
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations,
        seed,
        anomalies,
        ..Default::default()
    });
    to_counts(&e.rounds[0], 1)
}

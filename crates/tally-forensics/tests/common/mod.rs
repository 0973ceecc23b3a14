//! Test helpers: build `tally_model::Round`s for the forensics from the russia2018 file and from
//! tally-synth elections.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use tally_model::{saturate, AreaTree, Candidate, Round, SheetStatus, StoredCount};

/// Path of the russia2018 data set, relative to this crate.
pub fn russia_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/russia2018/r1.csv.gz")
}

/// A round with these candidates and one area level called `level`; stations are added with
/// [`push_station`].
pub fn empty_round(candidates: &[String], level: &str) -> Round {
    Round::new(
        1,
        candidates.iter().map(|c| Candidate::new(c)).collect(),
        Vec::new(),
        AreaTree::new("All", vec![level.to_string()]),
    )
}

/// Appends a counted station under the area path `areas`. Invalid is left absent: the forensics
/// never reads it.
pub fn push_station(
    round: &mut Round,
    id: &str,
    areas: &[&str],
    [registered, cast, valid]: [StoredCount; 3],
    votes: &[StoredCount],
) {
    let area = round.tree.leaf(areas);
    round.push(
        id,
        area,
        SheetStatus::Counted,
        0,
        [registered, cast, tally_model::MISSING, valid],
        votes,
        &[],
    );
}

/// Loads a uniform CSV(.gz) with columns round, station_id, <areas...>, registered, ..., cast, ...,
/// valid, <candidates...> (candidates = every column after `valid`) as a round whose only area
/// level is `group_col` (so `group_level: Some(1)` groups by it). Every row is a counted station,
/// without the importer's validation, so the tests see the file exactly as it is.
pub fn load_uniform_csv_gz(path: &std::path::Path, group_col: &str) -> Option<Round> {
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
    let candidates: Vec<String> = cand_cols.iter().map(|&c| headers[c].to_string()).collect();
    let mut round = empty_round(&candidates, group_col);
    let mut votes = vec![0 as StoredCount; cand_cols.len()];
    for rec in rdr.records() {
        let rec = rec.expect("record");
        let num = |c: usize| rec[c].trim().parse::<StoredCount>().expect("count");
        for (v, &c) in votes.iter_mut().zip(&cand_cols) {
            *v = num(c);
        }
        push_station(
            &mut round,
            &rec[c_id],
            &[&rec[c_group]],
            [num(c_reg), num(c_cast), num(c_valid)],
            &votes,
        );
    }
    Some(round)
}

/// russia2018 with one area level, `region`; or None when the shared data is absent.
pub fn load_russia() -> Option<Round> {
    let p = russia_path();
    if !p.exists() {
        return None;
    }
    load_uniform_csv_gz(&p, "region")
}

/// Adapter from the synthetic generator: the round with the synthetic area tree (region >
/// district > commune); group it with `group_level: Some(depth)` (1 region, 2 district, 3 commune).
pub fn to_round(synth: &tally_synth::SynthRound) -> Round {
    let mut round = Round::new(
        synth.round,
        synth.candidates.iter().map(|c| Candidate::new(c)).collect(),
        Vec::new(),
        AreaTree::new(
            "All",
            tally_synth::LEVEL_NAMES
                .iter()
                .map(|l| l.to_string())
                .collect(),
        ),
    );
    for s in &synth.stations {
        let area = round.tree.leaf(&s.areas);
        round.push(
            &s.station_id,
            area,
            SheetStatus::Counted,
            0,
            [s.registered, s.cast, s.invalid, s.valid].map(saturate),
            &s.votes.iter().map(|&v| saturate(v)).collect::<Vec<_>>(),
            &[],
        );
    }
    round
}

/// A synthetic election's first round.
pub fn synth(stations: usize, seed: u64, anomalies: Vec<tally_synth::Anomaly>) -> Round {
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations,
        seed,
        anomalies,
        ..Default::default()
    });
    to_round(&e.rounds[0])
}

/// Options grouped by district, as the tests of the synthetic elections always were.
pub const SYNTH_GROUP_LEVEL: Option<u8> = Some(2);

//! `tally forensics`: statistical forensics of one round's station-level numbers.

use crate::load::Loaded;
use std::path::Path;
use std::process::ExitCode;
use tally_forensics::{ForensicsOptions, StationCounts};
use tally_model::{Round, SheetStatus, MISSING};

pub struct ForensicsArgs<'a> {
    pub candidate: Option<&'a str>,
    pub level: Option<&'a str>,
    pub plots: Option<&'a str>,
    pub stations_csv: Option<&'a str>,
    pub seed: u64,
    pub reps: usize,
    pub json: bool,
}

/// The counted stations of `round` that give registered, cast and valid, grouped by the areas of
/// `level` when given. Returns the data and how many counted stations were left out.
pub fn station_counts(round: &Round, level: Option<u8>) -> (StationCounts, usize) {
    let s = &round.stations;
    let k = round.candidates.len();
    let mut out = StationCounts {
        station_ids: Vec::new(),
        registered: Vec::new(),
        cast: Vec::new(),
        valid: Vec::new(),
        candidates: round.candidates.iter().map(|c| c.id.clone()).collect(),
        votes: vec![Vec::new(); k],
        groups: None,
    };
    let mut group_of = Vec::new();
    let mut group_index = std::collections::HashMap::new();
    let mut group_names = Vec::new();
    let mut left_out = 0;
    for i in 0..round.len() {
        if s.status[i] != SheetStatus::Counted {
            continue;
        }
        if [s.registered[i], s.cast[i], s.valid[i]].contains(&MISSING) {
            left_out += 1;
            continue;
        }
        out.station_ids.push(s.ids[i].clone());
        out.registered.push(s.registered[i]);
        out.cast.push(s.cast[i]);
        out.valid.push(s.valid[i]);
        for (c, v) in round.votes_of(i).iter().enumerate() {
            out.votes[c].push(*v);
        }
        if let Some(depth) = level {
            let area = round.tree.ancestor_at(s.area[i], depth);
            let g = *group_index.entry(area).or_insert_with(|| {
                group_names.push(round.tree.path_string(area));
                group_names.len() as u32 - 1
            });
            group_of.push(g);
        }
    }
    if level.is_some() {
        out.groups = Some((group_of, group_names));
    }
    (out, left_out)
}

pub fn run(loaded: &Loaded, args: &ForensicsArgs<'_>) -> Result<ExitCode, String> {
    let imported = loaded.rounds.first().ok_or("no round to analyse")?;
    if loaded.rounds.len() > 1 {
        eprintln!(
            "note: forensics analyses one round; using round {}",
            imported.round.number
        );
    }
    let round = &imported.round;
    let depth = match args.level {
        None => None,
        Some(name) => Some(round.tree.level_depth(name).ok_or_else(|| {
            format!(
                "no level '{name}': the levels are {}",
                round.tree.levels.join(", ")
            )
        })?),
    };
    let (data, left_out) = station_counts(round, depth);
    if data.station_ids.is_empty() {
        return Err("forensics needs registered, cast and valid counts per station; this file has none (e.g. observer transcriptions without registered voters)".into());
    }
    if left_out > 0 {
        eprintln!("note: {left_out} counted stations without registered/cast/valid are left out of the forensics");
    }
    let leader = match args.candidate {
        None => None,
        Some(id) => Some(round.candidate_index(id).ok_or_else(|| {
            let ids: Vec<&str> = round.candidates.iter().map(|c| c.id.as_str()).collect();
            format!("no candidate '{id}': the candidates are {}", ids.join(", "))
        })?),
    };
    let opts = ForensicsOptions {
        leader,
        seed: args.seed,
        mc_reps: args.reps,
        per_group: depth.is_some(),
        ..ForensicsOptions::default()
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "analysing {} stations ({} Monte Carlo replicates)",
        data.station_ids.len(),
        args.reps
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = tally_forensics::try_analyse(&data, &opts).map_err(|e| format!("{e:?}"))?;
    spinner.finish_and_clear();
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.render_text().trim_end());
    }
    if let Some(dir) = args.plots {
        // The plots add the seed to the title themselves.
        let title = format!("{} — round {}", loaded.election, round.number);
        let written = tally_forensics::plot::write_plots(&report, Path::new(dir), &title)
            .map_err(|e| format!("{dir}: {e:?}"))?;
        for p in written {
            eprintln!("wrote {}", p.display());
        }
    }
    if let Some(path) = args.stations_csv {
        let tmp = format!("{path}.partial");
        let f = std::fs::File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
        tally_forensics::write_stations_csv(&report, std::io::BufWriter::new(f))
            .map_err(|e| format!("{tmp}: {e}"))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(ExitCode::SUCCESS)
}

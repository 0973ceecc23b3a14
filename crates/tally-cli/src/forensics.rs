//! `tally forensics`: statistical forensics of one round's station-level numbers.

use crate::load::Loaded;
use std::path::Path;
use std::process::ExitCode;
use tally_forensics::ForensicsOptions;

pub struct ForensicsArgs<'a> {
    pub candidate: Option<&'a str>,
    pub level: Option<&'a str>,
    pub plots: Option<&'a str>,
    pub stations_csv: Option<&'a str>,
    pub seed: u64,
    pub reps: usize,
    pub json: bool,
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
    let selection = tally_forensics::station_selection(round);
    if selection.usable == 0 {
        // Said before the candidate and the spinner: nothing else matters without these counts.
        let e = tally_forensics::InputError::NoUsableStations {
            counted: selection.counted,
        };
        return Err(e.to_string());
    }
    if selection.left_out > 0 {
        eprintln!(
            "note: {} counted stations without registered/cast/valid are left out of the forensics",
            selection.left_out
        );
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
        group_level: depth,
        per_group: depth.is_some(),
        ..ForensicsOptions::default()
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "analysing {} stations ({} Monte Carlo replicates)",
        selection.usable, args.reps
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = tally_forensics::try_analyse(round, &opts);
    spinner.finish_and_clear();
    let report = report.map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.render_text().trim_end());
    }
    if let Some(dir) = args.plots {
        // The plots add the seed to the title themselves.
        let title = format!("{} — round {}", loaded.election, round.number);
        let written = tally_forensics::plot::write_plots(&report, Path::new(dir), &title)
            .map_err(|e| format!("{dir}: {e}"))?;
        for p in written {
            eprintln!("wrote {}", p.display());
        }
    }
    if let Some(path) = args.stations_csv {
        tally_io::output::write_file_atomically(Path::new(path), &loaded.input_paths(), |w| {
            tally_forensics::write_stations_csv(&report, w)
        })
        .map_err(|e| e.to_string())?;
        eprintln!("wrote {path}");
    }
    Ok(ExitCode::SUCCESS)
}

//! `tally transfers`: where did round-1 voters go in round 2? Ecological inference over the
//! stations (or the areas of a level) of both rounds, or over any two margins of one file.

use crate::load::Loaded;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use tally_model::{Round, SheetStatus, MISSING};
use tally_transfers::{
    estimate, estimate_two_rounds, Margins, Method, Options, RoundCounts, TransferResult,
};

pub struct Output<'a> {
    pub format: crate::Format,
    pub plot: Option<&'a str>,
}

/// Counted stations of a round with complete counts, summed per area of `level` when given
/// (the unit is then the area path, the same in both rounds). Returns the counts, the stations
/// left out (incomplete counts) and the stations whose registered count was raised to the
/// ballots cast (W206: voters added on the day), so that abstention is never negative.
pub fn round_counts(round: &Round, level: Option<u8>) -> (RoundCounts, usize, usize) {
    let s = &round.stations;
    let k = round.candidates.len();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out = RoundCounts {
        station_ids: Vec::new(),
        registered: Vec::new(),
        cast: Vec::new(),
        invalid: Vec::new(),
        candidates: round.candidates.iter().map(|c| c.id.clone()).collect(),
        votes: vec![Vec::new(); k],
    };
    let mut left_out = 0;
    let mut raised = 0;
    for i in 0..round.len() {
        if s.status[i] != SheetStatus::Counted {
            continue;
        }
        if [s.registered[i], s.cast[i], s.invalid[i]].contains(&MISSING) {
            left_out += 1;
            continue;
        }
        let key = match level {
            None => s.ids[i].clone(),
            Some(depth) => round
                .tree
                .path_string(round.tree.ancestor_at(s.area[i], depth)),
        };
        let u = *index.entry(key.clone()).or_insert_with(|| {
            out.station_ids.push(key);
            out.registered.push(0);
            out.cast.push(0);
            out.invalid.push(0);
            out.votes.iter_mut().for_each(|v| v.push(0));
            out.station_ids.len() - 1
        });
        if s.cast[i] > s.registered[i] {
            raised += 1;
        }
        out.registered[u] += s.registered[i].max(s.cast[i]);
        out.cast[u] += s.cast[i];
        out.invalid[u] += s.invalid[i];
        for (c, v) in round.votes_of(i).iter().enumerate() {
            out.votes[c][u] += v;
        }
    }
    (out, left_out, raised)
}

pub fn options(
    method: Option<&str>,
    seed: u64,
    bootstrap: Option<usize>,
) -> Result<Options, String> {
    let mut opts = Options {
        seed,
        ..Options::default()
    };
    if let Some(b) = bootstrap {
        // An explicit count is run as asked (no automatic reduction on large inputs).
        opts.bootstrap = b;
        opts.bootstrap_unit_budget = 0;
    }
    if let Some(m) = method {
        opts.method = m.parse::<Method>().map_err(|_| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            format!("unknown method '{m}': use one of {}", names.join(", "))
        })?;
    }
    Ok(opts)
}

pub fn two_rounds(
    loaded: &Loaded,
    level: Option<&str>,
    opts: &Options,
    out: &Output<'_>,
) -> Result<ExitCode, String> {
    if loaded.rounds.len() != 2 {
        return Err(format!(
            "transfers need two rounds (--from R1 --to R2, or one file holding both); got {}",
            loaded.rounds.len()
        ));
    }
    let (r1, r2) = (&loaded.rounds[0].round, &loaded.rounds[1].round);
    let depth = |r: &Round| -> Result<Option<u8>, String> {
        match level {
            None => Ok(None),
            Some(name) => r.tree.level_depth(name).map(Some).ok_or_else(|| {
                format!(
                    "no level '{name}' in round {}: the levels are {}",
                    r.number,
                    r.tree.levels.join(", ")
                )
            }),
        }
    };
    let (c1, left1, raised1) = round_counts(r1, depth(r1)?);
    let (c2, left2, raised2) = round_counts(r2, depth(r2)?);
    if left1 + left2 > 0 {
        eprintln!(
            "note: {} counted stations without registered/cast/invalid are left out",
            left1 + left2
        );
    }
    if raised1 + raised2 > 0 {
        eprintln!(
            "note: {} station sheets with more ballots than registered voters (W206): registered taken as the ballots cast",
            raised1 + raised2
        );
    }
    let unit = level.unwrap_or("station");
    eprintln!(
        "estimating transfers over {} {unit} units ({})",
        c1.station_ids.len().min(c2.station_ids.len()),
        opts.method.name()
    );
    let result = estimate_two_rounds(&c1, &c2, opts).map_err(|e| e.to_string())?;
    emit(
        &result,
        &format!("{} — round 1 to round 2, by {unit}", loaded.election),
        out,
    )
}

/// Any two margins over the units of one CSV file: `--rows` columns and `--cols` columns.
pub fn generic(
    path: &str,
    rows: &[String],
    cols: &[String],
    id: Option<&str>,
    opts: &Options,
    out: &Output<'_>,
) -> Result<ExitCode, String> {
    let names: Vec<String> = rows.iter().chain(cols).cloned().collect();
    let read = tally_io::columns::read_columns(path, &names, id).map_err(|e| e.to_string())?;
    let nr = rows.len();
    let (row_counts, col_counts) = read
        .values
        .into_iter()
        .map(|mut v| {
            let c = v.split_off(nr);
            (v, c)
        })
        .unzip();
    let m = Margins {
        unit_ids: read.ids,
        rows: rows.to_vec(),
        cols: cols.to_vec(),
        row_counts,
        col_counts,
    };
    let result = estimate(&m, opts).map_err(|e| format!("{path}: {e}"))?;
    emit(&result, path, out)
}

fn emit(result: &TransferResult, title: &str, out: &Output<'_>) -> Result<ExitCode, String> {
    match out.format {
        crate::Format::Table => {
            println!("{title}");
            println!("{}", tally_transfers::render_text(result).trim_end());
        }
        crate::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(result).map_err(|e| e.to_string())?
        ),
        crate::Format::Csv => {
            tally_transfers::write_csv(result, std::io::stdout().lock())
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(path) = out.plot {
        tally_transfers::write_png(result, Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(ExitCode::SUCCESS)
}

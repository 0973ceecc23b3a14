//! `tally transfers`: where did round-1 voters go in round 2? Ecological inference over the
//! stations (or the areas of a level) of both rounds, or over any two margins of one file.
//! Reading, matching and the electorate rule live in tally-io and tally-transfers; this file
//! only picks the inputs and prints.

use crate::load::Loaded;
use std::path::Path;
use std::process::ExitCode;
use tally_model::Round;
use tally_transfers::{estimate, from_two_rounds, Margins, Method, Options, TransferResult};

pub struct Output<'a> {
    pub format: crate::Format,
    pub plot: Option<&'a str>,
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
    let depth = match level {
        None => None,
        Some(name) => {
            let depth_in = |r: &Round| {
                r.tree.level_depth(name).ok_or_else(|| {
                    format!(
                        "no level '{name}' in round {}: the levels are {}",
                        r.number,
                        r.tree.levels.join(", ")
                    )
                })
            };
            let (d1, d2) = (depth_in(r1)?, depth_in(r2)?);
            // Areas are matched by their path down to this level, so it must be the same level.
            if d1 != d2 {
                return Err(format!(
                    "level '{name}' is level {d1} in round 1 but level {d2} in round 2"
                ));
            }
            Some(d1)
        }
    };
    let tm = from_two_rounds(r1, r2, depth).map_err(|e| e.to_string())?;
    let unit = level.unwrap_or("station");
    eprintln!(
        "estimating transfers over {} {unit} units ({})",
        tm.units_used,
        opts.method.name()
    );
    let result = tm.estimate(opts).map_err(|e| e.to_string())?;
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
        crate::Format::Nist => {
            return Err(
                "--format nist is for `tally results` (transfers print table, json or csv)".into(),
            )
        }
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

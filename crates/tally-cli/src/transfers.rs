//! `tally transfers`: where did round-1 voters go in round 2? Ecological inference over the
//! stations (or the areas of a level) of both rounds, or over any two margins of one file.
//! Reading, matching and the electorate rule live in tally-io and tally-transfers; this file
//! only picks the inputs and prints.

use crate::load::Loaded;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use tally_model::Round;
use tally_transfers::{
    compare_methods, estimate_shared, from_two_rounds, InputError, Margins, Method, Options,
    Progress, SharedFits, SkippedMethod, TransferResult, TRUSTED,
};

/// One estimation, reporting its progress.
type Run<'a> =
    dyn Fn(&Options, &(dyn Fn(Progress) + Sync)) -> Result<TransferResult, InputError> + 'a;

/// Runs `run` with a spinner on the terminal (nothing when stderr is not one) saying what the
/// estimation is doing: the fit, em's passes over the units, the interval.
fn with_progress(
    run: &Run<'_>,
    opts: &Options,
    units: usize,
) -> Result<TransferResult, InputError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let name = opts.method.name();
    let report = |p: Progress| match p {
        Progress::Fit { method } => {
            bar.set_message(format!("{method}: point estimate over {units} units"))
        }
        Progress::EmStep { step, .. } => {
            bar.set_message(format!("em: pass {step} over the {units} units"))
        }
        Progress::Sandwich => bar.set_message("em: sandwich interval (one pass)".to_string()),
        Progress::Bootstrap { done, of } => {
            bar.set_message(format!("{name}: bootstrap replicate {done} of {of}"))
        }
    };
    let out = run(opts, &report);
    bar.finish_and_clear();
    out
}

pub struct Output<'a> {
    pub format: crate::Format,
    pub plot: Option<&'a str>,
    /// `--compare-methods`: `Some(true/false)` as asked, `None` = on below [`COMPARE_MAX_UNITS`].
    pub compare: Option<bool>,
}

/// Below this many units the other trusted methods are run by default (`--compare-methods`).
pub const COMPARE_MAX_UNITS: usize = 50_000;

/// A method left out of the comparison when its predicted time exceeds this many times the
/// chosen run's.
const COMPARE_MAX_FACTOR: f64 = 10.0;

/// Point-estimate time of each method relative to lphom's on the same input (benchmark, 200k
/// units 5 x 4: tslphom 1.2x, nslphom 2.4x; Poland 2020: em 2.3x tslphom before em's Newton unit
/// solve, about 0.25x lphom since), for the prediction.
/// With `lphom_done`, the LP methods reuse that lphom solve ([`SharedFits`]) and only their
/// unit-level passes remain (tslphom 0.2x and nslphom 1.4x on the benchmark; less on Poland).
fn relative_cost(m: Method, lphom_done: bool) -> f64 {
    match (m, lphom_done) {
        (Method::Lphom, false) => 1.0,
        (Method::Lphom, true) => 0.05,
        (Method::Tslphom, false) => 1.2,
        (Method::Tslphom, true) => 0.2,
        (Method::Nslphom, false) => 2.5,
        (Method::Nslphom, true) => 1.5,
        (Method::Em, _) => 3.0,
    }
}

/// Runs `run` with `opts` (timed), then, when asked or below [`COMPARE_MAX_UNITS`] units, the
/// point estimates of the other trusted methods, and attaches their range per cell.
fn estimate_and_compare(
    run: &Run<'_>,
    units: usize,
    opts: &Options,
    out: &Output<'_>,
) -> Result<TransferResult, InputError> {
    let t = Instant::now();
    let mut result = with_progress(run, opts, units)?;
    let chosen_secs = t.elapsed().as_secs_f64();
    if !out.compare.unwrap_or(units < COMPARE_MAX_UNITS) {
        return Ok(result);
    }
    let budget = COMPARE_MAX_FACTOR * chosen_secs;
    // The unit of the prediction: lphom's time, measured once it has run, else inferred from the
    // chosen run (its bootstrap included, so a generous guess).
    let mut lphom_secs = chosen_secs / relative_cost(opts.method, false);
    // lphom has been solved once this run (by the chosen method or the comparison).
    let mut lphom_done = opts.method != Method::Em;
    let (mut others, mut skipped) = (Vec::new(), Vec::new());
    let rest: Vec<Method> = TRUSTED.into_iter().filter(|m| *m != opts.method).collect();
    eprintln!(
        "comparing with {} (point estimates; --compare-methods off to skip)",
        rest.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    );
    for m in rest {
        let predicted = lphom_secs * relative_cost(m, lphom_done);
        if predicted > budget {
            skipped.push(SkippedMethod {
                method: m.name().to_string(),
                reason: format!(
                    "predicted {predicted:.1} s, more than {COMPARE_MAX_FACTOR:.0}x the chosen \
                     run's {chosen_secs:.1} s"
                ),
            });
            continue;
        }
        let o = Options {
            method: m,
            bootstrap: 0,
            keep_unit_tables: false,
            ..opts.clone()
        };
        let t = Instant::now();
        others.push(with_progress(run, &o, units)?);
        if m == Method::Lphom && !lphom_done {
            lphom_secs = t.elapsed().as_secs_f64();
        }
        lphom_done = true;
    }
    compare_methods(&mut result, &others, skipped);
    Ok(result)
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
        // An explicit count is run as asked (no automatic reduction on large inputs); em then
        // re-solves every replicate instead of its default sandwich interval.
        opts.bootstrap = b;
        opts.bootstrap_unit_budget = 0;
        opts.em_bootstrap = true;
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
    // The comparison's LP methods share one lphom solve.
    let shared = std::cell::RefCell::new(SharedFits::default());
    let result = estimate_and_compare(
        &|o, p| tm.estimate_shared(o, p, &mut shared.borrow_mut()),
        tm.units_used,
        opts,
        out,
    )
    .map_err(|e| e.to_string())?;
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
    let shared = std::cell::RefCell::new(SharedFits::default());
    let result = estimate_and_compare(
        &|o, p| estimate_shared(&m, o, p, &mut shared.borrow_mut()),
        m.len(),
        opts,
        out,
    )
    .map_err(|e| format!("{path}: {e}"))?;
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

//! `tally project`, `tally sample` and `tally backtest`: load the rounds through the one import,
//! hand them to tally-project, render what comes back.

use crate::load::{load, LoadArgs, Loaded};
use crate::table::{thousands, Align, Table};
use crate::ReportFormat;
use std::io::Write;
use std::process::ExitCode;
use tally_model::{Round, Rule, ValidationConfig};
use tally_project::backtest::{self, Order};
use tally_project::{Inputs, Population, Projection};

/// What every command here needs to read a file.
pub struct Source<'a> {
    pub election: Option<&'a str>,
    pub rule: Option<&'a str>,
}

/// One round from a file (the embedded election's round `embedded_round` when `file` is None).
fn load_round(
    file: Option<&str>,
    embedded_round: u8,
    src: &Source<'_>,
) -> Result<(Round, Rule), String> {
    let files: Vec<String> = file.map(|f| vec![f.to_string()]).unwrap_or_default();
    let loaded: Loaded = load(&LoadArgs {
        files: &files,
        election: src.election,
        rule: src.rule,
        registry: None,
        max_input_bytes: tally_io::DEFAULT_MAX_INPUT_BYTES,
        contest: None,
        validation: ValidationConfig::default(),
        show_issues: 3,
    })?;
    let rule = loaded.rule.clone();
    let mut rounds = loaded.rounds;
    let pick = if file.is_none() {
        rounds
            .iter()
            .position(|r| r.round.number == embedded_round)
            .unwrap_or(0)
    } else if rounds.len() > 1 {
        return Err(format!(
            "{}: the file holds {} rounds; give one round per file",
            file.unwrap_or("-"),
            rounds.len()
        ));
    } else {
        0
    };
    if rounds.is_empty() {
        return Err(format!("{}: no round in the file", file.unwrap_or("-")));
    }
    Ok((rounds.swap_remove(pick).round, rule))
}

pub struct ProjectArgs<'a> {
    pub partial: &'a str,
    pub baseline: Option<&'a str>,
    pub registry: Option<&'a str>,
    pub sample: Option<&'a str>,
    pub level: Option<&'a str>,
    pub confidence: f64,
    pub format: ReportFormat,
    pub source: Source<'a>,
}

fn check_confidence(c: f64) -> Result<(), String> {
    if c > 0.0 && c < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "--confidence {c} is not between 0 and 1 (0.95 means 95% intervals)"
        ))
    }
}

pub fn project(args: &ProjectArgs<'_>) -> Result<ExitCode, String> {
    check_confidence(args.confidence)?;
    let (partial, rule) = load_round(Some(args.partial), 1, &args.source)?;
    let baseline = match args.baseline {
        Some(b) => Some(load_round(Some(b), 1, &args.source)?.0),
        None => None,
    };
    let registry = match args.registry {
        Some(r) => Some(load_round(Some(r), 1, &args.source)?.0),
        None => None,
    };
    let started = std::time::Instant::now();
    let pop = Population::build(&Inputs {
        partial: &partial,
        baseline: baseline.as_ref(),
        registry: registry.as_ref(),
        level: args.level,
    })
    .map_err(|e| e.to_string())?;
    let p = match args.sample {
        Some(path) => {
            let rows = read_sample(path)?;
            tally_project::sample::quick_count(&pop, &rows, &rule, args.confidence)
                .map_err(|e| format!("{path}: {e}"))?
        }
        None => tally_project::project(
            &pop,
            &rule,
            &tally_project::Options {
                confidence: args.confidence,
            },
        ),
    };
    let elapsed = started.elapsed();
    let text = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&p).map_err(|e| e.to_string())? + "\n",
        ReportFormat::Table => {
            render_projection(&p)
                + &format!(
                    "\n  Projected in {:.0} ms ({} stations; the files were read before).\n",
                    elapsed.as_secs_f64() * 1000.0,
                    thousands(pop.len() as u64)
                )
        }
    };
    write_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn write_out(text: &str) -> Result<(), String> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())
}

/// The projection as the terminal shows it.
pub fn render_projection(p: &Projection) -> String {
    let conf = format!("{:.0}%", 100.0 * p.confidence);
    let mut out = format!(
        "Projection of round {} ({}): {} of {} stations in ({:.1}% of registered voters)\n\n",
        p.round,
        p.method,
        thousands(p.reported.stations as u64),
        thousands(p.reported.stations_total as u64),
        p.reported.registered_share,
    );
    let mut t = Table::new(&[
        ("candidate", Align::Left),
        ("share so far", Align::Right),
        ("projected", Align::Right),
        (&format!("{conf} interval"), Align::Right),
        ("votes so far", Align::Right),
        ("projected votes", Align::Right),
        (&format!("{conf} interval "), Align::Right),
    ]);
    let mut order: Vec<&tally_project::CandidateProjection> = p.candidates.iter().collect();
    order.sort_by(|a, b| b.share.total_cmp(&a.share));
    for c in order {
        t.row(vec![
            c.name.clone(),
            format!("{:.2}%", c.share_now),
            format!("{:.2}%", c.share),
            format!("{:.2}-{:.2}%", c.lower, c.upper),
            thousands(c.votes_now),
            thousands(c.votes),
            format!("{}-{}", thousands(c.votes_lower), thousands(c.votes_upper)),
        ]);
    }
    out.push_str(&t.render(2));
    out.push_str(&format!(
        "\n  Turnout: {:.2}% projected ({:.2}-{:.2}%)\n",
        p.turnout.share, p.turnout.lower, p.turnout.upper
    ));
    if let Some(s) = &p.sample {
        out.push_str(&format!(
            "  Sample: {} of {} sampled stations in, {} strata ({} without a report yet)\n",
            thousands(s.reported as u64),
            thousands(s.drawn as u64),
            s.strata,
            s.strata_without_report
        ));
    }
    out.push_str(&format!("\n  {}\n\n", p.call.words));
    for a in &p.assumptions {
        out.push_str(&format!("  {a}\n"));
    }
    out
}

/// Reads a sample file written by `tally sample`: station_id, stratum, stratum_stations.
fn read_sample(path: &str) -> Result<Vec<(String, String, usize)>, String> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| format!("{path}: {e}"))?;
    let headers = rdr.headers().map_err(|e| format!("{path}: {e}"))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{path}: no column \"{name}\" (a sample file is written by `tally sample`: station_id,stratum,stratum_stations)"))
    };
    let (ci, cs, cn) = (
        col("station_id")?,
        col("stratum")?,
        col("stratum_stations")?,
    );
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("{path}: {e}"))?;
        let n: usize =
            rec.get(cn).unwrap_or("").trim().parse().map_err(|_| {
                format!("{path}, line {}: stratum_stations is not a count", line + 2)
            })?;
        out.push((
            rec.get(ci).unwrap_or("").to_string(),
            rec.get(cs).unwrap_or("").to_string(),
            n,
        ));
    }
    Ok(out)
}

pub struct SampleArgs<'a> {
    pub registry: &'a str,
    pub size: usize,
    pub strata: Option<&'a str>,
    pub seed: u64,
    pub out: &'a str,
    pub source: Source<'a>,
}

pub fn sample(args: &SampleArgs<'_>) -> Result<ExitCode, String> {
    let (frame, _) = load_round(Some(args.registry), 1, &args.source)?;
    let pop = Population::build(&Inputs {
        partial: &frame,
        baseline: None,
        registry: None,
        level: None,
    })
    .map_err(|e| e.to_string())?;
    let s = tally_project::sample::draw(&pop, args.size, args.strata, args.seed)
        .map_err(|e| e.to_string())?;
    let sizes: std::collections::HashMap<&str, usize> = s
        .strata
        .iter()
        .map(|h| (h.name.as_str(), h.stations))
        .collect();
    let mut text = String::from("station_id,stratum,stratum_stations\n");
    for (id, stratum) in &s.stations {
        text.push_str(&format!(
            "{},{},{}\n",
            tally_model::csv_text(id),
            tally_model::csv_text(stratum),
            sizes[stratum.as_str()]
        ));
    }
    let inputs = [std::path::Path::new(args.registry)];
    tally_io::output::write_file_atomically(std::path::Path::new(args.out), &inputs, |w| {
        w.write_all(text.as_bytes())
    })
    .map_err(|e| e.to_string())?;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "Drew {} of {} stations in {} strata{} (seed {}), proportional allocation; wrote {}",
        thousands(s.stations.len() as u64),
        thousands(s.strata.iter().map(|h| h.stations as u64).sum()),
        s.strata.len(),
        args.strata.map(|l| format!(" by {l}")).unwrap_or_default(),
        args.seed,
        args.out
    );
    Ok(ExitCode::SUCCESS)
}

pub struct BacktestArgs<'a> {
    pub baseline: Option<&'a str>,
    pub final_count: Option<&'a str>,
    pub order: &'a str,
    pub steps: &'a [f64],
    pub replays: usize,
    pub seed: u64,
    pub level: Option<&'a str>,
    pub confidence: f64,
    pub format: ReportFormat,
    pub source: Source<'a>,
}

pub fn run_backtest(args: &BacktestArgs<'_>) -> Result<ExitCode, String> {
    check_confidence(args.confidence)?;
    // Without files: the embedded election, round 1 as the baseline of the runoff.
    let (final_round, rule) = load_round(args.final_count, 2, &args.source)?;
    let baseline = match (args.baseline, args.final_count) {
        (Some(b), _) => Some(load_round(Some(b), 1, &args.source)?.0),
        (None, None) => Some(load_round(None, 1, &args.source)?.0),
        (None, Some(_)) => None,
    };
    let pop = Population::build(&Inputs {
        partial: &final_round,
        baseline: baseline.as_ref(),
        registry: None,
        level: args.level,
    })
    .map_err(|e| e.to_string())?;
    let order = parse_order(args.order, &pop)?;
    let started = std::time::Instant::now();
    let bt = backtest::run(
        &pop,
        &rule,
        &backtest::Config {
            order,
            steps: args.steps.to_vec(),
            replays: args.replays,
            seed: args.seed,
            confidence: args.confidence,
        },
    )
    .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let text = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&bt).map_err(|e| e.to_string())? + "\n",
        ReportFormat::Table => render_backtest(&bt, elapsed),
    };
    write_out(&text)?;
    let wrong: usize = bt.steps.iter().map(|s| s.wrong_calls).sum();
    Ok(if wrong > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_order(s: &str, pop: &Population) -> Result<Order, String> {
    match s {
        "random" => Ok(Order::Random),
        "urban-first" => Ok(Order::UrbanFirst),
        _ => {
            if let Some(level) = s.strip_prefix("by-area:") {
                return Ok(Order::ByArea(level.to_string()));
            }
            // A file of station ids, one per line (or a CSV whose first column is the id).
            let text = std::fs::read_to_string(s).map_err(|e| {
                format!("--order {s}: not random, urban-first or by-area:LEVEL, and not a readable file of station ids ({e})")
            })?;
            let index: std::collections::HashMap<&str, usize> = pop
                .ids()
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, i))
                .collect();
            let mut order = Vec::new();
            let mut unknown = 0usize;
            for line in text.lines() {
                let id = line.split(',').next().unwrap_or("").trim();
                if id.is_empty() || id == "station_id" {
                    continue;
                }
                match index.get(id) {
                    Some(&i) => order.push(i),
                    None => unknown += 1,
                }
            }
            if order.is_empty() {
                return Err(format!(
                    "--order {s}: no line names a station of the final count"
                ));
            }
            if unknown > 0 {
                let _ = writeln!(
                    std::io::stderr(),
                    "--order {s}: {unknown} ids are not stations of the final count and are skipped"
                );
            }
            Ok(Order::Fixed(order))
        }
    }
}

/// The backtest as the terminal shows it.
pub fn render_backtest(bt: &backtest::Backtest, elapsed: std::time::Duration) -> String {
    let mut out = format!(
        "Backtest: {} replays of {} stations in {} order, {:.0}% intervals ({}); final: {}\n\n",
        bt.replays,
        thousands(bt.stations as u64),
        bt.order,
        100.0 * bt.confidence,
        bt.method,
        bt.final_call.words
    );
    let mut t = Table::new(&[
        ("reported", Align::Right),
        ("coverage", Align::Right),
        ("turnout cov.", Align::Right),
        ("mean error", Align::Right),
        ("leader width", Align::Right),
        ("elected", Align::Right),
        ("runoff", Align::Right),
        ("too close", Align::Right),
        ("wrong calls", Align::Right),
    ]);
    for s in &bt.steps {
        t.row(vec![
            format!("{:.0}%", s.reported),
            format!("{:.1}%", 100.0 * s.coverage),
            format!("{:.1}%", 100.0 * s.turnout_coverage),
            format!("{:.2} pp", s.mean_error),
            format!("{:.2} pp", s.mean_width),
            s.calls_elected.to_string(),
            s.calls_runoff.to_string(),
            s.too_close.to_string(),
            s.wrong_calls.to_string(),
        ]);
    }
    out.push_str(&t.render(2));
    out.push_str("\n  The first replay, step by step:\n");
    for m in &bt.first_replay {
        out.push_str(&format!(
            "  {:>4.0}% in ({:>7} stations): {} leads with {:.2}% so far. {}{}\n",
            m.reported,
            thousands(m.stations as u64),
            m.leader_now,
            m.share_now,
            m.call.words,
            if m.wrong { "  << WRONG CALL" } else { "" }
        ));
    }
    out.push_str(&format!(
        "\n  coverage: share of (replay, candidate) pairs whose interval held the final share; \
         {:.1} s\n",
        elapsed.as_secs_f64()
    ));
    out
}

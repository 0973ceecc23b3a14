//! `tally bench`: what users feel, measured as they feel it. A synthetic election is written to a
//! temporary file; then, in the same run and on the same file:
//! - `tally results FILE --format json` as a whole process (spawned, min / median of the runs,
//!   its peak memory), beside `wc -l FILE` (the floor: read every byte once);
//! - the in-process phases of that command (the import as it reads the file: layout, waiting
//!   for the reader, split + parse + validate, duplicates; then count, report), so the next
//!   person sees where the time goes;
//! - with `--peers`, the same work in Python with polars or pandas when installed
//!   (`scripts/peer_bench.py`); it says so and skips when they are absent.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use tally_io::{import_path, ImportOptions};

pub struct BenchArgs {
    pub stations: usize,
    pub candidates: usize,
    pub repeat: usize,
    pub peers: bool,
}

/// Min and median of some timings.
fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command `n` times with its output thrown away; the wall times and its last stderr.
fn time_command(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    n: usize,
) -> Result<(Vec<Duration>, String), String> {
    let mut times = Vec::with_capacity(n);
    let mut stderr = String::new();
    for _ in 0..n {
        let t = Instant::now();
        let out = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        times.push(t.elapsed());
        stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            return Err(format!(
                "{} {} failed: {stderr}",
                program.display(),
                args.join(" ")
            ));
        }
    }
    Ok((times, stderr))
}

/// The peak memory the child reported (see `report_peak_memory` in main.rs).
fn peak_kb(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    let repeat = args.repeat.max(1);
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bench.csv");
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("generating {} stations", args.stations));
    let t0 = Instant::now();
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations: args.stations,
        candidates: args.candidates,
        seed: 42,
        ..Default::default()
    });
    let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    tally_synth::write_csv(&e, std::io::BufWriter::new(f)).map_err(|e| e.to_string())?;
    drop(e);
    let generated = t0.elapsed();
    let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let path_s = path.to_string_lossy().to_string();
    let result = measure(args, repeat, &path_s, size, generated, &spinner);
    spinner.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    let text = result?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn measure(
    args: &BenchArgs,
    repeat: usize,
    path: &str,
    size: u64,
    generated: Duration,
    spinner: &ProgressBar,
) -> Result<String, String> {
    let mut out = format!(
        "tally bench: {} stations, {} candidates, {:.1} MB CSV (generated in {:.2} s), {} threads, {repeat} runs each\n",
        args.stations,
        args.candidates,
        size as f64 / 1e6,
        generated.as_secs_f64(),
        rayon::current_num_threads(),
    );
    // Whole processes, interleaved so both see the same machine.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut wc = Vec::new();
    let mut tally = Vec::new();
    let mut peak = None;
    for i in 0..repeat {
        spinner.set_message(format!("whole-process run {}/{repeat}", i + 1));
        wc.extend(time_command(Path::new("wc"), &["-l", path], &[], 1)?.0);
        let (t, stderr) = time_command(
            &exe,
            &["results", path, "--format", "json"],
            &[("TALLY_REPORT_PEAK_MEMORY", "1")],
            1,
        )?;
        tally.extend(t);
        peak = peak_kb(&stderr).or(peak);
    }
    let (wc_min, wc_med) = min_median(wc);
    let (t_min, t_med) = min_median(tally);
    out.push_str("  whole process (what users run), min / median:\n");
    out.push_str(&format!(
        "    wc -l FILE                              {:>8.1} / {:>8.1} ms\n",
        ms(wc_min),
        ms(wc_med)
    ));
    out.push_str(&format!(
        "    tally results FILE --format json        {:>8.1} / {:>8.1} ms   ({:.1}x / {:.1}x wc -l)\n",
        ms(t_min),
        ms(t_med),
        ms(t_min) / ms(wc_min),
        ms(t_med) / ms(wc_med)
    ));
    if let Some(kb) = peak {
        out.push_str(&format!(
            "    peak memory of tally results            {:>8.1} MiB  ({:.2}x the file)\n",
            kb as f64 / 1024.0,
            kb as f64 * 1024.0 / size as f64
        ));
    }
    // In-process phases of the same work (best run), read as `tally results` reads the file:
    // block by block, parsed while the next block is read.
    let mut best: Option<([Duration; 3], tally_io::ImportPhases)> = None;
    for i in 0..repeat {
        spinner.set_message(format!("in-process run {}/{repeat}", i + 1));
        let t = Instant::now();
        let imported = import_path(path, &ImportOptions::default()).map_err(|e| e.to_string())?;
        let import = t.elapsed();
        let t = Instant::now();
        let round = &imported.rounds[0].round;
        // What `tally results FILE` counts: the whole election.
        let totals = tally_model::report::totals_for(round, &Default::default());
        let count = t.elapsed();
        let t = Instant::now();
        let rounds = [tally_model::report::CountedRound {
            round,
            totals: &totals,
            sheets: imported.rounds[0].stats,
        }];
        let rep = tally_model::report::results_report(
            "bench",
            &tally_model::Rule::majority(),
            &rounds,
            None,
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
        let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
        let report = t.elapsed();
        drop(json);
        let phases = [import, count, report];
        let total = |p: &[Duration; 3]| p.iter().sum::<Duration>();
        if best.as_ref().is_none_or(|b| total(&phases) < total(&b.0)) {
            best = Some((phases, imported.phases));
        }
    }
    let ([import, count, report], inside) = best.expect("at least one run");
    out.push_str("  in-process phases (best run):\n");
    for (name, d) in [
        ("read, import and check, of which:", import),
        ("  header, sample, layout", inside.layout),
        ("  waiting for the reader", inside.waiting),
        ("  split, parse, validate (all cores)", inside.parse),
        ("  rounds, duplicates, quarantine", inside.assemble),
        ("count (the totals the report reads)", count),
        ("build and serialise the report", report),
    ] {
        out.push_str(&format!("    {name:<42} {:>8.1} ms\n", ms(d)));
    }
    if args.peers {
        out.push_str(&peers(path, repeat, t_med, spinner)?);
    }
    Ok(out)
}

/// The same work in Python (polars, then pandas), when installed.
fn peers(
    path: &str,
    repeat: usize,
    tally_median: Duration,
    spinner: &ProgressBar,
) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peer_bench.py");
    let mut out = String::from(
        "  peers (same file, same work: read, sheet checks, totals by area), median:\n",
    );
    for lib in ["polars", "pandas"] {
        let has = Command::new("python3")
            .args(["-c", &format!("import {lib}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has || !script.exists() {
            out.push_str(&format!(
                "    {lib:<40} skipped: python3 with {lib} is not installed\n"
            ));
            continue;
        }
        spinner.set_message(format!("{lib} runs"));
        let script_s = script.to_string_lossy().to_string();
        let (t, _) = time_command(Path::new("python3"), &[&script_s, lib, path], &[], repeat)?;
        let (_, med) = min_median(t);
        out.push_str(&format!(
            "    {lib:<40} {:>8.1} ms   ({:.1}x tally results)\n",
            ms(med),
            ms(med) / ms(tally_median)
        ));
    }
    Ok(out)
}

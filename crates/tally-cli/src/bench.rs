//! `tally bench`: import + validate + count of a synthetic election, beside the raw-read floor
//! measured in the same run (read the file's bytes and count its lines).

use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tally_io::{import_path, ImportOptions};

pub fn run(stations: usize, candidates: usize, repeat: usize) -> Result<ExitCode, String> {
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bench.csv");
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("generating {stations} stations"));
    let t0 = Instant::now();
    let e = tally_synth::generate(&tally_synth::SynthConfig {
        stations,
        candidates,
        seed: 42,
        ..Default::default()
    });
    let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    tally_synth::write_csv(&e, f).map_err(|e| e.to_string())?;
    drop(e);
    let generated = t0.elapsed();
    let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let path_s = path.to_string_lossy().to_string();

    let mut floor = Duration::MAX;
    let mut full = Duration::MAX;
    let mut count_part = Duration::ZERO;
    let mut lines = 0usize;
    let mut counted = 0u64;
    for i in 0..repeat.max(1) {
        spinner.set_message(format!("timing run {}/{}", i + 1, repeat.max(1)));
        let t = Instant::now();
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        lines = memchr::memchr_iter(b'\n', &bytes).count();
        floor = floor.min(t.elapsed());
        drop(bytes);

        let t = Instant::now();
        let imported =
            import_path(&path_s, &ImportOptions::default()).map_err(|e| e.to_string())?;
        let imported_at = t.elapsed();
        let round = &imported.rounds[0].round;
        let totals = tally_model::count(round);
        let total = t.elapsed();
        if total < full {
            full = total;
            count_part = total - imported_at;
        }
        counted = totals[0].stations_counted;
        assert_eq!(imported.rounds[0].stats.rows as usize, lines - 1);
    }
    spinner.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("tally bench: {stations} stations, {candidates} candidates, {:.1} MB CSV (generated in {:.2} s), {} threads, best of {}", size as f64 / 1e6, generated.as_secs_f64(), rayon::current_num_threads(), repeat.max(1));
    println!(
        "  raw-read floor (read bytes + count lines): {:>8.1} ms   ({lines} lines)",
        ms(floor)
    );
    println!(
        "  tally import + validate + count all levels: {:>8.1} ms   ({counted} sheets counted)",
        ms(full)
    );
    println!(
        "    of which counting every level: {:>8.1} ms",
        ms(count_part)
    );
    println!("  ratio to the floor: {:.1}x", ms(full) / ms(floor));
    println!(
        "  throughput: {:.0} MB/s, {:.2} M stations/s",
        size as f64 / 1e6 / full.as_secs_f64(),
        stations as f64 / 1e6 / full.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

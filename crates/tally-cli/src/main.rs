//! `tally`: election results and election-integrity evidence from polling-station tally sheets.
//!
//! The binary is thin glue: parsing arguments, calling the library crates, printing.

mod bench;
mod forensics;
mod load;
mod project;
mod reconcile;
mod results;
mod table;
mod transfers;

use clap::{Parser, Subcommand, ValueEnum};
use load::{load, LoadArgs};
use std::io::Write;
use std::process::ExitCode;
use tally_model::ValidationConfig;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Election results and election-integrity evidence from polling-station tally sheets",
    long_about = "Tally turns polling-station tally sheets into results (totals at every level of the area tree, \
turnout, shares, margins, progress, the majority/runoff rule) and results into evidence.\n\n\
Without input files, commands use the embedded default election: the official district-level results of \
both rounds of the 2023 Turkish presidential election.",
    after_help = "Examples:\n  tally results\n  tally results r1.csv.gz r2.csv.gz --level voivodeship\n  tally results r1.csv --format json --quarantine rejected.csv\n  tally synth --stations 100000 --candidates 5 --seed 7 --rounds 2 --out synth.csv\n  tally bench --stations 1000000\n  tally codes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// NIST SP 1500-100 v2 ElectionReport (JSON), `tally results` only (docs/nist.md).
    Nist,
}

#[derive(clap::Args)]
struct InputArgs {
    /// Tally-sheet files (uniform CSV, .csv.gz, or - for stdin): round 1, then round 2.
    /// None: the embedded Turkey 2023 election.
    files: Vec<String>,
    /// Election definition (TOML): display names, colours, rule, columns.
    #[arg(long, value_name = "DEF.toml")]
    election: Option<String>,
    /// Majority rule: majority (default), argentina, costa-rica, or a threshold such as 40%.
    #[arg(long)]
    rule: Option<String>,
    /// Station registry (any results file): stations not in it are E106.
    #[arg(long, value_name = "FILE")]
    registry: Option<String>,
    /// Write every rejected row, with its codes and reasons, to this CSV file.
    #[arg(long, value_name = "FILE")]
    quarantine: Option<String>,
    /// Fail (exit code 2) if any sheet is quarantined.
    #[arg(long)]
    strict: bool,
    /// How many findings to print per round (all are in --quarantine).
    #[arg(long, default_value_t = 10, value_name = "N")]
    show_issues: usize,
    /// Tolerance for cast > registered, in permille of registered (E104 beyond, W206 within).
    #[arg(long, default_value_t = 10, value_name = "PERMILLE")]
    over_registered_permille: u64,
    /// A NIST SP 1500-100 report with several candidate contests: the @id of the one to read.
    #[arg(long, value_name = "ID")]
    contest: Option<String>,
    /// Ceiling on each input's size after decompression, in MB (F008 beyond it).
    #[arg(long, default_value_t = tally_io::DEFAULT_MAX_INPUT_BYTES >> 20, value_name = "MB")]
    max_input_mb: u64,
}

/// The formats of a report that has no natural CSV form.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
}

impl From<ReportFormat> for Format {
    fn from(f: ReportFormat) -> Format {
        match f {
            ReportFormat::Table => Format::Table,
            ReportFormat::Json => Format::Json,
        }
    }
}

/// A station count for generated elections: a number from 1 to 20,000,000, so a typo such as
/// `1e11` is an error message, not an allocation failure.
fn station_count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number of stations"))?;
    if (1..=20_000_000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} stations: use 1 to 20,000,000"))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Results of one or two rounds: totals, turnout, shares, margin, progress and outcome.
    #[command(
        after_help = "Examples:\n  tally results\n  tally results --level province --area Ankara\n  tally results ../shared/data/poland2020/r1.csv.gz ../shared/data/poland2020/r2.csv.gz --format json\n  zcat r1.csv.gz | tally results - --strict"
    )]
    Results {
        #[command(flatten)]
        input: InputArgs,
        /// Also report every area of this level (e.g. province, district, voivodeship).
        #[arg(long)]
        level: Option<String>,
        /// Report this area only, as a path from the first level (e.g. Adana or Adana/Ceyhan).
        #[arg(long)]
        area: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// With --format nist: Status certified (the results are official and final).
        #[arg(long)]
        certified: bool,
    },
    /// Election forensics of one round: fingerprint, integer percentages, digits, distributions,
    /// anomalous stations. Statistics are anomalies with uncertainties, never verdicts.
    #[command(
        after_help = "Examples:\n  tally forensics ../shared/data/russia2018/r1.csv.gz --plots plots/\n  tally forensics r1.csv --candidate putin --level region --format json\n  tally forensics planted.csv --stations-csv flagged.csv --seed 7"
    )]
    Forensics {
        #[command(flatten)]
        input: InputArgs,
        /// The candidate whose share is examined (default: the one with most votes).
        #[arg(long)]
        candidate: Option<String>,
        /// Also report every area of this level.
        #[arg(long)]
        level: Option<String>,
        /// Write the plots (PNG) into this directory.
        #[arg(long, value_name = "DIR")]
        plots: Option<String>,
        /// Write the ranked anomalous stations to this CSV file.
        #[arg(long, value_name = "FILE")]
        stations_csv: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Monte Carlo replicates of the integer-percentage null.
        #[arg(long, default_value_t = 1000)]
        reps: usize,
        /// table or json (the station list as CSV: --stations-csv FILE).
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Vote transfers between round 1 and round 2 (ecological inference), or between any two
    /// margins of one file: the table in proportions and votes, with intervals.
    #[command(
        after_help = "Examples:\n  tally transfers                      # embedded Turkey 2023: where did Oğan's voters go?\n  tally transfers --from r1.csv.gz --to r2.csv.gz --level powiat --plot transfers.png\n  tally transfers senc.csv --rows white,black,natam --cols dem,rep,non --format json\n  tally transfers france.csv --rows a,b,c --cols x,y --balance proportional\n  tally transfers --method nslphom --bootstrap 0"
    )]
    Transfers {
        /// Round-1 file (with --to; without both, the embedded Turkey 2023 election).
        #[arg(long, value_name = "R1")]
        from: Option<String>,
        /// Round-2 file.
        #[arg(long, value_name = "R2")]
        to: Option<String>,
        /// One file with two margins over the same units (with --rows and --cols).
        file: Option<String>,
        /// Row-margin columns of FILE (origins), comma-separated.
        #[arg(long, value_delimiter = ',')]
        rows: Vec<String>,
        /// Column-margin columns of FILE (destinations), comma-separated.
        #[arg(long, value_delimiter = ',')]
        cols: Vec<String>,
        /// Unit id column of FILE (default: station_id, else the line number).
        #[arg(long)]
        id: Option<String>,
        /// Aggregate stations to the areas of this level first (units = areas).
        #[arg(long)]
        level: Option<String>,
        /// em (default: the most accurate measured on real data with the true table), lphom,
        /// tslphom or nslphom.
        #[arg(long)]
        method: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// LP methods: bootstrap replicates for the 95% interval (0: Duncan-Davis bounds instead;
        /// default 200, fewer on large inputs).
        #[arg(long, value_name = "N")]
        bootstrap: Option<usize>,
        /// Write a heat map of the table (PNG).
        #[arg(long, value_name = "FILE")]
        plot: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// FILE's margins whose unit totals differ: net (default: the difference goes to an
        /// extra row "new/net entries" or column "net exits", lphom's rule) or proportional
        /// (the smaller side scaled to the larger total, largest-remainder rounding).
        #[arg(long, value_name = "RULE", default_value = "net")]
        balance: String,
        /// Also run the other trusted methods (point estimates) and show each cell's range
        /// across them: on or off (default: on below 50,000 units; a method predicted to take
        /// more than 10x the chosen one is skipped and named).
        #[arg(long, value_name = "on|off", num_args = 0..=1, default_missing_value = "on")]
        compare_methods: Option<String>,
        /// Election definition (TOML) for the two round files.
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
    },
    /// Project the final result from a partial count: each candidate's projected share with an
    /// interval, projected turnout, and a race call only when it is safe. PARTIAL lists every
    /// station; those not yet in have empty counts (or give the full list with --registry).
    #[command(
        after_help = "Examples:\n  tally project partial-r2.csv --baseline r1.csv.gz\n  tally project partial.csv --level province --confidence 0.99 --format json\n  tally project partial.csv --sample sample.csv    (quick count from a drawn sample)\n\nThe model, its assumptions and the JSON (tally.projection/1) are in docs/projection.md."
    )]
    Project {
        /// The partial count (a results file; stations not in yet have empty counts).
        partial: String,
        /// An earlier result for the same stations (round 1 for the runoff, or the previous
        /// election), matched by station id.
        #[arg(long, value_name = "FILE")]
        baseline: Option<String>,
        /// The full station list with registered voters, when PARTIAL lacks stations.
        #[arg(long, value_name = "FILE")]
        registry: Option<String>,
        /// A sample drawn by `tally sample`: estimate from the sampled stations in so far
        /// (stratified ratio estimator) instead of the model.
        #[arg(long, value_name = "SAMPLE.csv")]
        sample: Option<String>,
        /// The area level of the area effects (default: the deepest level with at least ten
        /// stations per area on average).
        #[arg(long)]
        level: Option<String>,
        /// Confidence of the intervals.
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Election definition (TOML) for the files.
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
        /// Majority rule: majority (default), argentina, costa-rica, or a threshold such as 40%.
        #[arg(long)]
        rule: Option<String>,
    },
    /// Draw a stratified random sample of stations for a parallel vote tabulation (quick count),
    /// proportional allocation, reproducible from the seed.
    #[command(
        after_help = "Example:\n  tally sample registry.csv --size 1500 --strata province --seed 2023 --out sample.csv"
    )]
    Sample {
        /// The station list (any results file; counts may be empty).
        registry: String,
        /// Stations to draw.
        #[arg(long)]
        size: usize,
        /// Stratify by this area level (default: one stratum).
        #[arg(long, value_name = "LEVEL")]
        strata: Option<String>,
        #[arg(long)]
        seed: u64,
        /// The sample file to write (station_id, stratum, stratum_stations).
        #[arg(long, value_name = "SAMPLE.csv")]
        out: String,
        /// Election definition (TOML) for the registry file.
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
    },
    /// Replay a final count in an arrival order and check the projection at every step: interval
    /// coverage, width, calls, and every wrong call (exit code 3 if any). Without files: the
    /// embedded election, round 1 as the baseline of the runoff.
    #[command(
        after_help = "Examples:\n  tally backtest\n  tally backtest --baseline r1.csv.gz --final r2.csv.gz --order urban-first --replays 100\n  tally backtest --final r1.csv.gz --order by-area:province --steps 10,50,90"
    )]
    Backtest {
        /// The earlier result used as the baseline.
        #[arg(long, value_name = "FILE")]
        baseline: Option<String>,
        /// The final count to replay.
        #[arg(long = "final", value_name = "FILE")]
        final_count: Option<String>,
        /// random, urban-first (large stations first), by-area:LEVEL, or a file of station ids.
        #[arg(long, default_value = "urban-first")]
        order: String,
        /// Percent of stations in at each step.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,20,30,40,50,60,70,80,90,95"
        )]
        steps: Vec<f64>,
        #[arg(long, default_value_t = 100)]
        replays: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The area level of the area effects.
        #[arg(long)]
        level: Option<String>,
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Election definition (TOML) for the files.
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
        /// Majority rule: majority (default), argentina, costa-rica, or a threshold such as 40%.
        #[arg(long)]
        rule: Option<String>,
    },
    /// Reconcile two sources of the same round (official results against observers' or a
    /// party's copies): every station in one class, the kind of each difference, the outcome under
    /// each source, what flips, and the votes at stake.
    #[command(
        after_help = "Examples:\n  tally reconcile official.csv observers.csv --level region --stations-csv differing.csv\n  tally reconcile ../shared/data/turkey2023/r1.csv.gz ../shared/data/turkey2023-observers/r1-partial.csv.gz --boxes ../shared/data/turkey2023/districts-meta.csv.gz --level province"
    )]
    Reconcile {
        /// The reference source (the official results).
        official: String,
        /// The second source (observers, a party's copies, an earlier publication).
        other: String,
        /// Also report every area of this level of the official source.
        #[arg(long)]
        level: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write every differing or one-sided station to this CSV file.
        #[arg(long, value_name = "FILE")]
        stations_csv: Option<String>,
        /// Ballot boxes per official unit (CSV with station_id and ballot_boxes, e.g.
        /// turkey2023/districts-meta.csv.gz), when the official source is coarser.
        #[arg(long, value_name = "FILE")]
        boxes: Option<String>,
        /// Election definition (TOML) for both files.
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
        /// Majority rule: majority (default), argentina, costa-rica, or a threshold such as 40%.
        #[arg(long)]
        rule: Option<String>,
        /// Rows shown in each table.
        #[arg(long, default_value_t = 20, value_name = "N")]
        show: usize,
    },
    /// Write a synthetic election (uniform CSV), deterministic for a seed.
    #[command(
        after_help = "Examples:\n  tally synth --stations 10000 --candidates 4 --seed 1 --out synth.csv\n  tally synth --stations 50000 --rounds 2 --stuffing 0.1,0.02,0.2 --out planted.csv"
    )]
    Synth {
        /// Stations to generate (1 to 20,000,000: beyond that the file would not fit in memory).
        #[arg(long, default_value_t = 10_000, value_parser = station_count)]
        stations: usize,
        #[arg(long, default_value_t = 4)]
        candidates: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1)]
        rounds: u8,
        /// Plant ballot stuffing: incremental fraction, extreme fraction, alpha (e.g. 0.1,0.02,0.2).
        #[arg(long, value_name = "FI,FE,ALPHA")]
        stuffing: Option<String>,
        /// Plant rounding of the leader's share to whole percents at this fraction of stations.
        #[arg(long, value_name = "FRACTION")]
        rounding: Option<f64>,
        /// With --rounding, also round turnout to whole percents.
        #[arg(long)]
        rounding_turnout: bool,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<String>,
        /// Also write an observer copy of the sheets with planted data-entry errors (kinds:
        /// missing, swap, shift, transposition, digit, other), for `tally reconcile` (needs --out).
        #[arg(long, value_name = "FILE", requires = "out")]
        observer_copy: Option<String>,
        /// Percent of counted stations given one planted error in the observer copy.
        #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
        error_rate: f64,
        /// Where the observer copy's truth goes: station_id, round, kind of each planted error.
        #[arg(long, value_name = "FILE", requires = "observer_copy")]
        truth: Option<String>,
    },
    /// Benchmark import + validation + counting on a synthetic election against the raw-read floor.
    Bench {
        /// Stations of the synthetic election (1 to 20,000,000).
        #[arg(long, default_value_t = 1_000_000, value_parser = station_count)]
        stations: usize,
        #[arg(long, default_value_t = 5)]
        candidates: usize,
        /// Timed repetitions (min and median are reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Also run the same work in Python with polars and pandas, when installed.
        #[arg(long)]
        peers: bool,
    },
    /// List every validation code with its meaning.
    Codes,
    /// Create a results database with the station registry read from any results file (its
    /// counts are ignored); without --stations, the embedded election (both rounds).
    #[command(
        after_help = "Examples:\n  tally init --db night.db                      # the embedded Turkey 2023 election, both rounds\n  tally init --db night.db --stations crates/tally-cli/data/turkey2023/r1.csv.gz\n  tally init --db night.db --stations ../shared/data/poland2020/r1.csv.gz"
    )]
    Init {
        /// A SQLite file (created) or a postgres://user@host/dbname URL (an existing database).
        #[arg(long, value_name = "PATH|URL")]
        db: String,
        #[arg(long, value_name = "FILE")]
        stations: Option<String>,
        #[arg(long, value_name = "DEF.toml")]
        election: Option<String>,
    },
    /// Manage the users of a results database.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Serve live results and take tally sheets over HTTP (JSON API under /api/v1); the
    /// dashboard is at / .
    #[command(
        after_help = "Examples:\n  tally serve --demo                                  # the embedded election, its sheets fed in live; open http://127.0.0.1:8080/\n  tally serve --db night.db --addr 127.0.0.1:8080\n  tally serve --db night.db --geo regions.geojson --geo-key name\n  curl http://127.0.0.1:8080/api/v1/results"
    )]
    Serve {
        /// A SQLite file or a postgres:// URL (several servers may share one PostgreSQL).
        #[arg(long, value_name = "PATH|URL", required_unless_present = "demo")]
        db: Option<String>,
        /// A fresh database with the embedded election (in the temporary folder, or --db), whose
        /// official results are stored while the server runs.
        #[arg(long)]
        demo: bool,
        /// With --demo: spread the sheets over this many seconds (0: all at once).
        #[arg(long, default_value_t = 60, value_name = "SECONDS", requires = "demo")]
        demo_seconds: u64,
        /// A GeoJSON FeatureCollection of the areas of one level, for the dashboard's map (the
        /// embedded election has its own).
        #[arg(long, value_name = "FILE", requires = "geo_key")]
        geo: Option<String>,
        /// The feature property that names the area (matched to area names, any case/accents).
        #[arg(long, value_name = "PROPERTY", requires = "geo")]
        geo_key: Option<String>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Connections served at once; more get 503 H503 at once (docs/limits.md).
        #[arg(long, default_value_t = 8192, value_name = "N")]
        max_connections: usize,
        /// Seconds a client has to send a request's headers.
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        header_timeout: u64,
        /// Seconds without a byte read or written before a connection is closed.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        idle_timeout: u64,
    },
    /// Write the dashboard as static files with JSON snapshots of the results (any static web
    /// server publishes it).
    #[command(
        after_help = "Examples:\n  tally site --db night.db --out site/ && python3 -m http.server -d site/"
    )]
    Site {
        #[arg(long, value_name = "PATH|URL")]
        db: String,
        /// A new or empty folder (an earlier site is replaced only with --replace).
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        replace: bool,
        #[arg(long, value_name = "FILE", requires = "geo_key")]
        geo: Option<String>,
        #[arg(long, value_name = "PROPERTY", requires = "geo")]
        geo_key: Option<String>,
    },
    /// Export sheets (all versions), the journal, the results and a manifest of hashes.
    Export {
        #[arg(long, value_name = "PATH|URL")]
        db: String,
        /// A new or empty folder (an existing export is replaced only with --replace).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Overwrite the files of an earlier export in --out.
        #[arg(long)]
        replace: bool,
    },
    /// Recompute the journal chain and every total of an export directory or a database
    /// (exit code 2 when anything does not match).
    Verify {
        /// An export directory (from `tally export`).
        dir: Option<std::path::PathBuf>,
        /// Or a database (SQLite file or postgres:// URL).
        #[arg(long, value_name = "PATH|URL")]
        db: Option<String>,
        /// A journal head published earlier (`journal_seq:journal_head` of /api/v1/progress);
        /// verify fails if that entry's hash changed since. Repeatable.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Vec<String>,
    },
    /// Load test of the server on loopback: a fresh database, N sheets from concurrent clients;
    /// reports sheets/s and latency percentiles.
    LoadTest {
        #[arg(long, default_value_t = 100_000)]
        sheets: usize,
        #[arg(long, default_value_t = 5_000)]
        stations: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        per_request: usize,
        /// An empty PostgreSQL database to run against (default: a fresh SQLite file).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// Offered load in sheets/s (default: as fast as the server answers).
        #[arg(long, value_name = "SHEETS_PER_S")]
        rate: Option<f64>,
    },
}

/// Reads the inputs of a command (files, or the embedded election), reporting the import.
fn load_input(input: &InputArgs, cfg: &ValidationConfig) -> Result<load::Loaded, String> {
    load(&LoadArgs {
        files: &input.files,
        election: input.election.as_deref(),
        rule: input.rule.as_deref(),
        registry: input.registry.as_deref(),
        max_input_bytes: input.max_input_mb.saturating_mul(1 << 20),
        contest: input.contest.as_deref(),
        validation: cfg.clone(),
        show_issues: input.show_issues,
    })
}

fn validation(input: &InputArgs) -> ValidationConfig {
    ValidationConfig {
        over_registered_permille: input.over_registered_permille,
        ..ValidationConfig::default()
    }
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a user; the token is printed once, alone on the last line (only its hash is stored).
    Add {
        #[arg(long, value_name = "PATH|URL")]
        db: String,
        /// admin, official or observer.
        #[arg(long)]
        role: String,
        /// Stations (ids or area paths) an observer may write; "*" for all.
        #[arg(long, num_args = 1..)]
        stations: Vec<String>,
    },
}

fn main() -> ExitCode {
    tally_io::release_large_buffers_promptly();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    };
    report_peak_memory();
    code
}

/// `tally synth --observer-copy`: reads the generated file back through the import (so the copy
/// is of exactly what `tally results` sees), plants one data-entry error in `rate` percent of the
/// counted stations of every round, and writes the copy and, if asked, the truth.
fn write_observer_copy(
    official: &str,
    copy: &str,
    truth: Option<&str>,
    rate: f64,
    seed: u64,
) -> Result<(), String> {
    let f = tally_io::import_path(official, &tally_io::ImportOptions::default())
        .map_err(|e| e.to_string())?;
    let mut copies = Vec::new();
    let mut planted = Vec::new();
    for r in &f.rounds {
        let cfg = tally_reconcile::PlantConfig {
            rate_per_million: (rate * 10_000.0).round() as u64,
            seed: seed ^ u64::from(r.round.number) << 32,
            ..Default::default()
        };
        let (round, p) = tally_reconcile::observer_copy(&r.round, &cfg);
        planted.extend(p.into_iter().map(|p| (r.round.number, p)));
        copies.push(round);
    }
    let refs: Vec<&tally_model::Round> = copies.iter().collect();
    let inputs = [std::path::Path::new(official)];
    tally_io::output::write_file_atomically(std::path::Path::new(copy), &inputs, |w| {
        tally_io::round_csv::write_rounds_csv(&refs, w)
    })
    .map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {copy}: observer copy with {} planted data-entry errors ({rate}% of counted stations)",
        planted.len()
    );
    if let Some(t) = truth {
        tally_io::output::write_file_atomically(std::path::Path::new(t), &inputs, |w| {
            writeln!(w, "station_id,round,kind")?;
            for (round, p) in &planted {
                writeln!(
                    w,
                    "{},{round},{}",
                    tally_io::output::csv_text(&p.station_id),
                    p.kind.as_str()
                )?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        eprintln!("wrote {t}: the truth of every planted error");
    }
    Ok(())
}

/// For `tally bench`, which times this process from outside: with TALLY_REPORT_PEAK_MEMORY set,
/// the peak resident memory (Linux's VmHWM) goes to stderr as the last line.
fn report_peak_memory() {
    if std::env::var_os("TALLY_REPORT_PEAK_MEMORY").is_none() {
        return;
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        });
    if let Some(kb) = peak {
        eprintln!("peak memory: {kb}");
    }
}

/// The imported election of a command that is about to end, left for the process's exit to
/// take back. The kernel reclaims the memory at once, while freeing a million stations'
/// columns, area names and findings piece by piece adds some ten milliseconds to a command
/// users wait for. Only for plain data: nothing in it has work to do when dropped.
fn left_to_exit(loaded: load::Loaded) {
    std::mem::forget(loaded);
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Results {
            input,
            level,
            area,
            format,
            certified,
        } => {
            let cfg = validation(&input);
            let loaded = load_input(&input, &cfg)?;
            let rep = results::build(
                &loaded,
                &results::ResultsArgs {
                    level: level.as_deref(),
                    area: area.as_deref(),
                },
                &cfg,
            )?;
            let text = match format {
                Format::Table => results::render_table(&rep, &loaded.rule.describe()),
                Format::Json => {
                    serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())? + "\n"
                }
                Format::Csv => results::render_csv(&rep),
                Format::Nist => results::render_nist(&loaded, certified)?,
            };
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(|e| e.to_string())?;
            let code = finish_import(&loaded, input.quarantine.as_deref(), input.strict);
            left_to_exit(loaded);
            code
        }
        Command::Forensics {
            input,
            candidate,
            level,
            plots,
            stations_csv,
            seed,
            reps,
            format,
        } => {
            let cfg = validation(&input);
            let loaded = load_input(&input, &cfg)?;
            let code = forensics::run(
                &loaded,
                &forensics::ForensicsArgs {
                    candidate: candidate.as_deref(),
                    level: level.as_deref(),
                    plots: plots.as_deref(),
                    stations_csv: stations_csv.as_deref(),
                    seed,
                    reps,
                    json: format == ReportFormat::Json,
                },
            )?;
            let imported = finish_import(&loaded, input.quarantine.as_deref(), input.strict)?;
            left_to_exit(loaded);
            Ok(if imported == ExitCode::SUCCESS {
                code
            } else {
                imported
            })
        }
        Command::Transfers {
            from,
            to,
            file,
            rows,
            cols,
            id,
            level,
            method,
            seed,
            bootstrap,
            plot,
            format,
            balance,
            compare_methods,
            election,
        } => {
            let compare = match compare_methods.as_deref() {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => {
                    return Err(format!("--compare-methods {other}: use on or off"));
                }
            };
            let mut opts = transfers::options(method.as_deref(), seed, bootstrap)?;
            opts.balance = balance.parse()?;
            let out = transfers::Output {
                format,
                plot: plot.as_deref(),
                compare,
            };
            if let Some(file) = file {
                if rows.len() < 2 || cols.len() < 2 {
                    return Err(
                        "with FILE, give --rows a,b,... and --cols x,y,... (two or more each)"
                            .into(),
                    );
                }
                return transfers::generic(&file, &rows, &cols, id.as_deref(), &opts, &out);
            }
            let files: Vec<String> =
                match (from, to) {
                    (Some(a), Some(b)) => vec![a, b],
                    (None, None) => Vec::new(),
                    _ => return Err(
                        "give both --from R1 and --to R2 (or neither, for the embedded election)"
                            .into(),
                    ),
                };
            let loaded = load(&LoadArgs {
                files: &files,
                election: election.as_deref(),
                rule: None,
                registry: None,
                max_input_bytes: tally_io::DEFAULT_MAX_INPUT_BYTES,
                contest: None,
                validation: ValidationConfig::default(),
                show_issues: 3,
            })?;
            transfers::two_rounds(&loaded, level.as_deref(), &opts, &out)
        }
        Command::Init {
            db,
            stations,
            election,
        } => {
            let s = match &stations {
                Some(f) => tally_cli::serve::init(&db, f, election.as_deref())?,
                None if election.is_some() => return Err("--election needs --stations FILE".into()),
                None => tally_cli::serve::init_embedded(&db)?,
            };
            let rounds: Vec<String> = s.rounds.iter().map(u8::to_string).collect();
            println!(
                "{}: {} stations, rounds {} -> {}",
                s.election,
                s.stations,
                rounds.join(", "),
                s.database
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Users {
            action: UsersAction::Add { db, role, stations },
        } => {
            let token = tally_cli::serve::users_add(&db, &role, &stations)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            db,
            demo,
            demo_seconds,
            geo,
            geo_key,
            addr,
            max_connections,
            header_timeout,
            idle_timeout,
        } => {
            let limits = tally_server::conn::Limits {
                max_connections: max_connections.max(1),
                header_read_timeout: std::time::Duration::from_secs(header_timeout.max(1)),
                idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)),
            };
            let mut opts = tally_cli::serve::ServeOptions {
                geo,
                geo_key,
                demo: None,
            };
            let db = if demo {
                let path = match &db {
                    Some(p) => std::path::PathBuf::from(p),
                    None => {
                        std::env::temp_dir().join(format!("tally-demo-{}.db", std::process::id()))
                    }
                };
                let (db, user, _token) = tally_cli::dashboard::demo_db(&path)?;
                let rounds = tally_cli::dashboard::embedded_rounds()?;
                let sheets = tally_cli::dashboard::sheets_of(&rounds);
                eprintln!(
                    "demo: {db}: the embedded election; {} official sheets over {demo_seconds} s",
                    sheets.len()
                );
                opts.demo = Some((user, sheets, std::time::Duration::from_secs(demo_seconds)));
                db
            } else {
                db.ok_or("give --db PATH|URL (or --demo)")?
            };
            tally_cli::serve::serve_dashboard(&db, &addr, limits, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Site {
            db,
            out,
            replace,
            geo,
            geo_key,
        } => {
            let store = tally_cli::dashboard::open_store(&db)?;
            let map = tally_cli::dashboard::geo_for(
                tally_store::Store::registry(store.as_ref()),
                geo.as_deref(),
                geo_key.as_deref(),
            )?;
            let s = tally_cli::dashboard::write_site(&store, map.as_ref(), &out, replace)?;
            println!(
                "{}: {} files, {} bytes, {} areas; journal head {}:{}",
                out.display(),
                s.files,
                s.bytes,
                s.areas,
                s.journal_seq,
                s.journal_head
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { db, out, replace } => {
            let r = tally_cli::serve::export(&db, &out, replace)?;
            print!("{}", tally_cli::serve::render_verify(&r));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir, db, anchor } => {
            let path = match (dir, db) {
                (Some(p), None) => p.to_string_lossy().to_string(),
                (None, Some(p)) => p,
                _ => return Err("give an export directory or --db PATH".into()),
            };
            let r = tally_cli::serve::verify(&path, &anchor)?;
            print!("{}", tally_cli::serve::render_verify(&r));
            Ok(if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::LoadTest {
            sheets,
            stations,
            concurrency,
            per_request,
            db,
            rate,
        } => {
            let r = tally_cli::load_test::run_fresh(
                db.as_deref(),
                sheets,
                stations,
                concurrency,
                per_request,
                rate,
            )?;
            eprintln!(
                "verify: {}",
                tally_cli::serve::render_verify(&r.verify).trim_end()
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&r.load).map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth {
            stations,
            candidates,
            seed,
            rounds,
            stuffing,
            rounding,
            rounding_turnout,
            out,
            observer_copy,
            error_rate,
            truth,
        } => {
            if !(0.0..=100.0).contains(&error_rate) {
                return Err(format!(
                    "--error-rate is a percent from 0 to 100, got {error_rate}"
                ));
            }
            let mut anomalies = Vec::new();
            if let Some(s) = stuffing {
                let v: Vec<f64> = s
                    .split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--stuffing expects FI,FE,ALPHA, got '{s}'"))?;
                if v.len() != 3 || v.iter().any(|x| !(0.0..=1.0).contains(x)) || v[0] + v[1] > 1.0 {
                    return Err(format!("--stuffing expects three fractions FI,FE,ALPHA in [0,1] with FI+FE <= 1, got '{s}'"));
                }
                anomalies.push(tally_synth::Anomaly::Stuffing {
                    incremental: v[0],
                    extreme: v[1],
                    alpha: v[2],
                });
            }
            if let Some(f) = rounding {
                if !(0.0..=1.0).contains(&f) {
                    return Err(format!("--rounding expects a fraction in [0,1], got {f}"));
                }
                anomalies.push(tally_synth::Anomaly::Rounding {
                    fraction: f,
                    turnout: rounding_turnout,
                });
            }
            if !(1..=2).contains(&rounds) {
                return Err("--rounds is 1 or 2".into());
            }
            let cfg = tally_synth::SynthConfig {
                stations,
                candidates,
                seed,
                rounds,
                anomalies,
                ..Default::default()
            };
            let e = tally_synth::generate(&cfg);
            match out {
                Some(path) => {
                    tally_io::output::write_file_atomically(
                        std::path::Path::new(&path),
                        &[],
                        |w| tally_synth::write_csv(&e, w),
                    )
                    .map_err(|e| e.to_string())?;
                    eprintln!(
                        "wrote {path}: {} stations x {} round(s), {} candidates, seed {seed}; {} stations with planted anomalies",
                        stations,
                        e.rounds.len(),
                        candidates.max(2),
                        e.planted.len()
                    );
                    if let Some(copy) = &observer_copy {
                        write_observer_copy(&path, copy, truth.as_deref(), error_rate, seed)?;
                    }
                }
                None => tally_synth::write_csv(&e, std::io::stdout().lock())
                    .map_err(|e| e.to_string())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            stations,
            candidates,
            repeat,
            peers,
        } => bench::run(&bench::BenchArgs {
            stations,
            candidates,
            repeat,
            peers,
        }),
        Command::Reconcile {
            official,
            other,
            level,
            format,
            stations_csv,
            boxes,
            election,
            rule,
            show,
        } => reconcile::run(&reconcile::Args {
            official: &official,
            other: &other,
            level: level.as_deref(),
            format,
            stations_csv: stations_csv.as_deref(),
            boxes: boxes.as_deref(),
            election: election.as_deref(),
            rule: rule.as_deref(),
            show,
        }),
        Command::Project {
            partial,
            baseline,
            registry,
            sample,
            level,
            confidence,
            format,
            election,
            rule,
        } => project::project(&project::ProjectArgs {
            partial: &partial,
            baseline: baseline.as_deref(),
            registry: registry.as_deref(),
            sample: sample.as_deref(),
            level: level.as_deref(),
            confidence,
            format,
            source: project::Source {
                election: election.as_deref(),
                rule: rule.as_deref(),
            },
        }),
        Command::Sample {
            registry,
            size,
            strata,
            seed,
            out,
            election,
        } => project::sample(&project::SampleArgs {
            registry: &registry,
            size,
            strata: strata.as_deref(),
            seed,
            out: &out,
            source: project::Source {
                election: election.as_deref(),
                rule: None,
            },
        }),
        Command::Backtest {
            baseline,
            final_count,
            order,
            steps,
            replays,
            seed,
            level,
            confidence,
            format,
            election,
            rule,
        } => project::run_backtest(&project::BacktestArgs {
            baseline: baseline.as_deref(),
            final_count: final_count.as_deref(),
            order: &order,
            steps: &steps,
            replays,
            seed,
            level: level.as_deref(),
            confidence,
            format,
            source: project::Source {
                election: election.as_deref(),
                rule: rule.as_deref(),
            },
        }),
        Command::Codes => {
            let mut t = table::Table::new(&[
                ("Code", table::Align::Left),
                ("Severity", table::Align::Left),
                ("Meaning", table::Align::Left),
            ]);
            for c in tally_model::Code::ALL {
                let sev = match c.severity() {
                    tally_model::Severity::Fatal => "file error",
                    tally_model::Severity::Error => "quarantine",
                    tally_model::Severity::Warning => "warning",
                };
                t.row(vec![c.to_string(), sev.into(), c.title().into()]);
            }
            print!("{}", t.render(0));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes the quarantine file and applies --strict.
fn finish_import(
    loaded: &load::Loaded,
    quarantine: Option<&str>,
    strict: bool,
) -> Result<ExitCode, String> {
    let rows: Vec<&tally_io::QuarantinedRow> = loaded
        .rounds
        .iter()
        .flat_map(|r| r.quarantine.iter())
        .collect();
    if let Some(path) = quarantine {
        tally_io::quarantine::write_quarantine(
            std::path::Path::new(path),
            &loaded.input_paths(),
            &rows,
        )
        .map_err(|e| e.to_string())?;
        eprintln!("wrote {path}: {} quarantined rows", rows.len());
    }
    if strict && !rows.is_empty() {
        eprintln!("--strict: {} sheets quarantined", rows.len());
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

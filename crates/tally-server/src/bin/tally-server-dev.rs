//! Development driver of the server glue: `init`, `users-add`, `serve`, `export`, `verify`,
//! `bench`. The `tally` binary wires the same functions.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tally-server-dev",
    about = "Tally election-night server (development driver)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the database with the station registry from a results CSV (counts ignored).
    Init {
        #[arg(long)]
        db: String,
        stations: String,
        #[arg(long)]
        election: Option<String>,
    },
    /// Add a user; prints the token alone on the last line.
    UsersAdd {
        #[arg(long)]
        db: String,
        role: String,
        stations: Vec<String>,
    },
    /// Serve the API.
    Serve {
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Export sheets, journal, results and a manifest of hashes.
    Export {
        #[arg(long)]
        db: String,
        out: PathBuf,
    },
    /// Verify an export directory or a database.
    Verify { path: String },
    /// Load benchmark on loopback: a fresh database, an in-process server, N sheets.
    Bench {
        #[arg(long, default_value_t = 100_000)]
        sheets: usize,
        #[arg(long, default_value_t = 5_000)]
        stations: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        per_request: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, String> {
    use tally_server::cli;
    match cmd {
        Cmd::Init {
            db,
            stations,
            election,
        } => {
            let s = cli::init(&db, &stations, election.as_deref())?;
            println!(
                "{}: rounds {:?}, {} stations",
                s.election, s.rounds, s.stations
            );
        }
        Cmd::UsersAdd { db, role, stations } => {
            let token = cli::users_add(&db, &role, &stations)?;
            println!("{token}");
        }
        Cmd::Serve { db, addr } => cli::serve(&db, &addr)?,
        Cmd::Export { db, out } => {
            let r = cli::export(&db, &out)?;
            print!("{}", cli::render_verify(&r));
        }
        Cmd::Verify { path } => {
            let r = cli::verify(&path, &[])?;
            print!("{}", cli::render_verify(&r));
            if !r.ok {
                return Ok(ExitCode::from(2));
            }
        }
        Cmd::Bench {
            sheets,
            stations,
            concurrency,
            per_request,
        } => {
            let r = tally_server::loadgen::bench_fresh(
                None,
                sheets,
                stations,
                concurrency,
                per_request,
                None,
            )?;
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

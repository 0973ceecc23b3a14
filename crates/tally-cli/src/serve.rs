//! The election-night commands: `init`, `users add`, `serve`, `export`, `verify`: thin glue
//! over `tally-store` (the database) and `tally-server` (HTTP).

use std::path::Path;
use std::sync::Arc;
use tally_io::{ElectionDef, ImportOptions};
use tally_model::{Rule, ValidationConfig};
use tally_store::{DbTarget, Registry, Role, TallyStore, VerifyReport};

/// What `init` stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSummary {
    pub election: String,
    pub rounds: Vec<u8>,
    pub stations: usize,
    /// The database, for display (a URL's password hidden).
    pub database: String,
}

/// Builds the registry from any results CSV (counts are ignored) and an optional election
/// definition (TOML: names, rule).
pub fn registry_from_file(
    stations_file: &str,
    definition: Option<&str>,
) -> Result<Registry, String> {
    let def = match definition {
        Some(p) => Some(ElectionDef::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let opts = ImportOptions {
        definition: def.as_ref(),
        ..ImportOptions::default()
    };
    let f = tally_io::import_path(stations_file, &opts).map_err(|e| e.to_string())?;
    let rule = match &def {
        Some(d) => d.rule("election definition").map_err(|e| e.to_string())?,
        None => Rule::majority(),
    };
    let election = def
        .as_ref()
        .and_then(|d| d.name.clone())
        // Named as `tally results` names it, so both give the same report.
        .unwrap_or_else(|| crate::naming::short_name(stations_file));
    let rounds: Vec<tally_model::Round> = f.rounds.into_iter().map(|r| r.round).collect();
    Ok(crate::dashboard::registry_of(&election, rule, &rounds))
}

/// `tally init`: creates the database (a SQLite path or a `postgres://` URL) with the station
/// registry.
pub fn init(
    db: &str,
    stations_file: &str,
    definition: Option<&str>,
) -> Result<InitSummary, String> {
    let reg = registry_from_file(stations_file, definition)?;
    tally_store::engine::init(&DbTarget::parse(db), &reg).map_err(|e| e.to_string())?;
    Ok(InitSummary {
        election: reg.election.clone(),
        rounds: reg.rounds.iter().map(|r| r.number).collect(),
        stations: reg.stations.len(),
        database: DbTarget::parse(db).to_string(),
    })
}

/// `tally init --db DB` without `--stations`: the embedded election, both rounds.
pub fn init_embedded(db: &str) -> Result<InitSummary, String> {
    let reg = crate::dashboard::embedded_registry()?;
    tally_store::engine::init(&DbTarget::parse(db), &reg).map_err(|e| e.to_string())?;
    Ok(InitSummary {
        election: reg.election.clone(),
        rounds: reg.rounds.iter().map(|r| r.number).collect(),
        stations: reg.stations.len(),
        database: DbTarget::parse(db).to_string(),
    })
}

/// `tally users add --db DB --role ROLE [--stations ...]`: returns the new token (print it alone on the
/// last line); only its hash is stored.
pub fn users_add(db: &str, role: &str, stations: &[String]) -> Result<String, String> {
    let role = Role::parse(role)
        .ok_or_else(|| format!("unknown role '{role}': use admin, official or observer"))?;
    let (_, token) = tally_store::engine::add_user(&DbTarget::parse(db), role, stations)
        .map_err(|e| e.to_string())?;
    Ok(token)
}

/// Opens the store (off the runtime: opening reads the whole history, seconds for a night's
/// sheets) and binds `addr`; the caller reports the bound address, then serves.
pub async fn bind(
    db: &str,
    addr: &str,
) -> Result<(Arc<TallyStore>, tokio::net::TcpListener), String> {
    let target = DbTarget::parse(db);
    let store = tokio::task::spawn_blocking(move || {
        TallyStore::open(&target, ValidationConfig::default()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok((Arc::new(store), listener))
}

/// `tally serve`: prints `listening on ADDR` on stdout once bound, then serves.
pub fn serve(db: &str, addr: &str, limits: tally_server::conn::Limits) -> Result<(), String> {
    serve_dashboard(db, addr, limits, &ServeOptions::default())
}

/// What `tally serve` is given besides the database: the map, and the demo's sheets.
#[derive(Default)]
pub struct ServeOptions {
    pub geo: Option<String>,
    pub geo_key: Option<String>,
    /// `--demo`: official sheets stored once the server listens, spread over the duration.
    pub demo: Option<(
        tally_store::User,
        Vec<serde_json::Value>,
        std::time::Duration,
    )>,
}

/// `tally serve` with the dashboard's map (unmatched areas and features are named on stderr)
/// and, with `--demo`, the embedded results fed in while it serves.
pub fn serve_dashboard(
    db: &str,
    addr: &str,
    limits: tally_server::conn::Limits,
    opts: &ServeOptions,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (store, listener) = bind(db, addr).await?;
        let geo = crate::dashboard::geo_for(
            tally_store::Store::registry(store.as_ref()),
            opts.geo.as_deref(),
            opts.geo_key.as_deref(),
        )?;
        if let Some(g) = &geo {
            eprintln!(
                "map: {} features matched to {} areas on property '{}'",
                g.matched, g.level, g.key
            );
            if !g.unmatched_features.is_empty() {
                eprintln!(
                    "map: {} features name no area (left out): {}",
                    g.unmatched_features.len(),
                    g.unmatched_features.join(", ")
                );
            }
            if !g.unmatched_areas.is_empty() {
                eprintln!(
                    "map: {} {} areas have no shape (in the table only): {}",
                    g.unmatched_areas.len(),
                    g.level,
                    g.unmatched_areas.join(", ")
                );
            }
        }
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            println!("listening on {local}");
            let _ = std::io::stdout().flush();
            // On stderr: scripts read the one stdout line and may close the pipe after it.
            eprintln!("dashboard: http://{local}/");
        }
        if let Some((user, sheets, over)) = &opts.demo {
            let (store, user, sheets, over) = (store.clone(), user.clone(), sheets.clone(), *over);
            std::thread::spawn(move || {
                match crate::dashboard::submit_all(store.as_ref(), &user, &sheets, over) {
                    Ok(n) => eprintln!("demo: {n} sheets stored"),
                    Err(e) => eprintln!("demo: {e}"),
                }
            });
        }
        tally_server::serve_site(listener, store, limits, geo.map(Arc::new))
            .await
            .map_err(|e| e.to_string())
    })
}

/// `tally export --db DB --out DIR`.
pub fn export(db: &str, out_dir: &Path, replace: bool) -> Result<VerifyReport, String> {
    tally_store::export(&DbTarget::parse(db), out_dir, replace).map_err(|e| e.to_string())
}

/// `tally verify PATH [--anchor SEQ:HASH]...`: an export directory, a SQLite file or a
/// `postgres://` URL; each anchor is a journal head published earlier.
pub fn verify(path: &str, anchors: &[String]) -> Result<VerifyReport, String> {
    let anchors = anchors
        .iter()
        .map(|a| a.parse::<tally_store::Anchor>())
        .collect::<Result<Vec<_>, _>>()?;
    if Path::new(path).is_dir() {
        tally_store::verify_dir(Path::new(path), &anchors).map_err(|e| e.to_string())
    } else {
        tally_store::verify_db(&DbTarget::parse(path), &anchors).map_err(|e| e.to_string())
    }
}

/// A verification report for people: one line per problem, then a verdict.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut s = String::new();
    for p in &r.problems {
        s.push_str(&format!("{}: {}\n", p.kind, p.detail));
    }
    s.push_str(&format!(
        "{} journal entries, {} sheet versions: {}\n",
        r.journal_entries,
        r.sheets,
        if r.ok {
            "OK".to_string()
        } else {
            format!("{} problem(s)", r.problems.len())
        }
    ));
    s
}

//! The dashboard's command-line glue: the map layer for `tally serve` (a `--geo` file, or the
//! embedded map of the embedded election), the embedded election as a results database (`tally
//! init` without `--stations`, `tally serve --demo`), and the static publication (`tally site`):
//! the page of `tally-server` with JSON snapshots of what its API answers.

use crate::embedded;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use tally_io::{ElectionDef, ImportOptions};
use tally_model::ValidationConfig;
use tally_server::site::Geo;
use tally_store::model::{CandidateRec, RoundDef, StationInfo};
use tally_store::{DbTarget, Registry, Role, Store, Submission, TallyStore};

/// The embedded election's rounds, read through the same import as `tally results`.
pub fn embedded_rounds() -> Result<Vec<tally_model::Round>, String> {
    let def = ElectionDef::parse(embedded::DEFINITION, "embedded:election.toml")
        .map_err(|e| e.to_string())?;
    let opts = ImportOptions {
        definition: Some(&def),
        election_name: embedded::NAME.to_string(),
        ..ImportOptions::default()
    };
    let mut out = Vec::new();
    for (bytes, name) in [
        (embedded::ROUND1, embedded::ROUND1_NAME),
        (embedded::ROUND2, embedded::ROUND2_NAME),
    ] {
        let f = tally_io::import_bytes(bytes, name, &opts).map_err(|e| e.to_string())?;
        out.extend(f.rounds.into_iter().map(|r| r.round));
    }
    Ok(out)
}

/// A registry from imported rounds (their counts are not part of it).
pub fn registry_of(
    election: &str,
    rule: tally_model::Rule,
    rounds: &[tally_model::Round],
) -> Registry {
    let mut defs = Vec::new();
    let mut stations = Vec::new();
    for round in rounds {
        defs.push(RoundDef {
            number: round.number,
            candidates: round
                .candidates
                .iter()
                .map(|c| CandidateRec {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    colour: c.colour.clone(),
                })
                .collect(),
            extra_lines: round.extra_lines.clone(),
            levels: round.tree.levels.clone(),
        });
        for (i, id) in round.stations.ids.iter().enumerate() {
            if id.trim().is_empty() {
                continue;
            }
            let reg = round.stations.registered[i];
            stations.push(StationInfo {
                round: round.number,
                station_id: id.to_string(),
                area: round
                    .tree
                    .path(round.stations.area[i])
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                registered: (reg != tally_model::MISSING).then_some(u64::from(reg)),
            });
        }
    }
    defs.sort_by_key(|r| r.number);
    Registry {
        election: election.to_string(),
        rule,
        rounds: defs,
        stations,
    }
}

/// The embedded election's registry (both rounds).
pub fn embedded_registry() -> Result<Registry, String> {
    let def = ElectionDef::parse(embedded::DEFINITION, "embedded:election.toml")
        .map_err(|e| e.to_string())?;
    let rule = def
        .rule("embedded election definition")
        .map_err(|e| e.to_string())?;
    Ok(registry_of(embedded::NAME, rule, &embedded_rounds()?))
}

/// The official sheets of the counted stations of `rounds`, as `POST /api/v1/sheets` takes them.
pub fn sheets_of(rounds: &[tally_model::Round]) -> Vec<serde_json::Value> {
    use tally_model::{SheetStatus, MISSING};
    let mut out = Vec::new();
    for round in rounds {
        let s = &round.stations;
        let k = round.candidates.len();
        for i in 0..round.len() {
            if s.status[i] != SheetStatus::Counted || s.ids[i].trim().is_empty() {
                continue;
            }
            let mut m = serde_json::Map::new();
            m.insert("station_id".into(), s.ids[i].to_string().into());
            m.insert("round".into(), round.number.into());
            for (name, v) in [
                ("registered", s.registered[i]),
                ("cast", s.cast[i]),
                ("invalid", s.invalid[i]),
                ("valid", s.valid[i]),
            ] {
                if v != MISSING {
                    m.insert(name.into(), v.into());
                }
            }
            let votes: serde_json::Map<String, serde_json::Value> = round
                .candidates
                .iter()
                .enumerate()
                .filter(|(j, _)| s.votes[i * k + j] != MISSING)
                .map(|(j, c)| (c.id.clone(), s.votes[i * k + j].into()))
                .collect();
            m.insert("votes".into(), votes.into());
            out.push(serde_json::Value::Object(m));
        }
    }
    out
}

/// Stores `sheets` as official sheets through the store (the same validation and journal as
/// `POST /api/v1/sheets`), in batches of up to 500 spread evenly over `over` (zero: at once).
pub fn submit_all(
    store: &dyn Store,
    user: &tally_store::User,
    sheets: &[serde_json::Value],
    over: std::time::Duration,
) -> Result<usize, String> {
    // Many small batches when the sheets are spread over time, so the page moves steadily.
    let size = if over.is_zero() {
        500
    } else {
        sheets.len().div_ceil(120).clamp(1, 500)
    };
    let batches: Vec<&[serde_json::Value]> = sheets.chunks(size).collect();
    let pause = over / (batches.len().max(1) as u32);
    let mut stored = 0;
    for batch in batches {
        let mut valid = Vec::with_capacity(batch.len());
        for v in batch {
            match tally_store::sheet_from_json(
                v,
                store.registry(),
                store.registry_index(),
                store.validation(),
            ) {
                Ok(s) => valid.push(s),
                Err(found) => {
                    let words: Vec<String> = found
                        .iter()
                        .map(|f| format!("{} {}", f.code.as_str(), f.detail))
                        .collect();
                    return Err(format!(
                        "sheet {} refused: {}",
                        v["station_id"],
                        words.join("; ")
                    ));
                }
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        store.submit(
            Submission {
                user: user.clone(),
                idempotency: None,
                sheets: valid,
            },
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let outcome = rx
            .recv()
            .map_err(|_| "the store stopped".to_string())?
            .map_err(|e| e.to_string())?;
        stored += outcome.receipts.len();
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(stored)
}

/// The map layer: `--geo FILE --geo-key PROPERTY`, or the embedded map for the embedded election
/// (none otherwise).
pub fn geo_for(
    registry: &Registry,
    file: Option<&str>,
    key: Option<&str>,
) -> Result<Option<Geo>, String> {
    match (file, key) {
        (Some(f), Some(k)) => {
            let bytes = std::fs::read(f).map_err(|e| format!("cannot read the map {f}: {e}"))?;
            Geo::new(&bytes, k, registry)
                .map(Some)
                .map_err(|e| format!("{f}: {e}"))
        }
        (Some(_), None) => {
            Err("--geo needs --geo-key PROPERTY (the feature property naming the area)".into())
        }
        (None, Some(_)) => Err("--geo-key needs --geo FILE".into()),
        (None, None) if registry.election == embedded::NAME => {
            Geo::new(embedded::GEO, embedded::GEO_KEY, registry)
                .map(Some)
                .map_err(|e| format!("the embedded map: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// The file name of an area's snapshot (the page computes the same): `_` for the whole
/// election, otherwise every byte outside `[A-Za-z0-9-]` of the path as `_XX`.
pub fn area_key(path: &str) -> String {
    if path.is_empty() {
        return "_".to_string();
    }
    let mut s = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("_{b:02X}"));
        }
    }
    s
}

/// What `tally site` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SiteSummary {
    pub files: usize,
    pub bytes: u64,
    pub areas: usize,
    pub journal_seq: i64,
    pub journal_head: String,
}

fn write_file(out: &Path, rel: &str, bytes: &[u8], sum: &mut SiteSummary) -> Result<(), String> {
    let p = out.join(rel);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    sum.files += 1;
    sum.bytes += bytes.len() as u64;
    Ok(())
}

fn json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

/// `tally site --db DB --out DIR`: the dashboard as static files: the page, and under `data/`
/// the answers of the API it reads (election, progress, map, results of every area with its
/// children, the stations of every area of the lowest level, reconciliation when observers sent
/// sheets), so any static web server publishes it.
pub fn write_site(
    store: &TallyStore,
    geo: Option<&Geo>,
    out: &Path,
    replace: bool,
) -> Result<SiteSummary, String> {
    if out.exists() {
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| format!("cannot read {}: {e}", out.display()))?
            .next()
            .is_some();
        if non_empty && !replace {
            return Err(format!(
                "{} is not empty (use --replace to write over an earlier site)",
                out.display()
            ));
        }
    }
    let progress = store.progress();
    let mut sum = SiteSummary {
        files: 0,
        bytes: 0,
        areas: 0,
        journal_seq: progress.journal_seq,
        journal_head: progress.journal_head.clone(),
    };
    for (path, bytes) in tally_server::site::files() {
        write_file(out, &path, &bytes, &mut sum)?;
    }
    let info = tally_server::api::election_info(store, geo.map(Geo::info));
    write_file(out, "data/election.json", &json_bytes(&info)?, &mut sum)?;
    write_file(out, "data/progress.json", &json_bytes(&progress)?, &mut sum)?;
    if let Some(g) = geo {
        write_file(out, "data/geo.json", &g.blob.bytes, &mut sum)?;
    }
    // Every area path of the registry, with its depth.
    let reg = store.registry();
    let levels: Vec<String> = reg
        .rounds
        .first()
        .map(|r| r.levels.clone())
        .unwrap_or_default();
    let mut areas: std::collections::BTreeSet<Vec<String>> = Default::default();
    areas.insert(Vec::new());
    for s in &reg.stations {
        for d in 1..=s.area.len() {
            areas.insert(s.area[..d].to_vec());
        }
    }
    for a in &areas {
        let path = a.join("/");
        let key = area_key(&path);
        let child_level = levels.get(a.len()).map(String::as_str);
        let rep = store
            .results(None, Some(&path), child_level)
            .map_err(|e| e.to_string())?;
        write_file(
            out,
            &format!("data/results/{key}.json"),
            &json_bytes(&rep)?,
            &mut sum,
        )?;
        if child_level.is_none() || a.len() + 1 == levels.len() {
            for r in &reg.rounds {
                if let Ok(page) = store.area_stations(r.number, &path, 0, 500) {
                    write_file(
                        out,
                        &format!("data/stations/{}/{key}.json", r.number),
                        &json_bytes(&page)?,
                        &mut sum,
                    )?;
                }
            }
        }
        sum.areas += 1;
    }
    if progress.observer_sheets > 0 {
        for r in &reg.rounds {
            if let Ok(rec) = store.reconciliation(r.number) {
                write_file(
                    out,
                    &format!("data/reconciliation/{}.json", r.number),
                    &json_bytes(&rec)?,
                    &mut sum,
                )?;
            }
        }
    }
    Ok(sum)
}

/// Opens a store for a one-off read (`tally site`).
pub fn open_store(db: &str) -> Result<Arc<TallyStore>, String> {
    TallyStore::open(&DbTarget::parse(db), ValidationConfig::default())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// `tally serve --demo`: a fresh SQLite file with the embedded election and an official user
/// whose sheets are the embedded results (stored by [`submit_all`] once the server runs).
/// Returns the database, the official user and its token.
pub fn demo_db(path: &Path) -> Result<(String, tally_store::User, String), String> {
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        if Path::new(&p).exists() {
            std::fs::remove_file(&p).map_err(|e| format!("cannot remove {p}: {e}"))?;
        }
    }
    let db = path.to_string_lossy().to_string();
    let reg = embedded_registry()?;
    tally_store::engine::init(&DbTarget::parse(&db), &reg).map_err(|e| e.to_string())?;
    let (user, token) = tally_store::engine::add_user(&DbTarget::parse(&db), Role::Official, &[])
        .map_err(|e| e.to_string())?;
    Ok((db, user, token))
}

//! Loading one or two rounds for a command: files given on the command line, or the embedded
//! default election. Prints the import report (what was inferred, what was rejected) to stderr.

use std::collections::HashSet;
use std::io::Write;
use tally_cli::embedded;
use tally_io::{
    decode, import_bytes, import_path_limited, ElectionDef, FileImport, ImportOptions,
    ImportedRound, Issue,
};
use tally_model::{Rule, ValidationConfig};

pub struct Loaded {
    pub election: String,
    pub rule: Rule,
    pub rounds: Vec<ImportedRound>,
    /// Every file read (tally sheets, registry, definition): outputs never go over them.
    pub inputs: Vec<std::path::PathBuf>,
}

impl Loaded {
    pub fn input_paths(&self) -> Vec<&std::path::Path> {
        self.inputs.iter().map(|p| p.as_path()).collect()
    }
}

pub struct LoadArgs<'a> {
    pub files: &'a [String],
    pub election: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub registry: Option<&'a str>,
    /// Ceiling on each input's size after decompression (F008).
    pub max_input_bytes: u64,
    /// The candidate contest to read from a NIST report with several.
    pub contest: Option<&'a str>,
    pub validation: ValidationConfig,
    pub show_issues: usize,
}

/// One input's name, with its bytes when they are not read from a file (the embedded election).
type Input = (String, Option<Vec<u8>>);

pub fn load(args: &LoadArgs<'_>) -> Result<Loaded, String> {
    let embedded_def;
    let user_def;
    // The embedded election's bytes; files are read (streaming) as they are imported.
    let (def, inputs): (Option<&ElectionDef>, Vec<Input>) = if args.files.is_empty() {
        embedded_def = ElectionDef::parse(embedded::DEFINITION, "embedded:election.toml")
            .map_err(|e| e.to_string())?;
        let r1 =
            decode(embedded::ROUND1.to_vec(), embedded::ROUND1_NAME).map_err(|e| e.to_string())?;
        let r2 =
            decode(embedded::ROUND2.to_vec(), embedded::ROUND2_NAME).map_err(|e| e.to_string())?;
        (
            Some(&embedded_def),
            vec![
                (embedded::ROUND1_NAME.to_string(), Some(r1)),
                (embedded::ROUND2_NAME.to_string(), Some(r2)),
            ],
        )
    } else {
        user_def = match args.election {
            Some(p) => Some(ElectionDef::load(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let v = args.files.iter().map(|f| (f.clone(), None)).collect();
        (user_def.as_ref(), v)
    };
    let rule = match args.rule {
        Some(name) => Rule::by_name(name)
            .or_else(|| {
                tally_model::Ratio::from_percent_str(name).map(|r| Rule::threshold(r, false))
            })
            .ok_or_else(|| {
                format!(
                    "unknown rule '{name}': use majority, argentina, costa-rica or a percentage"
                )
            })?,
        None => match def {
            Some(d) => d.rule("election definition").map_err(|e| e.to_string())?,
            None => Rule::majority(),
        },
    };
    let registry: Option<HashSet<String>> = match args.registry {
        None => None,
        Some(path) => {
            let f = tally_io::import_path(path, &ImportOptions::default())
                .map_err(|e| e.to_string())?;
            Some(
                f.rounds
                    .iter()
                    .flat_map(|r| r.round.stations.ids.iter().map(str::to_string))
                    .collect(),
            )
        }
    };
    let election = if args.files.is_empty() {
        embedded::NAME.to_string()
    } else {
        def.and_then(|d| d.name.clone())
            .unwrap_or_else(|| tally_cli::naming::short_name(&args.files[0]))
    };
    let import_one = |i: usize, (name, bytes): &Input| -> Result<FileImport, String> {
        let opts = ImportOptions {
            definition: def,
            validation: args.validation.clone(),
            registry: registry.as_ref(),
            default_round: (i + 1).min(9) as u8,
            election_name: "All".into(),
            contest: args.contest,
        };
        match bytes {
            Some(bytes) => import_bytes(bytes, name, &opts),
            None => import_path_limited(name, args.max_input_bytes, &opts),
        }
        .map_err(|e| e.to_string())
    };
    // The files are imported side by side, each on a thread of its own sharing the cores: one
    // file's single-threaded steps (layout inference, assembly) overlap the other's parsing.
    // Standard input is read alone; reports and errors still come in the order given.
    let stdin = inputs
        .iter()
        .any(|(name, bytes)| bytes.is_none() && name == "-");
    let imports: Vec<Result<FileImport, String>> = if inputs.len() > 1 && !stdin {
        std::thread::scope(|scope| {
            let running: Vec<_> = inputs
                .iter()
                .enumerate()
                .map(|(i, input)| scope.spawn(move || import_one(i, input)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err("an import thread failed".to_string()))
                })
                .collect()
        })
    } else {
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| import_one(i, input))
            .collect()
    };
    let mut rounds: Vec<ImportedRound> = Vec::new();
    for ((name, _), f) in inputs.iter().zip(imports) {
        let f = f?;
        report_import(&f, args.show_issues);
        for r in f.rounds {
            if rounds.iter().any(|x| x.round.number == r.round.number) {
                return Err(format!(
                    "round {} appears in more than one input ({}); give round 1 then round 2",
                    r.round.number, name
                ));
            }
            rounds.push(r);
        }
    }
    rounds.sort_by_key(|r| r.round.number);
    let inputs = args
        .files
        .iter()
        .map(String::as_str)
        .chain(args.registry)
        .chain(args.election)
        .filter(|f| *f != "-")
        .map(std::path::PathBuf::from)
        .collect();
    Ok(Loaded {
        election,
        rule,
        rounds,
        inputs,
    })
}

/// What was inferred and rejected, for people, on stderr.
pub fn report_import(f: &FileImport, show: usize) {
    let mut err = std::io::stderr().lock();
    let l = &f.layout;
    let _ = writeln!(err, "{}:", f.file);
    let cands: Vec<&str> = l.candidates.iter().map(|c| c.1.id.as_str()).collect();
    let _ = writeln!(
        err,
        "  layout: station {}; areas {}; candidates {}{}",
        l.header[l.station],
        if l.areas.is_empty() {
            "none".to_string()
        } else {
            l.level_names().join(" > ")
        },
        cands.join(", "),
        if l.extra.is_empty() {
            String::new()
        } else {
            format!("; extra lines {}", l.extra_names().join(", "))
        }
    );
    for (c, why) in &l.ignored {
        let _ = writeln!(err, "  not used: {} ({why})", l.header[*c]);
    }
    for n in l
        .notes
        .iter()
        .filter(|n| n.starts_with("cannot decide") || n.starts_with("no "))
    {
        let _ = writeln!(err, "  note: {n}");
    }
    for r in &f.rounds {
        let s = &r.stats;
        let _ = writeln!(
            err,
            "  round {}: {} sheets: {} accepted ({} with warnings), {} quarantined{}{}",
            r.round.number,
            s.rows,
            s.accepted,
            s.with_warnings,
            s.quarantined,
            if s.missing > 0 {
                format!(", {} without result (missing)", s.missing)
            } else {
                String::new()
            },
            if s.duplicates > 0 {
                format!(", {} identical duplicates counted once", s.duplicates)
            } else {
                String::new()
            },
        );
        print_issues(&mut err, &r.issues, show);
    }
}

pub fn print_issues(err: &mut impl Write, issues: &[Issue], show: usize) {
    if issues.is_empty() {
        return;
    }
    let mut by_code: std::collections::BTreeMap<String, usize> = Default::default();
    for i in issues {
        *by_code.entry(i.code.to_string()).or_default() += 1;
    }
    let summary: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    let _ = writeln!(err, "    findings: {}", summary.join(", "));
    for i in issues.iter().take(show) {
        let _ = writeln!(err, "    {i}");
    }
    if issues.len() > show {
        let _ = writeln!(
            err,
            "    ... {} more (use --show-issues N, or --quarantine FILE)",
            issues.len() - show
        );
    }
}

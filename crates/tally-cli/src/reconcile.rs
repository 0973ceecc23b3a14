//! `tally reconcile OFFICIAL OTHER`: loads both sources through the one import (`load`), hands
//! the two rounds and each source's codes to tally-reconcile, and renders the result.

use crate::load::{load, LoadArgs, Loaded};
use crate::table::{thousands, Align, Table};
use crate::Format;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use tally_io::ImportedRound;
use tally_model::{Code, ValidationConfig};
use tally_reconcile::{Check, Class, Reconciliation};

pub struct Args<'a> {
    pub official: &'a str,
    pub other: &'a str,
    pub level: Option<&'a str>,
    pub format: Format,
    pub stations_csv: Option<&'a str>,
    pub boxes: Option<&'a str>,
    pub election: Option<&'a str>,
    pub rule: Option<&'a str>,
    /// Rows of each table in the table output.
    pub show: usize,
}

fn load_one(file: &str, args: &Args<'_>) -> Result<Loaded, String> {
    load(&LoadArgs {
        files: &[file.to_string()],
        election: args.election,
        rule: args.rule,
        registry: None,
        max_input_bytes: tally_io::DEFAULT_MAX_INPUT_BYTES,
        contest: None,
        validation: ValidationConfig::default(),
        show_issues: 3,
    })
}

/// Every code of every sheet, by station id: the sheets held back (with their errors) and the
/// accepted ones with warnings.
fn codes(r: &ImportedRound) -> HashMap<String, Vec<Code>> {
    let mut m: HashMap<String, Vec<Code>> = HashMap::new();
    for i in &r.issues {
        if !i.station.is_empty() {
            m.entry(i.station.clone()).or_default().push(i.code);
        }
    }
    for q in &r.quarantine {
        if !q.station.is_empty() {
            m.entry(q.station.clone())
                .or_default()
                .extend(q.codes.iter().copied());
        }
    }
    m
}

/// Ballot boxes per official unit from a CSV with `station_id` and `ballot_boxes` (and, when it
/// has one, a `round` column: only that round's rows are read).
fn read_boxes(path: &str, round: u8) -> Result<HashMap<String, u64>, String> {
    let with_round = tally_io::columns::read_columns(
        path,
        &["round".to_string(), "ballot_boxes".to_string()],
        Some("station_id"),
    );
    let mut out = HashMap::new();
    match with_round {
        Ok(c) => {
            for (id, v) in c.ids.iter().zip(&c.values) {
                if v[0] == u64::from(round) {
                    out.insert(id.clone(), v[1]);
                }
            }
        }
        Err(_) => {
            let c = tally_io::columns::read_columns(
                path,
                &["ballot_boxes".to_string()],
                Some("station_id"),
            )
            .map_err(|e| e.to_string())?;
            for (id, v) in c.ids.iter().zip(&c.values) {
                out.insert(id.clone(), v[0]);
            }
        }
    }
    Ok(out)
}

pub fn run(args: &Args<'_>) -> Result<ExitCode, String> {
    let official = load_one(args.official, args)?;
    let other = load_one(args.other, args)?;
    let a = official
        .rounds
        .first()
        .ok_or_else(|| format!("{}: no round", args.official))?;
    let b = other
        .rounds
        .iter()
        .find(|r| r.round.number == a.round.number)
        .or(other.rounds.first())
        .ok_or_else(|| format!("{}: no round", args.other))?;
    let boxes = match args.boxes {
        Some(p) => Some(read_boxes(p, a.round.number)?),
        None => None,
    };
    let (codes_a, codes_b) = (codes(a), codes(b));
    let rec = tally_reconcile::reconcile(
        tally_reconcile::Side {
            round: &a.round,
            codes: &codes_a,
        },
        tally_reconcile::Side {
            round: &b.round,
            codes: &codes_b,
        },
        &tally_reconcile::Options {
            rule: &official.rule,
            level: args.level,
            boxes: boxes.as_ref(),
        },
    )
    .map_err(|e| e.to_string())?;
    let text =
        match args.format {
            Format::Table => render_table(&rec, args.show),
            Format::Json => serde_json::to_string_pretty(&rec).map_err(|e| e.to_string())? + "\n",
            Format::Csv => render_csv(&rec),
            Format::Nist => return Err(
                "a reconciliation has no NIST SP 1500-100 form: use --format table, json or csv"
                    .into(),
            ),
        };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    if let Some(path) = args.stations_csv {
        let mut inputs = official.input_paths();
        inputs.extend(other.input_paths());
        if let Some(bx) = args.boxes {
            inputs.push(Path::new(bx));
        }
        let csv = render_csv(&rec);
        tally_io::output::write_file_atomically(Path::new(path), &inputs, |w| {
            w.write_all(csv.as_bytes())
        })
        .map_err(|e| e.to_string())?;
        eprintln!(
            "wrote {path}: {} differing and {} one-sided stations",
            rec.differences.len(),
            rec.one_sided.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn signed(v: i64) -> String {
    if v > 0 {
        format!("+{}", thousands(v as u64))
    } else if v < 0 {
        format!("-{}", thousands(v.unsigned_abs()))
    } else {
        "0".into()
    }
}

fn name<'a>(r: &'a Reconciliation, id: &'a str) -> &'a str {
    r.candidates
        .iter()
        .position(|c| c == id)
        .map_or(id, |i| r.candidate_names[i].as_str())
}

fn fields_text(fields: &[tally_reconcile::FieldDiff]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {} -> {}", f.field, f.official, f.other))
        .collect::<Vec<_>>()
        .join("; ")
}

/// For people: the sentence first, then the counts, the candidates, the largest differences,
/// the areas.
pub fn render_table(r: &Reconciliation, show: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}\n\n", r.sentence));
    let s = &r.stations;
    let unit = if r.mode == "aggregated" {
        "Official units"
    } else {
        "Stations"
    };
    out.push_str(&format!(
        "{unit}: {} official, {} in the other source, {} matched; compared {}: {} agree, {} differ; only official {}, only other {}, counted in neither {}; flagged by validation: {} official, {} other\n",
        thousands(s.in_official),
        thousands(s.in_other),
        thousands(s.matched),
        thousands(s.compared),
        thousands(s.agree),
        thousands(s.differ),
        thousands(s.only_official),
        thousands(s.only_other),
        thousands(s.missing_both),
        thousands(s.flagged_official),
        thousands(s.flagged_other),
    ));
    if !r.kinds.is_empty() {
        let kinds: Vec<String> = r
            .kinds
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        out.push_str(&format!("Kinds of difference: {}\n", kinds.join(", ")));
    }
    let mut t = Table::new(&[
        ("Candidate", Align::Left),
        ("Official", Align::Right),
        ("Net (other - official)", Align::Right),
        ("With the other source", Align::Right),
    ]);
    for id in &r.candidates {
        t.row(vec![
            name(r, id).to_string(),
            thousands(r.totals_official[id]),
            signed(r.net[id]),
            thousands(r.totals_other[id]),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render(2));
    if let Some(ag) = &r.aggregated {
        out.push_str(&format!(
            "\nOther source summed to the official {} level: {} of {} units observed ({} complete, {} partial); boxes observed {}{}\n",
            ag.level,
            thousands(ag.units_observed),
            thousands(ag.units_official),
            thousands(ag.units_complete),
            thousands(ag.units_partial),
            thousands(ag.boxes_observed),
            ag.boxes_known
                .map_or(String::new(), |k| format!(" of {} known", thousands(k))),
        ));
        if !ag.unmatched_other.is_empty() {
            out.push_str(&format!(
                "  {} areas of the other source match no official unit (e.g. {})\n",
                ag.unmatched_other.len(),
                ag.unmatched_other[..ag.unmatched_other.len().min(3)].join(", ")
            ));
        }
        out.push_str(&format!(
            "\nBound check (observers above the official total): {} violations\n",
            ag.bound_violations.len()
        ));
        if !ag.bound_violations.is_empty() {
            out.push_str(&units_table(&ag.bound_violations, show));
        }
        let complete: Vec<tally_reconcile::UnitCheck> =
            ag.units.iter().filter(|u| u.complete).cloned().collect();
        out.push_str(&format!(
            "\nExact comparison where every box was observed: {} units\n",
            complete.len()
        ));
        if !complete.is_empty() {
            out.push_str(&units_table(&complete, show));
        }
    } else if !r.differences.is_empty() {
        out.push_str(&format!(
            "\nLargest differences ({} of {})\n",
            r.differences.len().min(show),
            r.differences.len()
        ));
        let mut t = Table::new(&[
            ("Station", Align::Left),
            ("Area", Align::Left),
            ("Kind", Align::Left),
            ("Sure", Align::Right),
            ("Fields (official -> other)", Align::Left),
        ]);
        for d in r.differences.iter().take(show) {
            t.row(vec![
                d.station_id.clone(),
                d.area.clone(),
                d.kind.to_string(),
                format!("{:.2}", d.confidence),
                fields_text(&d.fields),
            ]);
        }
        out.push_str(&t.render(2));
    }
    if let Some(all) = &r.areas {
        // Areas with nothing compared have nothing to rank; the JSON keeps them.
        let areas: Vec<&tally_reconcile::AreaRow> = all.iter().filter(|a| a.compared > 0).collect();
        out.push_str(&format!(
            "\nAreas with compared {}, most concentrated differences first ({} of {}; excess in standard deviations over the overall rate: an anomaly, not a verdict)\n",
            if r.mode == "aggregated" { "units" } else { "stations" },
            areas.len().min(show),
            areas.len()
        ));
        let mut cols: Vec<(&str, Align)> = vec![
            ("Area", Align::Left),
            ("Compared", Align::Right),
            ("Differ", Align::Right),
            ("Excess", Align::Right),
            ("Lead change", Align::Right),
        ];
        for id in r.candidates.iter().take(4) {
            cols.push((id.as_str(), Align::Right));
        }
        let mut t = Table::new(&cols);
        for a in areas.iter().take(show) {
            let mut row = vec![
                a.area.clone(),
                thousands(a.compared),
                thousands(a.differ),
                format!("{:.1}", a.excess_z),
                signed(a.lead_change),
            ];
            for id in r.candidates.iter().take(4) {
                row.push(signed(a.net[id]));
            }
            t.row(row);
        }
        out.push_str(&t.render(2));
    }
    out
}

fn units_table(units: &[tally_reconcile::UnitCheck], show: usize) -> String {
    let mut t = Table::new(&[
        ("Unit", Align::Left),
        ("Area", Align::Left),
        ("Check", Align::Left),
        ("Boxes", Align::Right),
        ("Coverage", Align::Right),
        ("Fields (official -> observers)", Align::Left),
    ]);
    for u in units.iter().take(show) {
        t.row(vec![
            u.station_id.clone(),
            u.area.clone(),
            check_text(u.check).into(),
            match u.boxes_known {
                Some(k) => format!("{}/{}", u.boxes_observed, k),
                None => u.boxes_observed.to_string(),
            },
            u.coverage
                .map_or("-".into(), |c| format!("{:.1}%", 100.0 * c)),
            fields_text(&u.fields),
        ]);
    }
    let mut s = t.render(2);
    if units.len() > show {
        s.push_str(&format!(
            "  ... {} more (--format json or --stations-csv FILE)\n",
            units.len() - show
        ));
    }
    s
}

fn check_text(c: Check) -> &'static str {
    match c {
        Check::BoundViolated => "bound violated",
        Check::ExactAgree => "agree",
        Check::ExactDiffer => "differ",
        Check::BoundOk => "bound holds",
    }
}

/// One line per differing station (or unit), then the one-sided ones; text cells protected
/// against spreadsheet formulas.
pub fn render_csv(r: &Reconciliation) -> String {
    let mut head: Vec<String> = [
        "station_id",
        "area",
        "class",
        "kind",
        "confidence",
        "codes_official",
        "codes_other",
        "fields",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    head.extend(r.candidates.iter().map(|c| format!("net_{c}")));
    let mut out = line(&head);
    let codes = |c: &[Code]| {
        c.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    for d in &r.differences {
        let mut row = vec![
            d.station_id.clone(),
            d.area.clone(),
            Class::Differ.as_str().into(),
            d.kind.to_string(),
            format!("{:.2}", d.confidence),
            codes(&d.codes_official),
            codes(&d.codes_other),
            fields_text(&d.fields),
        ];
        row.extend(r.candidates.iter().map(|c| d.net[c].to_string()));
        out.push_str(&line(&row));
    }
    for o in &r.one_sided {
        let mut row = vec![
            o.station_id.clone(),
            o.area.clone(),
            o.class.as_str().into(),
            String::new(),
            String::new(),
            codes(&o.codes_official),
            codes(&o.codes_other),
            String::new(),
        ];
        row.extend(r.candidates.iter().map(|_| String::new()));
        out.push_str(&line(&row));
    }
    if let Some(ag) = &r.aggregated {
        for u in ag
            .bound_violations
            .iter()
            .filter(|u| u.check == Check::BoundViolated)
        {
            let mut row = vec![
                u.station_id.clone(),
                u.area.clone(),
                "bound_violated".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                fields_text(&u.fields),
            ];
            row.extend(r.candidates.iter().map(|_| String::new()));
            out.push_str(&line(&row));
        }
    }
    out
}

/// The first `TEXT_CELLS` cells are text (ids, areas, codes: protected against formulas); the
/// rest are signed counts, which must keep their minus sign.
const TEXT_CELLS: usize = 8;

fn line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c = if i < TEXT_CELLS {
                tally_io::output::csv_text(c)
            } else {
                std::borrow::Cow::Borrowed(c.as_str())
            };
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.into_owned()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

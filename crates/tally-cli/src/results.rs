//! `tally results`: totals, shares, margin, progress and the rule's outcome of one or two rounds.

use crate::load::Loaded;
use crate::table::{thousands, Align, Table};
use tally_model::report::{
    matching, results_report, totals_for, CountedRound, ReportScope, ResultsReport, RoundReport,
};
use tally_model::{count, Outcome, Totals, ValidationConfig};

pub struct ResultsArgs<'a> {
    pub level: Option<&'a str>,
    pub area: Option<&'a str>,
}

pub fn build(
    loaded: &Loaded,
    args: &ResultsArgs<'_>,
    validation: &ValidationConfig,
) -> Result<ResultsReport, String> {
    let scope = ReportScope {
        round: None,
        area: args.area,
        level: args.level,
    };
    let totals: Vec<Vec<Totals>> = loaded
        .rounds
        .iter()
        .map(|r| totals_for(&r.round, &scope))
        .collect();
    let rounds: Vec<CountedRound<'_>> = loaded
        .rounds
        .iter()
        .zip(&totals)
        .map(|(r, t)| CountedRound {
            round: &r.round,
            totals: t,
            sheets: r.stats,
        })
        .collect();
    let matching = (loaded.rounds.len() >= 2)
        .then(|| matching(&loaded.rounds[0].round, &loaded.rounds[1].round, validation));
    results_report(
        &loaded.election,
        &loaded.rule,
        &rounds,
        matching.as_ref(),
        &scope,
    )
    .map_err(|e| e.to_string())
}

fn name_of<'a>(r: &'a RoundReport, id: &'a str) -> &'a str {
    r.candidates
        .iter()
        .find(|c| c.id == id)
        .map_or(id, |c| c.name.as_str())
}

/// The outcome in words; while stations are missing, who leads so far and that it is not final.
pub fn outcome_words(r: &RoundReport, rule_text: &str) -> String {
    if !r.outcome.is_final {
        return partial_words(r, rule_text);
    }
    match &r.outcome.decision {
        Outcome::Elected { winner, by_lot } => {
            let share = r
                .candidates
                .iter()
                .find(|c| &c.id == winner)
                .map_or(0.0, |c| c.share);
            if r.round >= 2 {
                format!(
                    "{} is elected with {:.2}% of valid votes{}.",
                    name_of(r, winner),
                    share,
                    if *by_lot { " (tie broken by lot)" } else { "" }
                )
            } else {
                format!(
                    "{} is elected in the first round with {:.2}% of valid votes ({rule_text}).",
                    name_of(r, winner),
                    share
                )
            }
        }
        Outcome::Runoff { runoff, by_lot } => format!(
            "No candidate has {rule_text}: runoff between {} and {}{}.",
            name_of(r, &runoff[0]),
            name_of(r, &runoff[1]),
            if *by_lot {
                " (second place drawn by lot)"
            } else {
                ""
            }
        ),
        Outcome::Undecided { reason, tied } => {
            let names: Vec<&str> = tied.iter().map(|t| name_of(r, t)).collect();
            if names.is_empty() {
                format!("Undecided: {reason}.")
            } else {
                format!(
                    "Undecided: {reason} between {}; the law decides.",
                    names.join(" and ")
                )
            }
        }
    }
}

/// "X leads with 55.14% of valid votes with 10.00% of stations counted (900 without a counted
/// sheet): not final." A partial count never says "is elected".
fn partial_words(r: &RoundReport, rule_text: &str) -> String {
    let p = &r.progress;
    let missing = p.stations_known - p.stations_counted;
    let counted = format!(
        "{:.2}% of stations counted ({} without a counted sheet)",
        p.stations_pct,
        crate::table::thousands(missing)
    );
    let so_far = match &r.outcome.decision {
        Outcome::Elected { winner, .. } => {
            let share = r
                .candidates
                .iter()
                .find(|c| &c.id == winner)
                .map_or(0.0, |c| c.share);
            format!(
                "{} leads with {share:.2}% of valid votes",
                name_of(r, winner)
            )
        }
        Outcome::Runoff { runoff, .. } => format!(
            "so far nobody has {rule_text}; {} and {} lead",
            name_of(r, &runoff[0]),
            name_of(r, &runoff[1])
        ),
        Outcome::Undecided { reason, .. } => format!("so far undecided ({reason})"),
    };
    format!("{so_far}, with {counted}: not final (`tally project` projects the final result).")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.2}%"))
}

pub fn render_table(rep: &ResultsReport, rule_text: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}\n", rep.election));
    for r in &rep.rounds {
        let title = if r.round >= 2 {
            format!("Round {} (runoff)", r.round)
        } else {
            format!("Round {}", r.round)
        };
        let area = if r.area.is_empty() {
            String::new()
        } else {
            format!(" — {}", r.area)
        };
        out.push_str(&format!("\n{title}{area}\n"));
        let s = &r.sheets;
        out.push_str(&format!(
            "  Sheets: {} rows: {} accepted ({} with warnings), {} quarantined{}{}\n",
            thousands(s.rows),
            thousands(s.accepted),
            thousands(s.with_warnings),
            thousands(s.quarantined),
            if s.missing > 0 {
                format!(", {} without result", thousands(s.missing))
            } else {
                String::new()
            },
            if s.duplicates > 0 {
                format!(", {} duplicates counted once", thousands(s.duplicates))
            } else {
                String::new()
            },
        ));
        let t = &r.totals;
        out.push_str(&format!(
            "  Registered {}   Cast {} (turnout {})   Invalid {}   Valid {}\n",
            thousands(t.registered),
            thousands(t.cast),
            pct(t.turnout),
            thousands(t.invalid),
            thousands(t.valid)
        ));
        let p = &r.progress;
        out.push_str(&format!(
            "  Progress: {}/{} stations counted ({:.2}%), registered voters {}\n\n",
            thousands(p.stations_counted),
            thousands(p.stations_known),
            p.stations_pct,
            pct(p.registered_pct)
        ));
        let mut table = Table::new(&[
            ("#", Align::Right),
            ("Candidate", Align::Left),
            ("Votes", Align::Right),
            ("Share", Align::Right),
        ]);
        for (i, c) in r.candidates.iter().enumerate() {
            table.row(vec![
                (i + 1).to_string(),
                c.name.clone(),
                thousands(c.votes),
                format!("{:.2}%", c.share),
            ]);
        }
        out.push_str(&table.render(2));
        if let Some(m) = &r.margin {
            out.push_str(&format!(
                "\n  Margin: {} leads {} by {} votes ({:.2} points)\n",
                name_of(r, &m.first),
                name_of(r, &m.second),
                thousands(m.votes),
                m.points
            ));
        }
        out.push_str(&format!("  Outcome: {}\n", outcome_words(r, rule_text)));
        if let Some(areas) = &r.areas {
            out.push_str(&format!(
                "\n  By {} ({} areas)\n",
                areas.first().map_or("area", |a| a.level.as_str()),
                areas.len()
            ));
            let show: Vec<&str> = r.candidates.iter().take(4).map(|c| c.id.as_str()).collect();
            let mut cols: Vec<(&str, Align)> = vec![
                ("Area", Align::Left),
                ("Valid", Align::Right),
                ("Turnout", Align::Right),
                ("Leader", Align::Left),
            ];
            for id in &show {
                cols.push((id, Align::Right));
            }
            let mut table = Table::new(&cols);
            for a in areas {
                let mut row = vec![
                    a.area.clone(),
                    thousands(a.totals.valid),
                    pct(a.totals.turnout),
                    a.leader
                        .as_deref()
                        .map_or("-".to_string(), |l| name_of(r, l).to_string()),
                ];
                for id in &show {
                    let share = a.candidates.iter().find(|c| c.id == *id).map(|c| c.share);
                    row.push(share.map_or("-".into(), |s| format!("{s:.2}%")));
                }
                table.row(row);
            }
            out.push_str(&table.render(2));
        }
    }
    if let Some(m) = &rep.matching {
        out.push_str(&format!(
            "\nStations matched between rounds: {}; only in round 1: {}; only in round 2: {}; registered changed beyond tolerance (W205): {}\n",
            thousands(m.matched),
            list(&m.only_in_round1),
            list(&m.only_in_round2),
            m.registered_changed.len()
        ));
    }
    out
}

fn list(ids: &[String]) -> String {
    match ids.len() {
        0 => "0".into(),
        1..=5 => format!("{} ({})", ids.len(), ids.join(", ")),
        n => format!("{n} ({}, ...)", ids[..5].join(", ")),
    }
}

/// Long format: one line per round, area and candidate.
pub fn render_csv(rep: &ResultsReport) -> String {
    let mut w = csv_line(&[
        "round",
        "area",
        "level",
        "registered",
        "cast",
        "invalid",
        "valid",
        "turnout",
        "candidate",
        "votes",
        "share",
    ]);
    for r in &rep.rounds {
        let mut rows: Vec<(
            String,
            String,
            &tally_model::report::TotalsOut,
            &Vec<tally_model::report::CandidateOut>,
        )> = vec![(r.area.clone(), String::new(), &r.totals, &r.candidates)];
        if let Some(areas) = &r.areas {
            for a in areas {
                rows.push((a.area.clone(), a.level.clone(), &a.totals, &a.candidates));
            }
        }
        for (area, level, t, cands) in rows {
            for c in cands {
                w.push_str(&csv_line(&[
                    &r.round.to_string(),
                    &area,
                    &level,
                    &t.registered.to_string(),
                    &t.cast.to_string(),
                    &t.invalid.to_string(),
                    &t.valid.to_string(),
                    &t.turnout.map_or(String::new(), |v| v.to_string()),
                    &c.id,
                    &c.votes.to_string(),
                    &c.share.to_string(),
                ]));
            }
        }
    }
    w
}

/// One CSV line; text a spreadsheet would run as a formula (an area named `=...`) gets a
/// leading `'` (the counts and shares never start with a sign).
fn csv_line(cells: &[&str]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| tally_io::output::csv_text(c))
        .map(|c| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

/// `--format nist`: the NIST SP 1500-100 v2 `ElectionReport` of every round (docs/nist.md), built
/// by `tally_model::nist::nist_report` like the server would. `GeneratedDate` is now, or
/// `SOURCE_DATE_EPOCH` when set (reproducible output).
pub fn render_nist(loaded: &Loaded, certified: bool) -> Result<String, String> {
    let totals: Vec<Vec<Totals>> = loaded.rounds.iter().map(|r| count(&r.round)).collect();
    let rounds: Vec<CountedRound<'_>> = loaded
        .rounds
        .iter()
        .zip(&totals)
        .map(|(r, t)| CountedRound {
            round: &r.round,
            totals: t,
            sheets: r.stats,
        })
        .collect();
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let generated = tally_model::nist::datetime_utc(now);
    let meta = tally_model::nist::NistMeta {
        generated: &generated,
        election_date: None,
        certified,
        issuer: "Tally",
        projected_winners: &[],
    };
    let rep = tally_model::nist::nist_report(&loaded.election, &loaded.rule, &rounds, &meta);
    String::from_utf8(tally_io::nist::to_json(&rep)).map_err(|e| e.to_string())
}

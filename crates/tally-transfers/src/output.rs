//! The result type, its terminal rendering and its CSV form. JSON schema: `SCHEMA.md`.

use crate::bounds::Bounds;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{self, Write};
use tally_model::Code;

/// Estimated transfer table. Serialises to the JSON documented in `SCHEMA.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferResult {
    /// `em`, `lphom`, `tslphom` or `nslphom`.
    pub method: String,
    /// Which method ran and why: the default's measured reason, or "asked for" beside it.
    pub method_choice: String,
    /// Row labels (origin: round-1 options).
    pub rows: Vec<String>,
    /// Column labels (destination: round-2 options).
    pub cols: Vec<String>,
    /// `proportions[r][c]`: share of row `r` that went to column `c` (each row sums to 1).
    pub proportions: Vec<Vec<f64>>,
    /// `votes[r][c]`: estimated number of voters in the aggregate cell.
    pub votes: Vec<Vec<f64>>,
    /// Interval for each proportion, lower end (see `interval` for its kind).
    pub lower: Vec<Vec<f64>>,
    /// Interval for each proportion, upper end.
    pub upper: Vec<Vec<f64>>,
    /// The same interval on the votes scale: `lower`/`upper` times the row totals of the data.
    pub votes_lower: Vec<Vec<f64>>,
    pub votes_upper: Vec<Vec<f64>>,
    /// What `lower`/`upper` are: a 95% bootstrap percentile interval, or the Duncan–Davis
    /// bounds (bootstrap off).
    pub interval: String,
    /// Units that entered the estimation.
    pub units_used: usize,
    /// Units left out (no voters, or only in one round when built with `estimate_two_rounds`).
    pub units_dropped: usize,
    /// The seed (bootstrap resamples).
    pub seed: u64,
    /// Duncan–Davis bounds, always present.
    pub bounds: Bounds,
    /// LP details (LP methods only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lp: Option<LpInfo>,
    /// EM convergence diagnostics (`em` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em: Option<EmInfo>,
    /// Human-readable remarks (dropped units, convergence warnings...).
    pub notes: Vec<String>,
    /// The balancing rule that ran and what it moved, when the two margins differed in some
    /// unit (plain margins only; two rounds are balanced by their electorate rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<crate::BalanceInfo>,
    /// The estimates of the other methods Tally trusts beside this one, and their range per cell
    /// ([`crate::compare_methods`]; `tally transfers --compare-methods`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// Coded rules that changed the input, with how many station sheets each changed (today
    /// the electorate rule, W206); empty for [`crate::estimate`] on plain margins.
    pub rules_applied: Vec<RuleNote>,
    /// Per-unit tables (only with `Options::keep_unit_tables`, unit-level methods); not serialised.
    #[serde(skip)]
    pub unit_votes: Option<Vec<UnitTable>>,
}

/// How much the trusted methods disagree, per cell of the proportions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// The methods whose estimates are in `cells` (the chosen one first).
    pub compared: Vec<String>,
    /// Trusted methods not run, each with why.
    pub skipped: Vec<SkippedMethod>,
    /// `cells[r][c]`: the range of the proportion across `compared`.
    pub cells: Vec<Vec<SpreadCell>>,
    /// One sentence per cell whose range across the methods is wider than its interval (cells
    /// with at least 1% of the row by some method, widest range first).
    pub warnings: Vec<String>,
}

/// One cell's range across the methods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpreadCell {
    pub min: f64,
    pub max: f64,
    /// Each compared method's proportion, by method name.
    pub methods: std::collections::BTreeMap<String, f64>,
}

/// A trusted method left out of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMethod {
    pub method: String,
    pub reason: String,
}

/// A coded input rule applied to some station sheets (see `rules_applied`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleNote {
    /// The validation code of the rule (e.g. `W206`, `docs/validation-codes.md`).
    pub code: Code,
    /// Station sheets the rule changed.
    pub stations: usize,
    /// What the rule did, for people.
    pub message: String,
}

/// One unit's estimated table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitTable {
    pub unit_id: String,
    /// `votes[r][c]`
    pub votes: Vec<Vec<f64>>,
}

/// How the lphom LP was solved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LpInfo {
    pub solver: String,
    /// Optimal sum of absolute unit residuals, in votes.
    pub objective: f64,
    /// Certified optimality gap, in votes (0 for the exact LP).
    pub gap: f64,
    /// Bundle iterations (1 for the exact LP).
    pub iterations: usize,
    /// Unit-level passes (0 for plain lphom).
    pub unit_passes: usize,
}

/// How the EM fit ended (method `em`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmInfo {
    /// The E-step used.
    pub e_step: String,
    /// EM steps run (one pass over the units each).
    pub iterations: usize,
    /// Log-likelihood at the estimate (multinomial approximation of each unit's column counts).
    pub loglik: f64,
    /// Change of the log-likelihood over the last EM step.
    pub loglik_change: f64,
    /// Largest change of a proportion over the last EM step.
    pub max_change: f64,
    /// The stopping tolerance on `max_change`.
    pub tol: f64,
    /// `max_change <= tol`.
    pub converged: bool,
}

fn pad(s: &str, w: usize, right: bool) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else if right {
        format!("{}{s}", " ".repeat(w - n))
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

fn table(head: &[String], body: &[Vec<String>]) -> String {
    let ncol = head.len();
    let mut w = vec![0usize; ncol];
    for row in std::iter::once(head).chain(body.iter().map(|r| r.as_slice())) {
        for (k, cell) in row.iter().enumerate() {
            w[k] = w[k].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |row: &[String], out: &mut String| {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(k, c)| pad(c, w[k], k > 0))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(head, &mut out);
    let total: usize = w.iter().sum::<usize>() + 2 * (ncol - 1);
    let _ = writeln!(out, "{}", "-".repeat(total));
    for row in body {
        line(row, &mut out);
    }
    out
}

/// Aligned terminal tables: proportions in percent (rows sum to 100%) with their interval, then
/// votes, then diagnostics and notes.
pub fn render_text(r: &TransferResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Vote transfers — method {} ({} units used, {} dropped)",
        r.method, r.units_used, r.units_dropped
    );
    let _ = writeln!(out, "({})", r.method_choice);
    if let Some(b) = &r.balance {
        let _ = writeln!(out, "Balancing rule {}: {}", b.rule, b.message);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Row -> column, percent of the row (interval: {}):",
        r.interval
    );
    let mut head = vec!["from \\ to".to_string()];
    head.extend(r.cols.iter().cloned());
    head.push("total".into());
    let body: Vec<Vec<String>> = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut row = vec![name.clone()];
            for j in 0..r.cols.len() {
                row.push(format!(
                    "{:.1}% [{:.1}, {:.1}]",
                    100.0 * r.proportions[i][j],
                    100.0 * r.lower[i][j],
                    100.0 * r.upper[i][j]
                ));
            }
            row.push(format!(
                "{:.1}%",
                100.0 * r.proportions[i].iter().sum::<f64>()
            ));
            row
        })
        .collect();
    out.push_str(&table(&head, &body));
    if let Some(sp) = &r.spread {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Methods range: lowest-highest percent of the row across {}:",
            sp.compared.join(", ")
        );
        let body: Vec<Vec<String>> = r
            .rows
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut row = vec![name.clone()];
                for cell in &sp.cells[i] {
                    row.push(format!("{:.1}-{:.1}", 100.0 * cell.min, 100.0 * cell.max));
                }
                row.push(String::new());
                row
            })
            .collect();
        out.push_str(&table(&head, &body));
        for s in &sp.skipped {
            let _ = writeln!(out, "not compared: {} ({})", s.method, s.reason);
        }
        for w in &sp.warnings {
            let _ = writeln!(out, "{w}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Votes (estimate, interval in brackets: the row's interval times the row total):"
    );
    let votes_table = |cell: &dyn Fn(usize, usize) -> String, with_total: bool| {
        let mut body: Vec<Vec<String>> = r
            .rows
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut row = vec![name.clone()];
                for j in 0..r.cols.len() {
                    row.push(cell(i, j));
                }
                row.push(format!("{:.0}", r.votes[i].iter().sum::<f64>()));
                row
            })
            .collect();
        if with_total {
            let mut tot = vec!["total".to_string()];
            for j in 0..r.cols.len() {
                tot.push(format!(
                    "{:.0}",
                    r.votes.iter().map(|row| row[j]).sum::<f64>()
                ));
            }
            tot.push(format!("{:.0}", r.votes.iter().flatten().sum::<f64>()));
            body.push(tot);
        }
        table(&head, &body)
    };
    out.push_str(&votes_table(
        &|i, j| {
            format!(
                "{:.0} [{:.0}, {:.0}]",
                r.votes[i][j], r.votes_lower[i][j], r.votes_upper[i][j]
            )
        },
        true,
    ));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Duncan-Davis bounds (votes; assumption-free, each cell on its own):"
    );
    out.push_str(&votes_table(
        &|i, j| {
            format!(
                "[{}, {}]",
                r.bounds.lower_votes[i][j], r.bounds.upper_votes[i][j]
            )
        },
        false,
    ));
    if let Some(lp) = &r.lp {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "LP: {} — objective {:.1} votes, gap {:.3}, {} iteration(s), {} unit pass(es)",
            lp.solver, lp.objective, lp.gap, lp.iterations, lp.unit_passes
        );
    }
    if let Some(em) = &r.em {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "EM: {} after {} EM steps — largest change in the last step {:.1e} (tolerance {:.0e}), \
             log-likelihood {:.1} (last change {:.2e}); E-step: {}",
            if em.converged { "converged" } else { "NOT converged" },
            em.iterations,
            em.max_change,
            em.tol,
            em.loglik,
            em.loglik_change,
            em.e_step
        );
    }
    for rule in &r.rules_applied {
        let _ = writeln!(out, "note: {} — {}", rule.code, rule.message);
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// A CSV field; a name a spreadsheet would run as a formula gets a leading `'` (numbers,
/// which may be negative, are left as they are).
fn csv_field(s: &str) -> String {
    let s = if s.parse::<f64>().is_ok() {
        s
    } else {
        &*tally_model::report::csv_text(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Long-format CSV, one line per cell:
/// `method,row,col,proportion,lower,upper,votes,bound_lower_votes,bound_upper_votes,votes_lower,votes_upper`
/// (the last two appended so that readers of the older column order keep working).
pub fn write_csv<W: Write>(r: &TransferResult, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "method,row,col,proportion,lower,upper,votes,bound_lower_votes,bound_upper_votes,votes_lower,votes_upper"
    )?;
    for (i, rn) in r.rows.iter().enumerate() {
        for (j, cn) in r.cols.iter().enumerate() {
            writeln!(
                w,
                "{},{},{},{:.6},{:.6},{:.6},{:.2},{},{},{:.2},{:.2}",
                csv_field(&r.method),
                csv_field(rn),
                csv_field(cn),
                r.proportions[i][j],
                r.lower[i][j],
                r.upper[i][j],
                r.votes[i][j],
                r.bounds.lower_votes[i][j],
                r.bounds.upper_votes[i][j],
                r.votes_lower[i][j],
                r.votes_upper[i][j]
            )?;
        }
    }
    Ok(())
}

/// [`write_csv`] into a `String`.
pub fn to_csv_string(r: &TransferResult) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_csv(r, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

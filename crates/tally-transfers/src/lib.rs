//! # tally-transfers
//!
//! Ecological inference of vote transfers between two rounds (or any two margins over the same
//! units): from per-unit row totals (round-1 options) and column totals (round-2 options), estimate
//! the table "how many of row r's voters went to column c".
//!
//! Methods ([`Method`]):
//! * `lphom` — global LP, least absolute residuals (Romero & Pavía), see [`lp`](crate::lp) docs;
//! * `tslphom` / `nslphom` — lphom plus unit-level refinement (one pass / iterated);
//! * `em` (default) — maximum likelihood of the multinomial model by EM (fastei's approach), see
//!   the `em` module docs.
//!
//! Duncan–Davis bounds are computed for every result. The default method is
//! [`DEFAULT_METHOD`]; see the crate README for the accuracy measurements behind that choice.
//!
//! Architecture invariant: pure statistics. No I/O except [`write_png`] (and [`write_csv`] into a
//! caller-supplied writer), no clock, no global state; randomness only from the seed in
//! [`Options`], split into per-chain / per-chunk streams so results do not depend on the number of
//! threads.

// Index loops over small row-major matrices read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

mod boot;
mod bounds;
mod data;
mod dense;
mod em;
pub mod input;
mod lp;
mod output;
mod plot;

pub use bounds::Bounds;
pub use data::MAX_DIM;
pub use em::EmConfig;
pub use input::{
    electorate, from_two_rounds, Balance, BalanceInfo, InputError, Margins, TwoRoundMargins,
    ELECTORATE_RULE, NET_ENTRIES, NET_EXITS,
};
pub use output::{
    render_text, to_csv_string, write_csv, EmInfo, LpInfo, RuleNote, SkippedMethod, Spread,
    SpreadCell, TransferResult, UnitTable,
};
pub use plot::{write_png, PlotError};

use data::Data;
use tally_model::Round;

/// Estimation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Global least-absolute-residuals LP.
    Lphom,
    /// lphom followed by one unit-level refinement.
    Tslphom,
    /// lphom followed by unit-level refinements repeated until the global table stops moving.
    Nslphom,
    /// Maximum likelihood of the multinomial model by EM (fastei's approach).
    Em,
}

/// The method used when none is asked for (chosen on the accuracy tests; see README).
pub const DEFAULT_METHOD: Method = Method::Em;

/// Why [`DEFAULT_METHOD`] is the default (printed with every result, `method_choice`).
pub const DEFAULT_REASON: &str = "em is the default: the most accurate method measured on the \
     New Zealand 2020 development half (36 electorates with the true table: mean misallocation \
     7.99%, against nslphom 10.51%, tslphom 12.19%, lphom 13.88%), and better than tslphom on \
     senc (3.51% against 3.86%; nslphom is better there, 1.39%)";

impl Method {
    /// All methods, in a stable order.
    pub const ALL: [Method; 4] = [Method::Lphom, Method::Tslphom, Method::Nslphom, Method::Em];

    /// Stable name used in output and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Lphom => "lphom",
            Method::Tslphom => "tslphom",
            Method::Nslphom => "nslphom",
            Method::Em => "em",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown method '{s}'; expected one of em, lphom, tslphom, nslphom")
            })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Estimation options. `Options::default()` is what the CLI should use without flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub method: Method,
    /// Seed for every random choice (the bootstrap resamples).
    pub seed: u64,
    /// nslphom: maximum number of unit-level passes.
    pub nslphom_max_passes: usize,
    /// nslphom: stop when no global proportion moves by more than this.
    pub nslphom_tol: f64,
    /// lphom: use the exact sparse LP (Clarabel) when `units x cols` is at most this; above it the
    /// level bundle method (same optimum, certified gap).
    pub exact_lp_max_cells: usize,
    /// EM settings (`em`).
    pub em: EmConfig,
    /// Also return the per-unit tables (unit-level methods: tslphom, nslphom, em).
    pub keep_unit_tables: bool,
    /// LP methods: bootstrap replicates (units resampled with replacement) for the 95% percentile
    /// interval; 0 = no bootstrap (the interval is then the Duncan–Davis bounds).
    pub bootstrap: usize,
    /// LP methods: cap on `replicates x units` (0 = no cap). Each replicate re-solves the LP on
    /// `units` resampled units (~0.13 ms of CPU per unit with the exact LP on a 7 x 5 table), so
    /// the replicates are reduced on large inputs (200 up to 250 units, 51 at 974, never below
    /// 20); the interval string states the number actually run.
    pub bootstrap_unit_budget: usize,
    /// How [`estimate`] balances margins whose per-unit totals differ (default
    /// [`Balance::Net`]); margins that balance are used as they are.
    pub balance: Balance,
    /// em: the interval by the unit bootstrap (each of `bootstrap` replicates re-solved) instead
    /// of the default unit-clustered sandwich interval (no re-solve; see `interval` in the
    /// result). With `bootstrap` = 0 em reports no interval either way.
    pub em_bootstrap: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: DEFAULT_METHOD,
            seed: 20_240_101,
            nslphom_max_passes: 10,
            nslphom_tol: 1e-5,
            exact_lp_max_cells: 20_000,
            em: EmConfig::default(),
            keep_unit_tables: false,
            bootstrap: 200,
            bootstrap_unit_budget: 50_000,
            balance: Balance::default(),
            em_bootstrap: false,
        }
    }
}

/// The methods Tally trusts for the comparison of [`compare_methods`] (every [`Method`]).
pub const TRUSTED: [Method; 4] = Method::ALL;

/// Largest number of cells [`compare_methods`] words (the widest ranges first).
const MAX_SPREAD_WARNINGS: usize = 8;

/// Sets `chosen.spread`: per cell the lowest and highest proportion across `chosen` and `others`
/// (results of other methods on the same margins), and a sentence for each cell (with at least
/// 1% of the row by some method) whose range is wider than `chosen`'s interval. `skipped` lists
/// the trusted methods not run and why (the caller decides: this crate has no clock).
pub fn compare_methods(
    chosen: &mut TransferResult,
    others: &[TransferResult],
    skipped: Vec<SkippedMethod>,
) {
    let all: Vec<&TransferResult> = std::iter::once(&*chosen)
        .chain(
            others
                .iter()
                .filter(|o| o.rows == chosen.rows && o.cols == chosen.cols),
        )
        .collect();
    let mut cells = Vec::with_capacity(chosen.rows.len());
    let mut wide: Vec<(f64, String)> = Vec::new();
    for i in 0..chosen.rows.len() {
        let mut row = Vec::with_capacity(chosen.cols.len());
        for j in 0..chosen.cols.len() {
            let methods: std::collections::BTreeMap<String, f64> = all
                .iter()
                .map(|r| (r.method.clone(), r.proportions[i][j]))
                .collect();
            let min = methods.values().copied().fold(f64::INFINITY, f64::min);
            let max = methods.values().copied().fold(f64::NEG_INFINITY, f64::max);
            let range = max - min;
            let width = chosen.upper[i][j] - chosen.lower[i][j];
            if all.len() > 1 && max >= 0.01 && range > width + 1e-9 {
                wide.push((
                    range,
                    format!(
                        "{} -> {}: {:.1}% ({}), but the methods range from {:.1}% to {:.1}% \
                         (interval {:.1}-{:.1}%); the answer depends on the method",
                        chosen.rows[i],
                        chosen.cols[j],
                        100.0 * chosen.proportions[i][j],
                        chosen.method,
                        100.0 * min,
                        100.0 * max,
                        100.0 * chosen.lower[i][j],
                        100.0 * chosen.upper[i][j]
                    ),
                ));
            }
            row.push(SpreadCell { min, max, methods });
        }
        cells.push(row);
    }
    wide.sort_by(|a, b| b.0.total_cmp(&a.0));
    let more = wide.len().saturating_sub(MAX_SPREAD_WARNINGS);
    let mut warnings: Vec<String> = wide
        .into_iter()
        .take(MAX_SPREAD_WARNINGS)
        .map(|(_, w)| w)
        .collect();
    if more > 0 {
        warnings.push(format!(
            "and {more} more cell(s) whose methods range is wider than the interval"
        ));
    }
    chosen.spread = Some(Spread {
        compared: all.iter().map(|r| r.method.clone()).collect(),
        skipped,
        cells,
        warnings,
    });
}

/// Duncan–Davis bounds of the aggregate table (votes and proportions) of `m`.
pub fn bounds(m: &Margins) -> Result<Bounds, InputError> {
    check(m)?;
    Ok(bounds::compute(&Data::new(m)))
}

fn check(m: &Margins) -> Result<(), InputError> {
    m.validate()?;
    if m.rows.len() > MAX_DIM || m.cols.len() > MAX_DIM {
        return Err(InputError::TooManyCategories {
            rows: m.rows.len(),
            cols: m.cols.len(),
            max: MAX_DIM,
        });
    }
    Ok(())
}

/// `interval` of em by default.
pub const SANDWICH_INTERVAL: &str = "95% sandwich interval (variance of the EM fixed point \
     over resamples of units, linearised: no re-solve; normal approximation)";

/// The 97.5% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// `interval` of the LP methods without bootstrap.
const DD_INTERVAL: &str = "duncan-davis bounds";

fn grid(v: &[f64], nc: usize) -> Vec<Vec<f64>> {
    v.chunks(nc).map(|r| r.to_vec()).collect()
}

/// What [`estimate_with_progress`] is doing (for a caller that shows progress; this crate
/// never prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The point estimate of `method` started (LP methods report nothing finer).
    Fit { method: Method },
    /// em: `step` passes over the units so far in the current phase (at most `max`).
    EmStep { step: usize, max: usize },
    /// The em sandwich interval is being computed (one pass over the units).
    Sandwich,
    /// Bootstrap replicates done so far, of `of` (replicates finish in any order).
    Bootstrap { done: usize, of: usize },
}

/// Estimates the transfer table of `m` with `opts.method`. Units whose two margins differ are
/// first balanced by `opts.balance` ([`Margins::balanced`]); the result says what that did
/// (`balance`).
pub fn estimate(m: &Margins, opts: &Options) -> Result<TransferResult, InputError> {
    estimate_with_progress(m, opts, &|_| {})
}

/// [`estimate`], reporting what it is doing through `progress` (called from worker threads).
pub fn estimate_with_progress(
    m: &Margins,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<TransferResult, InputError> {
    estimate_shared(m, opts, progress, &mut SharedFits::default())
}

/// Fits that several estimations of the same margins can share: lphom, tslphom and nslphom all
/// start from the same lphom solution, so a comparison of the three solves its LP once (on
/// Poland 2020 one lphom solve is most of each method's time). Each fit is kept with the
/// data it was solved on (every unit's margins, the solver setting) and is only reused on the
/// same data, so passing one `SharedFits` to estimations of
/// different margins is safe, just not useful.
#[derive(Default)]
pub struct SharedFits {
    lphom: Option<(Vec<f64>, lp::LpFit)>,
}

impl SharedFits {
    /// The lphom fit of `d` (solved on the first call, then reused).
    fn lphom(&mut self, d: &Data, exact_max_cells: usize) -> lp::LpFit {
        let key: Vec<f64> = [d.u as f64, d.r as f64, d.c as f64, exact_max_cells as f64]
            .into_iter()
            .chain(d.row_tot.iter().copied())
            .chain(d.col_tot.iter().copied())
            .chain(d.x.iter().copied())
            .chain(d.y.iter().copied())
            .collect();
        match &self.lphom {
            Some((k, fit)) if *k == key => fit.clone(),
            _ => {
                let fit = lp::lphom(d, exact_max_cells);
                self.lphom = Some((key, fit.clone()));
                fit
            }
        }
    }
}

/// [`estimate_with_progress`] reusing (and filling) the fits in `shared` ([`SharedFits`]): the
/// result is the same as without it.
pub fn estimate_shared(
    m: &Margins,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
    shared: &mut SharedFits,
) -> Result<TransferResult, InputError> {
    let (m, balance) = m.balanced(opts.balance)?;
    let m: &Margins = &m;
    check(m)?;
    let d = Data::new(m);
    if d.u == 0 {
        return Err(InputError::NoUnits);
    }
    let (nr, nc) = (d.r, d.c);
    let b = bounds::compute(&d);
    let mut notes = Vec::new();
    if d.empty > 0 {
        notes.push(format!("{} unit(s) with no voters dropped", d.empty));
    }
    for (i, r) in m.rows.iter().enumerate() {
        if d.row_tot[i] == 0.0 {
            notes.push(format!(
                "row {r:?} is empty everywhere: its proportions are not identified"
            ));
        }
    }
    progress(Progress::Fit {
        method: opts.method,
    });
    // The LP family starts from the lphom fit; em does not need it.
    let fit = (opts.method != Method::Em).then(|| shared.lphom(&d, opts.exact_lp_max_cells));
    let mut lp_info = fit.as_ref().map(|fit| LpInfo {
        solver: fit.solver.to_string(),
        objective: fit.objective,
        gap: fit.gap,
        iterations: fit.iterations,
        unit_passes: 0,
    });
    let mut p_lp: Vec<f64> = fit.as_ref().map(|f| f.p.clone()).unwrap_or_default();
    let row_votes =
        |p: &[f64]| -> Vec<f64> { (0..nr * nc).map(|q| p[q] * d.row_tot[q / nc]).collect() };
    let mut em_info = None;
    let mut em_bstate = None;
    let mut unit_flat: Option<Vec<f64>> = None;
    let (p, votes, interval) = match opts.method {
        Method::Lphom => {
            let v = row_votes(&p_lp);
            (p_lp.clone(), v, DD_INTERVAL.to_string())
        }
        Method::Tslphom | Method::Nslphom => {
            let passes = if opts.method == Method::Tslphom {
                1
            } else {
                opts.nslphom_max_passes.max(1)
            };
            let rf = lp::refine(&d, &p_lp, passes, opts.nslphom_tol, opts.keep_unit_tables);
            if let Some(info) = lp_info.as_mut() {
                info.unit_passes = rf.passes;
            }
            unit_flat = rf.units;
            (rf.p, rf.votes, DD_INTERVAL.to_string())
        }
        Method::Em => {
            let max = opts.em.max_iter;
            let ef = em::fit_with(&d, None, None, &opts.em, opts.keep_unit_tables, &|step| {
                progress(Progress::EmStep { step, max })
            });
            if !ef.converged {
                notes.push(format!(
                    "em: not converged after {} EM steps (last largest change {:.2e} > {:.0e})",
                    ef.iterations, ef.max_change, opts.em.tol
                ));
            }
            em_info = Some(EmInfo {
                e_step: "conditional mode of each unit table given both margins (Newton's \
                         method on its column factors), after multinomial-approximation steps"
                    .to_string(),
                iterations: ef.iterations,
                loglik: ef.loglik,
                loglik_change: ef.loglik_change,
                max_change: ef.max_change,
                tol: opts.em.tol,
                converged: ef.converged,
            });
            unit_flat = ef.units;
            em_bstate = Some(ef.bstate);
            // The em replicates of the bootstrap start from the EM fixed point.
            p_lp = ef.p_em;
            (ef.p, ef.votes, DD_INTERVAL.to_string())
        }
    };
    // Sampling interval by the unit bootstrap (Duncan–Davis bounds stay in `bounds`).
    let (lower, upper, interval) = {
        let method = opts.method;
        {
            let reps = boot::replicates_for(d.u, opts.bootstrap, opts.bootstrap_unit_budget);
            if reps == 0 {
                (None, None, interval)
            } else if method == Method::Em && !opts.em_bootstrap {
                progress(Progress::Sandwich);
                match em::sandwich(&d, &p_lp, em_bstate.take()) {
                    Some(v) => {
                        let k = nr * nc;
                        let (mut lo, mut hi) = (vec![0.0; k], vec![0.0; k]);
                        for q in 0..k {
                            let se = v[q * k + q].max(0.0).sqrt();
                            let (g, j) = (q / nc, q % nc);
                            // Within [0, 1] and the Duncan–Davis bounds (where the truth is
                            // whatever the model), and around the reported estimate.
                            lo[q] = (p[q] - Z95 * se).max(b.lower[g][j]).min(p[q]);
                            hi[q] = (p[q] + Z95 * se).min(b.upper[g][j]).max(p[q]);
                        }
                        (Some(lo), Some(hi), SANDWICH_INTERVAL.to_string())
                    }
                    None => {
                        notes.push(
                            "em: the sandwich variance is singular (a direction of the table the \
                             data do not identify); the interval is the Duncan–Davis bounds"
                                .to_string(),
                        );
                        (None, None, interval)
                    }
                }
            } else {
                let bi = boot::run(&d, &p_lp, method, opts, reps, progress);
                // A cell no replicate could estimate (its row empty in every resample) keeps its
                // Duncan–Davis bounds rather than a NaN. A percentile can fall on the wrong side
                // of the point estimate (an LP estimate sitting on the simplex boundary, at 0,
                // while the resamples spread above it): the interval is then extended to the
                // estimate, so that it always contains what the table reports.
                let mut extended = 0usize;
                let mut fill = |v: Vec<f64>, dd: &[Vec<f64>], low: bool| -> Vec<f64> {
                    v.into_iter()
                        .enumerate()
                        .map(|(q, x)| {
                            let x = if x.is_finite() { x } else { dd[q / nc][q % nc] };
                            if (low && x > p[q]) || (!low && x < p[q]) {
                                extended += 1;
                                p[q]
                            } else {
                                x
                            }
                        })
                        .collect()
                };
                let (lo, hi) = (
                    fill(bi.lower, &b.lower, true),
                    fill(bi.upper, &b.upper, false),
                );
                if extended > 0 {
                    notes.push(format!(
                        "bootstrap: {extended} interval end(s) extended to the point estimate \
                         (the percentile fell on the other side of it)"
                    ));
                }
                (
                    Some(lo),
                    Some(hi),
                    format!(
                        "95% bootstrap percentile interval ({} unit resamples)",
                        bi.replicates
                    ),
                )
            }
        }
    };
    let lower = lower
        .map(|v| grid(&v, nc))
        .unwrap_or_else(|| b.lower.clone());
    let upper = upper
        .map(|v| grid(&v, nc))
        .unwrap_or_else(|| b.upper.clone());
    // Votes scale: the interval of the proportions times the row totals of the actual data (a
    // resample's own row totals differ; the reported table is about the actual electorate).
    let scale = |g: &[Vec<f64>]| -> Vec<Vec<f64>> {
        g.iter()
            .enumerate()
            .map(|(i, row)| row.iter().map(|v| v * d.row_tot[i]).collect())
            .collect()
    };
    let (votes_lower, votes_upper) = (scale(&lower), scale(&upper));
    let unit_votes = unit_flat.map(|flat| {
        d.kept
            .iter()
            .enumerate()
            .map(|(k, &u)| UnitTable {
                unit_id: m.unit_ids[u].clone(),
                votes: grid(&flat[k * nr * nc..(k + 1) * nr * nc], nc),
            })
            .collect()
    });
    let method_choice = if opts.method == DEFAULT_METHOD {
        DEFAULT_REASON.to_string()
    } else {
        format!(
            "{} as asked; {}",
            opts.method.name(),
            DEFAULT_REASON.replacen("em is the default", "the default is em", 1)
        )
    };
    Ok(TransferResult {
        method: opts.method.name().to_string(),
        method_choice,
        rows: m.rows.clone(),
        cols: m.cols.clone(),
        proportions: grid(&p, nc),
        votes: grid(&votes, nc),
        lower,
        upper,
        votes_lower,
        votes_upper,
        interval,
        units_used: d.u,
        units_dropped: d.empty,
        seed: opts.seed,
        bounds: b,
        lp: lp_info,
        em: em_info,
        notes,
        balance,
        spread: None,
        rules_applied: Vec::new(),
        unit_votes,
    })
}

/// [`from_two_rounds`] then [`TwoRoundMargins::estimate`]: the transfers between two rounds of
/// counted sheets, by station (`level` = `None`) or by area of the tree level at that depth.
pub fn estimate_two_rounds(
    round1: &Round,
    round2: &Round,
    level: Option<u8>,
    opts: &Options,
) -> Result<TransferResult, InputError> {
    from_two_rounds(round1, round2, level)?.estimate(opts)
}

impl TwoRoundMargins {
    /// [`estimate`] on the margins; `units_dropped` also counts the units present in only one
    /// round, and `notes` / `rules_applied` say what was dropped and which input rules applied.
    pub fn estimate(&self, opts: &Options) -> Result<TransferResult, InputError> {
        self.estimate_with_progress(opts, &|_| {})
    }

    /// [`TwoRoundMargins::estimate`] reporting through `progress` ([`estimate_with_progress`]).
    pub fn estimate_with_progress(
        &self,
        opts: &Options,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<TransferResult, InputError> {
        self.estimate_shared(opts, progress, &mut SharedFits::default())
    }

    /// [`TwoRoundMargins::estimate_with_progress`] sharing fits through `shared`
    /// ([`estimate_shared`]).
    pub fn estimate_shared(
        &self,
        opts: &Options,
        progress: &(dyn Fn(Progress) + Sync),
        shared: &mut SharedFits,
    ) -> Result<TransferResult, InputError> {
        let mut res = estimate_shared(&self.margins, opts, progress, shared)?;
        res.units_dropped += self.units_dropped;
        if !self.only_in_round1.is_empty() {
            res.notes.push(format!(
                "dropped, only in round 1: {}",
                self.only_in_round1.join(", ")
            ));
        }
        if !self.only_in_round2.is_empty() {
            res.notes.push(format!(
                "dropped, only in round 2: {}",
                self.only_in_round2.join(", ")
            ));
        }
        if self.has_new_voters {
            res.notes
                .push("registered grew in some units: row \"new voters\" holds the growth".into());
        }
        if self.has_exit {
            res.notes
                .push("registered shrank in some units: column \"exit\" holds the decrease".into());
        }
        if self.incomplete_sheets > 0 {
            res.notes.push(format!(
                "{} counted sheet(s) without registered, cast, invalid or a candidate count left out",
                self.incomplete_sheets
            ));
        }
        if self.w206_sheets > 0 {
            res.rules_applied.push(RuleNote {
                code: ELECTORATE_RULE,
                stations: self.w206_sheets,
                message: format!(
                    "{} station sheet(s) with more ballots cast than registered voters (accepted \
                     within the W206 tolerance): their electorate is the ballots cast",
                    self.w206_sheets
                ),
            });
        }
        Ok(res)
    }
}

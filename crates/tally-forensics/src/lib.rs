//! # tally-forensics
//!
//! Election forensics on the station-level results of one round: the turnout × share
//! *fingerprint* with a fit of the Klimek et al. (2012) stuffing model, the Kobak–Shpilkin–
//! Pshenichnikov (2016) *integer-percentage* test, *digit* tests (Mebane; Beber & Scacco),
//! *distribution* shape tests with a Shpilkin-type excess-vote estimate, and a ranked list of
//! anomalous stations.
//!
//! Every number here is a statistical anomaly with an uncertainty, never a verdict: elections can
//! produce unusual patterns for legitimate reasons, and clean data sometimes trips a test.
//!
//! ## Architecture invariant
//! [`analyse`] is pure: no I/O, no clock, no global state. Randomness comes only from
//! `ForensicsOptions::seed`; each replicate of each Monte Carlo or bootstrap draws from its own
//! ChaCha8 generator derived from (seed, analysis, replicate), so the output is byte-identical
//! whatever the number of threads. Only the functions of [`plot`] write files.
//!
//! ## API boundary
//! Input: a [`tally_model::Round`] (its counted stations with registered, cast and valid; see
//! [`station_selection`]) and [`ForensicsOptions`]. Output: [`ForensicsReport`] (serde `Serialize`, schema in
//! `SCHEMA.md`), [`ForensicsReport::render_text`], [`write_stations_csv`], [`plot::write_plots`].

pub mod digits;
pub mod distribution;
pub mod fingerprint;
pub mod input;
pub mod integer;
pub mod plot;
pub mod plot_font;
mod render;
pub mod stations;
mod util;

pub use digits::{DigitStat, DigitTest};
pub use distribution::{DistStats, DistributionReport, ExcessVotes};
pub use fingerprint::{CleanShape, KlimekFit};
pub use input::{station_selection, InputError, StationSelection};
pub use stations::{write_stations_csv, FlaggedStation};

use serde::Serialize;
use tally_model::Round;

/// Version of the JSON schema (bumped on any incompatible change; see SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 1;

/// Options of [`analyse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ForensicsOptions {
    /// Index of the leader in `Round::candidates`; `None` = the candidate with most votes.
    pub leader: Option<usize>,
    /// Depth in the round's area tree of the groups (areas) used for the per-area reports and the
    /// neighbour comparisons of the station list (1 = the first level below the root, as given by
    /// `AreaTree::level_depth`); `None` = no groups (default).
    pub group_level: Option<u8>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Monte Carlo replicates of the integer-percentage null (default 1000).
    pub mc_reps: usize,
    /// Bootstrap replicates of the digit tests, the excess-vote estimate and the Klimek fit (default 200).
    pub bootstrap_reps: usize,
    /// Level of the bootstrap intervals (default 0.95).
    pub ci_level: f64,
    /// Per-group (per-area) reports, when `group_level` is set (default true).
    pub per_group: bool,
    /// Fit the Klimek model (the most expensive part; default true).
    pub klimek_fit: bool,
    /// Minimum ballots cast for the integer-percentage test (default 100).
    pub min_voters: u64,
    /// Maximum number of stations listed in the report (default 200; the total is always given).
    pub max_stations: usize,
}

impl Default for ForensicsOptions {
    fn default() -> Self {
        ForensicsOptions {
            leader: None,
            group_level: None,
            seed: 1,
            mc_reps: 1000,
            bootstrap_reps: 200,
            ci_level: 0.95,
            per_group: true,
            klimek_fit: true,
            min_voters: 100,
            max_stations: 200,
        }
    }
}

/// Echo of the options that shaped the numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OptionsEcho {
    pub mc_reps: usize,
    pub bootstrap_reps: usize,
    pub ci_level: f64,
    pub min_voters: u64,
    pub per_group: bool,
    pub klimek_fit: bool,
    pub max_stations: usize,
}

/// Which stations were used and why others were not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coverage {
    /// Stations in the input: the counted stations of the round that give registered, cast and
    /// valid (see [`station_selection`]).
    pub stations_total: usize,
    /// Stations used (registered > 0 and cast > 0).
    pub stations_used: usize,
    /// Skipped: registered == 0 (turnout undefined).
    pub skipped_registered_zero: usize,
    /// Skipped: cast == 0 (no ballots; nothing to test).
    pub skipped_cast_zero: usize,
    /// Used, but valid == 0: left out of every share-based statistic.
    pub valid_zero: usize,
    /// Used, with cast > registered (e.g. voters added on the day): turnout capped at 100%.
    pub cast_above_registered: usize,
}

/// Totals over the used stations.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Totals {
    pub registered: u64,
    pub cast: u64,
    pub valid: u64,
    pub leader_votes: u64,
    /// cast / registered.
    pub turnout: f64,
    /// leader votes / valid votes.
    pub leader_share: f64,
}

/// The fingerprint section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FingerprintReport {
    /// Histogram weights: ballots cast per station.
    pub weight: String,
    /// Bins per axis (one percentage point each).
    pub bins: usize,
    /// Stations in the histogram (used stations with valid > 0).
    pub stations: usize,
    /// Turnout and share of the cell with the most voters (cell centres).
    pub peak_turnout: f64,
    pub peak_share: f64,
    /// Fraction of ballots cast at stations with turnout >= 80% and leader share >= 80%.
    pub voters_turnout80_share80: f64,
    /// Fraction of ballots cast at stations with turnout >= 99% and leader share >= 95%.
    pub voters_turnout99_share95: f64,
    /// Klimek fit: fraction of stations with incremental / extreme stuffing (NaN -> null when not fitted).
    pub fi: f64,
    pub fe: f64,
    pub fi_ci: [f64; 2],
    pub fe_ci: [f64; 2],
    /// The full fit, when it was run.
    pub fit: Option<KlimekFit>,
}

/// The integer-percentage test section. Field names are part of the JSON schema.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IntegerTest {
    pub method: String,
    pub min_voters: u64,
    /// Half-width of the window around whole percents, in points.
    pub window_points: f64,
    /// Stations tested (used stations with cast >= min_voters).
    pub stations_tested: usize,
    /// Stations whose turnout or leader share is an integer percentage.
    pub observed: u64,
    pub observed_turnout: u64,
    pub observed_share: u64,
    /// Monte Carlo mean of the null count.
    pub expected: f64,
    /// Exact expectation of the null count (sum of per-station hit probabilities).
    pub expected_exact: f64,
    pub expected_turnout: f64,
    pub expected_share: f64,
    /// observed - expected.
    pub excess: f64,
    /// Monte Carlo standard deviation of the null count.
    pub mc_sd: f64,
    /// excess / mc_sd.
    pub z: f64,
    /// One-sided Monte Carlo p-value (1 + #{null >= observed}) / (1 + reps).
    pub p_value: f64,
    pub reps: usize,
}

/// Per-area summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupReport {
    pub name: String,
    pub stations: usize,
    pub registered: u64,
    pub cast: u64,
    pub turnout: f64,
    pub leader_share: f64,
    pub integer_tested: usize,
    pub integer_observed: u64,
    pub integer_expected: f64,
    pub integer_excess: f64,
    pub integer_mc_sd: f64,
    pub integer_p_value: f64,
    /// Stations with turnout >= 99% and leader share >= 95%.
    pub turnout99_share95_stations: usize,
    /// Turnout-share correlation weighted by ballots cast.
    pub turnout_share_correlation: f64,
    /// Excess-vote estimate with the national threshold and the area's own bulk share
    /// (null when the area has fewer than 20 bulk stations).
    pub excess_votes_estimate: f64,
}

/// Histograms kept for the plots (not serialised).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotData {
    /// Voter-weighted fingerprint, `BINS * BINS`, row = turnout bin, column = share bin.
    pub fingerprint: Vec<f64>,
    /// Stations (cast >= min_voters) per 0.1-point bin of leader share (1000 bins).
    pub share_hist_01: Vec<u64>,
    /// Same for turnout.
    pub turnout_hist_01: Vec<u64>,
}

/// The whole report. See SCHEMA.md for the JSON form.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForensicsReport {
    pub schema_version: u32,
    pub seed: u64,
    pub options: OptionsEcho,
    pub candidates: Vec<String>,
    pub leader: String,
    pub leader_index: usize,
    /// How shares are defined.
    pub share_definition: String,
    pub coverage: Coverage,
    pub totals: Totals,
    pub fingerprint: FingerprintReport,
    pub integer_test: IntegerTest,
    pub digits: Vec<DigitTest>,
    pub distribution: DistributionReport,
    pub excess_votes: ExcessVotes,
    /// Stations with at least one reason, in total (the list below is capped at `max_stations`).
    pub stations_flagged_total: usize,
    pub stations: Vec<FlaggedStation>,
    /// Per-area summaries (empty without groups or with `per_group` off).
    pub groups: Vec<GroupReport>,
    /// Caveats that apply to every reading of this report.
    pub caveats: Vec<String>,
    #[serde(skip)]
    pub plot_data: PlotData,
}

impl ForensicsReport {
    /// A short plain-text report.
    pub fn render_text(&self) -> String {
        render::render_text(self)
    }

    /// The report as pretty JSON (the schema of SCHEMA.md).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

pub(crate) const INTEGER_METHOD: &str =
    "stations with turnout or leader share within +/-0.05 points of a whole percent (1..99), among stations \
     with at least min_voters ballots cast (turnout checked when <= 99%, share when <= 99%); null: binomial \
     redraw of each station's cast (of registered) and leader votes (of valid) at the observed proportions, \
     simulated through exact per-station hit probabilities";

/// Runs every analysis. Panics when the input is malformed (see [`try_analyse`]).
pub fn analyse(round: &Round, opts: &ForensicsOptions) -> ForensicsReport {
    match try_analyse(round, opts) {
        Ok(r) => r,
        Err(e) => panic!("tally-forensics: invalid input: {e}"),
    }
}

/// Runs every analysis on the usable stations of `round` (see [`station_selection`]), or says why
/// the round cannot be analysed.
pub fn try_analyse(round: &Round, opts: &ForensicsOptions) -> Result<ForensicsReport, InputError> {
    let usable = input::usable(round, opts.group_level)?;
    let candidates: Vec<String> = round.candidates.iter().map(|c| c.id.clone()).collect();
    let leader = opts
        .leader
        .unwrap_or_else(|| input::most_votes(round, &usable.index));
    if leader >= candidates.len() {
        return Err(InputError::LeaderOutOfRange {
            leader,
            candidates: candidates.len(),
        });
    }
    // Every station index `s` below is an index into the round's station table.
    let st = &round.stations;
    let k = candidates.len();
    let n = usable.index.len();
    // Counts widened once here: the windows below multiply them (100 * cast, 1000 * votes).
    let lv = |s: usize| u64::from(st.votes[s * k + leader]);
    let reg_of = |s: usize| u64::from(st.registered[s]);
    let cast_of = |s: usize| u64::from(st.cast[s]);
    let valid_of = |s: usize| u64::from(st.valid[s]);
    // Groups serve the neighbour comparisons always, and the per-area reports when asked for.
    let groups = usable.groups.as_ref();
    let group_of = |s: usize| groups.map(|(g, _)| g[s]);

    // Coverage and the list of used stations.
    let mut cov = Coverage {
        stations_total: n,
        stations_used: 0,
        skipped_registered_zero: 0,
        skipped_cast_zero: 0,
        valid_zero: 0,
        cast_above_registered: 0,
    };
    let mut used = Vec::with_capacity(n);
    for &s in &usable.index {
        if reg_of(s) == 0 {
            cov.skipped_registered_zero += 1;
        } else if cast_of(s) == 0 {
            cov.skipped_cast_zero += 1;
        } else {
            if valid_of(s) == 0 {
                cov.valid_zero += 1;
            }
            if cast_of(s) > reg_of(s) {
                cov.cast_above_registered += 1;
            }
            used.push(s);
        }
    }
    cov.stations_used = used.len();
    let turnout_of = |s: usize| (cast_of(s) as f64 / reg_of(s) as f64).min(1.0);
    let share_of = |s: usize| {
        if valid_of(s) == 0 {
            None
        } else {
            Some((lv(s) as f64 / valid_of(s) as f64).min(1.0))
        }
    };

    // Totals.
    let mut t = Totals {
        registered: 0,
        cast: 0,
        valid: 0,
        leader_votes: 0,
        turnout: f64::NAN,
        leader_share: f64::NAN,
    };
    for &s in &used {
        t.registered += reg_of(s);
        t.cast += cast_of(s);
        t.valid += valid_of(s);
        t.leader_votes += lv(s);
    }
    if t.registered > 0 {
        t.turnout = t.cast as f64 / t.registered as f64;
    }
    if t.valid > 0 {
        t.leader_share = t.leader_votes as f64 / t.valid as f64;
    }

    // Stations with a share: turnout, share, weight.
    let with_share: Vec<usize> = used.iter().copied().filter(|&s| valid_of(s) > 0).collect();
    let ts: Vec<f64> = with_share.iter().map(|&s| turnout_of(s)).collect();
    let vs: Vec<f64> = with_share
        .iter()
        .map(|&s| share_of(s).unwrap_or(0.0))
        .collect();
    let ws: Vec<f64> = with_share.iter().map(|&s| cast_of(s) as f64).collect();

    // Fingerprint histogram and summary.
    let bins = fingerprint::BINS;
    let mut grid = vec![0.0f64; bins * bins];
    let (mut w_total, mut w_8080, mut w_9995) = (0.0, 0.0, 0.0);
    for i in 0..ts.len() {
        grid[fingerprint::cell(ts[i], vs[i])] += ws[i];
        w_total += ws[i];
        if ts[i] >= 0.8 && vs[i] >= 0.8 {
            w_8080 += ws[i];
        }
        if ts[i] >= 0.99 && vs[i] >= 0.95 {
            w_9995 += ws[i];
        }
    }
    let peak = grid
        .iter()
        .enumerate()
        .fold(
            (0usize, -1.0f64),
            |acc, (i, &v)| {
                if v > acc.1 {
                    (i, v)
                } else {
                    acc
                }
            },
        )
        .0;
    let fit = if opts.klimek_fit {
        Some(fingerprint::fit(
            &ts,
            &vs,
            opts.bootstrap_reps,
            opts.ci_level,
            opts.seed,
        ))
    } else {
        None
    };
    let frac = |x: f64| if w_total > 0.0 { x / w_total } else { f64::NAN };
    let fp = FingerprintReport {
        weight: "ballots cast".to_string(),
        bins,
        stations: ts.len(),
        peak_turnout: ((peak / bins) as f64 + 0.5) / bins as f64,
        peak_share: ((peak % bins) as f64 + 0.5) / bins as f64,
        voters_turnout80_share80: frac(w_8080),
        voters_turnout99_share95: frac(w_9995),
        fi: fit.as_ref().map_or(f64::NAN, |f| f.fi),
        fe: fit.as_ref().map_or(f64::NAN, |f| f.fe),
        fi_ci: fit.as_ref().map_or([f64::NAN; 2], |f| f.fi_ci),
        fe_ci: fit.as_ref().map_or([f64::NAN; 2], |f| f.fe_ci),
        fit,
    };

    // Integer-percentage test.
    let n_groups = groups.map_or(1, |(_, names)| names.len());
    let tested: Vec<usize> = used
        .iter()
        .copied()
        .filter(|&s| cast_of(s) >= opts.min_voters)
        .collect();
    let int_stations: Vec<integer::IntegerStation> = tested
        .iter()
        .map(|&s| {
            let turnout = (cast_of(s) <= reg_of(s) && 100 * cast_of(s) <= 99 * reg_of(s))
                .then_some((cast_of(s), reg_of(s)));
            let share = (valid_of(s) > 0 && 100 * lv(s) <= 99 * valid_of(s))
                .then_some((lv(s), valid_of(s)));
            integer::IntegerStation {
                turnout,
                share,
                group: group_of(s).unwrap_or(0),
            }
        })
        .collect();
    let io = integer::run(&int_stations, n_groups, opts.mc_reps, opts.seed);
    let integer_test = IntegerTest {
        method: INTEGER_METHOD.to_string(),
        min_voters: opts.min_voters,
        window_points: integer::WINDOW_POINTS,
        stations_tested: io.tested,
        observed: io.observed,
        observed_turnout: io.observed_turnout,
        observed_share: io.observed_share,
        expected: io.mc_mean,
        expected_exact: io.expected_exact,
        expected_turnout: io.expected_turnout,
        expected_share: io.expected_share,
        excess: io.observed as f64 - io.mc_mean,
        mc_sd: io.mc_sd,
        z: if io.mc_sd > 0.0 {
            (io.observed as f64 - io.mc_mean) / io.mc_sd
        } else {
            f64::NAN
        },
        p_value: integer::mc_p_value(io.mc_ge, io.reps),
        reps: io.reps,
    };
    let mut share_hist_01 = vec![0u64; 1000];
    let mut turnout_hist_01 = vec![0u64; 1000];
    for &s in &tested {
        let tb = ((cast_of(s).min(reg_of(s)) * 1000) / reg_of(s)).min(999);
        turnout_hist_01[tb as usize] += 1;
        if let Some(sb) = (lv(s) * 1000).checked_div(valid_of(s)) {
            share_hist_01[sb.min(999) as usize] += 1;
        }
    }

    // Digits.
    let digits = digits::run(
        &candidates,
        &st.votes,
        &st.valid,
        &used,
        opts.bootstrap_reps,
        opts.ci_level,
        opts.seed,
    );

    // Distributions and excess votes.
    let distribution = distribution::run(&ts, &vs, &ws);
    let ex_stations: Vec<distribution::ExcessStation> = with_share
        .iter()
        .zip(&ts)
        .map(|(&s, &tv)| distribution::ExcessStation {
            turnout: tv,
            leader: lv(s),
            valid: valid_of(s),
            registered: reg_of(s),
        })
        .collect();
    let excess_votes =
        distribution::excess_votes(&ex_stations, opts.bootstrap_reps, opts.ci_level, opts.seed);

    // Station list.
    let mut int_hit_t = vec![false; round.len()];
    let mut int_hit_s = vec![false; round.len()];
    for (k, &s) in tested.iter().enumerate() {
        let st = &int_stations[k];
        int_hit_t[s] = st.turnout.is_some_and(|(a, b)| integer::integer_hit(a, b));
        int_hit_s[s] = st.share.is_some_and(|(a, b)| integer::integer_hit(a, b));
    }
    let views: Vec<stations::StationView> = used
        .iter()
        .map(|&s| stations::StationView {
            index: s,
            registered: reg_of(s),
            cast: cast_of(s),
            valid: valid_of(s),
            leader: lv(s),
            turnout: turnout_of(s),
            share: share_of(s),
            group: group_of(s),
            integer_turnout: int_hit_t[s],
            integer_share: int_hit_s[s],
        })
        .collect();
    let (flag_total, flagged) = stations::flag(
        &views,
        &st.ids,
        groups.map(|(_, names)| names.as_slice()),
        opts.max_stations,
    );

    // Per-group summaries.
    let mut group_reports = Vec::new();
    if let (true, Some((gidx, names))) = (opts.per_group, groups) {
        let ng = names.len();
        let mut reg = vec![0u64; ng];
        let mut cast = vec![0u64; ng];
        let mut valid = vec![0u64; ng];
        let mut lead = vec![0u64; ng];
        let mut cnt = vec![0usize; ng];
        let mut extreme = vec![0usize; ng];
        for v in &views {
            let g = gidx[v.index] as usize;
            reg[g] += v.registered;
            cast[g] += v.cast;
            valid[g] += v.valid;
            lead[g] += v.leader;
            cnt[g] += 1;
            if v.turnout >= 0.99 && v.share.is_some_and(|x| x >= 0.95) {
                extreme[g] += 1;
            }
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); ng];
        for (k, &s) in with_share.iter().enumerate() {
            members[gidx[s] as usize].push(k);
        }
        for g in 0..ng {
            let m = &members[g];
            let gt: Vec<f64> = m.iter().map(|&k| ts[k]).collect();
            let gv: Vec<f64> = m.iter().map(|&k| vs[k]).collect();
            let gw: Vec<f64> = m.iter().map(|&k| ws[k]).collect();
            let bulk = m
                .iter()
                .filter(|&&k| ts[k] <= excess_votes.turnout_threshold)
                .count();
            let ex = if bulk >= 20 {
                distribution::excess_point(
                    &ex_stations,
                    m.iter().copied(),
                    excess_votes.turnout_threshold,
                )
                .0
            } else {
                f64::NAN
            };
            let gi = &io.groups[g];
            group_reports.push(GroupReport {
                name: names[g].clone(),
                stations: cnt[g],
                registered: reg[g],
                cast: cast[g],
                turnout: if reg[g] > 0 {
                    cast[g] as f64 / reg[g] as f64
                } else {
                    f64::NAN
                },
                leader_share: if valid[g] > 0 {
                    lead[g] as f64 / valid[g] as f64
                } else {
                    f64::NAN
                },
                integer_tested: gi.tested,
                integer_observed: gi.observed,
                integer_expected: gi.mc_mean,
                integer_excess: gi.observed as f64 - gi.mc_mean,
                integer_mc_sd: gi.mc_sd,
                integer_p_value: integer::mc_p_value(gi.mc_ge, io.reps),
                turnout99_share95_stations: extreme[g],
                turnout_share_correlation: util::weighted_corr(&gt, &gv, &gw),
                excess_votes_estimate: ex,
            });
        }
    }

    Ok(ForensicsReport {
        schema_version: SCHEMA_VERSION,
        seed: opts.seed,
        options: OptionsEcho {
            mc_reps: opts.mc_reps,
            bootstrap_reps: opts.bootstrap_reps,
            ci_level: opts.ci_level,
            min_voters: opts.min_voters,
            per_group: opts.per_group,
            klimek_fit: opts.klimek_fit,
            max_stations: opts.max_stations,
        },
        leader: candidates[leader].clone(),
        candidates,
        leader_index: leader,
        share_definition:
            "leader share = leader votes / valid votes; turnout = ballots cast / registered voters"
                .to_string(),
        coverage: cov,
        totals: t,
        fingerprint: fp,
        integer_test,
        digits,
        distribution,
        excess_votes,
        stations_flagged_total: flag_total,
        stations: flagged,
        groups: group_reports,
        caveats: render::general_caveats(),
        plot_data: PlotData {
            fingerprint: grid,
            share_hist_01,
            turnout_hist_01,
        },
    })
}

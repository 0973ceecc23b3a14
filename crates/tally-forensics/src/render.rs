//! Plain-text rendering of a report: short, quotable, and explicit about what it cannot show.

use crate::ForensicsReport;
use std::fmt::Write;

pub(crate) fn general_caveats() -> Vec<String> {
    vec![
        "These are statistical anomalies, not findings of fraud: each pattern also has innocent explanations \
         (local political cohesion, small or special stations, administrative rounding, data entry)."
            .to_string(),
        "Clean elections trip some tests by chance: at the 5% level, one test in twenty is expected to \
         'fire' on honest data."
            .to_string(),
        "Digit tests (2BL, last digit, C05s, P05s) have documented false positives and false negatives; \
         read them only next to the other evidence."
            .to_string(),
        "The Klimek model and the excess-vote estimate rest on assumptions about what clean stations look \
         like; their numbers are scenario figures under those assumptions."
            .to_string(),
    ]
}

fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn signed(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let r = x.round();
    if r < 0.0 {
        format!("-{}", int((-r) as u64))
    } else {
        int(r as u64)
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".to_string()
    }
}

fn pct2(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "n/a".to_string()
    }
}

fn num(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{x:.d$}")
    } else {
        "n/a".to_string()
    }
}

fn p_text(p: f64, reps: usize) -> String {
    if !p.is_finite() {
        return "n/a".to_string();
    }
    let floor = 1.0 / (reps as f64 + 1.0);
    if p <= floor + 1e-15 {
        format!(
            "p < {:.4} (no null replicate reached it)",
            1.0 / reps.max(1) as f64
        )
    } else {
        format!("p = {p:.3}")
    }
}

pub(crate) fn render_text(r: &ForensicsReport) -> String {
    let mut o = String::new();
    let lvl = (r.options.ci_level * 100.0).round();
    let _ = writeln!(o, "ELECTION FORENSICS — one round, leader: {}", r.leader);
    let _ = writeln!(
        o,
        "seed {} · {} Monte Carlo replicates · {} bootstrap replicates · intervals at {}%",
        r.seed, r.options.mc_reps, r.options.bootstrap_reps, lvl
    );
    let c = &r.coverage;
    let _ = writeln!(
        o,
        "Data: {} stations, {} used ({} skipped: registered = 0; {} skipped: no ballots cast; {} with no valid \
         votes left out of share statistics; {} with more ballots than registered voters, turnout capped at 100%).",
        int(c.stations_total as u64),
        int(c.stations_used as u64),
        int(c.skipped_registered_zero as u64),
        int(c.skipped_cast_zero as u64),
        int(c.valid_zero as u64),
        int(c.cast_above_registered as u64)
    );
    let t = &r.totals;
    let _ = writeln!(
        o,
        "Turnout {} ({} of {} registered); {} has {} of valid votes. {}.",
        pct(t.turnout),
        int(t.cast),
        int(t.registered),
        r.leader,
        pct(t.leader_share),
        r.share_definition
    );

    // Integer test.
    let it = &r.integer_test;
    let _ = writeln!(o, "\n1. ROUND PERCENTAGES (integer-percentage test)");
    let _ = writeln!(
        o,
        "   Of {} stations with at least {} ballots, {} show a turnout or {} share within ±{} points of a \
         whole percent ({} by turnout, {} by share). Chance alone gives {} ± {} (Monte Carlo mean ± SD). \
         Excess: {} stations (z = {}), {}.",
        int(it.stations_tested as u64),
        it.min_voters,
        int(it.observed),
        r.leader,
        it.window_points,
        int(it.observed_turnout),
        int(it.observed_share),
        signed(it.expected),
        num(it.mc_sd, 0),
        signed(it.excess),
        num(it.z, 1),
        p_text(it.p_value, it.reps)
    );
    let significant = it.p_value < 0.01 && it.excess > 0.0;
    if significant {
        let _ = writeln!(
            o,
            "   What this suggests: round figures are over-represented beyond what counting noise produces — the \
             pattern expected when some results were set to targets instead of being counted."
        );
    } else {
        let _ = writeln!(
            o,
            "   What this suggests: no excess of round percentages beyond chance at the 1% level."
        );
    }
    let _ = writeln!(
        o,
        "   What it cannot show: which stations are affected (about {} round values are expected by chance), nor \
         how many votes were involved.",
        signed(it.expected)
    );

    // Fingerprint.
    let fp = &r.fingerprint;
    let _ = writeln!(
        o,
        "\n2. FINGERPRINT (turnout × {} share, weighted by ballots cast)",
        r.leader
    );
    let _ = writeln!(
        o,
        "   Densest cell: turnout {}, share {}. Ballots cast at stations with turnout ≥ 80% and share ≥ 80%: {}; \
         with turnout ≥ 99% and share ≥ 95%: {}.",
        pct(fp.peak_turnout),
        pct(fp.peak_share),
        pct(fp.voters_turnout80_share80),
        pct2(fp.voters_turnout99_share95)
    );
    if let Some(f) = &fp.fit {
        let _ = writeln!(
            o,
            "   Klimek et al. stuffing model — estimator: {}.",
            f.estimator
        );
        let _ = writeln!(
            o,
            "   Incremental stuffing fi = {} [{}, {}] of stations (x ~ |N(0, {})|); extreme stuffing fe = {} [{}, {}]. \
             Clean peak: turnout {} ± {}, share {} ± {}. Unexplained background: {}.",
            pct(f.fi),
            pct(f.fi_ci[0]),
            pct(f.fi_ci[1]),
            num(f.alpha, 3),
            pct2(f.fe),
            pct2(f.fe_ci[0]),
            pct2(f.fe_ci[1]),
            pct(f.clean.mu_turnout),
            pct(f.clean.sd_turnout),
            pct(f.clean.mu_share),
            pct(f.clean.sd_share),
            pct2(f.background)
        );
        let _ = writeln!(
            o,
            "   What this suggests: {} fi measures how far the cloud is smeared towards high turnout and high \
             leader share beyond one bell-shaped peak; it is sensitive to that bell assumption (regional \
             differences alone can make it large), so quote it as a shape measure, not a share of stuffed stations.",
            if f.fe_ci[0] > 0.001 {
                "a distinct cluster of stations near 100% turnout and 100% leader share (extreme component fe) \
                 is needed to describe the data."
            } else {
                "no distinct cluster of stations near 100% turnout and 100% leader share beyond what the \
                 incremental smear explains (fe's interval reaches zero)."
            }
        );
        let _ = writeln!(
            o,
            "   What it cannot show: a correlation of turnout and support can also come from genuine regional \
             differences; fi and fe are model parameters, not counts of falsified stations. Intervals hold the clean \
             peak's shape at its estimate."
        );
    }

    // Digits.
    let _ = writeln!(
        o,
        "\n3. DIGITS (per candidate; counts ≥ 10; [{}% bootstrap interval], * = reference value outside it)",
        lvl
    );
    let _ = writeln!(
        o,
        "   {:<16} {:>22} {:>22} {:>20} {:>20}",
        "candidate", "2nd digit (4.187)", "last digit (4.5)", "C05s (0.2)", "P05s (~0.2)"
    );
    for d in &r.digits {
        let cellf = |s: &crate::DigitStat, dp: usize| {
            format!(
                "{}{} [{}, {}]",
                num(s.value, dp),
                if s.outside_ci { "*" } else { " " },
                num(s.ci[0], dp),
                num(s.ci[1], dp)
            )
        };
        let _ = writeln!(
            o,
            "   {:<16} {:>22} {:>22} {:>20} {:>20}",
            d.candidate,
            cellf(&d.second_digit, 2),
            cellf(&d.last_digit, 2),
            cellf(&d.c05, 3),
            cellf(&d.p05, 3)
        );
    }
    let _ = writeln!(
        o,
        "   Caveat: digit tests are known to flag clean elections (strategic voting, small counts, skewed \
         station sizes shift 2nd-digit means) and to miss real manipulation; P05s depends on the size of the \
         percentages. Treat a '*' as a prompt to look, not as evidence on its own."
    );

    // Distributions.
    let d = &r.distribution;
    let _ = writeln!(o, "\n4. DISTRIBUTIONS (stations counted once each)");
    for (name, s) in [("turnout", &d.turnout), ("leader share", &d.leader_share)] {
        let modes: Vec<String> = s.modes.iter().map(|m| pct(*m)).collect();
        let _ = writeln!(
            o,
            "   {:<13} mean {} sd {} skewness {} excess kurtosis {} bimodality coefficient {}{} modes at {}",
            name,
            pct(s.mean),
            pct(s.sd),
            num(s.skewness, 2),
            num(s.excess_kurtosis, 2),
            num(s.bimodality_coefficient, 3),
            if s.bimodality_coefficient > 5.0 / 9.0 {
                " (> 0.555)"
            } else {
                ""
            },
            if modes.is_empty() {
                "n/a".to_string()
            } else {
                modes.join(", ")
            }
        );
    }
    let _ = writeln!(
        o,
        "   Correlation of turnout with {} share (weighted by ballots): {}.",
        r.leader,
        num(d.turnout_share_correlation, 3)
    );
    let e = &r.excess_votes;
    let _ = writeln!(
        o,
        "   Excess votes (Shpilkin-type): above the modal turnout {} ({} stations), the leader has {} votes; had those \
         stations voted like the bulk ({} for the leader, opponents as counted), the leader would have {} fewer: \
         {} [{}, {}], {} of valid votes. Leader's share {} -> {} under this scenario.",
        pct(e.turnout_threshold),
        int(e.stations_above as u64),
        int(e.leader_votes_above),
        pct(e.bulk_leader_share),
        signed(e.estimate),
        signed(e.estimate),
        signed(e.ci[0]),
        signed(e.ci[1]),
        pct(e.fraction_of_valid),
        pct(e.observed_leader_share),
        pct(e.counterfactual_leader_share)
    );
    for a in &e.assumptions {
        let _ = writeln!(o, "   Assumption: {a}");
    }

    // Stations.
    let _ = writeln!(
        o,
        "\n5. STATIONS: {} stations have at least one reason to look closer; the top {} by score:",
        int(r.stations_flagged_total as u64),
        r.stations.len().min(10)
    );
    for s in r.stations.iter().take(10) {
        let _ = writeln!(
            o,
            "   #{:<3} {:<40} turnout {} share {} ({} ballots) — {}",
            s.rank,
            s.station_id,
            pct(s.turnout),
            pct(s.leader_share),
            int(s.cast),
            s.reasons.join(", ")
        );
    }

    // Areas.
    if !r.groups.is_empty() {
        let mut idx: Vec<usize> = (0..r.groups.len()).collect();
        let z = |g: &crate::GroupReport| {
            if g.integer_mc_sd > 0.0 {
                g.integer_excess / g.integer_mc_sd
            } else {
                0.0
            }
        };
        idx.sort_by(|&a, &b| z(&r.groups[b]).total_cmp(&z(&r.groups[a])).then(a.cmp(&b)));
        let _ = writeln!(
            o,
            "\n6. AREAS ({} in total), the 10 with the largest integer-percentage excess (in SDs):",
            r.groups.len()
        );
        for &i in idx.iter().take(10) {
            let g = &r.groups[i];
            let _ = writeln!(
                o,
                "   {:<40} {:>6} stations, turnout {}, share {}, round values {} vs {} expected ({}), turnout≥99%&share≥95%: {}",
                g.name,
                int(g.stations as u64),
                pct(g.turnout),
                pct(g.leader_share),
                int(g.integer_observed),
                num(g.integer_expected, 1),
                p_text(g.integer_p_value, r.options.mc_reps),
                g.turnout99_share95_stations
            );
        }
        let _ = writeln!(
            o,
            "   Many areas are tested at once: expect about {} of them below p = 0.05 by chance.",
            num(r.groups.len() as f64 * 0.05, 0)
        );
    }

    let _ = writeln!(o, "\nCAVEATS");
    for c in &r.caveats {
        let _ = writeln!(o, " - {c}");
    }
    o
}

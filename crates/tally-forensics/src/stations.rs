//! Ranked list of anomalous stations, with reasons, and its CSV export.

use serde::Serialize;
use std::io::{self, Write};

/// Reason code: turnout >= 99% and leader share >= 95%.
pub const REASON_TURNOUT99_SHARE95: &str = "TURNOUT_GE_99_AND_SHARE_GE_95";
/// Reason code: turnout within ±0.05 points of a whole percent.
pub const REASON_INTEGER_TURNOUT: &str = "INTEGER_PERCENT_TURNOUT";
/// Reason code: leader share within ±0.05 points of a whole percent.
pub const REASON_INTEGER_SHARE: &str = "INTEGER_PERCENT_SHARE";
/// Reason code: turnout far from the group's median (robust z >= 4).
pub const REASON_OUTLIER_TURNOUT: &str = "TURNOUT_OUTLIER_IN_GROUP";
/// Reason code: leader share far from the group's median (robust z >= 4).
pub const REASON_OUTLIER_SHARE: &str = "SHARE_OUTLIER_IN_GROUP";

/// Robust z-score (median / 1.4826 MAD) above which a station is an outlier in its group.
pub const OUTLIER_Z: f64 = 4.0;
/// Groups with fewer stations than this are not used for neighbour comparisons.
pub const MIN_GROUP_FOR_OUTLIERS: usize = 8;

/// One flagged station. Field names are part of the JSON schema and the CSV header.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlaggedStation {
    pub rank: usize,
    pub station_id: String,
    pub group: Option<String>,
    pub registered: u64,
    pub cast: u64,
    pub valid: u64,
    pub leader_votes: u64,
    pub turnout: f64,
    pub leader_share: f64,
    /// Robust z-score of turnout against the station's group (None without groups or small groups).
    pub turnout_z: Option<f64>,
    /// Robust z-score of leader share against the station's group.
    pub share_z: Option<f64>,
    /// Ordering score: 2 for turnout>=99% & share>=95%, 1 for an integer percentage, and
    /// (|z| - 3)/2 (capped at 3) for a neighbour outlier; summed.
    pub score: f64,
    pub reasons: Vec<String>,
}

/// Per-station inputs for flagging.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StationView {
    pub index: usize,
    pub registered: u64,
    pub cast: u64,
    pub valid: u64,
    pub leader: u64,
    pub turnout: f64,
    pub share: Option<f64>,
    pub group: Option<u32>,
    pub integer_turnout: bool,
    pub integer_share: bool,
}

fn median_mad(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let med = crate::util::quantile_sorted(values, 0.5);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    (med, 1.4826 * crate::util::quantile_sorted(&dev, 0.5))
}

/// Flags stations; returns (total flagged, top `max` flagged, ranked).
pub(crate) fn flag(
    views: &[StationView],
    station_ids: &tally_model::StationIds,
    group_names: Option<&[String]>,
    max: usize,
) -> (usize, Vec<FlaggedStation>) {
    // Group robust centres and scales.
    let n_groups = group_names.map_or(0, |g| g.len());
    let mut per_group_t: Vec<Vec<f64>> = vec![Vec::new(); n_groups];
    let mut per_group_s: Vec<Vec<f64>> = vec![Vec::new(); n_groups];
    for v in views {
        if let Some(g) = v.group {
            per_group_t[g as usize].push(v.turnout);
            if let Some(s) = v.share {
                per_group_s[g as usize].push(s);
            }
        }
    }
    let scale_floor = 0.01; // one point: avoids huge z in very homogeneous groups
    let centre = |vals: &mut Vec<f64>| -> Option<(f64, f64)> {
        if vals.len() < MIN_GROUP_FOR_OUTLIERS {
            return None;
        }
        let (m, s) = median_mad(vals);
        Some((m, s.max(scale_floor)))
    };
    let gt: Vec<Option<(f64, f64)>> = per_group_t.iter_mut().map(centre).collect();
    let gs: Vec<Option<(f64, f64)>> = per_group_s.iter_mut().map(centre).collect();

    let mut flagged = Vec::new();
    for v in views {
        let mut reasons = Vec::new();
        let mut score = 0.0;
        if v.turnout >= 0.99 && v.share.is_some_and(|s| s >= 0.95) {
            reasons.push(REASON_TURNOUT99_SHARE95.to_string());
            score += 2.0;
        }
        if v.integer_turnout {
            reasons.push(REASON_INTEGER_TURNOUT.to_string());
        }
        if v.integer_share {
            reasons.push(REASON_INTEGER_SHARE.to_string());
        }
        if v.integer_turnout || v.integer_share {
            score += 1.0;
        }
        let tz = v
            .group
            .and_then(|g| gt[g as usize])
            .map(|(m, s)| (v.turnout - m) / s);
        let sz = match (v.group, v.share) {
            (Some(g), Some(sh)) => gs[g as usize].map(|(m, s)| (sh - m) / s),
            _ => None,
        };
        let mut zmax: f64 = 0.0;
        if let Some(z) = tz {
            if z.abs() >= OUTLIER_Z {
                reasons.push(REASON_OUTLIER_TURNOUT.to_string());
                zmax = zmax.max(z.abs());
            }
        }
        if let Some(z) = sz {
            if z.abs() >= OUTLIER_Z {
                reasons.push(REASON_OUTLIER_SHARE.to_string());
                zmax = zmax.max(z.abs());
            }
        }
        if zmax > 0.0 {
            score += ((zmax - 3.0) / 2.0).min(3.0);
        }
        if reasons.is_empty() {
            continue;
        }
        flagged.push(FlaggedStation {
            rank: 0,
            station_id: station_ids[v.index].to_string(),
            group: v
                .group
                .and_then(|g| group_names.map(|names| names[g as usize].clone())),
            registered: v.registered,
            cast: v.cast,
            valid: v.valid,
            leader_votes: v.leader,
            turnout: v.turnout,
            leader_share: v.share.unwrap_or(f64::NAN),
            turnout_z: tz.map(|z| crate::util::round_to(z, 3)),
            share_z: sz.map(|z| crate::util::round_to(z, 3)),
            score: crate::util::round_to(score, 6),
            reasons,
        });
    }
    // Deterministic order: score descending, then larger stations first, then input order.
    flagged.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.cast.cmp(&a.cast))
            .then(a.station_id.cmp(&b.station_id))
    });
    let total = flagged.len();
    flagged.truncate(max);
    for (i, f) in flagged.iter_mut().enumerate() {
        f.rank = i + 1;
    }
    (total, flagged)
}

/// A CSV field, quoted when needed; text a spreadsheet would run as a formula gets a leading
/// `'` (`tally_model::report::csv_text`).
fn csv_field(s: &str) -> String {
    let s = &*tally_model::report::csv_text(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt_num(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}

/// Writes the flagged stations of a report as CSV (header + one row per station; reasons joined by `;`).
pub fn write_stations_csv<W: Write>(report: &crate::ForensicsReport, mut out: W) -> io::Result<()> {
    writeln!(
        out,
        "rank,station_id,group,registered,cast,valid,leader_votes,turnout,leader_share,turnout_z,share_z,score,reasons"
    )?;
    for f in &report.stations {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{:.6},{:.6},{},{},{},{}",
            f.rank,
            csv_field(&f.station_id),
            csv_field(f.group.as_deref().unwrap_or("")),
            f.registered,
            f.cast,
            f.valid,
            f.leader_votes,
            f.turnout,
            f.leader_share,
            opt_num(f.turnout_z),
            opt_num(f.share_z),
            f.score,
            csv_field(&f.reasons.join(";")),
        )?;
    }
    Ok(())
}

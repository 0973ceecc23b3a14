//! When the official source is coarser than the other (official results by district,
//! observers' copies by ballot box): the other source is summed to the official units through
//! the area paths, units are matched with `match_stations` on their folded path, and each unit
//! is compared exactly where every box was observed, or checked against the bound everywhere
//! else (observers' count for a candidate can never exceed the official total of the area).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tally_model::{match_stations, AreaId, Round, SheetStatus};

use crate::{
    classify, codes_of, counted_votes, finish, AreaAcc, Class, Difference, FieldDiff, FinishInput,
    Kind, OneSided, Options, ReconcileError, Reconciliation, Side, StationCounts, MISSING,
};

/// What the comparison of one official unit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Observers count more votes for some candidate (or more valid votes) than the official
    /// total of the unit: impossible if both are right.
    BoundViolated,
    /// Every box observed, the sums equal the official figures.
    ExactAgree,
    /// Every box observed, the sums differ from the official figures.
    ExactDiffer,
    /// Some boxes observed (or the number of boxes is unknown): the bound holds.
    BoundOk,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitCheck {
    /// The official unit's station id and area path.
    pub station_id: String,
    pub area: String,
    pub check: Check,
    /// Boxes the official side says the unit has (from the ballot-box counts given), if known.
    pub boxes_known: Option<u64>,
    /// Boxes of the unit in the other source, and those with a counted sheet.
    pub boxes_in_other: u64,
    pub boxes_observed: u64,
    /// `boxes_observed / boxes_known`.
    pub coverage: Option<f64>,
    /// Every known box observed: the unit was compared exactly (its check may still be
    /// `bound_violated`, which is listed first).
    pub complete: bool,
    /// The fields that break the bound, or that differ where the unit is complete.
    pub fields: Vec<FieldDiff>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Aggregated {
    /// The official source's finest level, to which the other source was summed.
    pub level: String,
    pub units_official: u64,
    pub units_observed: u64,
    pub units_complete: u64,
    pub units_partial: u64,
    pub boxes_known: Option<u64>,
    pub boxes_observed: u64,
    /// Units of the other source that no official unit matches (their folded paths differ).
    pub unmatched_other: Vec<String>,
    /// Units where the observers count more than the official total: strong evidence, first.
    pub bound_violations: Vec<UnitCheck>,
    /// Every observed official unit, in the official order.
    pub units: Vec<UnitCheck>,
}

/// Area names as a matching key: case, the Turkish dotted and dotless i, and the common
/// diacritics folded, so that "Çukurova" meets "ÇUKUROVA", "Adıyaman" "ADIYAMAN" and
/// "Eyyubiye" "EYYÜBİYE" (sources of one country differ in case and in spelling; Unicode's
/// default case mapping turns `İ` into `i̇`, which would meet nothing).
pub fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.trim().chars() {
        let plain = match ch {
            'İ' | 'I' | 'ı' | 'i' | 'î' | 'Î' | 'í' | 'Í' => 'i',
            'ç' | 'Ç' | 'ć' | 'Ć' => 'c',
            'ğ' | 'Ğ' => 'g',
            'ö' | 'Ö' | 'ó' | 'Ó' | 'ô' | 'Ô' => 'o',
            'ş' | 'Ş' | 'ś' | 'Ś' => 's',
            'ü' | 'Ü' | 'û' | 'Û' | 'ú' | 'Ú' => 'u',
            'â' | 'Â' | 'á' | 'Á' | 'ą' | 'Ą' => 'a',
            'é' | 'É' | 'ę' | 'Ę' => 'e',
            'ł' | 'Ł' => 'l',
            'ń' | 'Ń' => 'n',
            'ż' | 'Ż' | 'ź' | 'Ź' => 'z',
            '\u{307}' => continue,
            c => {
                out.extend(c.to_lowercase().filter(|&l| l != '\u{307}'));
                continue;
            }
        };
        out.push(plain);
    }
    out
}

/// The folded path of a node. A name that repeats its parent's name before a space loses that
/// prefix: one source writes the central district of Amasya "AMASYA MERKEZ", another "Merkez".
fn folded_path(r: &Round, node: AreaId) -> String {
    let mut parts: Vec<String> = Vec::new();
    for name in r.tree.path(node) {
        let f = fold(name);
        let f = match parts.last() {
            Some(parent) => f
                .strip_prefix(parent.as_str())
                .and_then(|rest| rest.strip_prefix(' '))
                .map_or(f.clone(), str::to_string),
            None => f,
        };
        parts.push(f);
    }
    parts.join("/")
}

pub(crate) fn reconcile_aggregated(
    official: Side<'_>,
    other: Side<'_>,
    opts: &Options<'_>,
    map: &[usize],
    depth: Option<u8>,
) -> Result<Reconciliation, ReconcileError> {
    let (a, b) = (official.round, other.round);
    let k = a.candidates.len();
    let ids: Vec<String> = a.candidates.iter().map(|c| c.id.clone()).collect();
    let d = a.tree.levels.len() as u8;
    // The other source's boxes summed to its nodes at the official depth.
    let mut unit_of_node: HashMap<AreaId, usize> = HashMap::new();
    let mut unit_keys: Vec<String> = Vec::new();
    let mut unit_paths: Vec<String> = Vec::new();
    let mut unit_boxes: Vec<[u64; 2]> = Vec::new();
    let mut unit_votes: Vec<Vec<u64>> = Vec::new();
    let mut unit_valid: Vec<u64> = Vec::new();
    for j in 0..b.len() {
        let node = b.tree.ancestor_at(b.stations.area[j], d);
        let u = *unit_of_node.entry(node).or_insert_with(|| {
            unit_keys.push(folded_path(b, node));
            unit_paths.push(b.tree.path_string(node));
            unit_boxes.push([0, 0]);
            unit_votes.push(vec![0; k]);
            unit_valid.push(0);
            unit_keys.len() - 1
        });
        unit_boxes[u][0] += 1;
        if b.stations.status[j] == SheetStatus::Counted {
            unit_boxes[u][1] += 1;
            let v = b.votes_of(j);
            for x in 0..k {
                unit_votes[u][x] += u64::from(v[map[x]]);
            }
            unit_valid[u] += v.iter().map(|&x| u64::from(x)).sum::<u64>();
        }
    }
    let official_keys: Vec<String> = (0..a.len())
        .map(|i| folded_path(a, a.stations.area[i]))
        .collect();
    let m = match_stations(&official_keys, &unit_keys);
    let mut partner: Vec<Option<usize>> = vec![None; a.len()];
    for &(i, u) in &m.pairs {
        partner[i] = Some(u);
    }
    let mut counts = StationCounts::matched(&official, &other, &m);
    let level_depth = depth.unwrap_or(d);
    let mut areas = AreaAcc::default();
    let mut net = vec![0i64; k];
    let mut units = Vec::new();
    let mut differences = Vec::new();
    let mut one_sided = Vec::new();
    let mut kinds: BTreeMap<Kind, u64> = BTreeMap::new();
    let (mut complete, mut partial, mut observed_units) = (0u64, 0u64, 0u64);
    let (mut stake_stations, mut stake_votes) = (0u64, 0u64);
    let mut boxes_known_total: Option<u64> = opts.boxes.map(|_| 0);
    let mut boxes_observed_total = 0u64;
    for (i, &p) in partner.iter().enumerate() {
        let id = &a.stations.ids[i];
        let area = a.tree.path_string(a.stations.area[i]);
        let level_area = a
            .tree
            .path_string(a.tree.ancestor_at(a.stations.area[i], level_depth));
        let known = opts.boxes.and_then(|bx| bx.get(id).copied());
        if let (Some(t), Some(n)) = (boxes_known_total.as_mut(), known) {
            *t += n;
        }
        let counted = a.stations.status[i] == SheetStatus::Counted;
        let (in_other, observed) = p.map_or((0, 0), |u| (unit_boxes[u][0], unit_boxes[u][1]));
        boxes_observed_total += observed;
        if !counted || observed == 0 {
            let class = if counted {
                Class::OnlyOfficial
            } else {
                Class::MissingBoth
            };
            match class {
                Class::OnlyOfficial => counts.only_official += 1,
                _ => counts.missing_both += 1,
            }
            if depth.is_some() {
                areas.add(level_area, class, None, k);
            }
            // The unit-level list would repeat every unobserved district; only units that the
            // official side does not count are worth listing.
            if !counted {
                one_sided.push(OneSided {
                    station_id: id.to_string(),
                    area,
                    class,
                    status_official: Some(a.stations.status[i]),
                    status_other: None,
                    codes_official: codes_of(&official, id),
                    codes_other: Vec::new(),
                });
            }
            continue;
        }
        observed_units += 1;
        let u = p.unwrap_or(0);
        let va: Vec<u64> = a.votes_of(i).iter().map(|&v| u64::from(v)).collect();
        let vb = &unit_votes[u];
        let valid_a = a.stations.valid[i];
        let mut over: Vec<FieldDiff> = (0..k)
            .filter(|&x| vb[x] > va[x])
            .map(|x| FieldDiff {
                field: format!("votes.{}", ids[x]),
                official: va[x],
                other: vb[x],
            })
            .collect();
        if valid_a != MISSING && unit_valid[u] > u64::from(valid_a) {
            over.push(FieldDiff {
                field: "valid".into(),
                official: valid_a.into(),
                other: unit_valid[u],
            });
        }
        let is_complete = known.is_some_and(|n| n == observed);
        let unit_stake = [
            a.stations.cast[i],
            a.stations.registered[i],
            a.stations.valid[i],
        ]
        .into_iter()
        .find(|&v| v != MISSING)
        .map(u64::from)
        .unwrap_or_else(|| va.iter().sum());
        let mut check = if over.is_empty() {
            Check::BoundOk
        } else {
            Check::BoundViolated
        };
        let mut fields = over;
        if is_complete {
            complete += 1;
            let d: Vec<i64> = (0..k).map(|x| vb[x] as i64 - va[x] as i64).collect();
            net.iter_mut().zip(&d).for_each(|(n, x)| *n += x);
            let diff: Vec<FieldDiff> = (0..k)
                .filter(|&x| vb[x] != va[x])
                .map(|x| FieldDiff {
                    field: format!("votes.{}", ids[x]),
                    official: va[x],
                    other: vb[x],
                })
                .collect();
            let class = if diff.is_empty() {
                counts.agree += 1;
                if check != Check::BoundViolated {
                    check = Check::ExactAgree;
                }
                Class::Agree
            } else {
                counts.differ += 1;
                if check != Check::BoundViolated {
                    check = Check::ExactDiffer;
                }
                let c = classify(&va, vb).unwrap_or(crate::Classification {
                    kind: Kind::Other,
                    confidence: 1.0,
                    also: Vec::new(),
                });
                *kinds.entry(c.kind).or_default() += 1;
                differences.push(Difference {
                    station_id: id.to_string(),
                    area: area.clone(),
                    kind: c.kind,
                    confidence: c.confidence,
                    also: c.also,
                    fields: diff.clone(),
                    size: d.iter().map(|x| x.unsigned_abs()).sum(),
                    net: ids.iter().cloned().zip(d.iter().copied()).collect(),
                    codes_official: codes_of(&official, id),
                    codes_other: Vec::new(),
                });
                fields = diff;
                Class::Differ
            };
            if depth.is_some() {
                areas.add(level_area, class, Some(&d), k);
            }
        } else {
            partial += 1;
            if depth.is_some() {
                // Neither compared nor one-sided: the area is listed, its counts unchanged.
                areas.add(level_area, Class::MissingBoth, None, k);
            }
        }
        if check == Check::BoundViolated || check == Check::ExactDiffer {
            stake_stations += 1;
            stake_votes += unit_stake;
        }
        units.push(UnitCheck {
            station_id: id.to_string(),
            area,
            check,
            boxes_known: known,
            boxes_in_other: in_other,
            boxes_observed: observed,
            coverage: known.filter(|&n| n > 0).map(|n| observed as f64 / n as f64),
            complete: is_complete,
            fields,
        });
    }
    // Observed units without an official partner: the other source counts votes in an area
    // the official results do not name.
    let mut unmatched_other = Vec::new();
    for &u in &m.only_b {
        if unit_boxes[u][1] > 0 {
            counts.only_other += 1;
            unmatched_other.push(unit_paths[u].clone());
        }
    }
    counts.compared = counts.agree + counts.differ;
    differences.sort_by(|x, y| y.size.cmp(&x.size).then(x.station_id.cmp(&y.station_id)));
    let bound_violations: Vec<UnitCheck> = units
        .iter()
        .filter(|u| u.check == Check::BoundViolated)
        .cloned()
        .collect();
    let official_votes = counted_votes(a, None);
    let other_source_votes = counted_votes(b, Some(map));
    let replaced: Vec<u64> = (0..k)
        .map(|x| (official_votes[x] as i64 + net[x]) as u64)
        .collect();
    let aggregated = Aggregated {
        level: a.tree.levels.last().cloned().unwrap_or_default(),
        units_official: a.len() as u64,
        units_observed: observed_units,
        units_complete: complete,
        units_partial: partial,
        boxes_known: boxes_known_total,
        boxes_observed: boxes_observed_total,
        unmatched_other,
        bound_violations,
        units,
    };
    let mut r = finish(
        FinishInput {
            official: a,
            rule: opts.rule,
            mode: "aggregated",
            counts,
            kinds,
            differences,
            one_sided,
            net,
            official_votes,
            replaced,
            other_source_votes,
            stake_stations,
            stake_votes,
        },
        Some(aggregated),
    );
    if depth.is_some() {
        r.areas = Some(areas.finish(&r.candidates, crate::lead_pair(&r)));
    }
    r.sentence = crate::sentence(&r);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_meets_turkish_capitals() {
        assert_eq!(fold("Çukurova"), fold("ÇUKUROVA"));
        assert_eq!(fold("Adıyaman"), fold("ADIYAMAN"));
        assert_eq!(fold("İstanbul"), fold("ISTANBUL"));
        assert_eq!(fold("Şişli"), fold("ŞİŞLİ"));
        assert_eq!(fold("Eyyubiye"), fold("EYYÜBİYE"));
        assert_ne!(fold("Adana"), fold("Ankara"));
    }
}

//! Validation of tally sheets: the arithmetic of one sheet, duplicates within a source, and
//! consistency between rounds. Every rule has a stable [`Code`].
//!
//! All comparisons are exact integer arithmetic; thresholds are in permille of an integer base.

use crate::codes::{Code, Severity};
use crate::round::{SheetCounts, StoredCount, MISSING};
use crate::station_ids::IdList;
use serde::Serialize;

/// A rule broken by a sheet, with the numbers that broke it and the fields it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub detail: String,
    /// The sheet's fields the finding is about: `registered`, `cast`, `invalid`, `valid`,
    /// `votes.<candidate id>`, `station_id`... Empty when it is about the sheet as a whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Finding {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Finding {
            code,
            detail: detail.into(),
            fields: Vec::new(),
        }
    }

    /// A finding about the named fields of a sheet.
    pub fn on<I, S>(code: Code, fields: I, detail: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Finding {
            code,
            detail: detail.into(),
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.code.severity() == Severity::Error
    }
}

/// One tally sheet as a parser hands it over: `MISSING` wherever the source has no value.
/// Every source of sheets (a CSV row, an HTTP request, a NIST unit) fills this and calls
/// [`validate_sheet`]; nothing else decides whether a sheet counts.
#[derive(Debug, PartialEq, Eq)]
pub struct SheetInput<'a> {
    /// registered, cast, invalid, valid.
    pub core: [StoredCount; 4],
    /// One count per candidate on this round's ballot, in the round's order.
    pub votes: &'a mut [StoredCount],
    /// The candidates' ids, in the same order (for messages and field names).
    pub candidates: &'a [&'a str],
}

/// What [`validate_sheet`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted (with warnings when some were appended).
    Accepted,
    /// Held back: at least one error was appended.
    Quarantined,
}

/// The one validation of a tally sheet, wherever it comes from.
///
/// First resolves absent candidate counts in place: when the present ones already add up to
/// `valid` the absent ones are 0, and when exactly one is absent it is the rest of `valid`
/// (W208); otherwise the sheet is incomplete (E110). Then checks the sheet's arithmetic
/// ([`check_sheet`]: E102-E104, W201-W206). Findings are appended to `out`.
pub fn validate_sheet(
    sheet: &mut SheetInput<'_>,
    cfg: &ValidationConfig,
    out: &mut Vec<Finding>,
) -> Verdict {
    let before = out.len();
    if sheet.votes.contains(&MISSING) && !resolve_absent_votes(sheet, out) {
        return Verdict::Quarantined;
    }
    let opt = |v: StoredCount| (v != MISSING).then_some(u64::from(v));
    let counts = SheetCounts {
        registered: opt(sheet.core[0]),
        cast: opt(sheet.core[1]),
        invalid: opt(sheet.core[2]),
        valid: opt(sheet.core[3]),
        votes: sheet.votes,
    };
    check_sheet(&counts, sheet.candidates, cfg, out);
    if out[before..].iter().any(Finding::is_error) {
        Verdict::Quarantined
    } else {
        Verdict::Accepted
    }
}

/// W208 or E110 (see [`validate_sheet`]); false when the sheet is incomplete.
fn resolve_absent_votes(sheet: &mut SheetInput<'_>, out: &mut Vec<Finding>) -> bool {
    let absent: Vec<usize> = (0..sheet.votes.len())
        .filter(|&j| sheet.votes[j] == MISSING)
        .collect();
    let fields: Vec<String> = absent
        .iter()
        .map(|&j| format!("votes.{}", sheet.candidates.get(j).unwrap_or(&"?")))
        .collect();
    let names: Vec<&str> = absent
        .iter()
        .map(|&j| *sheet.candidates.get(j).unwrap_or(&"?"))
        .collect();
    let valid = sheet.core[3];
    let present: u64 = sheet
        .votes
        .iter()
        .filter(|&&v| v != MISSING)
        .map(|&v| u64::from(v))
        .sum();
    // The rest is at most `valid`, a stored count, so it fits one.
    let rest = (valid != MISSING)
        .then(|| StoredCount::try_from(u64::from(valid).checked_sub(present)?).ok())
        .flatten();
    match rest {
        Some(rest) if rest == 0 || absent.len() == 1 => {
            absent.iter().for_each(|&j| sheet.votes[j] = rest);
            out.push(Finding::on(
                Code::W208,
                fields,
                format!(
                    "no count for {} in the source; {rest} implied by valid {valid}",
                    names.join(", ")
                ),
            ));
            true
        }
        _ => {
            out.push(Finding::on(
                Code::E110,
                fields,
                format!(
                    "no count for {}{}",
                    names.join(", "),
                    if valid == MISSING {
                        " and no valid total to imply it"
                    } else {
                        ", and the valid total does not determine it"
                    }
                ),
            ));
            false
        }
    }
}

/// Thresholds of the rules. Defaults are stated in docs/validation-codes.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationConfig {
    /// E104/W206: cast may exceed registered by `max(abs, permille * registered / 1000)`
    /// (voters added on the day, e.g. with a certificate) before the sheet is an error.
    pub over_registered_abs: u64,
    pub over_registered_permille: u64,
    /// W201: turnout at or above this (permille of registered).
    pub high_turnout_permille: u64,
    /// W202: one candidate at or above this (permille of valid).
    pub dominant_share_permille: u64,
    /// W203: invalid ballots at or above this (permille of cast).
    pub invalid_share_permille: u64,
    /// W205: registered may change between rounds by `max(abs, permille * registered / 1000)`.
    pub registered_change_abs: u64,
    pub registered_change_permille: u64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            over_registered_abs: 0,
            over_registered_permille: 10,
            high_turnout_permille: 990,
            dominant_share_permille: 990,
            invalid_share_permille: 100,
            registered_change_abs: 10,
            registered_change_permille: 50,
        }
    }
}

/// Checks one complete sheet's arithmetic (part of [`validate_sheet`]). Errors (E1xx) and
/// warnings (W2xx) are appended to `out`; a check whose inputs are absent from the source is
/// skipped, not failed. `candidates` names the vote counts in messages (may be empty).
pub fn check_sheet(
    s: &SheetCounts<'_>,
    candidates: &[&str],
    cfg: &ValidationConfig,
    out: &mut Vec<Finding>,
) {
    let sum: u64 = s.votes.iter().map(|&v| u64::from(v)).sum();
    if let Some(valid) = s.valid {
        if sum != valid {
            let mut fields = vec!["valid".to_string()];
            fields.extend((0..s.votes.len()).map(|j| vote_field(candidates, j)));
            out.push(Finding::on(
                Code::E102,
                fields,
                format!(
                    "candidate votes add up to {sum} but valid is {valid} (difference {})",
                    sum as i128 - valid as i128
                ),
            ));
        }
    }
    if let (Some(valid), Some(invalid), Some(cast)) = (s.valid, s.invalid, s.cast) {
        if valid + invalid != cast {
            out.push(Finding::on(
                Code::E103,
                ["valid", "invalid", "cast"],
                format!(
                    "valid {valid} + invalid {invalid} = {} but cast is {cast}",
                    valid + invalid
                ),
            ));
        }
    }
    if let (Some(cast), Some(registered)) = (s.cast, s.registered) {
        if cast > registered {
            let allowed = cfg
                .over_registered_abs
                .max(registered * cfg.over_registered_permille / 1000);
            let over = cast - registered;
            let (code, verdict) = if over > allowed {
                (Code::E104, "beyond")
            } else {
                (Code::W206, "within")
            };
            out.push(Finding::on(
                code,
                ["cast", "registered"],
                format!(
                    "cast {cast} > registered {registered} by {over}, {verdict} the tolerance of {allowed}"
                ),
            ));
        } else if registered > 0 && cast * 1000 >= registered * cfg.high_turnout_permille {
            out.push(Finding::on(
                Code::W201,
                ["cast", "registered"],
                format!(
                    "turnout {cast}/{registered} = {}",
                    permille_text(cast, registered)
                ),
            ));
        }
        if cast == 0 && registered > 0 {
            out.push(Finding::on(
                Code::W204,
                ["cast"],
                format!("no ballot cast out of {registered} registered"),
            ));
        }
    }
    // W202 is about the candidates' shares among themselves; E102 covers a wrong `valid`.
    let base = sum;
    if base > 0 {
        if let Some((i, &top)) = s.votes.iter().enumerate().max_by_key(|(_, v)| **v) {
            let top = u64::from(top);
            if top * 1000 >= base * cfg.dominant_share_permille {
                out.push(Finding::on(
                    Code::W202,
                    [vote_field(candidates, i)],
                    format!(
                        "candidate {} has {top} of {base} valid votes = {}",
                        candidates
                            .get(i)
                            .map_or(format!("#{}", i + 1), |c| c.to_string()),
                        permille_text(top, base)
                    ),
                ));
            }
        }
    }
    if let (Some(invalid), Some(cast)) = (s.invalid, s.cast) {
        if cast > 0 && invalid <= cast && invalid * 1000 >= cast * cfg.invalid_share_permille {
            out.push(Finding::on(
                Code::W203,
                ["invalid", "cast"],
                format!(
                    "invalid {invalid} of cast {cast} = {}",
                    permille_text(invalid, cast)
                ),
            ));
        }
    }
}

/// A station id as Tally compares it: Unicode NFC (an accent typed as two code points is one),
/// fullwidth ASCII (`Ｓ１`, typed on an East Asian keyboard) as plain ASCII, and no invisible
/// characters (zero-width space, joiners, byte-order mark), so one station typed on two keyboards
/// is one station. Other characters are kept as they are: full NFKC would also rewrite ordinary
/// text such as `№` into `No`. `None` when the id is already in that form (every ASCII id is,
/// and costs one scan).
pub fn normalise_station_id(id: &str) -> Option<String> {
    if id.is_ascii() {
        return None;
    }
    use unicode_normalization::UnicodeNormalization;
    let out: String = id
        .nfc()
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'))
        .map(|c| match c {
            // U+FF01..U+FF5E are the fullwidth forms of U+0021..U+007E; U+3000 is a wide space.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect();
    (out != id).then_some(out)
}

/// W210 for an id that [`normalise_station_id`] changed.
pub fn normalised_id_finding(raw: &str, normalised: &str) -> Finding {
    Finding::on(
        Code::W210,
        ["station_id"],
        format!(
            "station id {raw:?} has invisible or compatibility characters; read as {normalised:?}"
        ),
    )
}

/// `votes.<id>`, or `votes.#<position>` when the id is not known.
fn vote_field(candidates: &[&str], j: usize) -> String {
    match candidates.get(j) {
        Some(id) => format!("votes.{id}"),
        None => format!("votes.#{}", j + 1),
    }
}

/// W205: registered voters of one station in round 1 and round 2.
pub fn check_registered_between_rounds(
    r1: u64,
    r2: u64,
    cfg: &ValidationConfig,
) -> Option<Finding> {
    let diff = r1.abs_diff(r2);
    let allowed = cfg
        .registered_change_abs
        .max(r1.min(r2) * cfg.registered_change_permille / 1000);
    (diff > allowed).then(|| {
        Finding::on(
            Code::W205,
            ["registered"],
            format!("registered {r1} in round 1 and {r2} in round 2 (difference {diff}, tolerance {allowed})"),
        )
    })
}

/// "12.34%" from an exact ratio, for messages only.
pub fn permille_text(num: u64, den: u64) -> String {
    if den == 0 {
        return "n/a".into();
    }
    format!("{:.2}%", 100.0 * num as f64 / den as f64)
}

/// A group of rows that share a station id in one source, as found by [`find_duplicates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Duplicate {
    /// Identical numbers: keep the first row, report the others (W207).
    Identical { keep: usize, drop: Vec<usize> },
    /// Different numbers: hold back every row (E105).
    Conflicting { rows: Vec<usize> },
}

/// Groups rows by station id, groups in the order of their first row. `same(a, b)` says
/// whether two rows carry identical numbers.
///
/// Duplicates are rare, a million ids are not. The ids are spread over buckets of about a
/// thousand by their 64-bit hash, and the buckets are checked on all cores, each with a
/// bitmap small enough to stay in the core's cache: a slot taken twice means "maybe", and
/// only those rows are compared by 32 bits of hash, then equal bits by id.
pub fn find_duplicates<I, F>(ids: &I, same: F) -> Vec<Duplicate>
where
    I: IdList + Sync + ?Sized,
    F: Fn(usize, usize) -> bool,
{
    use rayon::prelude::*;
    let n = ids.count();
    if n < 2 {
        return Vec::new();
    }
    let buckets = (n / 1024).next_power_of_two().clamp(1, 4096);
    // An entry is a row and the low 32 bits of its id's hash, in one word (`row << 32 | bits`):
    // bits 20 to 31 choose the bucket, the bits below the slot in the bucket's bitmap.
    let bucket = |e: u64| (e >> 20) as usize & (buckets - 1);
    let parts = (rayon::current_num_threads() * 4).clamp(1, n.div_ceil(1 << 14));
    let per = n.div_ceil(parts);
    // Each part of the rows, sorted by bucket (a counting sort), and where each bucket starts.
    // The unsorted entries are scratch, one buffer for a thread's share of the parts (a job
    // of its own for every part would take a fresh buffer each time: fresh memory is paid in
    // page faults).
    let parts: Vec<(Vec<u64>, Vec<usize>)> = (0..parts)
        .into_par_iter()
        .with_min_len(parts.div_ceil(rayon::current_num_threads().max(1)))
        .map_init(Vec::new, |entries: &mut Vec<u64>, p| {
            let rows = p * per..((p + 1) * per).min(n);
            entries.clear();
            entries.extend(rows.map(|i| (i as u64) << 32 | id_hash(ids.id(i)) & 0xffff_ffff));
            let mut starts = vec![0usize; buckets + 1];
            entries.iter().for_each(|&e| starts[bucket(e) + 1] += 1);
            for b in 0..buckets {
                starts[b + 1] += starts[b];
            }
            let mut fill = starts.clone();
            let mut sorted = vec![0u64; entries.len()];
            for &e in entries.iter() {
                let b = bucket(e);
                sorted[fill[b]] = e;
                fill[b] += 1;
            }
            (sorted, starts)
        })
        .collect();
    // Rows whose 32 hash bits another row of their bucket shares, with those bits. A slot taken
    // twice is only a "maybe" (one in sixteen rows): its rows are told apart by their bits,
    // which a million distinct ids share about a hundred times, before any id is read.
    let mut shared: Vec<(u32, u32)> = (0..buckets)
        .into_par_iter()
        .flat_map_iter(|b| {
            let entries = || {
                parts
                    .iter()
                    .flat_map(move |(sorted, starts)| &sorted[starts[b]..starts[b + 1]])
            };
            let count = parts.iter().map(|(_, s)| s[b + 1] - s[b]).sum::<usize>();
            let slots = (count * 16).next_power_of_two().max(64);
            let slot = |e: u64| e as usize & (slots - 1);
            let mut taken = vec![0u64; slots / 64];
            let mut twice = vec![0u64; slots / 64];
            let mut any = false;
            for &e in entries() {
                let (word, bit) = (slot(e) / 64, 1u64 << (slot(e) % 64));
                if taken[word] & bit != 0 {
                    twice[word] |= bit;
                    any = true;
                }
                taken[word] |= bit;
            }
            let mut maybe: Vec<(u32, u32)> = if any {
                entries()
                    .filter(|&&e| twice[slot(e) / 64] >> (slot(e) % 64) & 1 == 1)
                    .map(|&e| (e as u32, (e >> 32) as u32))
                    .collect()
            } else {
                Vec::new()
            };
            maybe.sort_unstable();
            maybe
                .chunk_by(|a, b| a.0 == b.0)
                .filter(|run| run.len() > 1)
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    shared.sort_unstable();
    let mut out = Vec::new();
    for group in shared.chunk_by(|a, b| a.0 == b.0) {
        // Same hash bits: split by actual id (different ids share them now and then).
        let mut rows: Vec<usize> = group.iter().map(|k| k.1 as usize).collect();
        while let Some(&first) = rows.first() {
            let (group, rest): (Vec<usize>, Vec<usize>) =
                rows.iter().partition(|&&r| ids.id(r) == ids.id(first));
            rows = rest;
            if group.len() > 1 {
                if group.iter().all(|&r| same(first, r)) {
                    out.push(Duplicate::Identical {
                        keep: first,
                        drop: group[1..].to_vec(),
                    });
                } else {
                    out.push(Duplicate::Conflicting { rows: group });
                }
            }
        }
    }
    out.sort_unstable_by_key(|d| match d {
        Duplicate::Identical { keep, .. } => *keep,
        Duplicate::Conflicting { rows } => rows[0],
    });
    out
}

/// A station id's 64-bit hash (aHash, fixed keys: one id, one hash, in every run).
fn id_hash(id: &str) -> u64 {
    static KEYS: std::sync::LazyLock<ahash::RandomState> =
        std::sync::LazyLock::new(|| ahash::RandomState::with_seeds(1, 2, 3, 4));
    KEYS.hash_one(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(reg: u64, cast: u64, inv: u64, valid: u64, votes: &[StoredCount]) -> SheetCounts<'_> {
        SheetCounts {
            registered: Some(reg),
            cast: Some(cast),
            invalid: Some(inv),
            valid: Some(valid),
            votes,
        }
    }

    fn codes(s: &SheetCounts<'_>) -> Vec<Code> {
        let mut out = Vec::new();
        check_sheet(s, &[], &ValidationConfig::default(), &mut out);
        out.into_iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_clean_sheet_has_no_finding() {
        assert!(codes(&sheet(1000, 700, 20, 680, &[400, 280])).is_empty());
    }

    #[test]
    fn e102_candidate_sum() {
        assert_eq!(
            codes(&sheet(1000, 700, 20, 680, &[400, 281])),
            vec![Code::E102]
        );
    }

    #[test]
    fn e103_valid_plus_invalid() {
        assert_eq!(
            codes(&sheet(1000, 701, 20, 680, &[400, 280])),
            vec![Code::E103]
        );
    }

    #[test]
    fn e104_and_w206_cast_over_registered() {
        // 1% of 1000 = 10 extra voters tolerated.
        assert_eq!(
            codes(&sheet(1000, 1010, 10, 1000, &[600, 400])),
            vec![Code::W206]
        );
        assert_eq!(
            codes(&sheet(1000, 1011, 11, 1000, &[600, 400])),
            vec![Code::E104]
        );
    }

    #[test]
    fn w201_turnout_boundary_is_inclusive() {
        assert_eq!(
            codes(&sheet(1000, 990, 0, 990, &[500, 490])),
            vec![Code::W201]
        );
        assert!(codes(&sheet(1000, 989, 0, 989, &[500, 489])).is_empty());
    }

    #[test]
    fn w202_dominant_candidate() {
        assert_eq!(
            codes(&sheet(1000, 500, 0, 500, &[495, 5])),
            vec![Code::W202]
        );
        assert!(codes(&sheet(1000, 500, 0, 500, &[494, 6])).is_empty());
    }

    #[test]
    fn w203_invalid_share() {
        assert_eq!(
            codes(&sheet(1000, 500, 50, 450, &[250, 200])),
            vec![Code::W203]
        );
        assert!(codes(&sheet(1000, 500, 49, 451, &[251, 200])).is_empty());
    }

    #[test]
    fn w204_nobody_voted() {
        assert_eq!(codes(&sheet(300, 0, 0, 0, &[0, 0])), vec![Code::W204]);
        assert!(codes(&sheet(0, 0, 0, 0, &[0, 0])).is_empty());
    }

    #[test]
    fn absent_fields_skip_their_checks() {
        let s = SheetCounts {
            registered: None,
            cast: None,
            invalid: None,
            valid: Some(680),
            votes: &[400, 280],
        };
        assert!(codes(&s).is_empty());
        let s = SheetCounts {
            valid: Some(1),
            ..s
        };
        assert_eq!(codes(&s), vec![Code::E102]);
    }

    fn validate(core: [StoredCount; 4], votes: &mut [StoredCount]) -> (Verdict, Vec<Finding>) {
        let ids = ["a", "b", "c"];
        let mut out = Vec::new();
        let k = votes.len();
        let v = validate_sheet(
            &mut SheetInput {
                core,
                votes,
                candidates: &ids[..k],
            },
            &ValidationConfig::default(),
            &mut out,
        );
        (v, out)
    }

    #[test]
    fn absent_votes_implied_by_valid_or_incomplete() {
        // Present counts already add up to valid: the absent one is 0.
        let mut v = [400, 280, MISSING];
        let (verdict, f) = validate([1000, 700, 20, 680], &mut v);
        assert_eq!(verdict, Verdict::Accepted);
        assert_eq!(v, [400, 280, 0]);
        assert_eq!(f[0].code, Code::W208);
        assert_eq!(f[0].fields, vec!["votes.c"]);
        // One absent: the rest of valid.
        let mut v = [400, MISSING, 0];
        let (verdict, f) = validate([1000, 700, 20, 680], &mut v);
        assert_eq!(verdict, Verdict::Accepted);
        assert_eq!(v, [400, 280, 0]);
        assert_eq!(f.len(), 1);
        // Two absent and a rest to share: incomplete, and nothing else is checked.
        let mut v = [400, MISSING, MISSING];
        let (verdict, f) = validate([1000, 700, 20, 680], &mut v);
        assert_eq!(verdict, Verdict::Quarantined);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, Code::E110);
        assert_eq!(f[0].fields, vec!["votes.b", "votes.c"]);
        // No valid total: nothing implies the absent count.
        let mut v = [400, MISSING];
        let (verdict, f) = validate([1000, 700, 20, MISSING], &mut v);
        assert_eq!((verdict, f[0].code), (Verdict::Quarantined, Code::E110));
    }

    #[test]
    fn findings_name_their_fields() {
        let mut v = [400, 281];
        let (verdict, f) = validate([1000, 700, 20, 680], &mut v);
        assert_eq!(verdict, Verdict::Quarantined);
        assert_eq!(f[0].code, Code::E102);
        assert_eq!(f[0].fields, vec!["valid", "votes.a", "votes.b"]);
        let mut v = [400, 280];
        let (verdict, f) = validate([600, 700, 20, 680], &mut v);
        assert_eq!(verdict, Verdict::Quarantined);
        assert_eq!(f[0].fields, vec!["cast", "registered"]);
    }

    #[test]
    fn station_ids_are_compared_in_one_form() {
        assert_eq!(normalise_station_id("S-001"), None);
        assert_eq!(normalise_station_id("Çankaya-1"), None);
        // NFD (C + combining cedilla) becomes NFC.
        assert_eq!(
            normalise_station_id("C\u{327}ankaya-1").as_deref(),
            Some("Çankaya-1")
        );
        // Fullwidth digits and a zero-width space.
        assert_eq!(
            normalise_station_id("S\u{FF11}\u{200B}2").as_deref(),
            Some("S12")
        );
    }

    #[test]
    fn w205_registered_between_rounds() {
        let cfg = ValidationConfig::default();
        assert!(check_registered_between_rounds(1000, 1050, &cfg).is_none());
        assert_eq!(
            check_registered_between_rounds(1000, 1051, &cfg).map(|f| f.code),
            Some(Code::W205)
        );
        // Small stations: the absolute tolerance (10 voters) applies.
        assert!(check_registered_between_rounds(20, 30, &cfg).is_none());
        assert!(check_registered_between_rounds(20, 31, &cfg).is_some());
    }

    #[test]
    fn duplicates_among_many_ids_despite_slot_collisions() {
        // 300,000 ids in 2^23 slots collide by chance many thousand times; only the planted
        // repeats may come out.
        let mut ids: Vec<String> = (0..300_000).map(|i| format!("st-{i}")).collect();
        ids.push("st-17".into());
        ids.push("st-299999".into());
        // Some distinct ids share the 32 hash bits that rows are told apart by before their
        // ids are read (about ten pairs are expected): those must not come out either.
        let mut bits = std::collections::HashSet::new();
        let shared_bits = ids[..300_000]
            .iter()
            .filter(|id| !bits.insert(id_hash(id) & 0xffff_ffff))
            .count();
        assert!(shared_bits > 0);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let d = find_duplicates(&refs, |_, _| true);
        assert!(d.contains(&Duplicate::Identical {
            keep: 17,
            drop: vec![300_000]
        }));
        assert!(d.contains(&Duplicate::Identical {
            keep: 299_999,
            drop: vec![300_001]
        }));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn duplicates_identical_and_conflicting() {
        let ids = ["a", "b", "a", "c", "b", "a"];
        let nums = [1, 2, 1, 3, 9, 1];
        let d = find_duplicates(&ids, |x, y| nums[x] == nums[y]);
        // Groups come in the order of their first row.
        assert_eq!(
            d,
            [
                Duplicate::Identical {
                    keep: 0,
                    drop: vec![2, 5]
                },
                Duplicate::Conflicting { rows: vec![1, 4] }
            ]
        );
        assert!(find_duplicates(&["x"], |_, _| true).is_empty());
        assert!(find_duplicates(&[] as &[&str], |_, _| true).is_empty());
    }
}

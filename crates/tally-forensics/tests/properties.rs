//! Property tests: exact window arithmetic and robustness of `analyse` to awkward inputs.

use proptest::prelude::*;
mod common;

use tally_forensics::{analyse, integer::integer_hit, ForensicsOptions};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fast integer-window test equals a brute-force search over whole percents 1..=99.
    #[test]
    fn integer_hit_matches_brute_force(n in 1u64..200_000, frac in 0.0f64..=1.0) {
        let k = ((n as f64) * frac).floor() as u64;
        let brute = (1..=99u64).any(|j| {
            let a = 2000 * k as i128;
            let b = 20 * j as i128 * n as i128;
            (a - b).abs() <= n as i128
        });
        prop_assert_eq!(integer_hit(k, n), brute);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any small election, including zero and inconsistent counts, is analysed without panicking and
    /// the coverage adds up.
    #[test]
    fn analyse_handles_awkward_stations(
        rows in prop::collection::vec((0u32..3000, 0u32..3000, 0u32..3000, 0u32..2000), 1..60)
    ) {
        let n = rows.len();
        let mut d = common::empty_round(&["a".into(), "b".into()], "area");
        for (i, (reg, cast, valid, a)) in rows.iter().enumerate() {
            let a = (*a).min(*valid);
            let area = ["x", "y", "z"][i % 3];
            common::push_station(&mut d, &format!("s{i}"), &[area], [*reg, *cast, *valid], &[a, valid - a]);
        }
        // The Klimek fit (the slow part) runs on about a quarter of the cases.
        let opts = ForensicsOptions {
            mc_reps: 20,
            bootstrap_reps: 5,
            klimek_fit: n % 4 == 0,
            group_level: Some(1),
            ..Default::default()
        };
        let r = analyse(&d, &opts);
        let c = &r.coverage;
        prop_assert_eq!(c.stations_used + c.skipped_registered_zero + c.skipped_cast_zero, n);
        prop_assert!(r.integer_test.observed as usize <= r.integer_test.stations_tested);
        prop_assert!(r.integer_test.p_value > 0.0 && r.integer_test.p_value <= 1.0);
        // Groups are the areas of the round's tree that have stations: all three from 3 stations on.
        prop_assert_eq!(r.groups.len(), n.min(3));
        let text = r.render_text();
        prop_assert!(text.contains("ROUND PERCENTAGES"));
        let json = r.to_json();
        prop_assert!(json.contains("\"integer_test\""));
    }
}

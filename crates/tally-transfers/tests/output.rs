//! Output forms: JSON field names, text table, CSV, PNG; bounds contain the truth; properties.

#![allow(clippy::needless_range_loop)]

use proptest::prelude::*;
use tally_transfers::{
    bounds, estimate, render_text, to_csv_string, write_png, Margins, Method, Options,
};

fn small() -> Margins {
    // Three units, 3 x 2 table built from known cells.
    let cells = [
        [[30u64, 10], [5, 25], [2, 8]],
        [[50, 5], [10, 40], [1, 4]],
        [[20, 20], [3, 30], [6, 6]],
    ];
    let mut m = Margins {
        unit_ids: vec!["u1".into(), "u2".into(), "u3".into()],
        rows: vec!["A".into(), "B".into(), "abstained".into()],
        cols: vec!["X".into(), "Y, \"quoted\"".into()],
        row_counts: vec![],
        col_counts: vec![],
    };
    for t in cells {
        m.row_counts
            .push(t.iter().map(|r| r.iter().sum()).collect());
        m.col_counts
            .push((0..2).map(|c| t.iter().map(|r| r[c]).sum()).collect());
    }
    m
}

#[test]
fn json_has_the_documented_fields() {
    let r = estimate(&small(), &Options::default()).unwrap();
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    for f in [
        "rows",
        "cols",
        "proportions",
        "votes",
        "lower",
        "upper",
        "method",
        "method_choice",
        "em",
        "units_used",
        "units_dropped",
        "rules_applied",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    assert_eq!(v["method"], "em");
    assert!(v["method_choice"]
        .as_str()
        .unwrap()
        .starts_with("em is the default"));
    assert!(v["em"]["converged"].as_bool().unwrap());
    assert_eq!(v["units_used"], 3);
    for row in &r.proportions {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn text_table_is_aligned_and_in_percent() {
    let r = estimate(
        &small(),
        &Options {
            method: Method::Lphom,
            ..Options::default()
        },
    )
    .unwrap();
    let t = render_text(&r);
    assert!(t.contains("100.0%"));
    let lines: Vec<&str> = t.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("from \\ to"))
        .unwrap();
    // The data lines of the first table are at least as wide as the header's last column end.
    let width = lines[head + 1].len();
    assert!(
        lines[head + 2].len() <= width && lines[head + 2].len() > width / 2,
        "{t}"
    );
}

#[test]
fn csv_quotes_and_has_one_line_per_cell() {
    let r = estimate(&small(), &Options::default()).unwrap();
    let csv = to_csv_string(&r);
    assert_eq!(csv.lines().count(), 1 + 3 * 2);
    assert!(csv.contains("\"Y, \"\"quoted\"\"\""));
}

#[test]
fn png_is_written() {
    let r = estimate(&small(), &Options::default()).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("transfers_small.png");
    write_png(&r, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(bytes.len() > 5_000);
}

#[test]
fn png_shows_the_methods_spread_when_computed() {
    let mut r = estimate(&small(), &Options::default()).unwrap();
    let others: Vec<_> = [Method::Lphom, Method::Nslphom]
        .into_iter()
        .map(|method| {
            estimate(
                &small(),
                &Options {
                    method,
                    bootstrap: 0,
                    ..Options::default()
                },
            )
            .unwrap()
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (plain, with) = (
        dir.join("transfers_plain.png"),
        dir.join("transfers_spread.png"),
    );
    write_png(&r, &plain).unwrap();
    tally_transfers::compare_methods(&mut r, &others, Vec::new());
    write_png(&r, &with).unwrap();
    // PNG header: width and height are the big-endian u32 at bytes 16 and 20.
    let size = |p: &std::path::Path| {
        let b = std::fs::read(p).unwrap();
        let h = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
        (b, h)
    };
    let ((a, ha), (b, hb)) = (size(&plain), size(&with));
    // One more line per cell and the legend: a taller picture with other pixels.
    assert!(hb > ha, "{hb} vs {ha}");
    assert_ne!(a, b);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For random true tables: bounds contain the truth, estimates respect the margins, and every
    /// LP-family estimate lies within the Duncan–Davis bounds.
    #[test]
    fn estimates_respect_margins_and_bounds(
        cells in prop::collection::vec(prop::collection::vec(0u64..60, 6), 2..12)
    ) {
        let mut m = Margins {
            unit_ids: (0..cells.len()).map(|i| format!("u{i}")).collect(),
            rows: vec!["a".into(), "b".into(), "c".into()],
            cols: vec!["x".into(), "y".into()],
            row_counts: vec![],
            col_counts: vec![],
        };
        let mut truth = [[0u64; 2]; 3];
        for t in &cells {
            m.row_counts.push((0..3).map(|r| t[2 * r] + t[2 * r + 1]).collect());
            m.col_counts.push((0..2).map(|c| (0..3).map(|r| t[2 * r + c]).sum()).collect());
            for r in 0..3 { for c in 0..2 { truth[r][c] += t[2 * r + c]; } }
        }
        let b = bounds(&m).unwrap();
        for r in 0..3 { for c in 0..2 {
            prop_assert!(b.lower_votes[r][c] <= truth[r][c] && truth[r][c] <= b.upper_votes[r][c]);
        }}
        let row_tot: Vec<u64> = (0..3).map(|r| m.row_counts.iter().map(|u| u[r]).sum()).collect();
        let col_tot: Vec<u64> = (0..2).map(|c| m.col_counts.iter().map(|u| u[c]).sum()).collect();
        if row_tot.iter().sum::<u64>() == 0 { return Ok(()); }
        for method in [Method::Tslphom, Method::Nslphom] {
            let r = estimate(&m, &Options { method, bootstrap: 0, ..Options::default() }).unwrap();
            for i in 0..3 {
                prop_assert!((r.votes[i].iter().sum::<f64>() - row_tot[i] as f64).abs() < 1e-5);
                for j in 0..2 {
                    prop_assert!(r.votes[i][j] >= b.lower_votes[i][j] as f64 - 1e-5);
                    prop_assert!(r.votes[i][j] <= b.upper_votes[i][j] as f64 + 1e-5);
                }
            }
            for j in 0..2 {
                let s: f64 = (0..3).map(|i| r.votes[i][j]).sum();
                prop_assert!((s - col_tot[j] as f64).abs() < 1e-5);
            }
        }
    }
}

//! A file read block by block (plain and gzip) imports exactly as the same bytes read whole:
//! records cut across blocks, quoted newlines, blank lines, CRLF, rejected rows, and the
//! duplicate whose text is fetched again from the file.

use std::io::Write;
use tally_io::{import_bytes, import_path, import_path_limited, FileImport, ImportOptions};
use tally_model::Code;

/// About 9 MB: more than two of the reader's blocks.
fn awkward_csv() -> Vec<u8> {
    let mut out = b"station_id,region,district,registered,cast,invalid,valid,a,b\n".to_vec();
    for i in 0..250_000u64 {
        let region = if i % 997 == 0 {
            // A quoted area name with a comma and a newline inside.
            format!("\"Region, {}\nnorth\"", i % 7)
        } else {
            format!("Region {}", i % 7)
        };
        let (a, b) = (100 + i % 50, 80 + i % 30);
        let line = match i {
            // Arithmetic that does not add up: quarantined while parsing (E103).
            7_777 => format!(
                "S{i},{region},D{},1000,{},2,{},{a},{b}",
                i % 40,
                a + b + 2,
                a + b + 5
            ),
            // The same station as row 10 with other numbers: E105, found after parsing.
            140_000 => format!(
                "S10,{region},D{},1000,{},0,{},{},{b}",
                i % 40,
                a + b + 1,
                a + b + 1,
                a + 1
            ),
            // A row with a missing field: rejected (E108).
            90_001 => format!("S{i},{region},D{}", i % 40),
            _ => format!(
                "S{i},{region},D{},1000,{},0,{},{a},{b}",
                i % 40,
                a + b,
                a + b
            ),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(if i % 5 == 0 { b"\r\n" } else { b"\n" });
        if i % 10_007 == 0 {
            out.extend_from_slice(b"\n");
        }
    }
    // The last record has no newline.
    assert_eq!(out.pop(), Some(b'\n'));
    out
}

fn same(a: &FileImport, b: &FileImport) {
    assert_eq!(a.rounds.len(), b.rounds.len());
    for (x, y) in a.rounds.iter().zip(&b.rounds) {
        assert_eq!(x.stats, y.stats);
        assert_eq!(x.issues, y.issues);
        assert_eq!(x.quarantine, y.quarantine);
        let (s, t) = (&x.round.stations, &y.round.stations);
        assert_eq!(s.ids, t.ids);
        fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
            a.iter().zip(b).position(|(p, q)| p != q)
        }
        if let Some(d) = first_difference(&s.line, &t.line) {
            panic!(
                "line at row {d} ({}): {:?} vs {:?}",
                &s.ids[d],
                &s.line[d.saturating_sub(2)..d + 2],
                &t.line[d.saturating_sub(2)..d + 2]
            );
        }
        assert_eq!(s.status, t.status);
        assert_eq!(s.area, t.area, "area");
        for (c, (a, b)) in [
            (&s.registered, &t.registered),
            (&s.cast, &t.cast),
            (&s.invalid, &t.invalid),
            (&s.valid, &t.valid),
            (&s.votes, &t.votes),
            (&s.extra, &t.extra),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(a.len(), b.len(), "column {c}");
            assert_eq!(first_difference(a, b), None, "column {c}");
        }
        // The nodes in order (the tree's name index is a hash map, printed in any order).
        let nodes = |r: &tally_model::Round| {
            let t = format!("{:?}", r.tree);
            t[..t.find("index:").unwrap_or(t.len())].to_string()
        };
        let (a, b) = (nodes(&x.round), nodes(&y.round));
        if let Some(d) = a.bytes().zip(b.bytes()).position(|(p, q)| p != q) {
            panic!(
                "trees differ: {} vs {}",
                &a[d.saturating_sub(200)..(d + 100).min(a.len())],
                &b[d.saturating_sub(200)..(d + 100).min(b.len())]
            );
        }
        assert_eq!(a, b);
    }
}

#[test]
fn a_file_read_in_blocks_imports_as_the_whole_bytes() {
    let data = awkward_csv();
    assert!(data.len() > 2 * (4 << 20));
    let dir = std::env::temp_dir().join(format!("tally-streaming-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("awkward.csv");
    std::fs::write(&plain, &data).unwrap();
    let gz = dir.join("awkward.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();

    let opts = ImportOptions::default();
    let whole = import_bytes(&data, "awkward.csv", &opts).unwrap();
    let r = &whole.rounds[0];
    // The awkward rows are all there, each in its one place.
    assert_eq!(r.stats.rows, 250_000);
    let codes: Vec<Code> = r.quarantine.iter().flat_map(|q| q.codes.clone()).collect();
    for code in [Code::E103, Code::E105, Code::E108] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    // The duplicate's text came back from the file (restore_raw_text).
    assert!(r.quarantine.iter().all(|q| !q.raw.is_empty() && q.line > 0));

    for path in [&plain, &gz] {
        let path = path.to_string_lossy();
        let mut streamed = import_path(&path, &opts).unwrap();
        // Only the file name differs.
        for q in streamed
            .rounds
            .iter_mut()
            .flat_map(|r| r.quarantine.iter_mut())
        {
            q.file = "awkward.csv".into();
        }
        for i in streamed.rounds.iter_mut().flat_map(|r| r.issues.iter_mut()) {
            i.file = "awkward.csv".into();
        }
        same(&whole, &streamed);
    }

    // The ceiling holds while streaming, for the plain file and for the inflated bytes.
    let e = import_path_limited(&plain.to_string_lossy(), 1 << 20, &opts).unwrap_err();
    assert_eq!(e.code, Code::F008);
    let e = import_path_limited(&gz.to_string_lossy(), 5 << 20, &opts).unwrap_err();
    assert_eq!(e.code, Code::F008);

    // A file smaller than one block, without a final newline.
    let small = dir.join("small.csv");
    let text =
        b"station_id,registered,cast,invalid,valid,a,b\nS1,100,50,0,50,30,20\nS2,100,40,0,40,10,30";
    std::fs::write(&small, text).unwrap();
    let whole = import_bytes(text, "small.csv", &opts).unwrap();
    let streamed = import_path(&small.to_string_lossy(), &opts).unwrap();
    assert_eq!(whole.rounds[0].stats.accepted, 2);
    let mut streamed = streamed;
    for i in streamed.rounds.iter_mut().flat_map(|r| r.issues.iter_mut()) {
        i.file = "small.csv".into();
    }
    same(&whole, &streamed);
    std::fs::remove_dir_all(&dir).ok();
}

/// A record longer than the room left at the front of a block (64 KB) that straddles a block
/// boundary is carried the slow way; the import is the same as from the whole bytes.
#[test]
fn a_record_longer_than_the_headroom_across_a_block_boundary() {
    let mut data = b"station_id,region,notes,registered,cast,invalid,valid,a,b\n".to_vec();
    // Enough short rows for the layout's sample in the first block, then long ones.
    for i in 0..30_000u64 {
        let line = format!("S{i},R{},n,100,50,0,50,30,20\n", i % 5);
        data.extend_from_slice(line.as_bytes());
    }
    // The first long record starts well before the first block boundary and ends after it.
    let boundary = 4usize << 20;
    for i in 30_000..30_030u64 {
        let long = if i == 30_000 {
            boundary - data.len() + 100_000
        } else {
            300_000
        };
        let line = format!("S{i},R{},{},100,50,0,50,30,20\n", i % 5, "x".repeat(long));
        data.extend_from_slice(line.as_bytes());
    }
    let last_end = data[..boundary].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    assert!(boundary - last_end > 64 << 10, "{}", boundary - last_end);
    assert!(data.len() > 2 * boundary);

    let dir = std::env::temp_dir().join(format!("tally-long-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("long.csv");
    std::fs::write(&path, &data).unwrap();
    let opts = ImportOptions::default();
    let whole = import_bytes(&data, "long.csv", &opts).unwrap();
    assert_eq!(whole.rounds[0].stats.accepted, 30_030);
    let mut streamed = import_path(&path.to_string_lossy(), &opts).unwrap();
    for i in streamed.rounds.iter_mut().flat_map(|r| r.issues.iter_mut()) {
        i.file = "long.csv".into();
    }
    same(&whole, &streamed);
    std::fs::remove_dir_all(&dir).ok();
}

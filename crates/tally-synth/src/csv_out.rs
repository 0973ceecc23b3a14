//! Writes a synthetic election in the uniform CSV of Tally (one row per station per round).

use crate::SynthElection;
use std::io::{self, Write};

/// Writes every round of `e`: `round, station_id, <levels>, registered, cast, invalid, valid,
/// <candidates>`. Rounds with fewer candidates leave the missing columns empty, so one file can
/// hold both rounds.
pub fn write_csv<W: Write>(e: &SynthElection, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let candidates = &e.rounds[0].candidates;
    write!(out, "round,station_id")?;
    for l in &e.level_names {
        write!(out, ",{l}")?;
    }
    write!(out, ",registered,cast,invalid,valid")?;
    for c in candidates {
        write!(out, ",{c}")?;
    }
    writeln!(out)?;
    let mut num = itoa::Buffer::new();
    for r in &e.rounds {
        let index: Vec<Option<usize>> = candidates
            .iter()
            .map(|c| r.candidates.iter().position(|x| x == c))
            .collect();
        for s in &r.stations {
            out.write_all(num.format(r.round).as_bytes())?;
            out.write_all(b",")?;
            out.write_all(s.station_id.as_bytes())?;
            for a in &s.areas {
                out.write_all(b",")?;
                out.write_all(a.as_bytes())?;
            }
            for v in [s.registered, s.cast, s.invalid, s.valid] {
                out.write_all(b",")?;
                out.write_all(num.format(v).as_bytes())?;
            }
            for i in &index {
                out.write_all(b",")?;
                if let Some(i) = i {
                    out.write_all(num.format(s.votes[*i]).as_bytes())?;
                }
            }
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

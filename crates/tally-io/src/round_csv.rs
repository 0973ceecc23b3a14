//! Writing rounds back as the uniform CSV Tally reads: `round, station_id, <levels...>,
//! registered, cast, invalid, valid, <candidates...>, <extra lines...>`, an empty cell where a
//! count is absent. Used for generated copies (an observer copy with planted errors) so that they
//! go through the same import as any file.

use std::io::{self, Write};
use tally_model::{csv_text, Round, StoredCount, MISSING};

/// Writes `rounds` (which must share candidates, extra lines and levels) as one CSV.
pub fn write_rounds_csv<W: Write>(rounds: &[&Round], out: W) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let Some(first) = rounds.first() else {
        return Ok(());
    };
    let mut header: Vec<String> = vec!["round".into(), "station_id".into()];
    header.extend(first.tree.levels.iter().cloned());
    header.extend(["registered", "cast", "invalid", "valid"].map(String::from));
    header.extend(first.candidates.iter().map(|c| c.id.clone()));
    header.extend(first.extra_lines.iter().cloned());
    w.write_record(&header)?;
    let cell = |v: StoredCount| {
        if v == MISSING {
            String::new()
        } else {
            v.to_string()
        }
    };
    for round in rounds {
        let s = &round.stations;
        for i in 0..round.len() {
            let mut row: Vec<String> =
                vec![round.number.to_string(), csv_text(&s.ids[i]).into_owned()];
            row.extend(
                round
                    .tree
                    .path(s.area[i])
                    .into_iter()
                    .map(|p| csv_text(p).into_owned()),
            );
            row.extend([s.registered[i], s.cast[i], s.invalid[i], s.valid[i]].map(cell));
            row.extend(round.votes_of(i).iter().map(|&v| cell(v)));
            row.extend(round.extra_of(i).iter().map(|&v| cell(v)));
            w.write_record(&row)?;
        }
    }
    w.flush()
}

//! Heat-map PNG of a transfer table (the crate's only file output).

use crate::output::TransferResult;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

/// Embedded DejaVu Sans (see assets/fonts/LICENSE-DejaVu.txt in the workspace).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "tally-dejavu";
static REGISTER: Once = Once::new();

/// Failure to draw or encode the PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

/// White -> deep blue.
fn colour(p: f64) -> RGBColor {
    let t = p.clamp(0.0, 1.0).powf(0.8);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (k, ch) in s.chars().enumerate() {
        if k > 0 && (s.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Writes a heat map of `r` (cells = percent of the row, with votes and the interval) to `path`.
pub fn write_png(r: &TransferResult, path: &Path) -> Result<(), PlotError> {
    let mut reg_err = None;
    REGISTER.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            reg_err = Some(PlotError("embedded font rejected".into()));
        }
    });
    if let Some(e) = reg_err {
        return Err(e);
    }
    let (nr, nc) = (r.rows.len(), r.cols.len());
    // With the methods' spread, each cell gets a fourth line (their range) and a wider
    // cell is outlined in orange when that range is wider than the cell's interval.
    let spread = r.spread.as_ref().filter(|sp| sp.compared.len() > 1);
    let (cw, ch) = (170i32, if spread.is_some() { 98i32 } else { 78i32 });
    let left =
        (40 + 10 * r.rows.iter().map(|s| s.chars().count()).max().unwrap_or(4) as i32).max(190);
    let top = 120i32;
    let scale_w = 150i32;
    let width = (left + cw * nc as i32 + scale_w) as u32;
    let height = (top + ch * nr as i32 + if spread.is_some() { 84 } else { 50 }) as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let font = |size: f64| FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal);
    let centre = Pos::new(HPos::Center, VPos::Center);
    let text = |s: &str, x: i32, y: i32, size: f64, pos: Pos, c: &RGBColor| {
        root.draw(&Text::new(
            s.to_string(),
            (x, y),
            font(size).color(c).pos(pos),
        ))
    };
    let grid_right = left + cw * nc as i32;
    text(
        &format!("Vote transfers, round 1 → round 2 ({})", r.method),
        (width / 2) as i32,
        24,
        24.0,
        centre,
        &BLACK,
    )
    .map_err(err)?;
    text(
        &format!(
            "percent of each round-1 row; votes; interval = {}",
            r.interval
        ),
        (width / 2) as i32,
        52,
        14.0,
        centre,
        &RGBColor(80, 80, 80),
    )
    .map_err(err)?;
    // Axis titles.
    text(
        "to (round 2) →",
        (left + grid_right) / 2,
        top - 46,
        17.0,
        centre,
        &BLACK,
    )
    .map_err(err)?;
    text(
        "from (round 1) ↓",
        left - 12,
        top - 46,
        17.0,
        Pos::new(HPos::Right, VPos::Center),
        &BLACK,
    )
    .map_err(err)?;
    for (j, c) in r.cols.iter().enumerate() {
        text(
            c,
            left + cw * j as i32 + cw / 2,
            top - 16,
            17.0,
            centre,
            &BLACK,
        )
        .map_err(err)?;
    }
    for (i, rn) in r.rows.iter().enumerate() {
        let y0 = top + ch * i as i32;
        text(
            rn,
            left - 12,
            y0 + ch / 2,
            17.0,
            Pos::new(HPos::Right, VPos::Center),
            &BLACK,
        )
        .map_err(err)?;
        for j in 0..nc {
            let x0 = left + cw * j as i32;
            let p = r.proportions[i][j];
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + cw, y0 + ch)],
                colour(p).filled(),
            ))
            .map_err(err)?;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + cw, y0 + ch)],
                RGBColor(200, 200, 200),
            ))
            .map_err(err)?;
            let fg = if p > 0.5 { WHITE } else { BLACK };
            let cx = x0 + cw / 2;
            text(
                &format!("{:.1}%", 100.0 * p),
                cx,
                y0 + 20,
                20.0,
                centre,
                &fg,
            )
            .map_err(err)?;
            text(
                &format!("{} votes", thousands(r.votes[i][j])),
                cx,
                y0 + 44,
                13.0,
                centre,
                &fg,
            )
            .map_err(err)?;
            text(
                &format!(
                    "[{:.1}, {:.1}]",
                    100.0 * r.lower[i][j],
                    100.0 * r.upper[i][j]
                ),
                cx,
                y0 + 62,
                12.0,
                centre,
                &fg,
            )
            .map_err(err)?;
            if let Some(sp) = spread {
                let cell = &sp.cells[i][j];
                text(
                    &format!("methods {:.1}–{:.1}", 100.0 * cell.min, 100.0 * cell.max),
                    cx,
                    y0 + 82,
                    12.0,
                    centre,
                    &fg,
                )
                .map_err(err)?;
                // The same rule as the warnings: a range wider than the interval, in a cell
                // holding at least 1% of the row by some method.
                let wider =
                    cell.max >= 0.01 && cell.max - cell.min > r.upper[i][j] - r.lower[i][j] + 1e-9;
                if wider {
                    root.draw(&Rectangle::new(
                        [(x0 + 2, y0 + 2), (x0 + cw - 2, y0 + ch - 2)],
                        ShapeStyle::from(&RGBColor(230, 120, 0)).stroke_width(3),
                    ))
                    .map_err(err)?;
                }
            }
        }
    }
    // Colour scale.
    let sx = grid_right + 30;
    let sh = ch * nr as i32;
    let steps = 100;
    for k in 0..steps {
        let y1 = top + sh - (sh * (k + 1)) / steps;
        let y2 = top + sh - (sh * k) / steps;
        let p = (k as f64 + 0.5) / steps as f64;
        root.draw(&Rectangle::new(
            [(sx, y1), (sx + 24, y2)],
            colour(p).filled(),
        ))
        .map_err(err)?;
    }
    root.draw(&Rectangle::new([(sx, top), (sx + 24, top + sh)], BLACK))
        .map_err(err)?;
    for t in [0, 25, 50, 75, 100] {
        let y = top + sh - sh * t / 100;
        root.draw(&PathElement::new(vec![(sx + 24, y), (sx + 30, y)], BLACK))
            .map_err(err)?;
        text(
            &format!("{t}%"),
            sx + 34,
            y,
            13.0,
            Pos::new(HPos::Left, VPos::Center),
            &BLACK,
        )
        .map_err(err)?;
    }
    text("share of row", sx + 12, top + sh + 22, 13.0, centre, &BLACK).map_err(err)?;
    let n_units = format!("{} units used, {} dropped", r.units_used, r.units_dropped);
    text(
        &n_units,
        left,
        top + sh + 22,
        13.0,
        Pos::new(HPos::Left, VPos::Center),
        &RGBColor(80, 80, 80),
    )
    .map_err(err)?;
    if let Some(sp) = spread {
        let lines = [
            format!(
                "methods = lowest–highest percent of the row across {}",
                sp.compared.join(", ")
            ),
            "orange outline: the methods range is wider than the interval (the answer depends \
             on the method)"
                .to_string(),
        ];
        for (l, line) in lines.iter().enumerate() {
            text(
                line,
                left,
                top + sh + 44 + 18 * l as i32,
                13.0,
                Pos::new(HPos::Left, VPos::Center),
                &RGBColor(80, 80, 80),
            )
            .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

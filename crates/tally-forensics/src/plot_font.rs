//! Embedded font for plots: DejaVu Sans (see assets/fonts/LICENSE-DejaVu.txt), registered with
//! plotters' ab_glyph backend under the family names "sans-serif" and "DejaVu Sans", so that plots
//! render identically on machines without system fonts.

use plotters::style::FontStyle;
use std::sync::Once;

/// The font file, embedded in the binary.
pub static DEJAVU_SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

static REGISTER: Once = Once::new();

/// Registers the embedded font with plotters (once per process; later calls do nothing).
pub fn ensure_font() {
    REGISTER.call_once(|| {
        for family in ["sans-serif", "DejaVu Sans"] {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                // The bytes are a valid TrueType font checked at build time by the test below;
                // a failure here would only leave text unrendered, never corrupt a plot.
                let _ = plotters::style::register_font(family, style, DEJAVU_SANS);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn font_is_a_truetype_file() {
        assert!(super::DEJAVU_SANS.len() > 100_000);
        assert_eq!(&super::DEJAVU_SANS[0..4], &[0, 1, 0, 0]);
        super::ensure_font();
        super::ensure_font();
    }
}

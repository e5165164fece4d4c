//! Figures: a plot description (series, reference lines, a y scale) laid out alone or as small
//! multiples (one panel per value of a sweep key), rendered to PNG and SVG with plotters, with
//! the layout (panel and legend rectangles, bar rectangles, line colours) returned so tests can
//! check a figure without reading pixels. `spectra` holds the default figures of artifacts.
#![warn(missing_docs)]
mod figure;
mod heatmap;
mod layout;
mod legend;
mod palette;
mod render;
mod scale;
pub mod spectra;

pub use figure::{Figure, Mark, Plot, Series};
pub use heatmap::{MAX_HEATMAP_SIDE, encode_png, heatmap_figure_png, heatmap_png, heatmap_rgb, heatmap_svg};
pub use layout::{Layout, PanelLayout, Rect, SeriesLayout};
pub use palette::{PALETTE, color_of};
pub use scale::YScale;

use std::sync::atomic::{AtomicU32, Ordering};

/// Width in pixels of a one-panel figure's panel (a legend column widens the figure).
pub const WIDTH: u32 = 900;
/// Height in pixels of a one-panel figure (a long legend makes it taller).
pub const HEIGHT: u32 = 560;

static PIXEL_SCALE: AtomicU32 = AtomicU32::new(1);

/// PNG pixel density as a multiple of the base 96 dpi (1 = 900×560 for one panel; 2 = the same
/// figure at twice the pixels per side, for print and high-density screens). SVG is unaffected.
/// Set once by the binary (`--dpi`); figures drawn afterwards in this process use it.
pub fn set_pixel_scale(scale: u32) {
    PIXEL_SCALE.store(scale.clamp(1, 4), Ordering::Relaxed);
}

/// The PNG pixel scale in effect (see [`set_pixel_scale`]).
pub fn pixel_scale() -> u32 {
    PIXEL_SCALE.load(Ordering::Relaxed)
}

/// Counts of `values` in `bins` bins of width `width` starting at `lo`. Values below `lo` (or
/// NaN) are left out; values past the last bin edge count in the last bin, so the maximum
/// itself (and rounding at the edge) lands inside. Callers drop what they do not want binned.
pub fn bin_counts(values: impl IntoIterator<Item = f64>, lo: f64, width: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    if bins == 0 {
        return counts;
    }
    for v in values {
        if v >= lo {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
    }
    counts
}

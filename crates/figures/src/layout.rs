//! What a drawn figure looks like in pixels (panel, legend and bar rectangles, line colours),
//! and the ranges every panel is drawn over, decided before drawing.
use crate::figure::{Figure, Mark, Plot};
use crate::scale::YScale;

/// A pixel rectangle, [x0, x1) × [y0, y1), y growing downwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x0: i32,
    /// Top.
    pub y0: i32,
    /// Right.
    pub x1: i32,
    /// Bottom.
    pub y1: i32,
}

impl Rect {
    pub(crate) fn from_ranges((x, y): (std::ops::Range<i32>, std::ops::Range<i32>)) -> Self {
        Rect { x0: x.start, y0: y.start, x1: x.end, y1: y.end }
    }
    /// Whether the two rectangles share any pixel.
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    /// Height in pixels.
    pub fn height(&self) -> i32 {
        self.y1 - self.y0
    }
    /// Width in pixels.
    pub fn width(&self) -> i32 {
        self.x1 - self.x0
    }
}

/// How one series was drawn.
#[derive(Debug, Clone)]
pub struct SeriesLayout {
    /// Its legend text.
    pub name: String,
    /// Its mark.
    pub mark: Mark,
    /// Its colour.
    pub color: (u8, u8, u8),
    /// For bars: each drawn bar's pixel rectangle (bins with y = 0 draw none).
    pub bars: Vec<Rect>,
    /// For lines: the unbroken pieces drawn (a point the scale cannot draw breaks the line).
    pub runs: usize,
}

/// How one panel was drawn.
#[derive(Debug, Clone)]
pub struct PanelLayout {
    /// Its title.
    pub title: String,
    /// The plotting (data) area.
    pub data_area: Rect,
    /// Its series, in order.
    pub series: Vec<SeriesLayout>,
    /// The y scale it was drawn with (never Auto).
    pub y_scale: YScale,
    /// Its x range and transformed y range.
    pub ranges: ((f64, f64), (f64, f64)),
}

/// How a figure was drawn.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The panels, row by row.
    pub panels: Vec<PanelLayout>,
    /// The legend boxes (one shared, or one per panel; none without named series).
    pub legends: Vec<Rect>,
}

/// A panel's resolved y scale, x range and transformed y range.
pub(crate) type PanelRanges = (YScale, (f64, f64), (f64, f64));

pub(crate) fn bar_width(pts: &[(f64, f64)]) -> f64 {
    if pts.len() < 2 { 1.0 } else { (pts[pts.len() - 1].0 - pts[0].0) / (pts.len() - 1) as f64 }
}

/// The base of bars on this scale, given the bars' transformed heights.
pub(crate) fn bar_base(scale: YScale, tops: impl Iterator<Item = f64>) -> f64 {
    match scale {
        // Half the smallest bar: a bin of one count is a bar from 1/2 to 1.
        YScale::Log => tops.fold(f64::INFINITY, f64::min) - 2f64.log10(),
        _ => 0.0,
    }
}

fn panel_extent(p: &Plot, scale: YScale) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut t0, mut t1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    let mut take = |x: f64, y: f64| {
        if let Some(t) = scale.forward(y).filter(|_| x.is_finite()) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
    };
    for s in &p.series {
        s.points.iter().for_each(|&(x, y)| take(x, y));
        s.band.iter().for_each(|&(x, lo, hi)| {
            take(x, lo);
            take(x, hi)
        });
    }
    for s in p.series.iter().filter(|s| s.mark == Mark::Bars && !s.points.is_empty()) {
        let half = bar_width(&s.points) / 2.0;
        let tops: Vec<f64> = s.points.iter().filter(|p| p.1 != 0.0).filter_map(|p| scale.forward(p.1)).collect();
        if !tops.is_empty() {
            let base = bar_base(scale, tops.iter().copied());
            t0 = t0.min(base);
            t1 = t1.max(base);
        }
        x0 = x0.min(s.points[0].0 - half);
        x1 = x1.max(s.points[s.points.len() - 1].0 + half);
    }
    for &(y, _) in &p.hlines {
        if let Some(t) = scale.forward(y) {
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
    }
    for &(x, _) in p.vlines.iter().filter(|v| v.0.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    if !p.cells.is_empty() {
        let (hx, hy) = cell_half_sizes(&p.cells);
        for &(x, y, _) in &p.cells {
            for (cx, cy) in [(x - hx, y - hy), (x + hx, y + hy)] {
                if let Some(t) = scale.forward(cy).filter(|_| cx.is_finite()) {
                    (x0, x1, t0, t1) = (x0.min(cx), x1.max(cx), t0.min(t), t1.max(t));
                }
            }
        }
    }
    ((x0, x1), (t0, t1))
}

fn pad((a, b): (f64, f64)) -> (f64, f64) {
    if !a.is_finite() || !b.is_finite() {
        return (0.0, 1.0);
    }
    let d = if b > a { (b - a) * 0.04 } else { a.abs().max(1.0) * 0.05 };
    (a - d, b + d)
}

fn union(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0.min(b.0), a.1.max(b.1))
}

pub(crate) fn ranges(fig: &Figure) -> Vec<PanelRanges> {
    let all_y: Vec<f64> = fig.panels.iter().flat_map(|p| p.y_values()).collect();
    let scales: Vec<YScale> = fig
        .panels
        .iter()
        .map(|p| if fig.share_y && p.y_scale == YScale::Auto { YScale::Auto.resolve(&all_y) } else { p.y_scale.resolve(&p.y_values()) })
        .collect();
    let ext: Vec<_> = fig.panels.iter().zip(&scales).map(|(p, s)| panel_extent(p, *s)).collect();
    let empty = (f64::INFINITY, f64::NEG_INFINITY);
    let sx = ext.iter().fold(empty, |a, e| union(a, e.0));
    let sy = ext.iter().fold(empty, |a, e| union(a, e.1));
    ext.iter().zip(&scales).map(|(e, s)| (*s, pad(if fig.share_x { sx } else { e.0 }), pad(if fig.share_y { sy } else { e.1 }))).collect()
}

/// Half the grid spacing of heat-map cells in x and y (the smallest gap between distinct
/// centres; 0.5 when there is a single column or row).
pub(crate) fn cell_half_sizes(cells: &[(f64, f64, f64)]) -> (f64, f64) {
    let half = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min).min(f64::MAX) / 2.0
    };
    let (hx, hy) = (half(cells.iter().map(|c| c.0).collect()), half(cells.iter().map(|c| c.1).collect()));
    (if hx.is_finite() && hx < f64::MAX / 4.0 { hx } else { 0.5 }, if hy.is_finite() && hy < f64::MAX / 4.0 { hy } else { 0.5 })
}

#[cfg(test)]
mod cell_tests {
    #[test]
    fn cell_sizes_come_from_the_grid_spacing() {
        let cells: Vec<(f64, f64, f64)> = [0.0, 100.0, 200.0].iter().flat_map(|&x| [-1.0, -0.5, 0.0, 0.5].map(|y| (x, y, 1.0))).collect();
        assert_eq!(super::cell_half_sizes(&cells), (50.0, 0.25));
        assert_eq!(super::cell_half_sizes(&[(3.0, 4.0, 1.0)]), (0.5, 0.5));
    }
}

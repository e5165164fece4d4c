//! Plots, written as PNG and SVG from one description, with plotters. Labels use the vendored
//! DejaVu Sans (no system font lookup), so plots render identically on every machine.
use hesslab_artifacts::SummaryRow;
use hesslab_pipeline::{StageContext, StageError};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Width of every plot in pixels.
pub const WIDTH: u32 = 900;
/// Height of every plot in pixels.
pub const HEIGHT: u32 = 560;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// Connected by lines.
    Line,
    /// As points.
    Points,
    /// As bars from zero, centred on x (a histogram: x = bin centres, y = counts).
    Bars,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text (empty: no legend entry).
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// How they are drawn.
    pub mark: Mark,
    /// A shaded band (x, low, high) behind the series, e.g. min–max over seeds (empty: none).
    pub band: Vec<(f64, f64, f64)>,
}

/// A 2-D plot: series, reference lines, axis labels.
#[derive(Debug, Clone, Default)]
pub struct Plot {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Horizontal reference lines (y, label).
    pub hlines: Vec<(f64, String)>,
    /// Vertical reference lines (x, label).
    pub vlines: Vec<(f64, String)>,
}

impl Plot {
    /// An empty plot with a title and axis labels.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Plot { title: title.into(), x_label: x.into(), y_label: y.into(), ..Default::default() }
    }
    /// Add a series drawn as a line.
    pub fn line(mut self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points: pts, mark: Mark::Line, band: Vec::new() });
        self
    }
    /// Add a series drawn as a line over a shaded band of (x, low, high).
    pub fn line_with_band(mut self, name: &str, pts: Vec<(f64, f64)>, band: Vec<(f64, f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points: pts, mark: Mark::Line, band });
        self
    }
    /// Add a series drawn as points.
    pub fn points(mut self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points: pts, mark: Mark::Points, band: Vec::new() });
        self
    }
    /// Add a series drawn as bars from zero (x = bin centres, equally spaced).
    pub fn bars(mut self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points: pts, mark: Mark::Bars, band: Vec::new() });
        self
    }
    /// Add a horizontal reference line at `y`.
    pub fn hline(mut self, y: f64, label: &str) -> Self {
        self.hlines.push((y, label.into()));
        self
    }
    /// Add a vertical reference line at `x`.
    pub fn vline(mut self, x: f64, label: &str) -> Self {
        self.vlines.push((x, label.into()));
        self
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let bands = self.series.iter().flat_map(|s| s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
        let pts = self.series.iter().flat_map(|s| s.points.iter().copied()).chain(bands).filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for (y, _) in &self.hlines {
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        // Bars start at zero, and the outer bars need half a bin on each side.
        for s in self.series.iter().filter(|s| s.mark == Mark::Bars && !s.points.is_empty()) {
            let half = bar_width(&s.points) / 2.0;
            (y0, y1) = (y0.min(0.0), y1.max(0.0));
            x0 = x0.min(s.points[0].0 - half);
            x1 = x1.max(s.points[s.points.len() - 1].0 + half);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = |a: f64, b: f64| {
            let d = if b > a { (b - a) * 0.04 } else { a.abs().max(1.0) * 0.05 };
            (a - d, b + d)
        };
        (pad(x0, x1), pad(y0, y1))
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        register_font();
        let e = |x: &dyn std::fmt::Display| x.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .y_label_formatter(&|v| format_tick(*v))
            .x_label_formatter(&|v| format_tick(*v))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let band: Vec<(f64, f64, f64)> =
                s.band.iter().copied().filter(|b| b.0.is_finite() && b.1.is_finite() && b.2.is_finite()).collect();
            if band.len() > 1 {
                let outline: Vec<(f64, f64)> = band.iter().map(|b| (b.0, b.2)).chain(band.iter().rev().map(|b| (b.0, b.1))).collect();
                chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled()))).map_err(|x| e(&x))?;
            }
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let anno = match s.mark {
                Mark::Line => chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(|x| e(&x))?,
                Mark::Points => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, color.filled()))).map_err(|x| e(&x))?,
                Mark::Bars => {
                    let half = bar_width(&pts) / 2.0;
                    let bars = pts
                        .into_iter()
                        .filter(|p| p.1 != 0.0)
                        .map(|(x, y)| Rectangle::new([(x - half, 0.0), (x + half, y)], color.filled()));
                    chart.draw_series(bars).map_err(|x| e(&x))?
                }
            };
            if !s.name.is_empty() {
                anno.label(s.name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
            }
        }
        for (y, label) in &self.hlines {
            let c = RGBColor(200, 30, 30);
            chart
                .draw_series(LineSeries::new(vec![(x0, *y), (x1, *y)], c.stroke_width(1)))
                .map_err(|x| e(&x))?
                .label(label.clone())
                .legend(move |(x, yy)| PathElement::new(vec![(x, yy), (x + 14, yy)], c));
        }
        for (x, label) in &self.vlines {
            let c = RGBColor(30, 30, 200);
            chart
                .draw_series(LineSeries::new(vec![(*x, y0), (*x, y1)], c.stroke_width(1)))
                .map_err(|x| e(&x))?
                .label(label.clone())
                .legend(move |(xx, y)| PathElement::new(vec![(xx, y), (xx + 14, y)], c));
        }
        if self.series.iter().any(|s| !s.name.is_empty()) || !self.hlines.is_empty() || !self.vlines.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
        Ok(())
    }

    /// Render to PNG bytes and SVG text.
    pub fn render(&self) -> Result<(Vec<u8>, String), String> {
        let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(root)?;
        }
        let png = encode_png(&rgb, WIDTH, HEIGHT)?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(root)?;
        }
        Ok((png, svg))
    }

    /// Write `<name>.png` and `<name>.svg` into the stage's directory.
    pub fn write(&self, ctx: &StageContext, name: &str) -> Result<(), StageError> {
        let (png, svg) = self.render().map_err(|m| StageError::msg(format!("plot `{name}`: {m}")))?;
        ctx.write_file(&format!("{name}.png"), &png)?;
        ctx.write_file(&format!("{name}.svg"), svg.as_bytes())?;
        Ok(())
    }
}

/// The spacing of equally spaced bar centres (1 for a single bar).
fn bar_width(pts: &[(f64, f64)]) -> f64 {
    if pts.len() < 2 { 1.0 } else { (pts[pts.len() - 1].0 - pts[0].0) / (pts.len() - 1) as f64 }
}

fn format_tick(v: f64) -> String {
    // Ticks are multiples of a float step: a "zero" tick can come out as ±5.55e-17.
    if v.abs() < 1e-14 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        // Three significant digits: dense ticks such as −1.15e-3 and −1.2e-3 stay distinct.
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.trim_end_matches('0').trim_end_matches('.') } else { m };
        format!("{m}e{e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// PNG from an RGB buffer (plotters' encoder writes to paths only; we need bytes for the
/// atomic writer).
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Plots are mostly flat colour: the strongest deflate and adaptive filtering shrink them several-fold.
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut wr = enc.write_header().map_err(|e| e.to_string())?;
        wr.write_image_data(rgb).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The largest heat map side (a 16384² RGB image is 768 MiB).
pub const MAX_HEATMAP_SIDE: u32 = 16_384;

/// A heat map of a square matrix (S16 Fig 5): |A| on a log color scale, one pixel block per entry
/// (downsampled by block maxima for large matrices).
pub fn heatmap_png(a: &faer::Mat<f64>, size: u32) -> Result<Vec<u8>, String> {
    let n = a.nrows().max(1);
    if size > MAX_HEATMAP_SIDE {
        return Err(format!("heat map side {size} exceeds {MAX_HEATMAP_SIDE} pixels"));
    }
    // At most 8 pixels per entry; all arithmetic below stays in usize.
    let size = (size as usize).min(n.saturating_mul(8)).max(64) as u32;
    let mut rgb = vec![255u8; size as usize * size as usize * 3];
    let maxabs =
        (0..a.ncols()).flat_map(|j| (0..a.nrows()).map(move |i| (i, j))).fold(0.0f64, |m, (i, j)| m.max(a[(i, j)].abs())).max(1e-300);
    let cell = |p: u32| (p as usize * n) / size as usize;
    for py in 0..size {
        let (r0, r1) = (cell(py), cell(py + 1).max(cell(py) + 1).min(n));
        for px in 0..size {
            let (c0, c1) = (cell(px), cell(px + 1).max(cell(px) + 1).min(n));
            let mut m = 0.0f64;
            let mut sign = 0.0;
            for r in r0..r1 {
                for c in c0..c1 {
                    if a[(r, c)].abs() > m {
                        m = a[(r, c)].abs();
                        sign = a[(r, c)].signum();
                    }
                }
            }
            // Intensity on a log scale over 8 decades below the maximum.
            let t = if m > 0.0 { ((m / maxabs).log10() / 8.0 + 1.0).clamp(0.0, 1.0) } else { 0.0 };
            let v = (255.0 * (1.0 - t)) as u8;
            let idx = (py as usize * size as usize + px as usize) * 3;
            let (r, g, b) = if sign >= 0.0 { (255, v, v) } else { (v, v, 255) };
            rgb[idx] = r;
            rgb[idx + 1] = g;
            rgb[idx + 2] = b;
        }
    }
    encode_png(&rgb, size, size)
}

/// The plots of one spectrum (S18 Figs 1–6, S16 Fig 1).
pub fn spectrum_plots(ctx: &StageContext, desc: &[f64], dim: usize, s: &SummaryRow) -> Result<(), StageError> {
    let n = desc.len();
    Plot::new("Ordered eigenvalues", "rank", "eigenvalue")
        .points("", desc.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect())
        .write(ctx, "spectrum")?;
    let top = n.min(120);
    Plot::new(&format!("Top {top} eigenvalues ({} outliers above the cutoff)", s.outliers_heuristic), "rank", "eigenvalue")
        .line("eigenvalues", desc[..top].iter().enumerate().map(|(i, &v)| (i as f64, v)).collect())
        .hline(s.heuristic_cutoff, &format!("heuristic cutoff {:.2e}", s.heuristic_cutoff))
        .write(ctx, "top")?;
    let neg: Vec<(f64, f64)> =
        desc.iter().rev().take_while(|&&v| v < 0.0).enumerate().map(|(i, &v)| (100.0 * i as f64 / dim as f64, v)).collect();
    Plot::new(&format!("Negative eigenvalues ({} of {dim})", neg.len()), "rank from the smallest, % of P", "eigenvalue")
        .line("", neg)
        .write(ctx, "negative")?;
    let (lo, hi) = (desc[n - 1], desc[0]);
    let bins = 100;
    let w = ((hi - lo) / bins as f64).max(f64::MIN_POSITIVE);
    let counts = bin_counts(desc.iter().copied(), lo, w, bins);
    let pts: Vec<(f64, f64)> =
        counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| (lo + (i as f64 + 0.5) * w, (c as f64).log10())).collect();
    Plot::new("Eigenvalue histogram", "eigenvalue", "log10 count").points("", pts.clone()).line("", pts).write(ctx, "histogram")?;
    Ok(())
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

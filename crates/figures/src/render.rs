//! Drawing a [`Figure`] with plotters: panels in a grid, the legend beside them; returns the
//! [`Layout`] it produced.
use crate::figure::{Figure, Mark, Plot};
use crate::layout::{Layout, PanelLayout, PanelRanges, Rect, SeriesLayout, bar_base, bar_width};
use crate::legend::{HLINE, Plan, VLINE, draw_legend, err, legend_size, plan, rgb};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Base sizes in pixels at scale 1.
const SINGLE: (u32, u32) = (crate::WIDTH, crate::HEIGHT);
const CELL: (u32, u32) = (380, 300);
/// The largest RGB buffer a figure may take (a figure this large is unreadable anyway).
const MAX_BITMAP_BYTES: u64 = 1 << 30;

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

/// A perceptually ordered colour for `t` in [0, 1] (viridis, linear between five anchors).
fn viridis(t: f64) -> (u8, u8, u8) {
    const ANCHORS: [(f64, f64, f64); 5] = [(68., 1., 84.), (59., 82., 139.), (33., 145., 140.), (94., 201., 98.), (253., 231., 37.)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Plot,
    colors: &[(u8, u8, u8)],
    (scale, (x0, x1), (t0, t1)): PanelRanges,
    k: f64,
    big: bool,
) -> Result<PanelLayout, String> {
    let px = |v: f64| (v * k) as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", px(if big { 22.0 } else { 15.0 })))
        .margin(px(10.0))
        .x_label_area_size(px(if big { 48.0 } else { 40.0 }))
        .y_label_area_size(px(if big { 80.0 } else { 66.0 }))
        .build_cartesian_2d(x0..x1, t0..t1)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    let y_label = format!("{}{}", p.y_label, scale.describe());
    mesh.x_desc(&p.x_label)
        .y_desc(&y_label)
        .label_style(("sans-serif", px(if big { 14.0 } else { 12.0 })))
        .axis_desc_style(("sans-serif", px(if big { 16.0 } else { 13.0 })))
        .x_labels(if big { 10 } else { 5 })
        .x_label_formatter(&|v| format_tick(*v));
    let fmt = move |t: &f64| format_tick(scale.inverse(*t));
    mesh.y_label_formatter(&fmt);
    if scale.is_logarithmic() {
        // Ticks on whole transformed units fall on decades.
        mesh.y_labels(((t1 - t0).ceil() as usize + 1).clamp(3, 12));
    }
    mesh.draw().map_err(err)?;
    if !p.cells.is_empty() {
        let (hx, hy) = crate::layout::cell_half_sizes(&p.cells);
        let top = p.cells.iter().fold(0.0f64, |a, c| a.max(c.2));
        const DECADES: f64 = 8.0;
        for &(x, y, v) in p.cells.iter().filter(|c| c.2 > top * 10f64.powf(-DECADES) && c.0.is_finite()) {
            let (Some(lo), Some(hi)) = (scale.forward(y - hy), scale.forward(y + hy)) else { continue };
            let level = 1.0 - (top / v).log10() / DECADES; // 0 at the floor, 1 at the top
            let r = Rectangle::new([(x - hx, lo), (x + hx, hi)], rgb(viridis(level)).filled());
            chart.draw_series(std::iter::once(r)).map_err(err)?;
        }
    }
    let mut series = Vec::new();
    let tf = |(x, y): (f64, f64)| scale.forward(y).filter(|t| x.is_finite() && t.is_finite()).map(|t| (x, t));
    for (s, &c) in p.series.iter().zip(colors) {
        let color = rgb(c);
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .filter_map(|&(x, lo, hi)| Some((x, scale.forward(lo)?, scale.forward(hi)?)).filter(|b| b.0.is_finite()))
            .collect();
        if band.len() > 1 {
            let outline: Vec<(f64, f64)> = band.iter().map(|b| (b.0, b.2)).chain(band.iter().rev().map(|b| (b.0, b.1))).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled()))).map_err(err)?;
        }
        let mut bars = Vec::new();
        let mut runs = 0;
        match s.mark {
            Mark::Line => {
                // A point the scale cannot draw (NaN, or ≤ 0 on a log axis) breaks the line: a
                // gap is a gap, not a bridge.
                let mut run = Vec::new();
                for q in s.points.iter().copied().map(tf).chain(std::iter::once(None)) {
                    match q {
                        Some(q) => run.push(q),
                        None if !run.is_empty() => {
                            chart
                                .draw_series(LineSeries::new(std::mem::take(&mut run), color.stroke_width(px(2.0).max(1))))
                                .map_err(err)?;
                            runs += 1;
                        }
                        None => {}
                    }
                }
            }
            Mark::Points => {
                chart
                    .draw_series(s.points.iter().copied().filter_map(tf).map(|q| Circle::new(q, px(2.5).max(1), color.filled())))
                    .map_err(err)?;
            }
            Mark::Bars => {
                let half = bar_width(&s.points) / 2.0;
                let drawn: Vec<(f64, f64)> = s.points.iter().copied().filter(|q| q.1 != 0.0).filter_map(tf).collect();
                let base = bar_base(scale, drawn.iter().map(|q| q.1));
                // At least two pixels: a bin that holds something is never invisible.
                let (_, py) = chart.plotting_area().get_pixel_range();
                let min_t = 2.0 * (t1 - t0) / (py.end - py.start).max(1) as f64;
                for &(x, t) in &drawn {
                    let t = if t >= base { t.max(base + min_t) } else { t.min(base - min_t) };
                    let r = Rectangle::new([(x - half, base), (x + half, t)], color.filled());
                    chart.draw_series(std::iter::once(r)).map_err(err)?;
                    let (a, b) = (chart.backend_coord(&(x - half, base)), chart.backend_coord(&(x + half, t)));
                    bars.push(Rect { x0: a.0.min(b.0), y0: a.1.min(b.1), x1: a.0.max(b.0), y1: a.1.max(b.1) });
                }
            }
        }
        series.push(SeriesLayout { name: s.name.clone(), mark: s.mark, color: c, bars, runs });
    }
    for &(y, _) in &p.hlines {
        if let Some(t) = scale.forward(y) {
            chart.draw_series(LineSeries::new(vec![(x0, t), (x1, t)], rgb(HLINE).stroke_width(px(1.5).max(1)))).map_err(err)?;
        }
    }
    for &(x, _) in p.vlines.iter().filter(|v| v.0.is_finite()) {
        chart.draw_series(LineSeries::new(vec![(x, t0), (x, t1)], rgb(VLINE).stroke_width(px(1.5).max(1)))).map_err(err)?;
    }
    Ok(PanelLayout {
        title: p.title.clone(),
        data_area: Rect::from_ranges(chart.plotting_area().get_pixel_range()),
        series,
        y_scale: scale,
        ranges: ((x0, x1), (t0, t1)),
    })
}

impl Figure {
    /// Pixel size at scale `k` (1 = base resolution).
    fn size_at<DB: DrawingBackend>(&self, probe: &DrawingArea<DB, Shift>, plan: &Plan, k: f64) -> (u32, u32, u32, u32) {
        let (cols, rows) = self.grid_shape();
        let single = self.panels.len() == 1;
        let (cw, ch) = if single { SINGLE } else { CELL };
        let (lw, lh) = plan.shared.as_ref().map_or((0, 0), |e| legend_size(probe, e, k));
        let panel_legend_w = plan.per_panel.iter().map(|e| legend_size(probe, e, k).0).max().unwrap_or(0);
        let title_h = if self.title.is_empty() { 0 } else { (34.0 * k) as u32 };
        let cell_w = (cw as f64 * k) as u32 + panel_legend_w + if panel_legend_w > 0 { (12.0 * k) as u32 } else { 0 };
        let cell_h =
            ((ch as f64 * k) as u32).max(plan.per_panel.iter().map(|e| legend_size(probe, e, k).1 + (20.0 * k) as u32).max().unwrap_or(0));
        let legend_w = if lw > 0 { lw + (16.0 * k) as u32 } else { 0 };
        // Saturating: an absurd figure becomes "too large to draw", not a wrapped size.
        let w = (cols as u32).saturating_mul(cell_w).saturating_add(legend_w);
        let h = title_h.saturating_add((rows as u32).saturating_mul(cell_h).max(lh.saturating_add((20.0 * k) as u32)));
        (w, h, cell_w, cell_h)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>, plan: &Plan, cell: (u32, u32), k: f64) -> Result<Layout, String> {
        register_font();
        root.fill(&WHITE).map_err(err)?;
        let (w, h) = root.dim_in_pixel();
        let body =
            if self.title.is_empty() { root.clone() } else { root.titled(&self.title, ("sans-serif", (20.0 * k) as u32)).map_err(err)? };
        let (cols, _) = self.grid_shape();
        let (grid, legend_area) = body.split_horizontally(cols as u32 * cell.0);
        let mut layout = Layout { width: w, height: h, panels: Vec::new(), legends: Vec::new() };
        for (i, p) in self.panels.iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let cell_area = grid.clone().shrink(((c as u32 * cell.0) as i32, (r as u32 * cell.1) as i32), cell);
            let entries = &plan.per_panel[i];
            let (plot_area, legend) = if entries.is_empty() {
                (cell_area.clone(), None)
            } else {
                let lw = legend_size(&cell_area, entries, k).0 + (12.0 * k) as u32;
                let (a, b) = cell_area.split_horizontally(cell.0 - lw);
                (a, Some(b))
            };
            layout.panels.push(draw_panel(&plot_area, p, &plan.colors[i], plan.ranges[i], k, self.panels.len() == 1)?);
            if let Some(l) = legend {
                let dim = l.dim_in_pixel();
                let top = l.shrink((0, (30.0 * k) as i32), dim);
                layout.legends.extend(draw_legend(&top, entries, k)?);
            }
        }
        if let Some(entries) = &plan.shared {
            let dim = legend_area.dim_in_pixel();
            let top = legend_area.shrink((0, (30.0 * k) as i32), dim);
            layout.legends.extend(draw_legend(&top, entries, k)?);
        }
        root.present().map_err(err)?;
        Ok(layout)
    }

    /// The figure's size and cell size at base resolution (text extents need a backend; a
    /// 1×1 bitmap measures with the same font).
    fn base_size(&self, plan: &Plan) -> (u32, u32, u32, u32) {
        let mut probe_buf = vec![0u8; 3];
        let probe = BitMapBackend::with_buffer(&mut probe_buf, (1, 1)).into_drawing_area();
        self.size_at(&probe, plan, 1.0)
    }

    fn render_bitmap(&self, plan: &Plan, (w, h, cw, ch): (u32, u32, u32, u32), k: u32) -> Result<(Vec<u8>, u32, u32, Layout), String> {
        // Sizes at base resolution, multiplied: a 2× PNG is exactly twice as wide and high.
        let (w, h, cw, ch) = (w * k, h * k, cw * k, ch * k);
        let bytes = w as u64 * h as u64 * 3;
        if bytes > MAX_BITMAP_BYTES {
            return Err(format!("a {w}×{h} figure is too large to draw (more than {} MiB); fewer lines or panels", MAX_BITMAP_BYTES >> 20));
        }
        let mut rgb_buf = vec![0u8; bytes as usize];
        let layout = {
            let root = BitMapBackend::with_buffer(&mut rgb_buf, (w, h)).into_drawing_area();
            self.draw(root, plan, (cw, ch), k as f64)?
        };
        Ok((rgb_buf, w, h, layout))
    }

    /// Draw at base resolution and return the layout (what tests inspect).
    pub fn layout(&self) -> Result<Layout, String> {
        register_font();
        let plan = plan(self);
        Ok(self.render_bitmap(&plan, self.base_size(&plan), 1)?.3)
    }

    /// Render to PNG bytes (at [`crate::pixel_scale`]) and SVG text (text kept as `<text>`).
    pub fn render(&self) -> Result<(Vec<u8>, String), String> {
        self.render_scaled(crate::pixel_scale())
    }

    /// Render with the PNG at `scale` × the base resolution.
    pub fn render_scaled(&self, scale: u32) -> Result<(Vec<u8>, String), String> {
        register_font();
        let plan = plan(self);
        let base = self.base_size(&plan);
        let (rgb_buf, w, h, _) = self.render_bitmap(&plan, base, scale.max(1))?;
        let png = crate::heatmap::encode_png(&rgb_buf, w, h)?;
        let (sw, sh, cw, ch) = base;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (sw, sh)).into_drawing_area();
            self.draw(root, &plan, (cw, ch), 1.0)?;
        }
        Ok((png, svg))
    }
}

//! Colours and legends, decided for the whole figure before drawing: colours by legend label
//! when the figure has at most eight (one legend serves every panel), by position otherwise
//! (one legend per panel). Legends are drawn in their own area, never over data.
use crate::figure::{Figure, Mark};
use crate::layout::{PanelRanges, Rect, ranges};
use crate::palette::color_of;
use plotters::coord::Shift;
use plotters::prelude::*;

const LEGEND_ROW: u32 = 20;
const MAX_LEGEND_CHARS: usize = 64;

#[derive(Clone)]
pub(crate) struct Entry {
    label: String,
    color: (u8, u8, u8),
    line: bool,
}

/// Colours and legends decided for the whole figure before drawing.
pub(crate) struct Plan {
    /// Per panel, per series: its colour.
    pub(crate) colors: Vec<Vec<(u8, u8, u8)>>,
    /// One legend for all panels, or one per panel.
    pub(crate) shared: Option<Vec<Entry>>,
    pub(crate) per_panel: Vec<Vec<Entry>>,
    /// Per panel: its scale and (x, t) ranges.
    pub(crate) ranges: Vec<PanelRanges>,
}

pub(crate) const HLINE: (u8, u8, u8) = (40, 40, 40);
pub(crate) const VLINE: (u8, u8, u8) = (150, 150, 150);

fn short(label: &str) -> String {
    if label.chars().count() <= MAX_LEGEND_CHARS {
        label.to_string()
    } else {
        let s: String = label.chars().take(MAX_LEGEND_CHARS - 1).collect();
        format!("{s}…")
    }
}

pub(crate) fn plan(fig: &Figure) -> Plan {
    // Colours by legend label when the whole figure has at most eight of them: the same
    // condition has the same colour in every panel and one legend serves all.
    let mut names: Vec<&str> = Vec::new();
    for s in fig.panels.iter().flat_map(|p| &p.series).filter(|s| !s.name.is_empty()) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let shared_colors = names.len() <= crate::palette::PALETTE.len() && fig.panels.len() > 1;
    let mut colors = Vec::new();
    let mut per_panel = Vec::new();
    for p in &fig.panels {
        let mut c = Vec::new();
        let mut entries = Vec::new();
        for (i, s) in p.series.iter().enumerate() {
            let color = match names.iter().position(|n| *n == s.name) {
                _ if p.sequential => crate::palette::sequential(i, p.series.len()),
                Some(k) if shared_colors => color_of(k),
                _ => color_of(i),
            };
            c.push(color);
            if !s.name.is_empty() {
                entries.push(Entry { label: short(&s.name), color, line: s.mark == Mark::Line });
            }
        }
        for (_, l) in p.hlines.iter().filter(|h| !h.1.is_empty()) {
            entries.push(Entry { label: short(l), color: HLINE, line: true });
        }
        for (_, l) in p.vlines.iter().filter(|v| !v.1.is_empty()) {
            entries.push(Entry { label: short(l), color: VLINE, line: true });
        }
        colors.push(c);
        per_panel.push(entries);
    }
    let shared = (shared_colors || fig.panels.len() == 1).then(|| {
        let mut all: Vec<Entry> = Vec::new();
        for e in per_panel.iter().flatten() {
            if !all.iter().any(|a| a.label == e.label) {
                all.push(e.clone());
            }
        }
        all
    });
    if shared.is_some() {
        per_panel.iter_mut().for_each(|v| v.clear());
    }
    Plan { colors, shared, per_panel, ranges: ranges(fig) }
}

pub(crate) fn err(x: impl std::fmt::Display) -> String {
    x.to_string()
}

pub(crate) fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Legend box size for these entries.
pub(crate) fn legend_size<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry], k: f64) -> (u32, u32) {
    if entries.is_empty() {
        return (0, 0);
    }
    let font = ("sans-serif", (14.0 * k) as u32);
    let text = entries.iter().map(|e| area.estimate_text_size(&e.label, &font.into_text_style(area)).map_or(0, |s| s.0)).max().unwrap_or(0);
    ((text as f64 + 44.0 * k) as u32, ((entries.len() as f64 * LEGEND_ROW as f64) * k + 12.0 * k) as u32)
}

/// Draw a legend at the top left of `area`; returns its rectangle.
pub(crate) fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry], k: f64) -> Result<Option<Rect>, String> {
    if entries.is_empty() {
        return Ok(None);
    }
    let (w, h) = legend_size(area, entries, k);
    let (bx, by) = ((6.0 * k) as i32, (8.0 * k) as i32);
    area.draw(&Rectangle::new([(bx, by), (bx + w as i32, by + h as i32)], WHITE.filled())).map_err(err)?;
    area.draw(&Rectangle::new([(bx, by), (bx + w as i32, by + h as i32)], BLACK.stroke_width(1))).map_err(err)?;
    let font = ("sans-serif", (14.0 * k) as u32).into_font();
    for (i, e) in entries.iter().enumerate() {
        let y = by + ((6 + i as u32 * LEGEND_ROW) as f64 * k) as i32 + (LEGEND_ROW as f64 * k / 2.0) as i32;
        let x = bx + (8.0 * k) as i32;
        let c = rgb(e.color);
        if e.line {
            area.draw(&PathElement::new(vec![(x, y), (x + (20.0 * k) as i32, y)], c.stroke_width((3.0 * k) as u32))).map_err(err)?;
        } else {
            area.draw(&Rectangle::new([(x, y - (5.0 * k) as i32), (x + (20.0 * k) as i32, y + (5.0 * k) as i32)], c.filled()))
                .map_err(err)?;
        }
        let style = font.clone().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
        area.draw(&Text::new(e.label.clone(), (x + (28.0 * k) as i32, y), style)).map_err(err)?;
    }
    let (ox, oy) = area.get_base_pixel();
    Ok(Some(Rect { x0: ox + bx, y0: oy + by, x1: ox + bx + w as i32, y1: oy + by + h as i32 }))
}

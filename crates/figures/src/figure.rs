//! What a figure shows, independent of how it is drawn: panels of series and reference lines.
use crate::scale::YScale;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// Connected by lines.
    Line,
    /// As points.
    Points,
    /// As bars from the axis base, centred on x (a histogram: x = bin centres, y = counts). On a
    /// log axis the base sits half a decade-step below the smallest bar (at 1/2 of it), so a bin
    /// holding one count is a visible bar; bins with y = 0 draw nothing.
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

/// One panel: series, reference lines, axis labels and its y scale.
#[derive(Debug, Clone, Default)]
pub struct Plot {
    /// Title above the panel.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Horizontal reference lines (y, label; an empty label stays out of the legend).
    pub hlines: Vec<(f64, String)>,
    /// Vertical reference lines (x, label).
    pub vlines: Vec<(f64, String)>,
    /// The y scale (default: decided from the data, see [`YScale::Auto`]).
    pub y_scale: YScale,
    /// A heat map under the series: (x, y, value) cell centres on a regular grid, coloured by
    /// log10 of the value over the eight decades below the largest (values ≤ that floor are
    /// not drawn).
    pub cells: Vec<(f64, f64, f64)>,
    /// Colour the series along a sequential colour map in their order (ranks, widths), so
    /// that more than eight stay distinct and neighbours look alike; else the categorical
    /// palette.
    pub sequential: bool,
}

impl Plot {
    /// An empty plot with a title and axis labels.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Plot { title: title.into(), x_label: x.into(), y_label: y.into(), ..Default::default() }
    }
    fn push(mut self, name: &str, points: Vec<(f64, f64)>, mark: Mark, band: Vec<(f64, f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points, mark, band });
        self
    }
    /// Colour the series by their order on a sequential colour map (see [`Plot::sequential`]).
    pub fn sequential(mut self) -> Self {
        self.sequential = true;
        self
    }
    /// Add a heat map (cell centres on a regular grid and their positive values).
    pub fn cells(mut self, cells: Vec<(f64, f64, f64)>) -> Self {
        self.cells = cells;
        self
    }
    /// Add a series drawn as a line.
    pub fn line(self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.push(name, pts, Mark::Line, Vec::new())
    }
    /// Add a series drawn as a line over a shaded band of (x, low, high).
    pub fn line_with_band(self, name: &str, pts: Vec<(f64, f64)>, band: Vec<(f64, f64, f64)>) -> Self {
        self.push(name, pts, Mark::Line, band)
    }
    /// Add a series drawn as points.
    pub fn points(self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.push(name, pts, Mark::Points, Vec::new())
    }
    /// Add a series drawn as bars (x = bin centres, equally spaced).
    pub fn bars(self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.push(name, pts, Mark::Bars, Vec::new())
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
    /// Set the y scale.
    pub fn y_scale(mut self, s: YScale) -> Self {
        self.y_scale = s;
        self
    }
    /// Render this plot alone to PNG bytes and SVG text.
    pub fn render(self) -> Result<(Vec<u8>, String), String> {
        Figure::single(self).render()
    }
    /// Every y value the plot draws (points, band edges, reference lines).
    pub(crate) fn y_values(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).collect();
        v.extend(self.series.iter().flat_map(|s| s.band.iter().flat_map(|b| [b.1, b.2])));
        v.extend(self.hlines.iter().map(|h| h.0));
        v.extend(self.cells.iter().map(|c| c.1));
        v
    }
}

/// A figure: one panel, or small multiples laid out in a grid with one legend outside the
/// data areas.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title above all panels (empty for a single panel: the panel's title is used).
    pub title: String,
    /// The panels, filled row by row.
    pub panels: Vec<Plot>,
    /// Panels per row (0: all in one row up to 5, then rows of ⌈√n⌉).
    pub columns: usize,
    /// One x range for every panel.
    pub share_x: bool,
    /// One y range (and scale) for every panel.
    pub share_y: bool,
}

impl Figure {
    /// A figure of small multiples.
    pub fn grid(title: &str, panels: Vec<Plot>) -> Self {
        Figure { title: title.into(), panels, columns: 0, share_x: true, share_y: false }
    }
    /// One panel.
    pub fn single(plot: Plot) -> Self {
        Figure { title: String::new(), panels: vec![plot], columns: 1, share_x: false, share_y: false }
    }
    /// Set the number of panels per row.
    pub fn columns(mut self, c: usize) -> Self {
        self.columns = c;
        self
    }
    /// Share (or not) the y range across panels.
    pub fn share_y(mut self, share: bool) -> Self {
        self.share_y = share;
        self
    }
    /// Panels per row and rows.
    pub fn grid_shape(&self) -> (usize, usize) {
        let n = self.panels.len().max(1);
        let c = match self.columns {
            0 if n <= 5 => n,
            0 => (n as f64).sqrt().ceil() as usize,
            c => c.min(n),
        };
        (c, n.div_ceil(c))
    }
}

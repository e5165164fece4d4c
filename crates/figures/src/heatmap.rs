//! PNG encoding and matrix heat maps (drawn pixel by pixel, not through plotters).

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
/// A heat map of a square matrix (S16 Fig 5) as a raster only: |A| on a log color scale, one
/// pixel block per entry (downsampled by block maxima for large matrices).
pub fn heatmap_png(a: &faer::Mat<f64>, size: u32) -> Result<Vec<u8>, String> {
    let (rgb, side) = heatmap_rgb(a, size)?;
    encode_png(&rgb, side, side)
}

/// The heat map's RGB raster and its side in pixels.
pub fn heatmap_rgb(a: &faer::Mat<f64>, size: u32) -> Result<(Vec<u8>, u32), String> {
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
    Ok((rgb, size))
}

/// The colour of `t` ∈ [0, 1] (0: 8 decades below the largest |entry| or less, 1: the largest)
/// for a positive or negative entry, as the raster draws it.
fn key_colour(t: f64, positive: bool) -> (u8, u8, u8) {
    let v = (255.0 * (1.0 - t.clamp(0.0, 1.0))) as u8;
    if positive { (255, v, v) } else { (v, v, 255) }
}

/// The heat map as a figure: `title` above, the raster with row and column axes (entry index
/// 0 … n), and the colour key beside it (red positive, blue negative, |entry| over 8 decades).
pub fn heatmap_figure_png(rgb: &[u8], side: u32, n: usize, title: &str) -> Result<Vec<u8>, String> {
    use plotters::prelude::*;
    crate::render::register_font();
    let err = |e: String| e;
    let (left, top, right, bottom) = (70u32, 44u32, 170u32, 56u32);
    let (w, h) = (side + left + right, side + top + bottom);
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let e = |x: DrawingAreaErrorKind<_>| err(x.to_string());
        root.fill(&WHITE).map_err(e)?;
        let font = |px: u32| ("sans-serif", px).into_font();
        root.draw(&Text::new(
            title.to_string(),
            ((w / 2) as i32, 12),
            font(20).color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            )),
        ))
        .map_err(e)?;
        // The frame first: the raster drawn over it keeps every one of its pixels.
        let (x0, y0, s) = (left as i32, top as i32, side as i32);
        root.draw(&Rectangle::new([(x0 - 1, y0 - 1), (x0 + s, y0 + s)], BLACK.stroke_width(1))).map_err(e)?;
        for y in 0..side {
            for x in 0..side {
                let i = (y as usize * side as usize + x as usize) * 3;
                root.draw_pixel(((left + x) as i32, (top + y) as i32), &RGBColor(rgb[i], rgb[i + 1], rgb[i + 2])).map_err(e)?;
            }
        }
        // Ticks at 0, n/4, n/2, 3n/4, n on both axes: entry (row, column) indices.
        for q in 0..=4 {
            let at = (q * s) / 4;
            let label = format!("{}", q as usize * n / 4);
            // Outside the raster: the last entry's tick sits on the frame.
            let at = at.min(s - 1);
            root.draw(&PathElement::new(vec![(x0 + at, y0 + s + 1), (x0 + at, y0 + s + 5)], BLACK)).map_err(e)?;
            root.draw(&PathElement::new(vec![(x0 - 5, y0 + at), (x0 - 2, y0 + at)], BLACK)).map_err(e)?;
            let anchor = |h, v| plotters::style::text_anchor::Pos::new(h, v);
            use plotters::style::text_anchor::{HPos, VPos};
            root.draw(&Text::new(label.clone(), (x0 + at, y0 + s + 8), font(12).color(&BLACK).pos(anchor(HPos::Center, VPos::Top))))
                .map_err(e)?;
            root.draw(&Text::new(label, (x0 - 8, y0 + at), font(12).color(&BLACK).pos(anchor(HPos::Right, VPos::Center)))).map_err(e)?;
        }
        root.draw(&Text::new("column (parameter index)", (x0 + s / 2 - 70, y0 + s + 30), font(13).color(&BLACK))).map_err(e)?;
        root.draw(&Text::new("row", (4, y0 + s / 2), font(13).color(&BLACK))).map_err(e)?;
        // The key: two bars, positive and negative, from the largest |entry| down 8 decades.
        let (kx, kh) = (x0 + s + 24, s.min(320));
        for (j, positive) in [(0, true), (1, false)] {
            let bx = kx + j * 22;
            for y in 0..kh {
                let t = 1.0 - y as f64 / (kh - 1).max(1) as f64;
                let (r, g, b) = key_colour(t, positive);
                root.draw(&PathElement::new(vec![(bx, y0 + y), (bx + 16, y0 + y)], RGBColor(r, g, b))).map_err(e)?;
            }
            root.draw(&Rectangle::new([(bx, y0), (bx + 16, y0 + kh)], BLACK.stroke_width(1))).map_err(e)?;
            root.draw(&Text::new(if positive { "+" } else { "−" }, (bx + 4, y0 + kh + 4), font(13).color(&BLACK))).map_err(e)?;
        }
        for (d, label) in [(0, "max |entry|"), (4, "10⁻⁴ · max"), (8, "10⁻⁸ · max")] {
            let y = y0 + (d * (kh - 1)) / 8;
            root.draw(&Text::new(label, (kx + 46, y - 6), font(12).color(&BLACK))).map_err(e)?;
        }
        root.draw(&Text::new("|entry|, log scale", (kx, y0 + kh + 24), font(12).color(&BLACK))).map_err(e)?;
        root.present().map_err(e)?;
    }
    encode_png(&buf, w, h)
}

/// The SVG of a heat map: the raster embedded as an image (a P×P matrix has no useful vector
/// form) under a title and a colour key kept as text.
pub fn heatmap_svg(png: &[u8], side: u32, title: &str) -> String {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let (w, h) = (side.max(480), side + 80);
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
            "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>",
            "<text x=\"{cx}\" y=\"24\" font-family=\"sans-serif\" font-size=\"18\" text-anchor=\"middle\">{t}</text>",
            "<image x=\"0\" y=\"40\" width=\"{s}\" height=\"{s}\" xlink:href=\"data:image/png;base64,{d}\"/>",
            "<text x=\"{cx}\" y=\"{ky}\" font-family=\"sans-serif\" font-size=\"13\" text-anchor=\"middle\">",
            "|entry| on a log scale over 8 decades below the largest; red positive, blue negative</text></svg>"
        ),
        w = w,
        h = h,
        cx = w / 2,
        t = esc(title),
        s = side,
        d = data,
        ky = side + 64
    )
}

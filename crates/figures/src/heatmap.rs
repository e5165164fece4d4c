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

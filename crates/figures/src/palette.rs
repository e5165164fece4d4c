//! Okabe & Ito's colour-blind-safe palette (Color Universal Design, 2008), ordered so the first
//! colours stay apart under every common colour-vision deficiency; yellow comes last because it
//! is faint on white.

/// The eight colours as RGB.
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0, 114, 178),   // blue
    (213, 94, 0),    // vermillion
    (0, 158, 115),   // bluish green
    (204, 121, 167), // reddish purple
    (230, 159, 0),   // orange
    (86, 180, 233),  // sky blue
    (0, 0, 0),       // black
    (240, 228, 66),  // yellow
];

/// The colour of the `i`-th series (repeats after eight; small multiples keep panels to fewer).
pub fn color_of(i: usize) -> (u8, u8, u8) {
    PALETTE[i % PALETTE.len()]
}

/// The `i`-th of `n` colours along viridis (Smith & van der Walt, perceptually uniform and
/// colour-blind safe), dark purple to green; its faint yellow end is left out on white.
pub fn sequential(i: usize, n: usize) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = if n > 1 { 0.85 * i as f64 / (n - 1) as f64 } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let k = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let mix = |u: f64, v: f64| (u + f * (v - u)).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

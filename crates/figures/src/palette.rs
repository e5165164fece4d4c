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

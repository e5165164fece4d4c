//! The y scale: linear, log10 (positive data), or symmetric log (data of both signs spanning
//! decades, e.g. eigenvalues from −1e-4 to 50). Values are drawn in transformed coordinates
//! chosen so that whole numbers fall on decades; tick labels show the untransformed values.

/// How the y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum YScale {
    /// Log when all values are positive and span more than 3 decades, symmetric log when they
    /// have both signs and span more than 3 decades, otherwise linear.
    #[default]
    Auto,
    /// Linear.
    Linear,
    /// log10; values ≤ 0 are not drawn.
    Log,
    /// Linear within ±`linthresh`, log10 beyond, symmetric about zero.
    Symlog {
        /// The half-width of the linear region.
        linthresh: f64,
    },
}

/// Decades spanned by positive magnitudes: log10(max / min).
fn decades(abs: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for a in abs.filter(|a| *a > 0.0 && a.is_finite()) {
        lo = lo.min(a);
        hi = hi.max(a);
    }
    (hi > 0.0).then_some((lo, hi))
}

impl YScale {
    /// The concrete scale for these values (Auto decided; never Auto).
    pub fn resolve(self, values: &[f64]) -> YScale {
        let finite = || values.iter().copied().filter(|v| v.is_finite());
        match self {
            YScale::Auto => {
                let Some((lo, hi)) = decades(finite().map(f64::abs)) else { return YScale::Linear };
                if hi / lo <= 1e3 {
                    YScale::Linear
                } else if finite().all(|v| v > 0.0) {
                    YScale::Log
                } else {
                    YScale::Symlog { linthresh: symlog_threshold(hi) }
                }
            }
            YScale::Symlog { linthresh } if !(linthresh > 0.0) => {
                YScale::Symlog { linthresh: symlog_threshold(decades(finite().map(f64::abs)).map_or(1.0, |d| d.1)) }
            }
            s => s,
        }
    }

    /// Transformed coordinate of `y` (None: not drawable on this scale).
    pub fn forward(self, y: f64) -> Option<f64> {
        if !y.is_finite() {
            return None;
        }
        match self {
            YScale::Auto | YScale::Linear => Some(y),
            YScale::Log => (y > 0.0).then(|| y.log10()),
            // Whole numbers on decades: t = ±1 at ±c, t = ±(k + 1) at ±c·10^k.
            YScale::Symlog { linthresh: c } => {
                let a = y.abs();
                Some(if a <= c { y / c } else { y.signum() * ((a / c).log10() + 1.0) })
            }
        }
    }

    /// The value at transformed coordinate `t`.
    pub fn inverse(self, t: f64) -> f64 {
        match self {
            YScale::Auto | YScale::Linear => t,
            YScale::Log => 10f64.powf(t),
            YScale::Symlog { linthresh: c } => {
                if t.abs() <= 1.0 {
                    t * c
                } else {
                    t.signum() * c * 10f64.powf(t.abs() - 1.0)
                }
            }
        }
    }

    /// Whether ticks should sit on whole transformed units (decades).
    pub fn is_logarithmic(self) -> bool {
        matches!(self, YScale::Log | YScale::Symlog { .. })
    }

    /// The axis label suffix naming the scale.
    pub fn describe(self) -> &'static str {
        match self {
            YScale::Log => " (log scale)",
            YScale::Symlog { .. } => " (symmetric log scale)",
            _ => "",
        }
    }
}

/// The linear region of an automatic symmetric log: three decades below the largest magnitude,
/// rounded down to a power of ten, so the near-zero bulk is resolved but not blown up.
fn symlog_threshold(max_abs: f64) -> f64 {
    10f64.powf((max_abs * 1e-3).log10().floor())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_by_sign_and_span() {
        assert_eq!(YScale::Auto.resolve(&[1.0, 2.0, 500.0]), YScale::Linear);
        assert_eq!(YScale::Auto.resolve(&[1e-3, 2.0, 50.0]), YScale::Log);
        assert!(matches!(YScale::Auto.resolve(&[-1e-4, 0.0, 50.0]), YScale::Symlog { .. }));
        assert_eq!(YScale::Auto.resolve(&[-3.0, 0.0, 50.0]), YScale::Linear);
        assert_eq!(YScale::Auto.resolve(&[]), YScale::Linear);
    }

    #[test]
    fn transforms_round_trip_and_put_decades_on_whole_numbers() {
        let s = YScale::Symlog { linthresh: 1e-2 };
        for y in [-50.0, -1e-2, -3e-3, 0.0, 4e-3, 1e-2, 0.7, 1e3] {
            let t = s.forward(y).unwrap();
            assert!((s.inverse(t) - y).abs() <= 1e-12 * y.abs().max(1e-12), "{y} -> {t}");
        }
        assert!((s.forward(1.0).unwrap() - 3.0).abs() < 1e-12);
        assert!((s.forward(-1e-2).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(YScale::Log.forward(0.0), None);
        assert!((YScale::Log.forward(1e3).unwrap() - 3.0).abs() < 1e-12);
    }
}

//! Figures checked from their own layout data, not from pixels.
use hesslab_figures::spectra::{SpectrumView, eigenvalue_figures, histogram};
use hesslab_figures::{Figure, Mark, Plot, YScale};

#[test]
fn histogram_bars_show_single_counts_and_leave_empty_bins_empty() {
    // 1000 values in the first bin, one in the last, nothing between.
    let mut values = vec![0.0; 1000];
    values.push(1.0);
    let bins = histogram(&values, 10);
    assert_eq!(bins.iter().filter(|b| b.1 > 0.0).count(), 2);
    for scale in [YScale::Log, YScale::Linear] {
        let layout = Figure::single(Plot::new("h", "x", "count").bars("", bins.clone()).y_scale(scale)).layout().unwrap();
        let s = &layout.panels[0].series[0];
        assert_eq!(s.mark, Mark::Bars);
        assert_eq!(s.bars.len(), 2, "{scale:?}: only non-empty bins are drawn");
        let (big, one) = (s.bars[0], s.bars[1]);
        let area = layout.panels[0].data_area;
        if scale == YScale::Log {
            // On a log axis one count is a bar from 1/2 to 1: about a tenth of three decades.
            assert!(one.height() >= 20, "one count drawn {} px high", one.height());
            assert!(big.height() > 3 * one.height());
        }
        assert!(one.height() >= 1 && one.width() >= 1);
        // Bars sit on a common base inside the data area.
        assert_eq!(big.y1, one.y1);
        assert!(big.y0 >= area.y0 && big.y1 <= area.y1 && one.x1 <= area.x1);
    }
}

#[test]
fn eigenvalue_histogram_is_bars_on_a_log_count_axis() {
    let mut desc: Vec<f64> = (0..500).map(|i| if i < 3 { 10.0 - i as f64 } else { 1e-4 * ((i % 7) as f64 - 3.0) }).collect();
    desc.sort_by(|a, b| b.total_cmp(a));
    let figs = eigenvalue_figures(
        &SpectrumView { desc: &desc, dim: desc.len(), which: None, zero_tol: hesslab_figures::spectra::DEFAULT_ZERO_TOL },
        Some((1.0, 3)),
    );
    let names: Vec<&str> = figs.iter().map(|f| f.0).collect();
    assert_eq!(names, ["spectrum", "top", "negative", "histogram"]);
    let h = figs[3].1.layout().unwrap();
    assert_eq!(h.panels[0].y_scale, YScale::Log);
    // The three outliers are three one-count bars, all visible.
    let bars = &h.panels[0].series[0].bars;
    assert!(bars.iter().filter(|b| b.height() >= 20).count() == bars.len(), "{bars:?}");
    // The negative figure covers the whole negative part: every negative value, in % of P.
    let neg = &figs[2].1.panels[0].series[0].points;
    assert_eq!(neg.len(), desc.iter().filter(|v| **v < 0.0).count());
    assert!(neg.last().unwrap().0 < 100.0 * neg.len() as f64 / desc.len() as f64);
    // Its title gives both counts (#44): every λ < 0, and the summary's, beyond −zero_tol·max|λ|
    // (here zero_tol = 1e-6 of max 10: below −1e-5, i.e. all of the −1e-4·k values).
    let below_zero = desc.iter().filter(|v| **v < 0.0).count();
    let beyond = desc.iter().filter(|v| **v < -1e-5).count();
    let title = &figs[2].1.panels[0].title;
    assert!(title.contains(&format!("{below_zero} of P = 500 below 0; {beyond} below −1e-6·max|λ|")), "{title}");
    let strict = eigenvalue_figures(&SpectrumView { desc: &desc, dim: desc.len(), which: None, zero_tol: 2.5e-5 }, None);
    let t = &strict[2].1.panels[0].title;
    let fewer = desc.iter().filter(|v| **v < -2.5e-4).count();
    assert!(fewer < beyond && t.contains(&format!("{fewer} below −2.5e-5·max|λ|")), "{t}");
}

#[test]
fn svg_keeps_text_and_png_doubles_on_request() {
    let fig = Figure::single(Plot::new("Title here", "rank", "eigenvalue").line("a line", vec![(0.0, 1.0), (1.0, 2.0)]));
    let (png1, svg) = fig.render_scaled(1).unwrap();
    assert!(svg.contains("<text") && svg.contains("Title here") && svg.contains("a line"));
    let (png2, _) = fig.render_scaled(2).unwrap();
    let dims = |b: &[u8]| (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()));
    let (w1, h1) = dims(&png1);
    assert_eq!(dims(&png2), (2 * w1, 2 * h1));
    // The legend sits outside the data area.
    let l = fig.layout().unwrap();
    assert_eq!(l.legends.len(), 1);
    assert!(!l.legends[0].intersects(&l.panels[0].data_area));
}

#[test]
fn density_figure_uses_log_density_and_overlays_the_exact_histogram() {
    let x: Vec<f64> = (0..200).map(|i| -1.0 + i as f64 * 0.05).collect();
    let d: Vec<f64> = x.iter().map(|v: &f64| (-(v * v) / 0.02).exp() / (0.02f64 * std::f64::consts::PI).sqrt()).collect();
    let exact = [0.0, 0.0, 0.01, 5.0];
    let f = hesslab_figures::spectra::density_figure(&x, &d, Some(&exact));
    let l = f.layout().unwrap();
    assert_eq!(l.panels[0].y_scale, YScale::Log);
    assert_eq!(l.panels[0].series.len(), 2);
    assert_eq!(l.panels[0].series[0].mark, Mark::Bars);
    assert_eq!(l.panels[0].series[0].bars.len(), 2, "two occupied bins: near 0 and at 5");
    assert_eq!(l.panels[0].series[1].runs, 1, "one piece: the Gaussian's tails stay above 1e-10 of its peak here");
    // Two parts of a spectrum with a gap between them: the density line stops across the gap
    // (#44: it ran flat along the 1e-10 floor).
    let two: Vec<f64> = x.iter().map(|v| (-(v + 0.6f64).powi(2) / 0.002).exp() + 0.5 * (-(v - 0.6f64).powi(2) / 0.002).exp()).collect();
    let l = hesslab_figures::spectra::density_figure(&x, &two, None).layout().unwrap();
    assert_eq!(l.panels[0].series[0].runs, 2, "the line breaks across the gap");
}

#[test]
fn degenerate_data_renders_without_error() {
    let nan = f64::NAN;
    let cases = vec![
        Plot::new("empty", "x", "y"),
        Plot::new("one point", "x", "y").line("a", vec![(1.0, 2.0)]),
        Plot::new("all NaN", "x", "y").line("a", vec![(nan, nan), (1.0, nan)]).points("b", vec![(f64::INFINITY, 1.0)]),
        Plot::new("zero bars", "x", "count").bars("", vec![(0.0, 0.0), (1.0, 0.0)]).y_scale(YScale::Log),
        Plot::new("log of negatives", "x", "y").line("a", vec![(0.0, -1.0), (1.0, -2.0)]).y_scale(YScale::Log),
        Plot::new("constant", "x", "y").line("a", vec![(0.0, 5.0), (1.0, 5.0)]).hline(5.0, "five").vline(0.5, ""),
        Plot::new("huge span", "x", "y").points("", vec![(0.0, -1e-300), (1.0, 1e300), (2.0, 0.0)]),
    ];
    for p in cases {
        let title = p.title.clone();
        let (png, svg) = p.clone().render().unwrap_or_else(|e| panic!("{title}: {e}"));
        assert!(png.len() > 100 && svg.contains("</svg>"), "{title}");
        Figure::grid("grid", vec![p.clone(), p]).layout().unwrap_or_else(|e| panic!("{title} in a grid: {e}"));
    }
    Figure::grid("no panels", vec![]).render().unwrap();
}

#[test]
fn an_absurdly_large_figure_is_an_error_not_a_panic() {
    let panels: Vec<Plot> = (0..40_000).map(|i| Plot::new(&format!("{i}"), "x", "y").line("", vec![(0.0, 1.0), (1.0, 2.0)])).collect();
    let e = Figure::grid("many", panels).columns(200).render().unwrap_err();
    assert!(e.contains("too large to draw"), "{e}");
}

//! Figures from a pipeline run and from `hesslab plot`: solver and density stages draw their
//! default figures (off with `plot = false`), artifacts redraw from Parquet alone at 1× and 2×,
//! and a sweep with replicates is drawn as small multiples with bands.
use std::path::{Path, PathBuf};
use std::process::Command;

const PIPELINE: &str = r#"
[pipeline]
name = "figs"
seed = 2
[sweep]
data.classes = [3, 4]
train.seed = [1, 2]
[stages.data]
kind = "gaussian_mixture"
dim = 12
samples = 300
[stages.train]
kind = "train"
dataset = "data.dataset"
hidden = [8]
max_steps = 150
[stages.eigen]
kind = "eigenvalues"
model = "train.model"
dataset = "data.dataset"
[stages.top]
kind = "eigenvalues"
model = "train.model"
dataset = "data.dataset"
solver = "lanczos"
k = 5
plot = false
[stages.density]
kind = "spectral_density"
model = "train.model"
dataset = "data.dataset"
probes = 3
steps = 30
[stages.summary]
kind = "spectrum_summary"
eigenvalues = "eigen.eigenvalues"
[stages.table]
kind = "compare"
summaries = "summary.summary[*]"
eigenvalues = "eigen.eigenvalues[*]"
nodes = "density.nodes[*]"
slq_zero_tol = 0.01
"#;

fn hesslab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hesslab")).args(args).output().unwrap()
}

fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-figures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn stages_draw_default_figures_and_plot_redraws_them() {
    let dir = tmp("run");
    let file = dir.join("figs.toml");
    std::fs::write(&file, PIPELINE).unwrap();
    let out = dir.join("out");
    let o = hesslab(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--dpi", "192"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let member = out.join("figs/data.classes=3__train.seed=1");
    for f in ["eigen/top", "eigen/histogram", "eigen/spectrum", "density/density", "summary/histogram"] {
        for ext in ["png", "svg"] {
            assert!(member.join(format!("{f}.{ext}")).exists(), "{f}.{ext} missing");
        }
    }
    // The report captions each figure with its member, stage, kind and parameters.
    let report = std::fs::read_to_string(out.join("figs/report.html")).unwrap();
    assert!(
        report.contains("member <code>data.classes=3__train.seed=1</code>, stage <code>density</code> (kind <code>spectral_density</code>")
            && report.contains("\"probes\":3"),
        "report captions"
    );
    // A partial spectrum (Lanczos top 5) has no histogram or ordered-spectrum figure: it is not
    // the spectrum.
    let o = hesslab(&["plot", member.join("top/eigenvalues.parquet").to_str().unwrap(), "--out", dir.join("partial").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        dir.join("partial/top.png").exists() && !dir.join("partial/histogram.png").exists() && !dir.join("partial/spectrum.png").exists()
    );
    // `plot = false` draws nothing; the artifact is still written.
    assert!(member.join("top/eigenvalues.parquet").exists() && !member.join("top/top.png").exists());
    // --dpi 192 doubled the PNGs of this run.
    let eigen = member.join("eigen/eigenvalues.parquet");
    let two = png_size(&member.join("eigen/top.png"));
    let redraw = dir.join("redraw");
    let o = hesslab(&["plot", eigen.to_str().unwrap(), "--out", redraw.to_str().unwrap(), "--kind", "top"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = png_size(&redraw.join("top.png"));
    assert_eq!(two, (2 * one.0, 2 * one.1));
    assert!(!redraw.join("histogram.png").exists(), "--kind top draws only the top figure");
    let svg = std::fs::read_to_string(redraw.join("top.svg")).unwrap();
    assert!(svg.contains("<text") && svg.contains("Top "), "SVG text stays text");
    // Every figure of a density, with its negative part from the sibling nodes when negative.
    let o = hesslab(&["plot", member.join("density/density.parquet").to_str().unwrap(), "--out", redraw.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(redraw.join("density.png").exists());
    // Replicates: compare's overlay and the rank_spread redraw have one banded line per class count.
    let table = out.join("figs/all/table");
    assert!(table.join("top_overlay.png").exists() && table.join("top_overlay.svg").exists());
    let o =
        hesslab(&["plot", table.join("rank_spread.parquet").to_str().unwrap(), "--out", redraw.to_str().unwrap(), "--y-scale", "symlog"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(redraw.join("top.svg")).unwrap();
    assert!(svg.contains("data.classes 3 (mean, min–max of 2)") && svg.contains("symmetric log"), "legend and scale in the SVG");
    // Any set of eigenvalues files in one figure, labelled by their member directories.
    let evs: Vec<String> = ["3__train.seed=1", "3__train.seed=2", "4__train.seed=1", "4__train.seed=2"]
        .iter()
        .map(|m| out.join(format!("figs/data.classes={m}/eigen/eigenvalues.parquet")).display().to_string())
        .collect();
    let mut args = vec!["plot", "--overlay", "--panels", "data.classes", "--out", redraw.to_str().unwrap()];
    args.extend(evs.iter().map(|s| s.as_str()));
    let o = hesslab(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(redraw.join("top_overlay.svg")).unwrap();
    assert!(svg.contains("data.classes = 3") && svg.contains("data.classes = 4") && svg.contains("train.seed 2"), "panels and legend");
    let mut args = vec!["plot", "--overlay", "--panels", "data.classez"];
    args.extend(evs.iter().map(|s| s.as_str()));
    let o = hesslab(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("data.classez") && err.contains("train.seed"), "{err}");
    // With SLQ nodes connected, `spread` carries each group's SLQ share near zero and below
    // zero: the mean over seeds of Σ weights / probes, recomputed here from the nodes files.
    use hesslab_pipeline::Port;
    let spread = hesslab_artifacts::Spread::decode(&hesslab_pipeline::read_artifact(&table.join("spread.parquet"), None).unwrap()).unwrap();
    let at = |q: &str| {
        let i = (0..spread.quantity.len()).find(|&i| spread.quantity[i] == q && spread.labels[0].1[i] == "3").unwrap();
        spread.stats[i]
    };
    let share = |seed: u32, keep: &dyn Fn(f64) -> bool| {
        let p = out.join(format!("figs/data.classes=3__train.seed={seed}/density/nodes.parquet"));
        let n = hesslab_artifacts::Nodes::decode(&hesslab_pipeline::read_artifact(&p, None).unwrap()).unwrap();
        n.rows.iter().filter(|r| keep(r.node)).map(|r| r.weight).sum::<f64>() / 3.0
    };
    let near: Vec<f64> = (1..=2).map(|s| share(s, &|v| v.abs() < 0.01)).collect();
    let below: Vec<f64> = (1..=2).map(|s| share(s, &|v| v < -0.01)).collect();
    assert!((at("slq_near_zero").mean - (near[0] + near[1]) / 2.0).abs() < 1e-12, "{:?} vs {near:?}", at("slq_near_zero"));
    assert!((at("slq_negative").mean - (below[0] + below[1]) / 2.0).abs() < 1e-12);
    assert!(at("slq_near_zero").mean > 0.5, "a trained net's spectrum is mostly near zero");
    assert!(std::fs::read_to_string(table.join("table.md")).unwrap().contains("SLQ share near 0"));
    // Bad requests are clear errors, and nothing is written for them.
    let o = hesslab(&["plot", member.join("train/model.parquet").to_str().unwrap(), "--out", dir.join("no").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no figures for `model`") && err.contains("eigenvalues"), "{err}");
    assert!(!dir.join("no").exists());
    let o = hesslab(&["plot", eigen.to_str().unwrap(), "--kind", "heatmap", "--out", redraw.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no figure `heatmap`") && err.contains("histogram"), "{err}");
    let o = hesslab(&["plot", eigen.to_str().unwrap(), "--dpi", "100"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--dpi 100"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The heat map PNG is a figure (#44): the raster, pixel for pixel, inside a frame with a
/// title above, axes below and left, and a colour key (red and blue bars) on the right.
#[test]
fn the_heatmap_png_has_a_title_axes_and_a_colour_key_around_the_raster() {
    let a = faer::Mat::<f64>::from_fn(40, 40, |i, j| if i == j { 1.0 } else { ((i * 7 + j * 3) % 11) as f64 * 1e-3 - 5e-3 });
    let (rgb, side) = hesslab_figures::heatmap_rgb(&a, 200).unwrap();
    let png = hesslab_figures::heatmap_figure_png(&rgb, side, 40, "hessian (40 × 40)").unwrap();
    let dec = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = dec.read_info().unwrap();
    let mut img = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut img).unwrap();
    let (w, h) = (info.width, info.height);
    assert!(w > side + 150 && h > side + 60, "{w}×{h} around a {side}² raster");
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        (img[i], img[i + 1], img[i + 2])
    };
    // The raster sits at (70, 44), unchanged.
    for (x, y) in [(0, 0), (side / 2, side / 3), (side - 1, side - 1)] {
        let i = ((y * side + x) * 3) as usize;
        assert_eq!(px(70 + x, 44 + y), (rgb[i], rgb[i + 1], rgb[i + 2]), "raster pixel ({x}, {y})");
    }
    // Text above (the title) and below (tick labels): dark pixels outside the raster.
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| (y0..y1).any(|y| (x0..x1).any(|x| px(x, y).0 < 100 && px(x, y).1 < 100));
    assert!(dark(70, 70 + side, 0, 40), "no title");
    assert!(dark(60, 80 + side, 44 + side + 6, h), "no x-axis labels");
    assert!(dark(0, 66, 44, 44 + side), "no y-axis labels");
    // The key: nearly saturated red and blue at its top, white at its bottom (8 decades down).
    let row = |y: u32| (70 + side + 20..w).map(|x| px(x, y)).collect::<Vec<_>>();
    let top = row(46);
    assert!(top.iter().any(|c| c.0 == 255 && c.1 < 8) && top.iter().any(|c| c.2 == 255 && c.0 < 8), "no colour key: {top:?}");
    let low = row(44 + side.min(320) - 2);
    assert!(low.iter().any(|c| c.0 == 255 && c.1 > 240 && c.1 < 255), "the key's low end is not nearly white: {low:?}");
}

/// A sequential plot (ranks along training, #44) gives each of twelve lines its own colour,
/// darkest for the first, where the categorical palette repeats after eight (λ1 and λ9 were
/// the same blue).
#[test]
fn ranks_get_distinct_colours_along_a_sequential_map() {
    use hesslab_figures::{Figure, Plot};
    let lines =
        |p: Plot| (0..12).fold(p, |p, r| p.line(&format!("λ{}", r + 1), vec![(0.0, 1.0 / (r + 1) as f64), (1.0, 0.5 / (r + 1) as f64)]));
    let colours = |p: Plot| Figure::single(lines(p)).layout().unwrap().panels[0].series.iter().map(|s| s.color).collect::<Vec<_>>();
    let categorical = colours(Plot::new("t", "step", "eigenvalue"));
    assert_eq!(categorical[0], categorical[8], "the palette repeats (what the sequential map is for)");
    let seq = colours(Plot::new("t", "step", "eigenvalue").sequential());
    let mut distinct = seq.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "{seq:?}");
    let lum = |c: (u8, u8, u8)| 0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64;
    assert!(seq.windows(2).all(|w| lum(w[1]) > lum(w[0])), "lightness rises with rank: {seq:?}");
}

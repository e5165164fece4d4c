//! `hesslab plot FILE.parquet`: write an artifact's figures as PNG and SVG, each written to a
//! temporary name and renamed, so an interrupted plot never leaves half a file.
use anyhow::{Context, Result};
use hesslab_analysis::replot::{ReplotOptions, figures, overlay_figure};
use hesslab_figures::Figure;
use std::path::{Path, PathBuf};

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.partial", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Draw `file`'s figures into `out`; returns the files written. The default is
/// `plots/<member>/<stage>/` under the current directory, named after the artifact's two
/// parent directories: never the stage directory itself, which the cache owns (a rerun
/// replaces it whole, restyled figures included).
pub fn plot(file: &Path, out: Option<&Path>, options: &ReplotOptions) -> Result<Vec<PathBuf>> {
    let figs = figures(file, options).map_err(anyhow::Error::msg)?;
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => default_dir(file),
    };
    write_figures(figs, &dir)
}

/// `plots/<member>/<stage>` for `.../<member>/<stage>/<port>.parquet`.
pub fn default_dir(file: &Path) -> PathBuf {
    let parents: Vec<&std::ffi::OsStr> = file.parent().into_iter().flat_map(|p| p.iter().rev().take(2)).collect();
    parents.into_iter().rev().fold(PathBuf::from("plots"), |d, c| if c == ".." || c == "." || c == "/" { d } else { d.join(c) })
}

/// Draw several `eigenvalues` files in one overlay into `out` (default: the current directory).
pub fn plot_overlay(files: &[PathBuf], out: Option<&Path>, options: &ReplotOptions) -> Result<Vec<PathBuf>> {
    let fig = overlay_figure(files, options).map_err(anyhow::Error::msg)?;
    let name = if options.kind.as_deref() == Some("negative") { "negative_overlay" } else { "top_overlay" };
    write_figures(vec![(name.to_string(), fig)], out.unwrap_or(Path::new(".")))
}

fn write_figures(figs: Vec<(String, Figure)>, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, fig) in figs {
        let (png, svg) = fig.render().map_err(|m| anyhow::anyhow!("figure `{name}`: {m}"))?;
        for (ext, bytes) in [("png", png.as_slice()), ("svg", svg.as_bytes())] {
            let p = dir.join(format!("{name}.{ext}"));
            write_atomic(&p, bytes)?;
            written.push(p);
        }
    }
    Ok(written)
}

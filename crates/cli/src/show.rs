//! `hesslab show FILE.parquet`: schema, metadata and the first rows.
use arrow_array::Array;
use hesslab_pipeline::ArtifactReader;
use std::path::Path;

/// The text `hesslab show` prints.
pub fn show(path: &Path, rows: usize) -> Result<String, hesslab_pipeline::Error> {
    // Only the rows shown are decoded: the count comes from the footer.
    let reader = ArtifactReader::open(path, None)?;
    let total = reader.rows();
    let header = reader.header();
    let mut s = format!("{}\n{total} rows\nschema:\n", path.display());
    for f in header.batch.schema().fields() {
        s.push_str(&format!("  {}: {}\n", f.name(), hesslab_pipeline::port_type_name(f.data_type())));
    }
    s.push_str("metadata:\n");
    for (k, v) in &header.metadata {
        let v = if v.len() > 200 { format!("{}…", &v[..v.char_indices().nth(200).map(|c| c.0).unwrap_or(v.len())]) } else { v.clone() };
        s.push_str(&format!("  {k} = {v}\n"));
    }
    s.push_str("rows:\n");
    let first = if rows == 0 || total == 0 { None } else { reader.batches(rows)?.next().transpose()? };
    let Some(b) = first else { return Ok(s) };
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    if total == 1 {
        // One row (a summary): one line per column, name then value.
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (c, name) in names.iter().enumerate() {
            s.push_str(&format!("  {name:<width$}  {}\n", cell(b.column(c).as_ref(), 0)));
        }
        return Ok(s);
    }
    // A table: the column names above the cells, each column as wide as its widest entry.
    let shown = rows.min(b.num_rows());
    let cells: Vec<Vec<String>> = (0..b.num_columns()).map(|c| (0..shown).map(|r| cell(b.column(c).as_ref(), r)).collect()).collect();
    let widths: Vec<usize> = names
        .iter()
        .zip(&cells)
        .map(|(n, col)| col.iter().map(|x| x.chars().count()).chain([n.chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |items: &mut dyn Iterator<Item = (usize, String)>| -> String {
        items.map(|(w, x)| format!("{x:<w$}")).collect::<Vec<_>>().join(" | ").trim_end().to_string()
    };
    s.push_str(&format!("  {}\n", line(&mut widths.iter().copied().zip(names.iter().cloned()))));
    for r in 0..shown {
        s.push_str(&format!("  {}\n", line(&mut widths.iter().copied().zip(cells.iter().map(|c| c[r].clone())))));
    }
    if (shown as u64) < total {
        s.push_str(&format!("  … {} more rows\n", total - shown as u64));
    }
    Ok(s)
}

/// One cell as text (arrow-cast's formatter: every Arrow type, nested lists included), cut
/// at 80 characters.
fn cell(a: &dyn Array, r: usize) -> String {
    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    let text = match arrow_cast::display::ArrayFormatter::try_new(a, &options) {
        Ok(f) => f.value(r).to_string(),
        Err(e) => format!("<{e}>"),
    };
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
}

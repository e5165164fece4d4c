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
    for r in 0..rows.min(b.num_rows()) {
        let cells: Vec<String> = (0..b.num_columns()).map(|c| cell(b.column(c).as_ref(), r)).collect();
        s.push_str(&format!("  {}\n", cells.join(" | ")));
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

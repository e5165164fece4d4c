//! `hesslab show FILE.parquet`: schema, metadata and the first rows.
use arrow_array::Array;
use hesslab_pipeline::read_artifact;
use std::path::Path;

pub fn show(path: &Path, rows: usize) -> Result<String, hesslab_pipeline::Error> {
    let a = read_artifact(path, None)?;
    let mut s = format!("{}\n{} rows\nschema:\n", path.display(), a.batch.num_rows());
    for f in a.batch.schema().fields() {
        s.push_str(&format!("  {}: {}\n", f.name(), hesslab_pipeline::port_type_name(f.data_type())));
    }
    s.push_str("metadata:\n");
    for (k, v) in &a.metadata {
        let v = if v.len() > 200 { format!("{}…", &v[..v.char_indices().nth(200).map(|c| c.0).unwrap_or(v.len())]) } else { v.clone() };
        s.push_str(&format!("  {k} = {v}\n"));
    }
    s.push_str("rows:\n");
    let b = &a.batch;
    for r in 0..rows.min(b.num_rows()) {
        let cells: Vec<String> = (0..b.num_columns()).map(|c| cell(b.column(c).as_ref(), r)).collect();
        s.push_str(&format!("  {}\n", cells.join(" | ")));
    }
    Ok(s)
}

fn cell(a: &dyn Array, r: usize) -> String {
    if a.is_null(r) {
        return "null".into();
    }
    let opts = arrow_cast_display(a, r);
    if opts.len() > 80 { format!("{}…", &opts[..opts.char_indices().nth(80).map(|c| c.0).unwrap_or(opts.len())]) } else { opts }
}

fn arrow_cast_display(a: &dyn Array, r: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType as D;
    match a.data_type() {
        D::Float64 => format!("{:.6e}", a.as_primitive::<Float64Type>().value(r)),
        D::UInt32 => a.as_primitive::<UInt32Type>().value(r).to_string(),
        D::UInt64 => a.as_primitive::<UInt64Type>().value(r).to_string(),
        D::Int64 => a.as_primitive::<Int64Type>().value(r).to_string(),
        D::Boolean => a.as_boolean().value(r).to_string(),
        D::Utf8 => a.as_string::<i32>().value(r).to_string(),
        D::List(_) => {
            let v = a.as_list::<i32>().value(r);
            format!(
                "[{}]",
                (0..v.len().min(6)).map(|i| arrow_cast_display(v.as_ref(), i)).collect::<Vec<_>>().join(", ")
                    + if v.len() > 6 { ", …" } else { "" }
            )
        }
        D::FixedSizeList(_, _) => {
            let v = a.as_fixed_size_list().value(r);
            format!(
                "[{}]",
                (0..v.len().min(6)).map(|i| arrow_cast_display(v.as_ref(), i)).collect::<Vec<_>>().join(", ")
                    + if v.len() > 6 { ", …" } else { "" }
            )
        }
        other => format!("<{other:?}>"),
    }
}

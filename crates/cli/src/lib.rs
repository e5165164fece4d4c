//! The hesslab binary's library half: the registry of every stage kind, and helpers the
//! subcommands share (also used by the integration tests in `tests/`).
#![warn(missing_docs)]
use hesslab_pipeline::Registry;

pub mod bench;
pub mod cluster;
pub mod plot;
pub mod show;

/// Every stage kind this build knows, registered explicitly crate by crate.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    hesslab_stages::register(&mut r);
    hesslab_analysis::register(&mut r);
    r
}

/// The README's artifact table: every artifact type with the kinds that write it, its columns
/// and its metadata keys, generated from the `Port` types (`hesslab artifacts`).
pub fn artifact_table(reg: &Registry) -> String {
    hesslab_artifacts::markdown_table(|artifact| {
        reg.kinds().filter(|k| k.outputs().iter().any(|o| o.artifact == artifact)).map(|k| k.kind().to_string()).collect()
    })
}

/// `hesslab stages [KIND]`: every kind with its ports and parameters (types, defaults, docs),
/// generated from the same structs that parse the TOML.
pub fn describe_stages(reg: &Registry, only: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    let kinds: Vec<_> = reg.kinds().filter(|k| only.is_none_or(|o| o == k.kind())).collect();
    if kinds.is_empty() {
        return Err(reg.unknown_kind_message(only.unwrap_or("")));
    }
    for k in kinds {
        out.push_str(&format!("{} (v{})\n  {}\n", k.kind(), k.version(), k.doc()));
        for p in k.inputs() {
            out.push_str(&format!(
                "  input  {}{}{}: {}\n",
                p.name,
                if p.optional { " (optional)" } else { "" },
                if p.many { " (all members: \"STAGE.PORT[*]\")" } else { "" },
                describe_port(&p)
            ));
        }
        for p in k.outputs() {
            out.push_str(&format!("  output {}{}: {}\n", p.name, if p.optional { " (optional)" } else { "" }, describe_port(&p)));
        }
        let schema = k.params_schema();
        let defs = schema.get("$defs").cloned().unwrap_or_default();
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let ty = type_of(prop, &defs);
                let def = prop.get("default").map(|d| d.to_string()).unwrap_or_else(|| "-".into());
                let doc = prop.get("description").and_then(|d| d.as_str()).unwrap_or("").replace('\n', " ");
                out.push_str(&format!("  param  {name}: {ty} = {def}\n         {doc}\n"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// A port's artifact type (when the port is named otherwise), columns and metadata keys.
fn describe_port(p: &hesslab_pipeline::PortSpec) -> String {
    let mut s = if p.name != p.artifact { format!("`{}` artifact: {}", p.artifact, p.doc) } else { p.doc.to_string() };
    if !p.metadata.is_empty() {
        s.push_str(&format!("; metadata {}", p.metadata.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")));
    }
    s
}

fn type_of(prop: &serde_json::Value, defs: &serde_json::Value) -> String {
    if let Some(r) = prop.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(d) = defs.get(name) {
            if let Some(one) = d.get("oneOf").and_then(|o| o.as_array()) {
                let vals: Vec<String> = one
                    .iter()
                    .filter_map(|v| {
                        v.get("const").or_else(|| v.get("enum").and_then(|e| e.get(0))).and_then(|c| c.as_str()).map(|s| format!("\"{s}\""))
                    })
                    .collect();
                return vals.join(" | ");
            }
            if let Some(e) = d.get("enum").and_then(|e| e.as_array()) {
                return e.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
            }
        }
        return name.to_string();
    }
    if let Some(any) = prop.get("anyOf").and_then(|a| a.as_array()) {
        return any.iter().map(|a| type_of(a, defs)).collect::<Vec<_>>().join(" | ");
    }
    match prop.get("type") {
        Some(serde_json::Value::String(t)) if t == "array" => {
            format!("array of {}", prop.get("items").map(|i| type_of(i, defs)).unwrap_or_else(|| "any".into()))
        }
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(" | "),
        _ => "any".into(),
    }
}

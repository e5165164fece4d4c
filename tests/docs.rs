//! Documentation generated from code stays in sync with it.

const BEGIN: &str = "<!-- artifact-table:begin";
const END: &str = "<!-- artifact-table:end -->";

/// The README's artifact table is `hesslab artifacts`, generated from the `Port` types.
#[test]
fn readme_artifact_table_is_generated_from_the_port_types() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find(BEGIN).expect("README has the artifact-table markers");
    let body_start = start + readme[start..].find('\n').unwrap() + 1;
    let end = readme.find(END).expect("README has the artifact-table end marker");
    let in_readme = &readme[body_start..end];
    let generated = hesslab::artifact_table(&hesslab::registry());
    assert!(
        in_readme == generated,
        "the README's artifact table is stale: replace the lines between the markers with the output of `hesslab artifacts`\n\nexpected:\n{generated}"
    );
}

/// Every artifact type some stage kind writes is in the table, and every type in the table
/// is written by some kind.
#[test]
fn every_written_artifact_type_is_listed() {
    let listed: Vec<&str> = hesslab_artifacts::all().iter().map(|p| p.artifact).collect();
    let reg = hesslab::registry();
    for k in reg.kinds() {
        for o in k.outputs().iter().filter(|o| !o.is_files()) {
            assert!(
                listed.contains(&o.artifact),
                "kind `{}` writes `{}`, which hesslab_artifacts::all() does not list",
                k.kind(),
                o.artifact
            );
        }
    }
    for a in listed {
        assert!(reg.kinds().any(|k| k.outputs().iter().any(|o| o.artifact == a)), "`{a}` is listed but no kind writes it");
    }
}

/// DEVELOPING.md's worked example of adding a layer is the layer file as it is.
#[test]
fn developing_md_shows_silu_rs_verbatim() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let doc = std::fs::read_to_string(format!("{root}/docs/DEVELOPING.md")).unwrap();
    let file = std::fs::read_to_string(format!("{root}/crates/model/src/layers/silu.rs")).unwrap();
    let start = doc.find("`crates/model/src/layers/silu.rs` in full:").expect("the worked example");
    let block = &doc[start..];
    let body = &block[block.find("```rust\n").unwrap() + 8..];
    let body = &body[..body.find("```\n").unwrap()];
    assert_eq!(body, file, "docs/DEVELOPING.md's SiLU example differs from crates/model/src/layers/silu.rs: paste the file");
}

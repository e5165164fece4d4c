//! Documentation generated from code stays in sync with it.

/// The README points to the generated artifact reference (the table itself lives in
/// docs/artifacts.md, checked below to be current).
#[test]
fn readme_links_the_generated_artifact_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(readme.contains("(docs/artifacts.md)") && readme.contains("(docs/stages.md)"), "the README links the references");
    let lines = readme.lines().count();
    assert!(lines <= 400, "the README is {lines} lines; the reference belongs in docs/");
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

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// docs/stages.md and docs/artifacts.md are `hesslab stages --markdown` and
/// `hesslab artifacts --markdown` as they are now.
#[test]
fn generated_reference_pages_are_current() {
    let reg = hesslab::registry();
    for (file, generated, command) in [
        ("docs/stages.md", hesslab::stages_markdown(&reg), "hesslab stages --markdown"),
        ("docs/artifacts.md", hesslab::artifacts_markdown(&reg), "hesslab artifacts --markdown"),
    ] {
        let on_disk = std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap_or_default();
        assert!(on_disk.trim_end() == generated.trim_end(), "{file} is stale: regenerate it with `{command} > {file}`");
    }
}

/// The ```toml blocks of a Markdown text: (line, the marker line before it if it is an HTML
/// comment, the block).
fn toml_blocks(text: &str) -> Vec<(usize, Option<String>, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start() == "```toml" {
            let marker = (i > 0).then(|| lines[i - 1].trim()).filter(|l| l.starts_with("<!--")).map(str::to_string);
            let indent = lines[i].len() - lines[i].trim_start().len();
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && lines[j].trim_start() != "```" {
                j += 1;
            }
            let body = lines[start..j]
                .iter()
                .map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() })
                .collect::<Vec<_>>()
                .join("\n");
            out.push((i + 1, marker, body));
            i = j;
        }
        i += 1;
    }
    out
}

fn validate(text: &str) -> Result<(), String> {
    use hesslab_pipeline::{PipelineFile, Plan};
    let pf = PipelineFile::parse(std::path::Path::new("doc.toml"), text.to_string(), &[]).map_err(|e| format!("{e:#}"))?;
    Plan::build(pf, &hesslab::registry()).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// Every ```toml block in README.md and docs/ is a pipeline that validates, or is marked as a
/// fragment and validated inside a pipeline: `<!-- fragment: layers on fashion -->` (the
/// layers of a `train` on Fashion-MNIST), `<!-- fragment: layers on mixture -->` (on a
/// 4-feature Gaussian mixture), `<!-- fragment: slurm settings -->` (a settings file).
#[test]
fn every_toml_block_in_the_docs_validates() {
    let mut docs = vec![format!("{ROOT}/README.md")];
    for e in std::fs::read_dir(format!("{ROOT}/docs")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "md") && !["stages.md", "artifacts.md"].contains(&p.file_name().unwrap().to_str().unwrap()) {
            docs.push(p.display().to_string());
        }
    }
    let fashion = "[stages.data]\nkind = \"idx\"\nimages = \"/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\"\nlabels = \"/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz\"\nsamples_per_class = 10\n";
    let mixture = "[stages.data]\nkind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 60\n";
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(&format!("{ROOT}/")).unwrap_or(doc);
        for (line, marker, body) in toml_blocks(&text) {
            let result = match marker.as_deref() {
                Some(m) if m.contains("fragment: layers on") => {
                    let (data, tail) =
                        if m.contains("on fashion") { (fashion, "\"flatten\", { linear = 10 }") } else { (mixture, "{ linear = 3 }") };
                    let layers = if body.trim_start().starts_with("layers") {
                        body.clone()
                    } else {
                        let sep = if body.trim_end().ends_with(',') { "" } else { "," };
                        format!("layers = [\n{body}{sep}\n{tail},\n]")
                    };
                    validate(&format!(
                        "[pipeline]\nname = \"doc\"\n{data}[stages.train]\nkind = \"train\"\ndataset = \"data.dataset\"\n{layers}\n"
                    ))
                }
                Some(m) if m.contains("fragment: slurm settings") => {
                    let dir = std::env::temp_dir().join(format!("hesslab-docs-{}-{line}", std::process::id()));
                    std::fs::create_dir_all(&dir).unwrap();
                    let p = dir.join("settings.toml");
                    std::fs::write(&p, &body).unwrap();
                    let stages: Vec<String> =
                        body.lines().filter_map(|l| l.trim().strip_prefix("[stages.")?.split(']').next().map(str::to_string)).collect();
                    let r = hesslab_slurm::SlurmOptions::load(Some(&p), &stages).map(|_| ()).map_err(|e| format!("{e:#}"));
                    let _ = std::fs::remove_dir_all(&dir);
                    r
                }
                Some(m) if m.contains("fragment: files from export_torch.py") => {
                    // The files the README's Python recipe writes, as the committed fixtures
                    // of the same kinds (scripts/import_fixtures.py) stand in for them.
                    let f = format!("{ROOT}/tests/fixtures/import");
                    validate(
                        &body
                            .replace("mine/data.npz", &format!("{f}/digits.npz"))
                            .replace("mine/net.safetensors", &format!("{f}/resnet_bn.safetensors"))
                            .replace("mine/net.json", &format!("{f}/resnet_bn.json")),
                    )
                }
                Some(m) => Err(format!("unknown marker `{m}`")),
                None => validate(&body),
            };
            checked += 1;
            if let Err(e) = result {
                problems.push(format!("{name}:{line}: {e}"));
            }
        }
    }
    assert!(checked >= 5, "only {checked} blocks found");
    assert!(problems.is_empty(), "{} block(s) do not validate:\n{}", problems.len(), problems.join("\n"));
}

/// `hesslab init NAME` writes a commented starter pipeline that validates and runs, and never
/// overwrites a file.
#[test]
fn init_writes_a_starter_pipeline_that_runs() {
    let d = std::env::temp_dir().join(format!("hesslab-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_hesslab")).args(args).current_dir(&d).output().unwrap();
    let o = run(&["init", "first"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(d.join("first.toml")).unwrap();
    assert!(text.lines().filter(|l| l.trim_start().starts_with('#')).count() >= 5, "commented");
    let o = run(&["run", "first.toml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("results:") && out.contains("outliers"), "{out}");
    assert!(d.join("out/first/report.html").exists());
    std::fs::write(d.join("first.toml"), "mine").unwrap();
    let o = run(&["init", "first"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("never overwrites"), "init replaced a file");
    assert_eq!(std::fs::read_to_string(d.join("first.toml")).unwrap(), "mine");
    let o = run(&["init", "../escape"]);
    assert!(!o.status.success(), "a name with a path");
    let _ = std::fs::remove_dir_all(&d);
}

/// `hesslab --help` and every `hesslab <command> --help` end with an example that names the
/// command.
#[test]
fn every_command_help_has_an_example() {
    let help = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab")).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(help(&["--help"]).contains("Examples:\n  hesslab init first"));
    for cmd in ["run", "exec", "status", "plot", "validate", "stages", "artifacts", "init", "show", "dag", "bench"] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("Example") && h.contains(&format!("hesslab {cmd} ")), "`hesslab {cmd} --help` has no example:\n{h}");
    }
}

/// The README's tutorial commands run, in order, from a fresh directory holding the shipped
/// pipelines (as from a fresh clone), and each ends well.
#[test]
fn the_readme_tutorial_runs() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme.find("<!-- tutorial -->\n```sh\n").expect("the tutorial block") + "<!-- tutorial -->\n```sh\n".len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let commands: Vec<&str> = block.lines().filter(|l| l.starts_with("hesslab ")).collect();
    assert!(commands.len() >= 5, "{commands:?}");
    let d = std::env::temp_dir().join(format!("hesslab-tutorial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("pipelines")).unwrap();
    std::fs::copy(format!("{ROOT}/pipelines/quickstart.toml"), d.join("pipelines/quickstart.toml")).unwrap();
    for c in commands {
        // The shell's quoting: single-quoted words stay whole.
        let mut args = Vec::new();
        let mut rest = c.strip_prefix("hesslab ").unwrap().trim();
        while !rest.is_empty() {
            let (word, tail) = if let Some(r) = rest.strip_prefix('\'') {
                let e = r.find('\'').unwrap();
                (&r[..e], &r[e + 1..])
            } else {
                rest.split_at(rest.find(' ').unwrap_or(rest.len()))
            };
            args.push(word.to_string());
            rest = tail.trim_start();
        }
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_hesslab")).args(&args).current_dir(&d).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "`{c}` failed:\n{out}{err}");
        assert!(!err.contains("warning"), "`{c}` warned:\n{err}");
        if c.contains("show") {
            assert!(out.contains("outliers_heuristic") && out.contains("dim"), "{out}");
        } else {
            assert!(out.contains("results:"), "`{c}`:\n{out}");
        }
    }
    assert!(d.join("out/quickstart/report.html").exists());
    assert!(d.join("out/quickstart/train.seed=3/summary/summary.parquet").exists(), "the sweep's members");
    let _ = std::fs::remove_dir_all(&d);
}

//! Mutation fuzzing of the file readers (issue #35), beside `fuzz_validate`'s pipelines: the
//! Parquet artifacts of a real run, IDX files (plain and gzip), digits CSV files (plain and
//! gzip), `table` CSV files and lock files, each mutated thousands of times by seeded edits
//! (bit flips, overwritten runs, truncation, duplicated and deleted slices, bumped length
//! bytes, hostile text). Every case must end in a value or an error: no panic, no case slower
//! than 10 s, and the process's peak memory bounded with the memory budget set to 512 MB.
//!
//! CI runs about 4 000 cases. For long runs outside CI:
//! `HESSLAB_FUZZ_CASES=100000 HESSLAB_FUZZ_SEED=7 cargo test --release -p hesslab-cli --test fuzz_readers -- --nocapture`
use hesslab_data::rng::Rng;
use hesslab_pipeline::{ArtifactReader, PipelineFile, Plan, Port, RunOptions, Runner};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

fn cases(default: usize) -> usize {
    std::env::var("HESSLAB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).map_or(default, |n: usize| n.max(1))
}

fn seed() -> u64 {
    std::env::var("HESSLAB_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(35)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hesslab-fuzzr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One seeded edit of `bytes`.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.is_empty() {
        return vec![rng.below(256) as u8];
    }
    for _ in 0..1 + rng.below(3) {
        let n = b.len();
        if n == 0 {
            break;
        }
        let at = rng.below(n); // < n
        match rng.below(9) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => {
                let len = (1 + rng.below(16)).min(n - at);
                for x in &mut b[at..at + len] {
                    *x = rng.below(256) as u8;
                }
            }
            2 => b.truncate(at),
            3 => {
                let len = rng.below(64).min(n - at);
                let slice = b[at..at + len].to_vec();
                b.splice(at..at, slice);
            }
            4 => {
                let len = rng.below(64).min(n - at);
                b.drain(at..at + len);
            }
            // Length and size fields: varints, big-endian u32s, Thrift field headers.
            5 => b[at] = [0xff, 0x7f, 0x80, 0x00, 0x15, 0x1c][rng.below(6)],
            6 => {
                let v = [u32::MAX, i32::MAX as u32, 0, 1 << 30][rng.below(4)].to_be_bytes();
                let len = (n - at).min(4);
                b[at..at + len].copy_from_slice(&v[..len]);
            }
            7 => b.extend(std::iter::repeat_n(rng.below(256) as u8, rng.below(2000))),
            _ => b[at] = b[at].wrapping_add(1 + rng.below(4) as u8),
        }
    }
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Runs every case under `catch_unwind`; returns (cases, panics with their case, slowest).
fn each(n: usize, rng: &mut Rng, mut case: impl FnMut(usize, &mut Rng)) -> (usize, Vec<String>, Duration) {
    let mut panics = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(i, rng)));
        slowest = slowest.max(t0.elapsed());
        if let Err(p) = r {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            panics.push(format!("case {i}: {msg}"));
        }
    }
    (n, panics, slowest)
}

fn check(what: &str, (n, panics, slowest): (usize, Vec<String>, Duration)) {
    eprintln!("fuzz_readers {what}: {n} cases, {} panics, slowest {slowest:?}", panics.len());
    assert!(panics.is_empty(), "{what}: {} of {n} cases panicked: {:?}", panics.len(), &panics[..panics.len().min(5)]);
    assert!(slowest < Duration::from_secs(10), "{what}: a case took {slowest:?}");
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// The shared small pipeline, with snapshots so that a trajectory is among the seeds.
fn pipeline() -> String {
    common::SMALL.replace("max_steps = 20", "max_steps = 10\nsnapshot_every = 5")
}

fn run(text: &str, out: &Path) -> Result<(), String> {
    let mut pf = PipelineFile::parse(Path::new("p.toml"), text.to_string(), &[]).map_err(|e| e.to_string())?;
    pf.out = out.to_path_buf();
    let plan = Plan::build(pf, &hesslab::registry()).map_err(|e| e.to_string())?;
    Runner::run(&plan, &RunOptions { jobs: 1, ..Default::default() }).map(|_| ()).map_err(|e| e.to_string())
}

/// Decode a (possibly mutated) artifact the way the stage reading its port would.
fn decode(path: &Path, port: &str) {
    use hesslab_artifacts::*;
    let _ = hesslab::show::show(path, 5);
    let Ok(reader) = ArtifactReader::open(path, None) else { return };
    let _ = match port {
        "dataset" => Dataset::read(reader).map(drop),
        "matrix" => Matrix::read(reader).map(drop),
        _ => match reader.into_artifact() {
            Err(_) => Ok(()),
            Ok(a) => match port {
                "eigenvalues" => Eigenvalues::decode(&a).map(drop),
                "model" => Model::decode(&a).map(drop),
                "log" => Log::decode(&a).map(drop),
                "trajectory" => Trajectory::decode(&a).map(drop),
                "summary" => Summary::decode(&a).map(drop),
                _ => Ok(()),
            },
        },
    };
}

#[test]
fn mutated_files_are_read_without_a_panic_a_hang_or_unbounded_memory() {
    hesslab_limits::set_memory_budget(512 << 20);
    let d = tmp("all");
    let t0 = Instant::now();
    let mut rng = Rng::new(seed());
    run(&pipeline(), &d.join("out")).unwrap();
    let member = d.join("out/small/main");

    // Parquet: every artifact of the run.
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for stage in ["data", "train", "hessian", "eigen", "summary"] {
        for e in std::fs::read_dir(member.join(stage)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                seeds.push((p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    assert!(seeds.len() >= 6, "{:?}", seeds.iter().map(|s| &s.0).collect::<Vec<_>>());
    let case_file = d.join("case.parquet");
    check(
        "parquet",
        each(cases(2400), &mut rng, |i, rng| {
            let (port, bytes) = &seeds[i % seeds.len()];
            std::fs::write(&case_file, mutate(bytes, rng)).unwrap();
            decode(&case_file, port);
        }),
    );

    // IDX, plain and gzip.
    let mut idx = vec![0u8, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 4];
    idx.extend((0..320).map(|i| (i * 7 % 256) as u8));
    let idx_file = d.join("case.idx");
    check(
        "idx",
        each(cases(600), &mut rng, |i, rng| {
            let base = if i % 2 == 0 { idx.clone() } else { gzip(&idx) };
            let bytes = mutate(&base, rng);
            std::fs::write(&idx_file, if i % 4 == 1 { gzip(&bytes) } else { bytes }).unwrap();
            let _ = hesslab_data::read_idx(idx_file.to_str().unwrap(), "IDX images file");
            let _ = hesslab_data::idx_dims(idx_file.to_str().unwrap());
        }),
    );

    // Digits CSV, plain and gzip.
    let digits: String = (0..30)
        .map(|r| (0..65).map(|c| ((r * 3 + c) % if c == 64 { 10 } else { 17 }).to_string()).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    let digits_file = d.join("digits.csv");
    check(
        "digits csv",
        each(cases(400), &mut rng, |i, rng| {
            let bytes = mutate(digits.as_bytes(), rng);
            std::fs::write(&digits_file, if i % 2 == 1 { gzip(&bytes) } else { bytes }).unwrap();
            let p = hesslab_data::DigitsParams { path: Some(digits_file.to_string_lossy().into_owned()), n: 0, ..Default::default() };
            let _ = hesslab_data::load_digits(&p, 1);
        }),
    );

    // `tensors`: the committed .npz (stored and deflated) and .safetensors fixtures, mutated.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tensors");
    for name in ["images.npz", "table.npz", "torch.safetensors"] {
        let base = std::fs::read(fixtures.join(name)).unwrap();
        let file = d.join(format!("case-{name}"));
        check(
            name,
            each(cases(300), &mut rng, |_, rng| {
                std::fs::write(&file, mutate(&base, rng)).unwrap();
                let _ = hesslab_data::load_tensors(file.to_str().unwrap(), "x", "y", "split");
            }),
        );
    }

    // `import_model`: the committed safetensors weights (header-only validation and the full
    // read) and the architecture JSON, each mutated, through `validate` and `run`.
    let imports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/import");
    for (name, arch) in [("resnet_bn.safetensors", "resnet_bn.json"), ("lenet.safetensors", "lenet.json")] {
        let (weights, arch_json) = (std::fs::read(imports.join(name)).unwrap(), std::fs::read(imports.join(arch)).unwrap());
        let (wfile, afile) = (d.join(format!("case-{name}")), d.join(format!("case-{arch}")));
        let text = format!(
            "[stages.m]\nkind = \"import_model\"\nweights = {:?}\narchitecture = {:?}\n",
            wfile.to_str().unwrap(),
            afile.to_str().unwrap()
        );
        check(
            name,
            each(cases(300), &mut rng, |i, rng| {
                let mutate_weights = i % 3 != 2;
                std::fs::write(&wfile, if mutate_weights { mutate(&weights, rng) } else { weights.clone() }).unwrap();
                std::fs::write(&afile, if mutate_weights { arch_json.clone() } else { mutate(&arch_json, rng) }).unwrap();
                let _ = hesslab_data::safetensors_header(wfile.to_str().unwrap());
                let _ = run(&text, &d.join("imports"));
            }),
        );
    }

    // ONNX graphs (the protobuf reader and the operator mapping), mutated, through the stage.
    for name in ["lenet.onnx", "resnet_bn.onnx"] {
        let base = std::fs::read(imports.join(name)).unwrap();
        let file = d.join(format!("case-{name}"));
        let text = format!("[stages.m]\nkind = \"import_model\"\nonnx = {:?}\n", file.to_str().unwrap());
        check(
            name,
            each(cases(300), &mut rng, |_, rng| {
                std::fs::write(&file, mutate(&base, rng)).unwrap();
                let _ = run(&text, &d.join("onnx"));
            }),
        );
    }

    // `table` CSV through the stage.
    let table = "f1,f2,label,part\n1,2,0,train\n3.5,-4,1,test\n5,6e3,0,train\n\"7\",8,1,train\n9,10,2,test\n";
    let table_file = d.join("t.csv");
    let text = format!("[stages.t]\nkind = \"table\"\npath = {:?}\nsplit_column = \"part\"\n", table_file.to_str().unwrap());
    check(
        "table csv",
        each(cases(300), &mut rng, |i, rng| {
            std::fs::write(&table_file, mutate(table.as_bytes(), rng)).unwrap();
            let t = if i % 3 == 0 { text.replace("split_column = \"part\"\n", "") } else { text.clone() };
            let _ = run(&t, &d.join("tables"));
        }),
    );

    // Lock files: mutated JSON, and entries naming devices and paths out of the stage
    // directory; each followed by a run that must rebuild or reuse, never hang.
    let lock_path = d.join("out/small/hesslab.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let hostile = ["\"/dev/zero\"", "\"../../../../etc/passwd\"", "\"\"", "99999999999999999999999", "-1", "null", "[]", "{}"];
    check(
        "lock",
        each(cases(300), &mut rng, |i, rng| {
            let text = if i % 2 == 0 {
                String::from_utf8_lossy(&mutate(lock.as_bytes(), rng)).into_owned()
            } else {
                // Replace one JSON string or number with a hostile token.
                let spots: Vec<usize> = lock.match_indices(['"', ':']).map(|m| m.0).collect();
                let at = spots[rng.below(spots.len())];
                let end = lock[at + 1..].find(['"', ',', '\n']).map_or(lock.len(), |e| at + 1 + e + 1).min(lock.len());
                format!("{}{}{}", &lock[..at], hostile[rng.below(hostile.len())], &lock[end..])
            };
            std::fs::write(&lock_path, text).unwrap();
            let _ = hesslab_pipeline::LockFile::load(&d.join("out/small"));
            if i % 5 == 0 {
                let _ = run(&pipeline(), &d.join("out"));
            }
        }),
    );
    let peak = peak_rss();
    eprintln!("fuzz_readers: peak RSS {} MB, {:.1} s", peak >> 20, t0.elapsed().as_secs_f64());
    assert!(peak < 1536 << 20, "peak RSS {} MB with a 512 MB budget", peak >> 20);
    let _ = std::fs::remove_dir_all(&d);
}

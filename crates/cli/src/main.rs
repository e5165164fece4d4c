//! `hesslab`: run, validate and inspect Hessian-analysis pipelines.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hesslab_pipeline::resources::parse_bytes;
use hesslab_pipeline::{Plan, RunOptions, Runner, StageOutcome};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc keeps freed large buffers for reuse; glibc returns them to the kernel and every
/// layer's next activation matrix faults its pages back in (measured on the E4 convnet's
/// forward: 60 % of the time in the kernel, 50 → 33 ms per 500 samples with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hesslab",
    version,
    about = "Hessian spectra of over-parametrized networks, as declarative pipelines",
    after_help = "Examples:\n  hesslab init first && hesslab run first.toml   # a starter pipeline\n  hesslab run pipelines/quickstart.toml          # S18 E2 with 10 classes\n  hesslab show out/quickstart/main/summary/summary.parquet\n  hesslab stages train                           # a stage kind's parameters\nReference: README.md (tutorial), docs/stages.md, docs/artifacts.md"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pipeline (stages whose inputs and parameters did not change are skipped).
    #[command(
        after_help = "Examples:\n  hesslab run pipelines/quickstart.toml\n  hesslab run pipelines/quickstart.toml --set train.lr=0.05 --set 'sweep.train.seed=[1, 2, 3]'\n  hesslab run pipelines/s18_e3_width_sweep.toml --only eigen --jobs 2 --max-memory 8G\n  hesslab run pipelines/quickstart.toml --executor slurm --partition compute --wait"
    )]
    Run {
        file: PathBuf,
        /// Output directory (overrides [pipeline].out).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rerun every stage.
        #[arg(long)]
        force: bool,
        /// Run only this stage and what it needs (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Rerun this stage and everything downstream (repeatable).
        #[arg(long)]
        from: Vec<String>,
        /// Stages run concurrently (default: number of cores).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Override a parameter: --set stage.param=value (TOML value).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Print stage progress even when stderr is not a terminal.
        #[arg(short, long)]
        verbose: bool,
        /// Memory stages may use, e.g. 16G (default: what the machine has available at the
        /// start); `unlimited` turns the check off. A stage whose estimate (see `hesslab dag`)
        /// exceeds it fails before allocating.
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<String>,
        /// PNG resolution of the figures this run draws: 96 (default) or 192 for 2× pixel
        /// density (SVGs are resolution-free).
        #[arg(long, default_value_t = 96)]
        dpi: u32,
        /// Where stages run: `local` (default: this process) or `slurm` (one sbatch job per
        /// stage instance that is not up to date, dependencies in the scheduler).
        #[arg(long, default_value = "local")]
        executor: String,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Run exactly one stage instance (what each Slurm job runs); its inputs must be up to
    /// date in the output directory.
    #[command(after_help = "Example (what a Slurm job runs):\n  hesslab exec pipelines/quickstart.toml --instance main/eigen")]
    Exec {
        file: PathBuf,
        /// The instance: `<first member>/<stage>` (as `hesslab dag` and `hesslab status` name it).
        #[arg(long)]
        instance: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "set")]
        set: Vec<String>,
        /// Rerun it even if it is up to date.
        #[arg(long)]
        force: bool,
        /// Fail unless the instance's definition has this fingerprint (set by the submitting
        /// client, so a job never runs a pipeline file edited after submission).
        #[arg(long)]
        expect: Option<String>,
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show each stage instance of a pipeline: done, queued, running, failed, cancelled or not
    /// run (from the lock file, the Slurm jobs' records and squeue).
    #[command(after_help = "Example:\n  hesslab status pipelines/quickstart.toml")]
    Status {
        file: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "set")]
        set: Vec<String>,
    },
    /// Draw an artifact's figures again from its Parquet file alone (restyle without
    /// recomputing): eigenvalues, density, nodes, rank_spread, log, curve, ensemble.
    #[command(
        after_help = "Examples:\n  hesslab plot out/quickstart/main/eigen/eigenvalues.parquet --kind histogram --y-scale linear\n  hesslab plot out/*/main/eigen/eigenvalues.parquet --overlay --out figs"
    )]
    Plot {
        /// The artifact(s), e.g. out/quickstart/main/eigen/eigenvalues.parquet.
        files: Vec<PathBuf>,
        /// Only this figure (e.g. histogram, top, negative, density).
        #[arg(long)]
        kind: Option<String>,
        /// Directory for <figure>.png and .svg (default: plots/<member>/<stage>/ in the
        /// current directory; never the cached stage directory, which a rerun replaces).
        #[arg(long)]
        out: Option<PathBuf>,
        /// PNG resolution: 96 (default) or 192 for 2× pixel density.
        #[arg(long, default_value_t = 96)]
        dpi: u32,
        /// y scale: auto, linear, log or symlog.
        #[arg(long, default_value = "auto")]
        y_scale: String,
        /// rank_spread and --overlay: sweep keys with one panel per value (columns, then rows).
        #[arg(long)]
        panels: Vec<String>,
        /// Draw every given `eigenvalues` file in one figure (`top_overlay` or, with --kind
        /// negative, `negative_overlay`), lines labelled by their member directories.
        #[arg(long)]
        overlay: bool,
        /// Memory reading may use, e.g. 1G (default: what the machine has available).
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<String>,
    },
    /// Check a pipeline without running it; reports every problem at once.
    #[command(after_help = "Example:\n  hesslab validate pipelines/quickstart.toml --set train.hidden=[100,100] --max-memory 16G")]
    Validate {
        file: PathBuf,
        #[arg(long = "set")]
        set: Vec<String>,
        /// Memory the run will have, e.g. 16G (default: what this machine has available):
        /// every stage whose estimate (`hesslab dag`) exceeds it is a problem.
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<String>,
    },
    /// List stage kinds with their ports and parameters.
    #[command(
        after_help = "Examples:\n  hesslab stages            # every kind\n  hesslab stages train      # one kind\n  hesslab stages --markdown > docs/stages.md"
    )]
    Stages {
        kind: Option<String>,
        /// The reference in Markdown (docs/stages.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Print the table of artifact types (columns, metadata keys, which kinds write them) in
    /// Markdown (docs/artifacts.md is `--markdown`).
    #[command(after_help = "Example:\n  hesslab artifacts --markdown > docs/artifacts.md")]
    Artifacts {
        /// The whole reference page (docs/artifacts.md), not only the table.
        #[arg(long)]
        markdown: bool,
    },
    /// Write NAME.toml, a commented starter pipeline that runs (digits → train → top Hessian
    /// eigenvalues → summary); refuses to overwrite a file.
    #[command(after_help = "Example:\n  hesslab init first && hesslab run first.toml")]
    Init { name: String },
    /// Print a Parquet artifact's schema, metadata and first rows.
    #[command(after_help = "Example:\n  hesslab show out/quickstart/main/summary/summary.parquet")]
    Show {
        file: PathBuf,
        #[arg(long, default_value_t = 10)]
        rows: usize,
        /// Memory reading may use, e.g. 1G (default: what the machine has available).
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<String>,
    },
    /// Print the expanded stage graph of a pipeline.
    #[command(after_help = "Example:\n  hesslab dag pipelines/s18_e2_outliers_vs_classes.toml")]
    Dag {
        file: PathBuf,
        #[arg(long = "set")]
        set: Vec<String>,
    },
    /// Measure speed ratios against baselines timed in the same run.
    #[command(after_help = "Example:\n  hesslab bench --quick --only hvp --only dense")]
    Bench {
        /// Quick mode: smaller sizes (for CI smoke runs).
        #[arg(long)]
        quick: bool,
        /// Only these benchmarks (hvp, dense, eigen, lanczos, slq, train, sharpness, elementwise, conv, resnet, dense20k, memory).
        #[arg(long)]
        only: Vec<String>,
        /// Hidden-layer nonlinearity of the benchmark networks: tanh (default) or relu.
        #[arg(long, default_value = "tanh")]
        activation: String,
        /// Sides of the dense eigenvalue benchmark (default 4270 and 11274; 1000 with --quick).
        #[arg(long, value_delimiter = ',')]
        eigen_sizes: Vec<usize>,
        /// Dense eigenvalue benchmark: also time the solve with every eigenvector.
        #[arg(long)]
        eigen_vectors: bool,
    },
}

/// Options of `--executor slurm` (flags override the settings file).
#[derive(clap::Args)]
struct SlurmArgs {
    /// Slurm: settings file with an `[executor]` section and per-stage resources (see the
    /// docs/guide.md, "Running on a Slurm cluster").
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Slurm: partition of every job.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm: account to charge.
    #[arg(long)]
    account: Option<String>,
    /// Slurm: time limit per job, e.g. 02:00:00.
    #[arg(long)]
    time: Option<String>,
    /// Slurm: cores per job (default 1; per-stage overrides in the settings file).
    #[arg(long)]
    cores: Option<u32>,
    /// Slurm: follow the jobs until they end; exit non-zero naming each failed stage and its
    /// log file.
    #[arg(long)]
    wait: bool,
}

impl SlurmArgs {
    fn options(&self, plan: &Plan) -> Result<hesslab_slurm::SlurmOptions> {
        let mut o = hesslab_slurm::SlurmOptions::load(self.settings.as_deref(), &plan.stage_order)?;
        if self.partition.is_some() {
            o.partition = self.partition.clone();
        }
        if self.account.is_some() {
            o.account = self.account.clone();
        }
        if self.time.is_some() {
            o.time = self.time.clone();
        }
        if let Some(c) = self.cores {
            anyhow::ensure!(c > 0, "--cores must be at least 1");
            o.cores = c;
        }
        Ok(o)
    }

    fn given(&self) -> bool {
        self.settings.is_some()
            || self.partition.is_some()
            || self.account.is_some()
            || self.time.is_some()
            || self.cores.is_some()
            || self.wait
    }
}

/// println! that ends quietly when stdout is closed (e.g. piped into `head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

fn load(file: &Path, set: &[String], out: Option<&PathBuf>) -> Result<Plan> {
    hesslab::cluster::load(file, set, out)
}

/// 96 dpi is the base resolution; 192 doubles the pixels per side.
fn pixel_scale(dpi: u32) -> Result<u32> {
    anyhow::ensure!(dpi % 96 == 0 && (96..=384).contains(&dpi), "--dpi {dpi}: expected 96, 192, 288 or 384 (multiples of the base 96)");
    Ok(dpi / 96)
}

/// `--max-memory SIZE`: bytes (`unlimited` is no limit); also the budget every reader of this
/// process checks before allocating.
fn memory_limit(arg: Option<&str>) -> Result<Option<u64>> {
    let limit = match arg {
        None => None,
        Some("unlimited") => Some(u64::MAX),
        Some(s) => Some(parse_bytes(s).map_err(|m| anyhow::anyhow!("--max-memory {m}"))?),
    };
    if let Some(b) = limit {
        hesslab_limits::set_memory_budget(b);
    }
    Ok(limit)
}

/// What an interrupted `run` leaves and how to go on, said when Ctrl-C arrives.
fn say_on_interrupt(out_dir: &std::path::Path) {
    let note = format!(
        "interrupted: the stages that finished are kept in {} (every artifact is written whole under a temporary name and then renamed; the stages that were running leave nothing, and their leftovers are removed next time); run the same command again to resume — finished stages are skipped as up to date",
        out_dir.display()
    );
    // Without a handler (a platform refusing one) Ctrl-C still stops the run, silently.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\n{note}");
        std::process::exit(130);
    });
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { file, out, force, only, from, jobs, set, verbose, max_memory, dpi, executor, slurm } => {
            hesslab_figures::set_pixel_scale(pixel_scale(dpi)?);
            match executor.as_str() {
                "local" => anyhow::ensure!(
                    !slurm.given(),
                    "--settings, --partition, --account, --time, --cores and --wait apply to --executor slurm"
                ),
                "slurm" => {
                    anyhow::ensure!(
                        jobs == 0 && max_memory.is_none(),
                        "--jobs and --max-memory apply to the local executor; Slurm jobs get their cores and memory per stage (--cores, --settings)"
                    );
                    let plan = load(&file, &set, out.as_ref())?;
                    return hesslab::cluster::run_on_slurm(
                        &plan,
                        &file,
                        &set,
                        &RunOptions { force, only, from, jobs, verbose, max_memory: None },
                        &slurm.options(&plan)?,
                        slurm.wait,
                        verbose,
                    );
                }
                other => anyhow::bail!("--executor {other}: expected local or slurm"),
            }
            let max_memory = memory_limit(max_memory.as_deref())?;
            let plan = load(&file, &set, out.as_ref())?;
            say_on_interrupt(&plan.out_dir);
            let t0 = std::time::Instant::now();
            let report = Runner::run(&plan, &RunOptions { force, only, from, jobs, verbose, max_memory })?;
            out!(
                "pipeline `{}`: {} ran, {} skipped (up to date), {} not selected, in {:.1}s; artifacts in {}",
                plan.file.name,
                report.count(StageOutcome::Ran),
                report.count(StageOutcome::Skipped),
                report.count(StageOutcome::NotSelected),
                t0.elapsed().as_secs_f64(),
                report.out_dir.display()
            );
            let results = match hesslab_analysis::report::write_plan_report(&plan) {
                Ok((p, results)) => {
                    out!("  report: {}", p.display());
                    results
                }
                Err(e) => {
                    eprintln!("warning: could not write the report: {e}");
                    hesslab_analysis::results::collect(&plan.out_dir)
                }
            };
            for i in &report.instances {
                let what = match i.outcome {
                    StageOutcome::Ran => format!("ran {:.2}s", i.seconds),
                    StageOutcome::Skipped => "up to date".into(),
                    StageOutcome::NotSelected => continue,
                };
                out!("  {:<24} {:<14} {}", i.stage, what, i.dir.display());
            }
            // Last, what the run found: the numbers a user ran it for, and what looks wrong.
            let results = results.text(12);
            if !results.is_empty() {
                out!("{}", results.trim_end());
            }
        }
        Cmd::Plot { files, kind, out, dpi, y_scale, panels, overlay, max_memory } => {
            memory_limit(max_memory.as_deref())?;
            hesslab_figures::set_pixel_scale(pixel_scale(dpi)?);
            let y_scale = match y_scale.as_str() {
                "auto" => hesslab_figures::YScale::Auto,
                "linear" => hesslab_figures::YScale::Linear,
                "log" => hesslab_figures::YScale::Log,
                "symlog" => hesslab_figures::YScale::Symlog { linthresh: 0.0 },
                other => anyhow::bail!("--y-scale {other}: expected auto, linear, log or symlog"),
            };
            anyhow::ensure!(!files.is_empty(), "name at least one artifact (a .parquet file written by a stage)");
            let options = hesslab_analysis::replot::ReplotOptions { kind, y_scale, panels };
            if overlay {
                for written in hesslab::plot::plot_overlay(&files, out.as_deref(), &options)? {
                    out!("{}", written.display());
                }
                return Ok(());
            }
            for f in &files {
                for written in hesslab::plot::plot(f, out.as_deref(), &options)? {
                    out!("{}", written.display());
                }
            }
        }
        Cmd::Exec { file, instance, out, set, force, expect, verbose } => {
            hesslab::cluster::exec(&file, &instance, out.as_ref(), &set, force, expect.as_deref(), verbose)?
        }
        Cmd::Status { file, out, set } => {
            let plan = load(&file, &set, out.as_ref())?;
            out!("{}", hesslab::cluster::status(&plan)?.trim_end());
        }
        Cmd::Validate { file, set, max_memory } => {
            let plan = load(&file, &set, None)?;
            let limit = match memory_limit(max_memory.as_deref())? {
                Some(b) => Some((b, "is allowed by --max-memory")),
                None => hesslab_pipeline::resources::available_memory().map(|b| (b, "is available on this machine (MemAvailable)")),
            };
            if let Some((limit, why)) = limit {
                let problems = plan.memory_problems(limit, why);
                if !problems.is_empty() {
                    return Err(hesslab_pipeline::Error::Invalid(problems).into());
                }
            }
            out!("{}: valid ({} member(s), {} stage instance(s))", file.display(), plan.members.len(), plan.instances.len());
        }
        Cmd::Stages { kind: None, markdown: true } => out!("{}", hesslab::stages_markdown(&hesslab::registry()).trim_end()),
        Cmd::Stages { kind, markdown: _ } => {
            let s = hesslab::describe_stages(&hesslab::registry(), kind.as_deref()).map_err(anyhow::Error::msg)?;
            out!("{}", s.trim_end());
        }
        Cmd::Artifacts { markdown: false } => out!("{}", hesslab::artifact_table(&hesslab::registry()).trim_end()),
        Cmd::Artifacts { markdown: true } => out!("{}", hesslab::artifacts_markdown(&hesslab::registry()).trim_end()),
        Cmd::Init { name } => {
            anyhow::ensure!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "hesslab init NAME: NAME is letters, digits, `_` and `-` (it names the pipeline and its file), got `{name}`"
            );
            let path = PathBuf::from(format!("{name}.toml"));
            // create_new: an existing file (or a link in its place) is never replaced.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {} (hesslab init never overwrites a file)", path.display()))?;
            std::io::Write::write_all(&mut f, hesslab::starter_pipeline(&name).as_bytes())?;
            out!("wrote {}: run it with `hesslab run {}`", path.display(), path.display());
        }
        Cmd::Show { file, rows, max_memory } => {
            memory_limit(max_memory.as_deref())?;
            out!("{}", hesslab::show::show(&file, rows).with_context(|| format!("cannot show {}", file.display()))?.trim_end())
        }
        Cmd::Dag { file, set } => out!("{}", load(&file, &set, None)?.describe().trim_end()),
        Cmd::Bench { quick, only, activation, eigen_sizes, eigen_vectors } => {
            let act = match activation.as_str() {
                "tanh" => hesslab_model::Activation::Tanh,
                "relu" => hesslab_model::Activation::Relu,
                other => anyhow::bail!("--activation {other}: expected tanh or relu"),
            };
            hesslab::bench::run(quick, &only, act, &eigen_sizes, eigen_vectors)?
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    hesslab_pipeline::install_panic_hook();
    // Panics inside stages are already errors naming the stage; this catches the rest (the
    // default hook has printed where it happened) so the exit is an error, never an abort.
    let outcome = std::panic::catch_unwind(real_main).unwrap_or_else(|_| {
        Err(anyhow::anyhow!("internal error (see the panic message above); please report this with the command and the pipeline file"))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // A cause whose text the lines above already hold says nothing new.
            let mut said = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                let text = s.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                    said.push_str(&text);
                }
                src = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

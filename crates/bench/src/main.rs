//! `sandbox-bench`: a real `sandbox-server` next to Docker and bwrap baselines, as a table and JSON.

mod density;
mod docker;
mod egress;
mod exec;
mod executor;
mod files;
mod host;
mod report;
mod server;
mod start;
mod stats;
mod throughput;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Parser, ValueEnum};
use report::{Host, Metric, Report};
use server::{Api, ServerConfig, ServerProcess};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Section {
    /// Warm and cold session start to the first execution.
    Start,
    /// `print(1)` round trip through the REST API.
    Exec,
    /// Executions per second at concurrency 1, 4, 16.
    Throughput,
    /// File upload and download.
    Files,
    /// Idle sessions held, and their memory.
    Density,
    /// One session's downloads through the egress proxy, alone and while another session
    /// floods it.
    Egress,
    /// The executor alone over its socket: pre-started and fresh interpreters, a context cell,
    /// and executions per second at four clients (no server needed).
    Executor,
}

impl Section {
    /// Whether the section measures through a `sandbox-server`.
    fn needs_server(self) -> bool {
        self != Section::Executor
    }

    /// Whether the section runs on the main server (the egress section has its own).
    fn on_main_server(self) -> bool {
        !matches!(self, Section::Executor | Section::Egress)
    }
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Benchmarks sandbox-server against bare Docker and bwrap baselines on this machine"
)]
struct Cli {
    /// A short variant for CI (few samples, density ceiling 10, 1 MiB files only).
    #[arg(long)]
    quick: bool,
    /// Where to write the results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Run only these sections (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// The sandbox-server binary to start (default: `release/sandbox-server` in this
    /// workspace's target directory, as `cargo metadata` reports it).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Measure an already running server on this loopback URL instead of starting one.
    #[arg(long, requires = "api_key")]
    url: Option<String>,
    /// The admin API key of the server given with `--url`.
    #[arg(long, env = "SANDBOX_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The pid of the server given with `--url` (for its RSS in the density section).
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// Extra `SANDBOX_*` setting for the servers this tool starts (`KEY=VALUE`, repeatable).
    #[arg(long, value_parser = parse_env_pair)]
    server_env: Vec<(String, String)>,
    /// The image of the `python-basic` template (the Docker baselines run it).
    #[arg(long, default_value = "sandbox/python-basic:latest")]
    image: String,
    /// Warm-up runs before each measured series (excluded from results).
    #[arg(long)]
    warmup: Option<usize>,
    /// Samples of each session-start kind and of its baselines.
    #[arg(long)]
    start_samples: Option<usize>,
    /// Samples of the execution round trip and of its baselines.
    #[arg(long)]
    exec_samples: Option<usize>,
    /// Seconds each throughput level runs (whole seconds; rates are counted per second).
    #[arg(long)]
    throughput_secs: Option<u64>,
    /// Concurrency levels, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    throughput_levels: Vec<usize>,
    /// Samples of the 1 MiB upload and download.
    #[arg(long)]
    file_samples: Option<usize>,
    /// Samples of the 100 MiB upload and download (0 leaves them out).
    #[arg(long)]
    large_file_samples: Option<usize>,
    /// Idle sessions to reach.
    #[arg(long)]
    density_sessions: Option<usize>,
    /// Samples of the egress download, alone and flooded.
    #[arg(long)]
    egress_samples: Option<usize>,
    /// Seconds the density section may spend creating sessions.
    #[arg(long)]
    density_time_limit: Option<u64>,
    /// Sessions created at once in the density section.
    #[arg(long, default_value_t = 2)]
    density_concurrency: usize,
    /// S3 endpoint (loopback) for the `s3` file rows; the server is started with
    /// `SANDBOX_STORAGE__MODE=s3` and these settings. Without it, an S3 server (s3s-fs) runs in
    /// this process on loopback for those rows.
    #[arg(long, requires_all = ["s3_bucket", "s3_access_key", "s3_secret_key"])]
    s3_endpoint: Option<String>,
    /// S3 bucket (must exist).
    #[arg(long, requires = "s3_endpoint")]
    s3_bucket: Option<String>,
    /// S3 access key id.
    #[arg(long, requires = "s3_endpoint")]
    s3_access_key: Option<String>,
    /// S3 secret access key.
    #[arg(long, requires = "s3_endpoint", env = "SANDBOX_BENCH_S3_SECRET_KEY", hide_env_values = true)]
    s3_secret_key: Option<String>,
    /// Skip the `s3` file rows instead of starting an S3 server in this process.
    #[arg(long, conflicts_with = "s3_endpoint")]
    no_s3: bool,
}

impl Cli {
    /// Whether the run includes `section`.
    fn only_or_all(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    if !k.starts_with("SANDBOX_") {
        return Err("only SANDBOX_* settings".into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Sample counts and bounds after `--quick` defaults are applied.
#[derive(Debug, Clone, serde::Serialize)]
struct Plan {
    quick: bool,
    sections: Vec<Section>,
    warmup: usize,
    start_samples: usize,
    exec_samples: usize,
    throughput_secs: u64,
    throughput_levels: Vec<usize>,
    file_samples: usize,
    large_file_samples: usize,
    density_sessions: usize,
    density_time_limit_secs: u64,
    density_concurrency: usize,
    density_settle_secs: u64,
    egress_samples: usize,
    image: String,
    server: String,
    /// Whether the `s3` file rows run.
    s3: bool,
}

impl Plan {
    fn from(cli: &Cli, server: String) -> Result<Plan> {
        let q = cli.quick;
        let pick = |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full });
        let sections = if cli.only.is_empty() {
            vec![
                Section::Start,
                Section::Exec,
                Section::Throughput,
                Section::Files,
                Section::Density,
                Section::Egress,
                Section::Executor,
            ]
        } else {
            cli.only.clone()
        };
        let plan = Plan {
            quick: q,
            sections,
            warmup: pick(cli.warmup, 2, 1),
            start_samples: pick(cli.start_samples, 20, 3),
            exec_samples: pick(cli.exec_samples, 50, 10),
            throughput_secs: cli.throughput_secs.unwrap_or(if q { 2 } else { 10 }),
            throughput_levels: cli.throughput_levels.clone(),
            file_samples: pick(cli.file_samples, 20, 3),
            large_file_samples: pick(cli.large_file_samples, 5, 0),
            density_sessions: pick(cli.density_sessions, 500, 10),
            density_time_limit_secs: cli.density_time_limit.unwrap_or(if q { 60 } else { 600 }),
            density_concurrency: cli.density_concurrency,
            density_settle_secs: if q { 1 } else { 10 },
            egress_samples: pick(cli.egress_samples, 15, 3),
            image: cli.image.clone(),
            server,
            s3: false,
        };
        ensure!(
            plan.start_samples > 0
                && plan.exec_samples > 0
                && plan.file_samples > 0
                && plan.egress_samples > 0,
            "sample counts must be > 0"
        );
        ensure!(plan.throughput_secs >= 1, "--throughput-secs must be at least 1");
        ensure!(
            !plan.throughput_levels.is_empty() && plan.throughput_levels.iter().all(|c| (1..=64).contains(c)),
            "--throughput-levels must be 1 to 64 each"
        );
        ensure!(plan.density_sessions > 0 && plan.density_concurrency > 0, "density bounds must be > 0");
        Ok(plan)
    }

    fn has(&self, s: Section) -> bool {
        self.sections.contains(&s)
    }

    fn needs_server(&self) -> bool {
        self.sections.iter().any(|s| s.needs_server())
    }

    fn file_sizes(&self) -> Vec<files::Size> {
        let mut v = vec![files::Size { bytes: 1 << 20, samples: self.file_samples }];
        if self.large_file_samples > 0 {
            v.push(files::Size { bytes: 100 << 20, samples: self.large_file_samples });
        }
        v
    }

    fn density(&self) -> density::Config {
        density::Config {
            ceiling: self.density_sessions,
            time_limit: Duration::from_secs(self.density_time_limit_secs),
            concurrency: self.density_concurrency,
            settle: Duration::from_secs(self.density_settle_secs),
        }
    }
}

/// Refuses anything but a loopback host: baselines are measured on this machine, and this tool
/// talks to nothing else.
fn ensure_loopback(what: &str, url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{what}: {url:?} is not a URL"))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    ensure!(loopback, "{what} must be a loopback address (127.0.0.0/8, ::1, localhost), not {url}");
    Ok(())
}

/// The release `sandbox-server` of this workspace, from `cargo metadata`.
fn default_server_bin() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let out = std::process::Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context("running cargo metadata (or pass --server-bin)")?;
    ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = meta["target_directory"].as_str().ok_or_else(|| anyhow!("no target_directory"))?;
    let bin = Path::new(dir).join("release/sandbox-server");
    ensure!(
        bin.is_file(),
        "no release server at {}: build it with `cargo build --release -p sandbox-server` or pass --server-bin",
        bin.display()
    );
    Ok(bin)
}

/// `git rev-parse --short HEAD` of the repository this tool was built from.
fn git_commit() -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn progress(msg: &str) {
    eprintln!("[sandbox-bench] {msg}");
}

/// Where the metrics come from: servers this tool starts (`bin` is `None` when no section
/// needs one), or one given by URL.
enum Subject {
    Own { bin: Option<PathBuf>, extra_env: Vec<(String, String)>, s3_env: Option<Vec<(String, String)>> },
    Given { api: Api, pid: Option<u32> },
}

struct Run {
    plan: Plan,
    subject: Subject,
    run_id: String,
    docker: bollard::Docker,
    scratch: tempfile::TempDir,
    metrics: Vec<Metric>,
}

impl Run {
    fn push(&mut self, m: Vec<Metric>) {
        eprint!("{}", report::table(&m));
        self.metrics.extend(m);
    }

    async fn server(
        &self,
        role: &str,
        toml: Option<String>,
        env: Vec<(String, String)>,
    ) -> Result<ServerProcess> {
        let Subject::Own { bin: Some(bin), extra_env, .. } = &self.subject else { bail!("no server binary") };
        let mut all = env;
        all.extend(extra_env.iter().cloned());
        progress(&format!("starting {} ({role})", bin.display()));
        ServerProcess::start(ServerConfig { bin, role, run_id: &self.run_id, toml, env: all }).await
    }

    /// Runs a section against a server, adding its log's tail to any error.
    async fn with_log<T>(
        server: &ServerProcess,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        f.await.map_err(|e| anyhow!("{e:#}\n\nserver log (last lines):\n{}", server.log_tail(15)))
    }

    async fn all(&mut self) -> Result<()> {
        let plan = self.plan.clone();
        if plan.has(Section::Executor) {
            progress("executor: print(1) and 1+1 through the executor's socket");
            let m = executor::run(
                plan.exec_samples,
                plan.start_samples,
                plan.warmup,
                plan.throughput_secs as f64,
                4,
            )
            .await?;
            self.push(m);
        }
        if !plan.needs_server() {
            return Ok(());
        }
        let (n, w) = (plan.start_samples, plan.warmup);
        match &self.subject {
            Subject::Own { .. } if !plan.sections.iter().any(|s| s.on_main_server()) => self.egress().await,
            Subject::Own { .. } => {
                let mut warm = None;
                if plan.has(Section::Start) {
                    progress("start: warm-pool claims (pool of 1 for python-basic)");
                    let toml = "[pools]\ndefault_size = 0\n[pools.sizes]\n\"python-basic\" = 1\n".to_owned();
                    let pool = self.server("pool", Some(toml), vec![]).await?;
                    warm = Some(Self::with_log(&pool, start::warm(&pool.api, n, w)).await?);
                    pool.shutdown().await?;
                }
                let cap = (plan.density_sessions + 32).max(100).to_string();
                let env = vec![
                    ("SANDBOX_POOLS__DEFAULT_SIZE".into(), "0".into()),
                    ("SANDBOX_CAPACITY__MAX_SESSIONS_PER_KEY".into(), cap),
                ];
                let main = self.server("main", None, env).await?;
                let pid = main.pid();
                let api = main.api.clone();
                let result = async {
                    if let Some(warm) = &warm {
                        progress("start: cold starts and Docker baselines");
                        let (cold, base) = start::cold_and_baselines(
                            Some(&api),
                            &self.docker,
                            &plan.image,
                            &self.run_id,
                            n,
                            w,
                        )
                        .await?;
                        self.push(start::metrics(Ok(warm), Ok(&cold), &base)?);
                    }
                    self.rest(&api, pid).await
                };
                let result = Self::with_log(&main, result).await;
                let stopped = main.shutdown().await;
                result?;
                stopped?;
                self.s3_files().await?;
                self.egress().await
            }
            Subject::Given { api, pid } => {
                let (api, pid) = (api.clone(), *pid);
                if plan.has(Section::Start) {
                    let pool = api.pool().await?;
                    let warm = if pool.target > 0 {
                        progress("start: warm-pool claims on the given server");
                        Ok(start::warm(&api, n, w).await?)
                    } else {
                        Err("the server's python-basic pool is off")
                    };
                    progress("start: cold starts and Docker baselines");
                    let cold_api = (pool.target == 0).then_some(&api);
                    let (cold, base) =
                        start::cold_and_baselines(cold_api, &self.docker, &plan.image, &self.run_id, n, w)
                            .await?;
                    let cold = if pool.target == 0 {
                        Ok(&cold)
                    } else {
                        Err("the server's python-basic pool is on")
                    };
                    self.push(start::metrics(warm.as_ref().map_err(|e| *e), cold, &base)?);
                }
                self.rest(&api, pid).await?;
                self.s3_files().await?;
                if plan.has(Section::Egress) {
                    let why =
                        "needs a server this tool starts (its egress settings name a download server here)";
                    self.push(vec![
                        Metric::skipped("egress.download.flooded", "ms", why),
                        Metric::skipped("egress.download.alone", "ms", why),
                    ]);
                }
                Ok(())
            }
        }
    }

    /// Every section after session start, on one server.
    async fn rest(&mut self, api: &Api, pid: Option<u32>) -> Result<()> {
        let plan = self.plan.clone();
        if plan.has(Section::Exec) {
            progress("exec: print(1) round trips");
            self.push(exec::run(api, &self.docker, plan.exec_samples, plan.warmup).await?);
        }
        if plan.has(Section::Throughput) {
            progress("throughput");
            let m = throughput::run(api, &plan.throughput_levels, plan.throughput_secs as f64, plan.warmup)
                .await?;
            self.push(m);
        }
        if plan.has(Section::Files) {
            progress("files: local store");
            let m =
                files::run(api, "files.local", &plan.file_sizes(), plan.warmup, self.scratch.path(), true)
                    .await?;
            self.push(m);
        }
        if plan.has(Section::Density) {
            progress(&format!(
                "density: up to {} idle sessions within {} s",
                plan.density_sessions, plan.density_time_limit_secs
            ));
            self.push(density::run(api, &self.docker, pid, &plan.density()).await?);
        }
        Ok(())
    }

    /// The egress section, on a server of its own whose proxy may reach a download server here.
    async fn egress(&mut self) -> Result<()> {
        if !self.plan.has(Section::Egress) {
            return Ok(());
        }
        progress("egress: downloads through the proxy, alone and while another session floods it");
        let downloads = egress::Downloads::start().await?;
        let server = self.server("egress", None, egress::server_env(downloads.port())).await?;
        let (samples, warmup) = (self.plan.egress_samples, self.plan.warmup);
        let result = Self::with_log(&server, egress::run(&server.api, &downloads, samples, warmup)).await;
        let stopped = server.shutdown().await;
        self.push(result?);
        stopped
    }

    async fn s3_files(&mut self) -> Result<()> {
        if !self.plan.has(Section::Files) {
            return Ok(());
        }
        let s3_env = match &self.subject {
            Subject::Own { s3_env: Some(env), .. } => Some(env.clone()),
            _ => None,
        };
        let Some(s3_env) = s3_env else {
            let rows = self
                .plan
                .file_sizes()
                .iter()
                .flat_map(|s| {
                    let l = files::label(s.bytes);
                    [format!("files.s3.upload.{l}"), format!("files.s3.download.{l}")]
                })
                .map(|name| Metric::skipped(&name, "MiB/s", "no S3 store given"))
                .collect();
            self.push(rows);
            return Ok(());
        };
        progress("files: s3 store");
        let server = self.server("s3", None, s3_env).await?;
        // A server that does not know the settings ignores them (and says so): that would
        // measure the local store under the s3 name.
        let log = server.log();
        let ignored: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("names no setting") && l.contains("SANDBOX_STORAGE"))
            .map(str::trim)
            .collect();
        ensure!(
            ignored.is_empty(),
            "this sandbox-server has no s3 store; it ignored:\n{}",
            ignored.join("\n")
        );
        let plan = self.plan.clone();
        let result = Self::with_log(
            &server,
            files::run(&server.api, "files.s3", &plan.file_sizes(), plan.warmup, self.scratch.path(), false),
        )
        .await;
        let stopped = server.shutdown().await;
        self.push(result?);
        stopped
    }
}

async fn host_info(docker: &bollard::Docker) -> Result<Host> {
    Ok(Host {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        memory_mib: host::total_memory_mib()?,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        docker: docker.version().await.context("Docker version")?.version.unwrap_or_default(),
    })
}

async fn preflight(docker: &bollard::Docker, image: &str) -> Result<()> {
    docker
        .inspect_image(image)
        .await
        .with_context(|| format!("image {image} (build it with images/build.sh)"))?;
    for tool in ["docker", "bwrap", "setpriv"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        ensure!(found, "{tool} is not on PATH");
    }
    ensure!(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3 is needed for the bwrap baseline");
    host::bwrap_print_1().await.context("the bare bwrap baseline does not work on this host")?;
    Ok(())
}

async fn main_inner(cli: Cli) -> Result<Report> {
    let started = chrono::Utc::now();
    // The in-process S3 server, when this run starts one: it lives as long as the run.
    let mut _s3_server = None;
    let subject = match &cli.url {
        Some(url) => {
            ensure_loopback("--url", url)?;
            ensure!(
                cli.s3_endpoint.is_none(),
                "the --s3-* options configure a server this tool starts, not --url"
            );
            let api = Api::new(url, cli.api_key.as_deref().unwrap_or_default())?;
            ensure!(api.healthy().await, "no sandbox-server answers at {}", api.base());
            Subject::Given { api, pid: cli.server_pid }
        }
        None => {
            let server_needed = cli.only.is_empty() || cli.only.iter().any(|s| s.needs_server());
            let bin = match &cli.server_bin {
                Some(b) => Some(b.clone()),
                None if server_needed => Some(default_server_bin()?),
                None => None,
            };
            if let Some(bin) = &bin {
                ensure!(bin.is_file(), "no server binary at {}", bin.display());
            }
            let s3_env = match &cli.s3_endpoint {
                Some(endpoint) => {
                    ensure_loopback("--s3-endpoint", endpoint)?;
                    let v = |o: &Option<String>| o.clone().unwrap_or_default();
                    Some(vec![
                        ("SANDBOX_STORAGE__MODE".into(), "s3".into()),
                        ("SANDBOX_STORAGE__S3__ENDPOINT".into(), endpoint.clone()),
                        ("SANDBOX_STORAGE__S3__BUCKET".into(), v(&cli.s3_bucket)),
                        ("SANDBOX_STORAGE__S3__ACCESS_KEY_ID".into(), v(&cli.s3_access_key)),
                        ("SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY".into(), v(&cli.s3_secret_key)),
                    ])
                }
                None if cli.no_s3 || !cli.only_or_all(Section::Files) => None,
                None => {
                    let s3 = sandbox_e2e::s3::TestS3::start().await;
                    let env = vec![
                        ("SANDBOX_STORAGE__MODE".into(), "s3".into()),
                        ("SANDBOX_STORAGE__S3__ENDPOINT".into(), s3.endpoint()),
                        ("SANDBOX_STORAGE__S3__BUCKET".into(), sandbox_e2e::s3::BUCKET.into()),
                        ("SANDBOX_STORAGE__S3__ACCESS_KEY_ID".into(), sandbox_e2e::s3::ACCESS_KEY.into()),
                        ("SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY".into(), sandbox_e2e::s3::SECRET_KEY.into()),
                    ];
                    _s3_server = Some(s3);
                    Some(env)
                }
            };
            Subject::Own { bin, extra_env: cli.server_env.clone(), s3_env }
        }
    };
    let server = match &subject {
        Subject::Own { bin: Some(bin), .. } => format!("started {}", bin.display()),
        Subject::Own { bin: None, .. } => "none (no section needs one)".to_owned(),
        Subject::Given { api, .. } => format!("given {}", api.base()),
    };
    let mut plan = Plan::from(&cli, server)?;
    plan.s3 = matches!(subject, Subject::Own { s3_env: Some(_), .. });
    let docker = docker::connect().await?;
    preflight(&docker, &plan.image).await?;
    let host = host_info(&docker).await?;
    let run_id = format!("{}-{}", std::process::id(), started.timestamp());
    let scratch = tempfile::Builder::new().prefix("sandbox-bench-scratch-").tempdir()?;
    let mut run =
        Run { plan: plan.clone(), subject, run_id: run_id.clone(), docker, scratch, metrics: Vec::new() };
    let clock = Instant::now();
    let outcome = tokio::select! {
        r = run.all() => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // Whatever happened: sessions left on a given server, and this run's own containers.
    if let Subject::Given { api, .. } = &run.subject
        && let Err(e) = api.delete_leftovers().await
    {
        eprintln!("warning: could not delete every session this run created: {e:#}");
    }
    docker::remove_labelled_blocking(&format!("{}={run_id}", docker::RUN_LABEL));
    let report = Report {
        commit: git_commit(),
        date: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host,
        options: serde_json::to_value(&plan)?,
        metrics: std::mem::take(&mut run.metrics),
    };
    progress(&format!("finished in {:.0} s", clock.elapsed().as_secs_f64()));
    match outcome {
        Ok(()) => Ok(report),
        Err(e) => {
            if !report.metrics.is_empty() {
                eprintln!("\nmeasured before the failure (not written to {}):", cli.json.display());
                eprint!("{}", report::table(&report.metrics));
            }
            Err(e)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.json.clone();
    match main_inner(cli).await {
        Ok(report) => {
            let mut text = serde_json::to_string_pretty(&report).expect("a report serialises");
            text.push('\n');
            if let Err(e) = std::fs::write(&json, text) {
                eprintln!("error: writing {}: {e}", json.display());
                return std::process::ExitCode::FAILURE;
            }
            println!(
                "sandbox-bench {} ({}; {} CPUs, {} MiB, kernel {}, Docker {})\n",
                report.commit,
                report.date,
                report.host.cpus,
                report.host.memory_mib,
                report.host.kernel,
                report.host.docker
            );
            print!("{}", report::table(&report.metrics));
            let missed: Vec<&str> =
                report.metrics.iter().filter(|m| m.met == Some(false)).map(|m| m.name.as_str()).collect();
            println!(
                "\ntargets missed: {}",
                if missed.is_empty() { "none".into() } else { missed.join(", ") }
            );
            println!("results written to {}", json.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in ["http://127.0.0.1:8000", "http://127.1.2.3", "http://localhost:9000/", "http://[::1]:8000"]
        {
            ensure_loopback("--url", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["http://10.0.0.1:8000", "http://example.com", "http://[2001:db8::1]/", "not a url"] {
            assert!(ensure_loopback("--url", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn server_env_pairs() {
        assert_eq!(parse_env_pair("SANDBOX_X__Y=a=b"), Ok(("SANDBOX_X__Y".into(), "a=b".into())));
        assert!(parse_env_pair("PATH=/tmp").is_err());
        assert!(parse_env_pair("SANDBOX_X").is_err());
    }

    #[test]
    fn quick_is_small_and_full_is_not() {
        let quick = Plan::from(&Cli::parse_from(["sandbox-bench", "--quick"]), String::new()).unwrap();
        assert_eq!((quick.density_sessions, quick.large_file_samples, quick.egress_samples), (10, 0, 3));
        assert!(quick.has(Section::Egress) && !Section::Egress.on_main_server());
        assert_eq!(quick.file_sizes().len(), 1);
        let full = Plan::from(&Cli::parse_from(["sandbox-bench"]), String::new()).unwrap();
        assert_eq!(full.density_sessions, 500);
        assert_eq!(full.file_sizes().iter().map(|s| s.bytes).collect::<Vec<_>>(), [1 << 20, 100 << 20]);
        let only =
            Plan::from(&Cli::parse_from(["sandbox-bench", "--only", "exec,files"]), String::new()).unwrap();
        assert!(only.has(Section::Exec) && only.has(Section::Files) && !only.has(Section::Density));
    }
}

//! The `kflip` command line.

mod admin_client;
mod clients;
mod edit;
mod ops;
mod reset;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{self, watch::ReloadStatus};

/// kflip: one binary for Kafka disaster recovery. Clients connect to the
/// proxy; editing `proxy.active` in the config file moves them all to the
/// other cluster without a restart.
#[derive(Parser, Debug)]
#[command(name = "kflip", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `human` (default) or `json` (one object per line).
    #[arg(long, global = true, value_enum, env = "KFLIP_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Human,
    Json,
}

/// Where a command finds the config and the admin API.
#[derive(clap::Args, Debug)]
struct Target {
    /// The YAML config file of the kflip to act on.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The admin API to ask, when not the one `admin.listen` names (for
    /// example through `kubectl port-forward`): HOST:PORT or a URL.
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<String>,
}

/// Options shared by failover and failback.
#[derive(clap::Args, Debug)]
struct FlipArgs {
    #[command(flatten)]
    target: Target,
    /// Show the lag and what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long to wait for kflip to report the switch.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Print the edited config instead of writing it (for a Kubernetes
    /// ConfigMap: pipe it into `kubectl create configmap ... --dry-run=client -o yaml | kubectl apply -f -`).
    #[arg(long)]
    stdout: bool,
}

#[derive(Subcommand, Debug)]
enum OffsetsCommand {
    /// Show a group's committed offsets on one cluster and their translation
    /// onto the other, per partition (asks the running engine).
    ///
    /// Example: kflip offsets translate -c kflip.yaml --group payments --from dc1 --to dc2
    #[command(verbatim_doc_comment)]
    Translate {
        #[command(flatten)]
        target: Target,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// The cluster whose commits are translated (default: the active one).
        #[arg(long)]
        from: Option<String>,
        /// The cluster they are translated onto (default: the other one).
        #[arg(long)]
        to: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a stopped group's offsets on one cluster to the first record at
    /// or after a time, the manual path for a group kflip did not translate.
    /// Refused while the group has members.
    ///
    /// Example: kflip offsets reset -c kflip.yaml --group payments --cluster dc2 --to-datetime 2026-12-04T03:00:00Z --dry-run
    #[command(verbatim_doc_comment)]
    Reset {
        /// The YAML config file (for the cluster's address and credentials).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// The cluster to reset it on.
        #[arg(long)]
        cluster: String,
        /// RFC 3339 time, e.g. 2026-12-04T03:00:00Z.
        #[arg(long, value_name = "TIME")]
        to_datetime: String,
        /// Only these topics (default: every topic the group committed on).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
        /// Show the new offsets; commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum OrphansCommand {
    /// List the ranges a disaster switch left on the old cluster uncopied.
    ///
    /// Example: kflip orphans list -c kflip.yaml
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the ranges a flow holds to its target now (after the records
    /// written there since).
    ///
    /// Example: kflip orphans restore -c kflip.yaml --flow 'dc1->dc2'
    #[command(verbatim_doc_comment)]
    Restore {
        #[command(flatten)]
        target: Target,
        /// The flow, SOURCE->TARGET.
        #[arg(long)]
        flow: String,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Kafka proxy, forwarding clients to the active cluster and
    /// following changes to the config file.
    ///
    /// Example: kflip proxy -c proxy-config/minimal.yaml
    #[command(verbatim_doc_comment)]
    Proxy {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the replication engine: copy topics and translate consumer-group
    /// offsets along the config's `replication.flows`.
    ///
    /// Example: kflip replicate -c kflip.yaml
    #[command(verbatim_doc_comment)]
    Replicate {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the proxy and the replication engine together in one process
    /// (planned switches then wait for replication to catch up).
    ///
    /// Example: kflip run -c kflip.yaml
    #[command(verbatim_doc_comment)]
    Run {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a users-file entry (salted SCRAM-SHA-256 and SCRAM-SHA-512 keys,
    /// never the password) for `proxy.sasl.users_file`. The password is read
    /// from standard input, one line.
    ///
    /// Example: printf '%s\n' "$PW" | kflip users-add alice >> users.yaml
    #[command(verbatim_doc_comment)]
    UsersAdd {
        /// The user name.
        user: String,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = crate::auth::scram::Mechanism::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Show what a running kflip is doing: active cluster, clusters'
    /// reachability, replication lag, the last switch, orphans.
    ///
    /// Example: kflip status -c /etc/kflip/kflip.yaml [--json]
    /// Exits 0 when kflip is ready, 1 when it is not, 3 when its admin API
    /// cannot be reached.
    #[command(verbatim_doc_comment)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move every client to another cluster: edit proxy.active in the config
    /// file (atomically), wait for kflip to switch, report the figures.
    ///
    /// Examples:
    ///   kflip failover -c kflip.yaml --to dc2 --dry-run
    ///   kflip failover -c kflip.yaml --to dc2
    /// Exits 0 once switched, 1 if kflip did not switch in time or rejected
    /// the file, 2 on a bad argument or file, 3 if the admin API cannot be
    /// reached.
    #[command(verbatim_doc_comment)]
    Failover {
        /// The cluster to move clients to.
        #[arg(long, value_name = "CLUSTER")]
        to: String,
        #[command(flatten)]
        flip: FlipArgs,
    },
    /// Move clients back to the cluster the last switch left (or, with two
    /// clusters, the other one); the same as failover otherwise.
    ///
    /// Example: kflip failback -c kflip.yaml
    #[command(verbatim_doc_comment)]
    Failback {
        /// The cluster to move clients to (default: the one the last switch left).
        #[arg(long, value_name = "CLUSTER")]
        to: Option<String>,
        #[command(flatten)]
        flip: FlipArgs,
    },
    /// Every client the proxy has seen: topics produced and consumed, groups,
    /// acks, idempotence, transactions, client software, where consumers
    /// without offsets start, policy violations, and what a switch would
    /// cost each.
    ///
    /// Example: kflip clients -c kflip.yaml [--json]
    #[command(verbatim_doc_comment)]
    Clients {
        #[command(flatten)]
        target: Target,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Consumer-group offsets: translate, reset.
    ///
    /// Example: kflip offsets translate -c kflip.yaml --group payments
    #[command(subcommand, verbatim_doc_comment)]
    Offsets(OffsetsCommand),
    /// Orphans: records a disaster switch left on the old cluster.
    ///
    /// Example: kflip orphans list -c kflip.yaml
    #[command(subcommand, verbatim_doc_comment)]
    Orphans(OrphansCommand),
    /// Check config files and explain what is wrong; exits 1 if any is invalid.
    ///
    /// Example: kflip validate-config proxy-config/*.yaml
    #[command(verbatim_doc_comment)]
    ValidateConfig {
        /// One or more YAML config files.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let done = |r: Result<(), ops::Exit>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kflip: {}", e.message);
            ExitCode::from(e.code)
        }
    };
    match cli.command {
        Command::Status { target, json } => {
            done(ops::status(&target.config, target.admin.as_deref(), json))
        }
        Command::Clients { target, json } => done(clients::clients(
            &target.config,
            target.admin.as_deref(),
            json,
        )),
        Command::Failover { to, flip } => done(ops::flip(ops::Flip {
            path: &flip.target.config,
            to: Some(&to),
            admin: flip.target.admin.as_deref(),
            dry_run: flip.dry_run,
            timeout: flip.timeout,
            stdout: flip.stdout,
            back: false,
        })),
        Command::Failback { to, flip } => done(ops::flip(ops::Flip {
            path: &flip.target.config,
            to: to.as_deref(),
            admin: flip.target.admin.as_deref(),
            dry_run: flip.dry_run,
            timeout: flip.timeout,
            stdout: flip.stdout,
            back: true,
        })),
        Command::Offsets(OffsetsCommand::Translate {
            target,
            group,
            from,
            to,
            json,
        }) => done(ops::translate(
            &target.config,
            target.admin.as_deref(),
            &group,
            from.as_deref(),
            to.as_deref(),
            json,
        )),
        Command::Offsets(OffsetsCommand::Reset {
            config,
            group,
            cluster,
            to_datetime,
            topics,
            dry_run,
        }) => done(reset::reset(reset::Reset {
            path: &config,
            group: &group,
            cluster: &cluster,
            datetime: &to_datetime,
            topics: &topics,
            dry_run,
        })),
        Command::Orphans(OrphansCommand::List { target, json }) => done(ops::orphans_list(
            &target.config,
            target.admin.as_deref(),
            json,
        )),
        Command::Orphans(OrphansCommand::Restore { target, flow }) => done(ops::orphans_restore(
            &target.config,
            target.admin.as_deref(),
            &flow,
        )),
        Command::ValidateConfig { files } => validate(&files),
        Command::UsersAdd { user, iterations } => users_add(&user, iterations),
        Command::Proxy { config } => serve(config, Parts::PROXY),
        Command::Replicate { config } => serve(config, Parts::ENGINE),
        Command::Run { config } => serve(config, Parts::BOTH),
    }
}

/// Prints the users-file entry for `user`, the password read from stdin.
fn users_add(user: &str, iterations: u32) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("kflip users-add: cannot read the password from standard input: {e}");
        return ExitCode::from(2);
    }
    let password = crate::auth::Secret::new(line.trim_end_matches(['\n', '\r']).to_string());
    if password.expose().is_empty() {
        eprintln!("kflip users-add: no password on standard input");
        return ExitCode::from(2);
    }
    match crate::auth::users::entry(user, &password, iterations) {
        Ok(entry) => {
            print!("{entry}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kflip users-add: {e}");
            ExitCode::from(2)
        }
    }
}

/// Which halves of kflip a command runs.
#[derive(Clone, Copy)]
struct Parts {
    proxy: bool,
    engine: bool,
}

impl Parts {
    const PROXY: Parts = Parts {
        proxy: true,
        engine: false,
    };
    const ENGINE: Parts = Parts {
        proxy: false,
        engine: true,
    };
    const BOTH: Parts = Parts {
        proxy: true,
        engine: true,
    };
}

fn serve(config: PathBuf, parts: Parts) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kflip: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, parts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kflip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KFLIP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One JSON object per line, with the fields of every open span
        // (client address, cluster, API key, ...) flattened in.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match config::load(f) {
            Ok(c) => {
                let proxy = c
                    .proxy
                    .as_ref()
                    .map(|p| {
                        format!(
                            ", proxy on {}:{} -> {}",
                            p.listen_host, p.listen_port, p.active
                        )
                    })
                    .unwrap_or_default();
                let flows = c
                    .replication
                    .as_ref()
                    .map(|r| format!(", {} replication flows", r.flows.len()))
                    .unwrap_or_default();
                let admin = c
                    .admin
                    .as_ref()
                    .map(|a| format!(", admin API on {}", a.listen))
                    .unwrap_or_default();
                println!(
                    "{}: ok ({} clusters{proxy}{flows}{admin})",
                    f.display(),
                    c.clusters.len()
                );
            }
            Err(e) => {
                ok = false;
                println!("{}: {e}", f.display());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(path: PathBuf, parts: Parts) -> anyhow::Result<()> {
    // Taken over before anything starts: a SIGTERM that arrives while kflip
    // is still starting (a first discovery can take connect_timeout) is
    // then a clean shutdown once it has started, not the default
    // disposition's instant death.
    let signals = Signals::install();
    let cfg = config::load(&path)?;
    if parts.proxy {
        cfg.require_proxy()?;
    }
    if parts.engine && cfg.replication.is_none() {
        anyhow::bail!(
            "{}: replication: is required to run the replication engine",
            path.display()
        );
    }
    let (tx, mut rx) = watch::channel(Arc::new(cfg));
    let shutdown = CancellationToken::new();
    let status = Arc::new(ReloadStatus::default());
    let started = std::time::Instant::now();
    let watcher = tokio::spawn({
        let (path, stop, status) = (path.clone(), shutdown.clone(), status.clone());
        async move {
            if let Err(e) = config::watch::watch_config(path, tx, status, stop).await {
                tracing::error!(error = %e, "cannot watch the config file; hot reload is off");
            }
        }
    });
    let engine = if parts.engine {
        let engine = Arc::new(crate::replication::Engine::new(
            tokio::runtime::Handle::current(),
        ));
        let first = rx.borrow_and_update().clone();
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.apply(&first)).await?;
        tokio::spawn(crate::replication::log_lag(
            engine.clone(),
            std::time::Duration::from_secs(30),
            shutdown.clone(),
        ));
        let (e, stop, mut watched) = (engine.clone(), shutdown.clone(), rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = watched.changed() => if changed.is_err() { return },
                }
                let cfg = watched.borrow_and_update().clone();
                let e = e.clone();
                let _ = tokio::task::spawn_blocking(move || e.apply(&cfg)).await;
            }
        });
        Some(engine)
    } else {
        None
    };
    let proxy = if parts.proxy {
        Some(crate::proxy::start(rx.clone(), shutdown.clone(), engine.clone()).await?)
    } else {
        None
    };
    crate::registry::start_configured(proxy.as_ref().map(|p| p.board()), &rx, &shutdown).await?;
    let admin = rx.borrow().admin.clone();
    if let Some(admin) = admin {
        let sources = Arc::new(crate::admin::Sources {
            config_path: path.clone(),
            config: rx.clone(),
            reload: status.clone(),
            proxy: proxy.clone(),
            engine: engine.clone(),
            shutdown: shutdown.clone(),
            started,
            probes: Default::default(),
            instance: crate::admin::fleet::instance(),
            fleet: Default::default(),
        });
        crate::admin::start(sources, &admin.listen).await?;
    }
    signals.wait().await;
    tracing::info!(
        open = proxy.as_ref().map(|p| p.connections()).unwrap_or(0),
        "shutting down; draining"
    );
    shutdown.cancel();
    if let Some(p) = &proxy {
        p.drained().await;
    }
    if let Some(e) = engine {
        let _ = tokio::task::spawn_blocking(move || e.shutdown()).await;
    }
    let _ = watcher.await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), caught from the moment they are installed.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
        }
    }
}

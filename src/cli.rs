//! The `kflip` command line.

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
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Kafka proxy, forwarding clients to the active cluster and
    /// following changes to the config file.
    Proxy {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the replication engine: copy topics and translate consumer-group
    /// offsets along the config's `replication.flows`.
    Replicate {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the proxy and the replication engine together in one process.
    Run {
        /// The YAML config file (see docs/configuration.md).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a users-file entry (salted SCRAM-SHA-256 and SCRAM-SHA-512 keys,
    /// never the password) for `proxy.sasl.users_file`. The password is read
    /// from standard input, one line.
    ///
    /// Example: `printf '%s\n' "$PW" | kflip users-add alice >> users.yaml`
    UsersAdd {
        /// The user name.
        user: String,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = crate::auth::scram::Mechanism::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Check config files and explain what is wrong; exits 1 if any is invalid.
    ValidateConfig {
        /// One or more YAML config files.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KFLIP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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
                println!(
                    "{}: ok ({} clusters{proxy}{flows})",
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
        });
        crate::admin::start(sources, &admin.listen).await?;
    }
    wait_for_signal().await;
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

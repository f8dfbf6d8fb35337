//! `sandbox-executor`: the daemon inside every sandbox container.

use clap::{Args, Parser, Subcommand};
use sandbox_executor::config::ExecutorConfig;
use sandbox_executor::{egress, server, supervisor};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Runs untrusted code under bubblewrap inside a sandbox container")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the sandbox works, then serve the API until SIGTERM.
    Serve(ExecutorConfig),
    /// Check the sandbox works and exit (0 when it does).
    Check(ExecutorConfig),
    /// Relay TCP connections to the egress proxy's Unix socket until killed (a package
    /// installer's container runs it in the background and points pip at it).
    EgressRelay(RelayArgs),
}

#[derive(Args)]
struct RelayArgs {
    /// Where to listen.
    #[arg(long, default_value_t = egress::RELAY_ADDR)]
    listen: SocketAddr,
    /// The egress proxy's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// The execution id to name in each connection's first request.
    #[arg(long, value_parser = parse_id)]
    execution: Option<String>,
    /// A program to run once the relay listens, with the proxy variables pointing at it and
    /// no `NO_PROXY` (every URL goes through the proxy); the relay then ends with it, with its
    /// exit code.
    #[arg(last = true)]
    command: Vec<std::ffi::OsString>,
}

fn parse_id(id: &str) -> Result<String, String> {
    match sandbox_protocol::contract::valid_id(id) {
        true => Ok(id.to_owned()),
        false => Err("an id is 1 to 64 of [A-Za-z0-9_-]".to_owned()),
    }
}

/// Runs the relay: in the foreground, returning only when it cannot listen or its listener
/// fails; or, with a command, beside the command until it ends.
fn relay(args: RelayArgs) -> std::process::ExitCode {
    if let Some((program, rest)) = args.command.split_first() {
        let execution = egress::Execution::Fixed(args.execution);
        let status = egress::bind(args.listen)
            .and_then(|listener| egress::spawn_thread(listener, args.socket, execution))
            .and_then(|()| {
                // The command (a package installer) has nothing of its own on loopback: every
                // URL, a loopback index's too, goes to the proxy, which judges it by the
                // operator's address rules.
                let variables = egress::proxy_variables(args.listen)
                    .into_iter()
                    .filter(|(name, _)| !name.eq_ignore_ascii_case("no_proxy"));
                std::process::Command::new(program)
                    .args(rest)
                    .env_remove("NO_PROXY")
                    .env_remove("no_proxy")
                    .envs(variables)
                    .status()
            });
        return match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
            }
            Err(e) => {
                eprintln!("sandbox-executor egress-relay: {}: {e}", program.to_string_lossy());
                std::process::ExitCode::FAILURE
            }
        };
    }
    let served: std::io::Result<()> = egress::bind(args.listen).and_then(|listener| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let execution = egress::Execution::Fixed(args.execution);
            Err(egress::serve(listener, args.socket, execution).await)
        })
    });
    if let Err(e) = served {
        eprintln!("sandbox-executor egress-relay: {}: {e}", args.listen);
    }
    std::process::ExitCode::FAILURE
}

fn main() -> std::process::ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    // Inside a sandbox: become the interpreter as fast as possible, no runtime, no parsing.
    if args.get(1).is_some_and(|a| a == supervisor::SUBCOMMAND) {
        supervisor::main(&args[2..]);
    }
    let cli = Cli::parse();
    let cfg = match cli.command {
        Command::Serve(ref c) | Command::Check(ref c) => c.clone(),
        Command::EgressRelay(args) => return relay(args),
    };
    sandbox_daemon::init_logging(cfg.log_format);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbox-executor: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let engine = server::start(&cfg).await?;
        if let Command::Serve(_) = cli.command {
            server::serve(&cfg, engine, sandbox_daemon::shutdown_signal()).await?;
        } else {
            println!("sandbox works");
        }
        Ok::<_, server::StartError>(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "executor stopped");
            eprintln!("sandbox-executor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `sandbox-executor`: the daemon inside every sandbox container.

use clap::{Parser, Subcommand};
use sandbox_executor::config::ExecutorConfig;
use sandbox_executor::{server, supervisor};

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
}

fn main() -> std::process::ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    // Inside a sandbox: become the interpreter as fast as possible, no runtime, no parsing.
    if args.get(1).is_some_and(|a| a == supervisor::SUBCOMMAND) {
        supervisor::main(&args[2..]);
    }
    let cli = Cli::parse();
    let cfg = match &cli.command {
        Command::Serve(c) | Command::Check(c) => c.clone(),
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

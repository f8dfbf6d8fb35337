//! `sandbox`: the command-line client of the sandbox server's REST API.

mod admin;
mod client;
mod config;
mod context;
mod exec;
mod files;
mod mcp;
mod output;
mod session;
mod sse;

use clap::{CommandFactory, Parser, Subcommand};
use client::{Client, Error, Result};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// Exit code: `exec`: the execution timed out.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code: the request failed (the server's error code is printed), the server could not be
/// reached, or the URL or key is missing.
pub const EXIT_ERROR: u8 = 125;
/// Exit code: interrupted (Ctrl-C); `exec`: the execution was cancelled.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code: `exec`: the execution crashed (killed, e.g. out of memory).
pub const EXIT_CRASHED: u8 = 137;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0        success (exec: the execution completed)
  1-255    exec: the execution failed; its exit code (1 when it has none, e.g. an exception)
  2        bad command-line arguments
  124      exec: the execution timed out
  125      the request failed: the server answered with an error (its code is printed),
           could not be reached, or the URL or key is missing
  130      interrupted (Ctrl-C); exec: the execution was cancelled
  137      exec: the execution crashed (killed, e.g. out of memory)

Configuration: --url/--key, else $SANDBOX_URL/$SANDBOX_KEY, else the config file
($SANDBOX_CONFIG, else $XDG_CONFIG_HOME/sandbox/config.toml or ~/.config/sandbox/config.toml)
that `sandbox login` writes.";

/// Command-line client of the sandbox server.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// Server URL (default: $SANDBOX_URL, else the config file).
    #[arg(long, global = true, env = "SANDBOX_URL")]
    url: Option<String>,
    /// API key (default: $SANDBOX_KEY, else the config file).
    #[arg(long, global = true, env = "SANDBOX_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print the server's JSON (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check --url and --key against the server and store them in the config file (mode 0600);
    /// without --key (or $SANDBOX_KEY) the key is read from standard input.
    Login,
    /// Create, list, show, stop, delete and wait for sessions.
    #[command(subcommand)]
    Session(session::SessionCmd),
    /// Run code (an argument, a file or standard input) and stream its output; the exit code
    /// follows the execution's.
    Exec(exec::ExecArgs),
    /// Code contexts: interpreters whose state persists between runs.
    #[command(subcommand)]
    Context(context::ContextCmd),
    /// List, copy, print and delete workspace files.
    #[command(subcommand)]
    Files(files::FilesCmd),
    /// Install Python packages into a session.
    #[command(subcommand)]
    Deps(session::DepsCmd),
    /// Templates (changes need an admin key).
    #[command(subcommand)]
    Templates(admin::TemplatesCmd),
    /// API keys (admin).
    #[command(subcommand)]
    Keys(admin::KeysCmd),
    /// Warm pools: target and ready sizes per template (admin).
    Pools,
    /// The server's health (no key needed).
    Health(admin::HealthArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// A stdio MCP server for desktop hosts, relaying to the server's `/mcp` endpoint.
    Mcp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Runs a command; answers the exit code.
async fn run(cli: Cli) -> Result<u8> {
    let json = cli.json;
    let client = |need_key: bool| -> Result<Client> {
        let s = config::resolve(cli.url.as_deref(), cli.key.as_deref(), need_key)?;
        Client::new(&s.url, &s.key)
    };
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sandbox", &mut std::io::stdout());
        }
        Command::Login => login(cli.url, cli.key, json).await?,
        Command::Health(args) => admin::health(&client(false)?, args, json).await?,
        Command::Session(cmd) => session::run(&client(true)?, cmd, json).await?,
        Command::Exec(args) => return exec::run(&client(true)?, args, json).await,
        Command::Context(cmd) => context::run(&client(true)?, cmd, json).await?,
        Command::Files(cmd) => files::run(&client(true)?, cmd, json).await?,
        Command::Deps(cmd) => session::deps(&client(true)?, cmd, json).await?,
        Command::Templates(cmd) => admin::templates(&client(true)?, cmd, json).await?,
        Command::Keys(cmd) => admin::keys(&client(true)?, cmd, json).await?,
        Command::Pools => admin::pools(&client(true)?, json).await?,
        Command::Mcp => mcp::run(&client(true)?).await?,
    }
    Ok(0)
}

/// `sandbox login`: checks the URL and key with an authenticated call, then stores them.
async fn login(url: Option<String>, key: Option<String>, json: bool) -> Result<()> {
    let path = config::path()?;
    let mut file = config::load(&path)?;
    let url = url
        .or(file.url.clone())
        .ok_or_else(|| Error::argument("no server URL: pass --url or set SANDBOX_URL"))?;
    let key = match key {
        Some(k) => k,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("API key: ");
            }
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    if key.is_empty() {
        return Err(Error::argument("no API key given"));
    }
    let client = Client::new(&url, &key)?;
    client.list(client.api(["sessions"]), client::Page { limit: Some(1), offset: None }, &[]).await?;
    file.url = Some(url.clone());
    file.key = Some(key);
    config::save(&path, &file)?;
    if json {
        output::json(&serde_json::json!({"url": url, "config": path.display().to_string()}));
    } else {
        println!("logged in to {url}; saved in {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

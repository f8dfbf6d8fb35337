//! `sandbox-server`: serve the API, or manage API keys.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sandbox_server::settings::Settings;
use sandbox_server::{api, prepare, serve};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "The sandbox control plane")]
struct Cli {
    /// A TOML settings file (see docs/configuration.md).
    #[arg(long, global = true, env = "SANDBOX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API.
    Serve,
    /// Manage API keys (works directly on the database).
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Run the egress proxy alone, for sandboxes that reach it over the network (Kubernetes):
    /// each connection is the session that holds the sandbox its credential names.
    EgressProxy {
        /// Where to listen.
        #[arg(long, default_value = "0.0.0.0:3128")]
        listen: std::net::SocketAddr,
        /// The key sandboxes' credentials are made with (default: `kubernetes.egress_key_file`).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create a key and print its secret (shown only now).
    Create {
        /// A name to recognise it by.
        #[arg(long, default_value = "unnamed")]
        name: String,
        /// Make it an admin key.
        #[arg(long)]
        admin: bool,
        /// Shape the secret as `e2b_<40 hex digits>`, the format E2B's SDKs may check.
        #[arg(long)]
        e2b: bool,
    },
    /// List keys.
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id (`key_…`).
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        println!("{}", api::openapi_json());
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref(), std::env::vars()).context("loading settings")?;
    sandbox_daemon::init_logging(settings.log_format);
    for name in &settings.ignored_env {
        tracing::warn!(variable = %name, "environment variable names no setting; ignored");
    }
    match cli.command {
        Command::Serve => {
            let shutdown = async {
                sandbox_daemon::shutdown_signal().await;
                tracing::info!("shutdown requested; draining requests");
            };
            serve(settings, shutdown).await
        }
        Command::Keys { action } => {
            let (store, _) = prepare(&settings).await?;
            match action {
                KeyAction::Create { name, admin, e2b } => {
                    let (key, secret) = sandbox_server::service::keys::Keys::new(store.clone())
                        .make(&name, admin, e2b)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("{secret}");
                    eprintln!("created {} ({}{})", key.id, key.name, if admin { ", admin" } else { "" });
                }
                KeyAction::List => {
                    for k in store.list_api_keys().await? {
                        let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                        let role = if k.is_admin { "admin" } else { "user" };
                        println!(
                            "{}\t{}…\t{role}\t{state}\t{}\t{}",
                            k.id,
                            k.prefix,
                            k.created_at.to_rfc3339(),
                            k.name
                        );
                    }
                }
                KeyAction::Revoke { id } => {
                    anyhow::ensure!(store.revoke_api_key(&id, chrono::Utc::now()).await?, "no key {id}");
                    println!("revoked {id}");
                }
            }
            Ok(())
        }
        Command::EgressProxy { listen, key_file } => {
            let key_file = key_file
                .or_else(|| settings.kubernetes.egress_key_file.clone())
                .context("the egress proxy needs --key-file or kubernetes.egress_key_file")?;
            sandbox_server::serve_egress_proxy(settings, listen, &key_file, sandbox_daemon::shutdown_signal())
                .await
        }
        Command::Openapi => unreachable!("handled above"),
    }
}

//! `sandbox context …`: code contexts, long-lived interpreters whose state persists between runs.

use crate::client::{Client, Page, Result};
use crate::output;
use crate::session::{self, SessionArg};
use clap::Subcommand;
use serde_json::json;

/// `sandbox context` subcommands.
#[derive(Debug, Subcommand)]
pub enum ContextCmd {
    /// Start a code context and print its id.
    Create {
        /// python, javascript or shell.
        #[arg(short, long, default_value = "python", value_parser = ["python", "javascript", "shell"])]
        language: String,
        /// The workspace directory it starts in.
        #[arg(long)]
        cwd: Option<String>,
        /// NAME=VALUE: an environment variable of the context.
        #[arg(short, long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        #[command(flatten)]
        session: SessionArg,
    },
    /// List the session's code contexts.
    List {
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        session: SessionArg,
    },
    /// End code contexts.
    Delete {
        /// Context ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        session: SessionArg,
    },
}

/// Runs a `sandbox context` subcommand.
pub async fn run(client: &Client, cmd: ContextCmd, as_json: bool) -> Result<()> {
    match cmd {
        ContextCmd::Create { language, cwd, env, session } => {
            let mut body = json!({"language": language, "env_vars": session::env_vars(&env)?});
            if let Some(cwd) = cwd {
                body["cwd"] = json!(cwd);
            }
            let ctx = client.post(client.api(["sessions", session.id()?, "contexts"]), &body).await?;
            session::show_id(&ctx, as_json);
        }
        ContextCmd::List { page, session } => {
            let list = client.list(client.api(["sessions", session.id()?, "contexts"]), page, &[]).await?;
            if as_json {
                output::json(&list.raw);
            } else {
                output::items(
                    &list.items,
                    &[
                        ("ID", "id"),
                        ("LANGUAGE", "language"),
                        ("STATUS", "status"),
                        ("CWD", "cwd"),
                        ("EXECUTIONS", "execution_count"),
                    ],
                );
            }
        }
        ContextCmd::Delete { ids, session } => {
            let sid = session.id()?;
            session::for_each(&ids, "deleted", as_json, |id| {
                client.delete(client.api(["sessions", sid, "contexts", id]))
            })
            .await?;
        }
    }
    Ok(())
}

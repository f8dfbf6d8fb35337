//! `sandbox templates …`, `sandbox keys …`, `sandbox pools` and `sandbox health`.

use crate::client::{Client, Page, Result};
use crate::output;
use crate::session::{self, show, show_id};
use clap::Subcommand;
use serde_json::{Value, json};

/// `sandbox templates` subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplatesCmd {
    /// List templates.
    List {
        #[command(flatten)]
        page: Page,
    },
    /// Show a template.
    Get {
        /// Template id.
        id: String,
    },
    /// Create a template (admin).
    Create {
        /// Template id (letters, digits, `-`, `_`).
        #[arg(long)]
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Container image.
        #[arg(long)]
        image: String,
        /// python3.11, nodejs20, java17 or go1.21.
        #[arg(long, default_value = "python3.11")]
        runtime_type: String,
        /// Default CPU cores (0.1-4).
        #[arg(long)]
        cpu: Option<f64>,
        /// Default memory in MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Default disk in MiB.
        #[arg(long)]
        disk_mb: Option<u64>,
        /// Default idle timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// NAME=VALUE: a default environment variable.
        #[arg(short, long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Answer at once when the server pulls the image, instead of following the pull (with
        /// a progress bar on a terminal) until the template is ready.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete templates (admin).
    Delete {
        /// Template ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `sandbox keys` subcommands (admin).
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List API keys.
    List {
        #[command(flatten)]
        page: Page,
    },
    /// Create an API key and print it (shown once).
    Create {
        /// A name for it.
        name: String,
        /// Make it an admin key.
        #[arg(long)]
        admin: bool,
    },
    /// Revoke API keys.
    Revoke {
        /// Key ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `sandbox health` arguments.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Database, runtime and storage health and sessions by status (admin).
    #[arg(long, conflicts_with = "ready")]
    detailed: bool,
    /// Readiness: whether the store and the runtime answer.
    #[arg(long)]
    ready: bool,
}

/// Runs a `sandbox templates` subcommand.
pub async fn templates(client: &Client, cmd: TemplatesCmd, as_json: bool) -> Result<()> {
    match cmd {
        TemplatesCmd::List { page } => {
            let list = client.list(client.api(["templates"]), page, &[]).await?;
            if as_json {
                output::json(&list.raw);
            } else {
                output::items(
                    &list.items,
                    &[
                        ("ID", "id"),
                        ("RUNTIME", "runtime_type"),
                        ("CPU", "default_cpu_cores"),
                        ("MEMORY_MB", "default_memory_mb"),
                        ("ACTIVE", "is_active"),
                        ("STATUS", "status"),
                        ("IMAGE", "image_url"),
                    ],
                );
            }
        }
        TemplatesCmd::Get { id } => show(&client.get(client.api(["templates", &id])).await?, as_json),
        TemplatesCmd::Create {
            id,
            name,
            image,
            runtime_type,
            cpu,
            memory_mb,
            disk_mb,
            timeout,
            env,
            no_wait,
        } => {
            let mut body = json!({"id": id, "name": name.unwrap_or_else(|| id.clone()), "image_url": image, "runtime_type": runtime_type});
            session::set_given(
                &mut body,
                [
                    ("default_cpu_cores", cpu.map(Value::from)),
                    ("default_memory_mb", memory_mb.map(Value::from)),
                    ("default_disk_mb", disk_mb.map(Value::from)),
                    ("default_timeout", timeout.map(Value::from)),
                ],
            );
            if !env.is_empty() {
                body["default_env_vars"] = session::env_vars(&env)?;
            }
            let mut template = client.post(client.api(["templates"]), &body).await?;
            if template["status"] == "pulling" && !no_wait {
                template = follow_pull(client, &id).await?;
            }
            show_id(&template, as_json);
        }
        TemplatesCmd::Delete { ids } => {
            session::for_each(&ids, "deleted", as_json, |id| client.delete(client.api(["templates", id])))
                .await?
        }
    }
    Ok(())
}

/// Follows the pull of template `id`'s image until it is ready, with a progress bar (bytes of
/// its layers) on a terminal; a failed pull is the pull's error.
async fn follow_pull(client: &Client, id: &str) -> Result<Value> {
    let bar = output::spinner(&format!("pulling the image of {id}"));
    loop {
        let template = client.get(client.api(["templates", id])).await?;
        let pull = &template["image_pull"];
        match template["status"].as_str() {
            Some("pulling") => {
                if let (Some(done), Some(total @ 1..)) =
                    (pull["bytes_done"].as_u64(), pull["bytes_total"].as_u64())
                {
                    bar.set_message(format!(
                        "pulling the image of {id}: {} of {} ({} of {} layers)",
                        output::size(done),
                        output::size(total),
                        output::text(&pull["layers_done"]),
                        output::text(&pull["layers_total"]),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Some("failed") => {
                bar.finish_and_clear();
                let code = pull["error"]["code"].as_str().unwrap_or("template_pull_failed");
                return Err(crate::client::Error::new(code, output::text(&pull["error"]["message"])));
            }
            _ => {
                bar.finish_and_clear();
                return Ok(template);
            }
        }
    }
}

/// Runs a `sandbox keys` subcommand.
pub async fn keys(client: &Client, cmd: KeysCmd, as_json: bool) -> Result<()> {
    match cmd {
        KeysCmd::List { page } => {
            let list = client.list(client.api(["admin", "keys"]), page, &[]).await?;
            if as_json {
                output::json(&list.raw);
            } else {
                output::items(
                    &list.items,
                    &[
                        ("ID", "id"),
                        ("NAME", "name"),
                        ("PREFIX", "prefix"),
                        ("ADMIN", "is_admin"),
                        ("CREATED", "created_at"),
                        ("REVOKED", "revoked_at"),
                    ],
                );
            }
        }
        KeysCmd::Create { name, admin } => {
            let key =
                client.post(client.api(["admin", "keys"]), &json!({"name": name, "is_admin": admin})).await?;
            if as_json {
                output::json(&key);
            } else {
                eprintln!(
                    "created key {} ({}); it is shown once:",
                    output::text(&key["id"]),
                    output::text(&key["name"])
                );
                println!("{}", output::text(&key["key"]));
            }
        }
        KeysCmd::Revoke { ids } => {
            session::for_each(&ids, "revoked", as_json, |id| client.delete(client.api(["admin", "keys", id])))
                .await?
        }
    }
    Ok(())
}

/// Runs `sandbox pools`: the warm pools (admin).
pub async fn pools(client: &Client, as_json: bool) -> Result<()> {
    let list = client.list(client.api(["pools"]), Page::default(), &[]).await?;
    if as_json {
        output::json(&list.raw);
    } else {
        output::items(
            &list.items,
            &[
                ("TEMPLATE", "template_id"),
                ("TARGET", "target_size"),
                ("READY", "ready"),
                ("STARTING", "starting"),
                ("HITS", "hits"),
                ("MISSES", "misses"),
                ("HIT_RATE", "hit_rate"),
                ("TIME_TO_READY_MS", "time_to_ready_ms"),
            ],
        );
    }
    Ok(())
}

/// Runs `sandbox health`.
pub async fn health(client: &Client, args: HealthArgs, as_json: bool) -> Result<()> {
    let which = if args.detailed {
        "detailed"
    } else if args.ready {
        "ready"
    } else {
        ""
    };
    let url = client.api(["health", which].into_iter().filter(|s| !s.is_empty()));
    show(&client.get(url).await?, as_json);
    Ok(())
}

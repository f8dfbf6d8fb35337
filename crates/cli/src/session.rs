//! `sandbox session …` and `sandbox deps install`: sessions and their Python packages.

use crate::client::{Client, Error, Page, Result, error_from};
use crate::output;
use crate::sse::Events;
use clap::Subcommand;
use indicatif::ProgressBar;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// The template of sessions made without one.
pub const DEFAULT_TEMPLATE: &str = "python-basic";

/// The session a command works in.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArg {
    /// Session id (default: $SANDBOX_SESSION).
    #[arg(short, long, env = "SANDBOX_SESSION")]
    pub session: Option<String>,
}

impl SessionArg {
    /// The session id, if one was given (an empty one is none).
    pub fn given(&self) -> Option<&str> {
        self.session.as_deref().filter(|s| !s.is_empty())
    }

    /// The session id, or an error saying how to give one.
    pub fn id(&self) -> Result<&str> {
        self.given().ok_or_else(|| Error::argument("no session: pass --session ID or set SANDBOX_SESSION"))
    }
}

/// `sandbox session` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Create a session (and wait until it runs) and print its id.
    Create {
        /// Template (default: $SANDBOX_TEMPLATE, else python-basic).
        #[arg(short, long, env = "SANDBOX_TEMPLATE", default_value = DEFAULT_TEMPLATE)]
        template: String,
        /// NAME=VALUE: an environment variable of the session.
        #[arg(short, long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Idle timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// CPU cores ("1", "500m").
        #[arg(long)]
        cpu: Option<String>,
        /// Memory ("512Mi").
        #[arg(long)]
        memory: Option<String>,
        /// A session id of your choosing.
        #[arg(long)]
        id: Option<String>,
        /// Answer at once, while the session is still `creating` (see `session wait`).
        #[arg(long)]
        no_wait: bool,
    },
    /// List your sessions, newest first.
    List {
        /// Only sessions in this status (creating, running, terminated, failed).
        #[arg(long)]
        status: Option<String>,
        /// Only sessions of this template.
        #[arg(long)]
        template: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// Show a session.
    Get {
        /// Session id.
        id: String,
    },
    /// Stop sessions' sandboxes, keeping their records.
    Terminate {
        /// Session ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete sessions with their executions and files.
    Delete {
        /// Session ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Wait until a session reaches a status (running by default).
    Wait {
        /// Session id.
        id: String,
        /// The status to wait for.
        #[arg(long = "for", default_value = "running")]
        status: String,
        /// Give up after this many seconds (exit 125).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// `NAME=VALUE` pairs as a JSON object.
pub fn env_vars(pairs: &[String]) -> Result<Value> {
    let mut env = Map::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => env.insert(name.to_owned(), json!(value)),
            _ => return Err(Error::argument(format!("--env takes NAME=VALUE, not {pair:?}"))),
        };
    }
    Ok(Value::Object(env))
}

/// Creates a session from a request `body`; with `wait`, answers once it runs.
pub async fn create(client: &Client, body: &Value, wait: bool) -> Result<Value> {
    let mut url = client.api(["sessions"]);
    if !wait {
        url.set_query(Some("wait=false"));
    }
    client.post(url, body).await
}

/// Sets each field of `body` that was given (the server's default stands for the others).
pub fn set_given<const N: usize>(body: &mut Value, fields: [(&str, Option<Value>); N]) {
    for (k, v) in fields {
        if let Some(v) = v {
            body[k] = v;
        }
    }
}

/// Runs a `sandbox session` subcommand.
pub async fn run(client: &Client, cmd: SessionCmd, as_json: bool) -> Result<()> {
    match cmd {
        SessionCmd::Create { template, env, timeout, cpu, memory, id, no_wait } => {
            let mut body = json!({"template_id": template});
            set_given(
                &mut body,
                [
                    ("timeout", timeout.map(|t| json!(t))),
                    ("cpu", cpu.map(Value::from)),
                    ("memory", memory.map(Value::from)),
                    ("id", id.map(Value::from)),
                ],
            );
            if !env.is_empty() {
                body["env_vars"] = env_vars(&env)?;
            }
            let spinner = output::spinner(&format!("starting a {template} session"));
            let session = create(client, &body, !no_wait).await;
            spinner.finish_and_clear();
            show_id(&session?, as_json);
        }
        SessionCmd::List { status, template, page } => {
            let mut query = Vec::new();
            if let Some(s) = &status {
                query.push(("status", s.as_str()));
            }
            if let Some(t) = &template {
                query.push(("template_id", t.as_str()));
            }
            let list = client.list(client.api(["sessions"]), page, &query).await?;
            if as_json {
                output::json(&list.raw);
            } else {
                output::items(
                    &list.items,
                    &[
                        ("ID", "id"),
                        ("STATUS", "status"),
                        ("TEMPLATE", "template_id"),
                        ("CREATED", "created_at"),
                    ],
                );
            }
        }
        SessionCmd::Get { id } => show(&client.get(client.api(["sessions", &id])).await?, as_json),
        SessionCmd::Terminate { ids } => {
            for_each(&ids, "terminated", as_json, |id| {
                client.post(client.api(["sessions", id, "terminate"]), &Value::Null)
            })
            .await?
        }
        SessionCmd::Delete { ids } => {
            for_each(&ids, "deleted", as_json, |id| client.delete(client.api(["sessions", id]))).await?
        }
        SessionCmd::Wait { id, status, timeout } => {
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let spinner = output::spinner(&format!("waiting for {id} to be {status}"));
            let session = loop {
                let session = client.get(client.api(["sessions", &id])).await?;
                let now = session["status"].as_str().unwrap_or_default();
                if now == status {
                    break Ok(session);
                }
                if matches!(now, "terminated" | "failed") {
                    let why = output::text(&session["error_message"]);
                    break Err(Error::new(
                        &format!("session_{now}"),
                        format!("session {id} is {now} {why}").trim().to_owned(),
                    ));
                }
                if Instant::now() >= deadline {
                    break Err(Error::new(
                        "wait_timeout",
                        format!("session {id} is still {now} after {timeout} s"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            spinner.finish_and_clear();
            show_id(&session?, as_json);
        }
    }
    Ok(())
}

/// Prints an object: its JSON, or its fields.
pub fn show(value: &Value, as_json: bool) {
    if as_json { output::json(value) } else { output::fields(value) }
}

/// Prints a made object: its JSON, or its id.
pub fn show_id(value: &Value, as_json: bool) {
    if as_json { output::json(value) } else { println!("{}", output::text(&value["id"])) }
}

/// Does `action` to each of `ids` in turn, saying `done ID` for each (or, as JSON, `{done: [ids]}`).
pub async fn for_each<F, Fut>(ids: &[String], done: &str, as_json: bool, action: F) -> Result<()>
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Result<Value>>,
{
    for id in ids {
        action(id).await?;
        if !as_json {
            println!("{done} {id}");
        }
    }
    if as_json {
        output::json(&json!({ done: ids }));
    }
    Ok(())
}

/// `sandbox deps` subcommands.
#[derive(Debug, Subcommand)]
pub enum DepsCmd {
    /// Install Python packages into a running session (`requests`, `numpy==2.1.0`, `pandas>=2`).
    Install {
        /// Package requirements.
        #[arg(required = true, value_name = "PACKAGE")]
        packages: Vec<String>,
        /// The package index (one the server allows).
        #[arg(long)]
        index_url: Option<String>,
        /// Allow versions that conflict with the template's packages.
        #[arg(long)]
        allow_version_conflicts: bool,
        #[command(flatten)]
        session: SessionArg,
    },
}

/// A requirement (`numpy==2.1.0`) as the API's `{name, version}`.
fn requirement(spec: &str) -> Value {
    match spec.find(['=', '<', '>', '~', '!']) {
        Some(i) => json!({"name": spec[..i].trim(), "version": spec[i..].trim()}),
        None => json!({"name": spec.trim()}),
    }
}

/// Runs `sandbox deps install`: pip's output on standard error as it runs (under a spinner on a
/// terminal), then the installed packages.
pub async fn deps(client: &Client, cmd: DepsCmd, as_json: bool) -> Result<()> {
    let DepsCmd::Install { packages, index_url, allow_version_conflicts, session } = cmd;
    let id = session.id()?;
    let mut body = json!({
        "dependencies": packages.iter().map(|p| requirement(p)).collect::<Vec<_>>(),
        "allow_version_conflicts": allow_version_conflicts,
    });
    if let Some(url) = index_url {
        body["python_package_index_url"] = json!(url);
    }
    let mut url = client.api(["sessions", id, "dependencies", "install"]);
    url.set_query(Some("stream=true"));
    let resp = client.send(client.request(Method::POST, url).json(&body)).await?;
    let spinner = output::spinner(&format!("installing {}", packages.join(" ")));
    let session = follow_install(Events::new(resp), &spinner).await;
    spinner.finish_and_clear();
    let session = session?;
    if as_json {
        output::json(&session);
    } else {
        let installed: Vec<Value> = session["installed_dependencies"].as_array().cloned().unwrap_or_default();
        let own: Vec<Value> =
            installed.into_iter().filter(|d| d["is_from_template"] != json!(true)).collect();
        output::items(&own, &[("PACKAGE", "name"), ("VERSION", "version")]);
    }
    Ok(())
}

/// Follows an install's stream to its result, writing pip's lines to standard error.
async fn follow_install(mut events: Events, spinner: &ProgressBar) -> Result<Value> {
    while let Some(event) = events.next().await? {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| Error::new("bad_response", format!("event {}: {e}", event.event)))?;
        match event.event.as_str() {
            "output" => spinner.suspend(|| eprintln!("{}", data["data"].as_str().unwrap_or_default())),
            "result" => return Ok(data),
            "error" => return Err(error_from(StatusCode::INTERNAL_SERVER_ERROR, event.data.as_bytes())),
            _ => {}
        }
    }
    Err(Error::new("stream_ended", "the install's stream ended before its result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_split_into_name_and_version() {
        assert_eq!(requirement("requests"), json!({"name": "requests"}));
        assert_eq!(requirement("numpy==2.1.0"), json!({"name": "numpy", "version": "==2.1.0"}));
        assert_eq!(requirement("pandas>=2,<3"), json!({"name": "pandas", "version": ">=2,<3"}));
    }

    #[test]
    fn env_pairs_need_a_name() {
        assert_eq!(env_vars(&["A=1".into(), "B=x=y".into()]).unwrap(), json!({"A": "1", "B": "x=y"}));
        assert_eq!(env_vars(&["=1".into()]).unwrap_err().code, "invalid_argument");
        assert_eq!(env_vars(&["A".into()]).unwrap_err().code, "invalid_argument");
    }
}

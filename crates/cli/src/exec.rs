//! `sandbox exec`: runs code in a session and streams its output live; the exit code follows
//! the execution's, and Ctrl-C cancels it.

use crate::client::{Client, Error, Result, error_from};
use crate::session::{self, SessionArg};
use crate::sse::{Event, Events};
use crate::{EXIT_CRASHED, EXIT_INTERRUPTED, EXIT_TIMEOUT, output};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

/// How many times a dropped stream is followed again before giving up.
const RECONNECTS: u32 = 5;

/// `sandbox exec` arguments.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A file to run (its extension gives the language); `-` or nothing: standard input.
    #[arg(value_name = "FILE", conflicts_with = "code")]
    file: Option<PathBuf>,
    /// The code to run, given on the command line.
    #[arg(long)]
    code: Option<String>,
    /// python, javascript or shell (default: from the file's extension, else the context's
    /// language, else python).
    #[arg(short, long, value_parser = ["python", "javascript", "shell"])]
    language: Option<String>,
    /// Run as the next cell of this code context (keeps state between runs).
    #[arg(long)]
    context: Option<String>,
    /// Seconds the execution may run.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// NAME=VALUE: an environment variable of the throwaway session (without --session).
    #[arg(short, long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Template of the throwaway session made without --session (default: python-basic;
    /// multi-language for javascript).
    #[arg(short, long, env = "SANDBOX_TEMPLATE")]
    template: Option<String>,
    #[command(flatten)]
    session: SessionArg,
}

/// The language a file's extension stands for.
fn language_of(path: &std::path::Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "py" => Some("python"),
        "js" | "mjs" | "cjs" => Some("javascript"),
        "sh" | "bash" => Some("shell"),
        _ => None,
    }
}

/// The process exit code that stands for how an execution ended.
pub fn exit_code(execution: &Value) -> u8 {
    match execution["status"].as_str() {
        Some("completed") => 0,
        Some("timeout") => EXIT_TIMEOUT,
        Some("crashed") => EXIT_CRASHED,
        Some("cancelled") => EXIT_INTERRUPTED,
        _ => {
            execution["exit_code"].as_i64().and_then(|c| u8::try_from(c).ok()).filter(|c| *c > 0).unwrap_or(1)
        }
    }
}

/// How following an execution ended.
enum Outcome {
    /// It ended: the stored execution.
    Finished(Value),
    /// Ctrl-C: it was cancelled.
    Interrupted,
}

/// Runs `sandbox exec`; answers the exit code.
pub async fn run(client: &Client, args: ExecArgs, as_json: bool) -> Result<u8> {
    if args.session.given().is_none() && args.context.is_some() {
        return Err(Error::argument("--context needs --session (or SANDBOX_SESSION)"));
    }
    if args.session.given().is_some() && !args.env.is_empty() {
        return Err(Error::argument("--env sets the throwaway session's environment: not with --session"));
    }
    let (code, from_file) = read_code(&args)?;
    let language = args.language.clone().or_else(|| from_file.map(str::to_owned));
    let (session_id, throwaway) = match args.session.given() {
        Some(id) => (id.to_owned(), false),
        None => {
            let lang = language.as_deref().unwrap_or("python");
            let template = args.template.clone().unwrap_or_else(|| {
                if lang == "javascript" { "multi-language" } else { session::DEFAULT_TEMPLATE }.to_owned()
            });
            let mut body = json!({"template_id": template});
            if !args.env.is_empty() {
                body["env_vars"] = session::env_vars(&args.env)?;
            }
            let spinner = output::spinner(&format!("starting a {template} session"));
            let created = session::create(client, &body, true).await;
            spinner.finish_and_clear();
            (created?["id"].as_str().unwrap_or_default().to_owned(), true)
        }
    };
    let mut body = json!({"code": code, "timeout": args.timeout});
    match (&language, &args.context) {
        (Some(l), _) => body["language"] = json!(l),
        (None, None) => body["language"] = json!("python"),
        (None, Some(_)) => {} // the context's own language
    }
    if let Some(ctx) = &args.context {
        body["context_id"] = json!(ctx);
    }
    let outcome = follow(client, &session_id, &body, as_json).await;
    if throwaway && let Err(e) = client.delete(client.api(["sessions", &session_id])).await {
        eprintln!("sandbox: could not delete the throwaway session {session_id}: {e}");
    }
    match outcome? {
        Outcome::Interrupted => Ok(EXIT_INTERRUPTED),
        Outcome::Finished(execution) => {
            let status = execution["status"].as_str().unwrap_or_default();
            if as_json {
                output::json(&execution);
            } else if matches!(status, "timeout" | "crashed" | "cancelled") {
                eprintln!("sandbox: {status}: {}", output::text(&execution["error_message"]));
            }
            Ok(exit_code(&execution))
        }
    }
}

/// The code to run and the language its file's name says.
fn read_code(args: &ExecArgs) -> Result<(String, Option<&'static str>)> {
    if let Some(code) = &args.code {
        return Ok((code.clone(), None));
    }
    match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let code = std::fs::read_to_string(path)
                .map_err(|e| Error::new("io_error", format!("{}: {e}", path.display())))?;
            Ok((code, language_of(path)))
        }
        _ => {
            let mut code = String::new();
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("sandbox: reading the code from standard input; end it with Ctrl-D");
            }
            stdin.read_to_string(&mut code)?;
            Ok((code, None))
        }
    }
}

/// Starts the execution with `stream=true` and follows it to its end, writing its output as it
/// comes (unless `quiet`); a dropped stream is followed again from the last event seen.
async fn follow(client: &Client, session_id: &str, body: &Value, quiet: bool) -> Result<Outcome> {
    let mut url = client.api(["executions", "sessions", session_id, "execute"]);
    url.set_query(Some("stream=true"));
    let resp = client.send(client.request(Method::POST, url).json(body)).await?;
    let mut events = Events::new(resp);
    let mut execution_id: Option<String> = None;
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = &mut ctrl_c => {
                if let Some(id) = &execution_id {
                    let _ = client.post(client.api(["executions", id, "cancel"]), &Value::Null).await;
                    eprintln!("sandbox: cancelled {id}");
                }
                return Ok(Outcome::Interrupted);
            }
        };
        match next {
            Ok(Some(event)) => {
                if event.id.is_some() {
                    last_id.clone_from(&event.id);
                }
                if let Some(done) = handle(&event, &mut execution_id, quiet)? {
                    return Ok(Outcome::Finished(done));
                }
            }
            Ok(None) | Err(_) if execution_id.is_some() && reconnects < RECONNECTS => {
                reconnects += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(reconnects))).await;
                let id = execution_id.as_deref().unwrap_or_default();
                let mut req = client.request(Method::GET, client.api(["executions", id, "stream"]));
                if let Some(last) = &last_id {
                    req = req.header("Last-Event-ID", last);
                }
                if let Ok(resp) = client.send(req).await {
                    events = Events::new(resp);
                }
            }
            Ok(None) => {
                return Err(Error::new("stream_ended", "the execution's stream ended before its result"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Acts on one event of an execution's stream; answers the execution once it is the result.
fn handle(event: &Event, execution_id: &mut Option<String>, quiet: bool) -> Result<Option<Value>> {
    let data: Value = serde_json::from_str(&event.data)
        .map_err(|e| Error::new("bad_response", format!("event {}: {e}", event.event)))?;
    match event.event.as_str() {
        "started" => *execution_id = data["execution_id"].as_str().map(str::to_owned),
        "stdout" | "stderr" if !quiet => {
            let text = data["data"].as_str().unwrap_or_default().as_bytes();
            let _ = if event.event == "stdout" {
                let mut out = std::io::stdout().lock();
                out.write_all(text).and_then(|()| out.flush())
            } else {
                let mut err = std::io::stderr().lock();
                err.write_all(text).and_then(|()| err.flush())
            };
        }
        "display" if !quiet => {
            let bundle = &data["data"];
            match bundle["text/plain"].as_str().or_else(|| bundle["text/markdown"].as_str()) {
                Some(text) => println!("{text}"),
                None => {
                    let formats: Vec<&str> = bundle
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    eprintln!("[display output: {}]", formats.join(", "));
                }
            }
        }
        "result" => return Ok(Some(data)),
        "error" => return Err(error_from(StatusCode::INTERNAL_SERVER_ERROR, event.data.as_bytes())),
        _ => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_execution() {
        assert_eq!(exit_code(&json!({"status": "completed", "exit_code": 0})), 0);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": 3})), 3);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": null})), 1);
        assert_eq!(exit_code(&json!({"status": "failed", "exit_code": -9})), 1);
        assert_eq!(exit_code(&json!({"status": "timeout"})), 124);
        assert_eq!(exit_code(&json!({"status": "crashed"})), 137);
        assert_eq!(exit_code(&json!({"status": "cancelled"})), 130);
    }

    #[test]
    fn extensions_name_languages() {
        assert_eq!(language_of("a/b.PY".as_ref()), Some("python"));
        assert_eq!(language_of("x.mjs".as_ref()), Some("javascript"));
        assert_eq!(language_of("run.sh".as_ref()), Some("shell"));
        assert_eq!(language_of("README".as_ref()), None);
    }
}

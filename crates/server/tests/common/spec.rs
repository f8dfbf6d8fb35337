//! Checks every response a test gets against the OpenAPI document: its status must be one the
//! document lists for the route, and an error's `code` one the document's enum names. A route
//! that answers an undocumented status fails the test that provoked it.
//!
//! Every error a test provokes is also noted in the ledger `SANDBOX_ERROR_CODE_LEDGER` names
//! (scripts/test.sh sets it, and checks after the suite that each registered code was seen).

use serde_json::Value;
use std::sync::LazyLock;

static SPEC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(&sandbox_server::api::openapi_json()).expect("the document parses")
});

/// The documented operation `method` on `path` (no query) reaches: the path template that
/// matches with the most literal segments (a trailing `{file_path}` takes the rest).
fn operation(method: &str, path: &str) -> Option<&'static Value> {
    let segments: Vec<&str> = path.split('/').collect();
    let is_var = |s: &str| s.starts_with('{');
    let fits = |template: &str| {
        let t: Vec<&str> = template.split('/').collect();
        let lengths =
            t.len() == segments.len() || (t.len() < segments.len() && t.last().is_some_and(|s| is_var(s)));
        lengths && t.iter().zip(&segments).all(|(a, b)| if is_var(a) { !b.is_empty() } else { a == b })
    };
    let (template, _) = SPEC["paths"]
        .as_object()?
        .keys()
        .filter(|t| fits(t))
        .map(|t| (t, t.split('/').filter(|s| !is_var(s)).count()))
        .max_by_key(|(_, literal)| *literal)?;
    SPEC["paths"][template].get(method.to_ascii_lowercase())
}

/// Notes in the ledger, if there is one, that a test provoked `code` with `status`.
pub fn record(status: u16, code: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("SANDBOX_ERROR_CODE_LEDGER") else { return };
    let path = std::path::Path::new(&dir).join(std::process::id().to_string());
    let appended = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(&path))
        .and_then(|mut f| writeln!(f, "{status} {code}"));
    appended.unwrap_or_else(|e| panic!("the error code ledger {}: {e}", path.display()));
}

/// Notes every error code a server's log shows it answered (its access log lines carry
/// `status` and `error_code`), whatever client the test used.
#[allow(dead_code)] // The router's tests start no server.
pub fn record_from_log(log: &str) {
    if std::env::var_os("SANDBOX_ERROR_CODE_LEDGER").is_none() {
        return;
    }
    for line in log.lines() {
        let field = |name: &str| {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            line[start..].split(' ').next().map(|v| v.trim_matches('"').to_owned())
        };
        if let (Some(status), Some(code)) = (field("status"), field("error_code"))
            && let Ok(status) = status.parse()
        {
            record(status, &code);
        }
    }
}

/// Fails when the document does not describe this answer to `method` `uri`.
pub fn check(method: &str, uri: &str, status: u16, body: &Value) {
    let path = uri.split('?').next().unwrap_or(uri);
    // The E2B-compatible API's errors carry the stable code in `error_code`.
    if let (400.., Some(code)) = (status, body.get("error_code").and_then(Value::as_str)) {
        record(status, code);
    }
    let Some(op) = operation(method, path) else { return };
    let responses = &op["responses"];
    assert!(
        responses.get(status.to_string()).is_some() || responses.get("default").is_some(),
        "{method} {path} answered {status}, a status its OpenAPI description does not list: {body}"
    );
    if let (400.., Some(code)) = (status, body.get("code").and_then(Value::as_str)) {
        let codes = SPEC["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"].as_array();
        assert!(
            codes.is_some_and(|c| c.iter().any(|c| c == code)),
            "{method} {path} answered the error code {code}, which the OpenAPI document does not list"
        );
        record(status, code);
    }
}

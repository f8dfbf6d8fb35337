//! What the MCP tools answer with: executions, files and sessions as MCP content, and errors as
//! tool errors carrying our stable codes.

use crate::api::error::ApiError;
use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use sandbox_core::ExecutionStatus;
use sandbox_core::model::{Execution, Session};

/// Output longer than this (per stream, per result) is cut, so one noisy cell cannot flood the
/// model's context.
pub const MAX_TEXT: usize = 20_000;
/// Text files are returned up to this many bytes.
pub const MAX_FILE_TEXT: usize = 100_000;
/// Binary files are returned (as an embedded resource) up to this many bytes.
pub const MAX_FILE_BINARY: u64 = 5 << 20;

/// Image types returned as MCP image content.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// `text`, cut to `limit` bytes (at a character boundary) with a note of what was left out.
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let end = text.floor_char_boundary(limit);
    format!("{}\n[... {} more bytes cut]", &text[..end], text.len() - end)
}

/// An error as a tool error: `code: message`, then the invalid fields.
pub fn tool_error(e: &ApiError) -> CallToolResult {
    let mut text = format!("{}: {}", e.code, e.message);
    for f in &e.errors {
        text.push_str(&format!("\n- {}: {}", f.field, f.message));
    }
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// A finished (or still running) execution: one text part with its status, output, error and
/// results, then each image result as image content. Code that failed is still a successful
/// call (its status and error say how it failed); tool errors are the server's refusals.
pub fn execution(e: &Execution, context: &str) -> CallToolResult {
    let mut status = e.status.as_str().to_owned();
    if let Some(code) = e.exit_code.filter(|c| *c != 0) {
        status.push_str(&format!(" (exit code {code})"));
    }
    if e.status == ExecutionStatus::Timeout {
        status
            .push_str(&format!(" after {} s (stopped; the context keeps its earlier state)", e.timeout_sec));
    }
    if let (Some(msg), None) = (&e.error_message, &e.error) {
        status.push_str(&format!(": {msg}"));
    }
    let mut parts = vec![format!("status: {status}\nexecution: {} in {context}", e.id)];
    if e.status == ExecutionStatus::Running {
        parts.push("[still running past the wait; it goes on in the background]".into());
    }
    if let Some(out) = e.stdout.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("stdout:\n{}", cut(out.trim_end(), MAX_TEXT)));
    }
    if let Some(err) = e.stderr.as_deref().filter(|s| !s.is_empty() && e.error.is_none()) {
        parts.push(format!("stderr:\n{}", cut(err.trim_end(), MAX_TEXT)));
    }
    if let Some(err) = &e.error {
        parts.push(format!(
            "error: {}: {}\n{}",
            err.name,
            err.value,
            cut(err.traceback.trim_end(), MAX_TEXT)
        ));
    }
    let mut images = Vec::new();
    for r in &e.results {
        let mut label = if r.is_main_result { "result".to_owned() } else { "display".to_owned() };
        if let Some((mime, data)) =
            IMAGE_TYPES.iter().find_map(|m| r.data.get(*m).and_then(|v| v.as_str()).map(|d| (*m, d)))
        {
            images.push(ContentBlock::image(data, mime));
            label.push_str(&format!(" ({mime}, attached)"));
        }
        let text = ["text/plain", "text/markdown", "text/html"]
            .iter()
            .find_map(|m| r.data.get(*m).and_then(|v| v.as_str()));
        parts.push(match text {
            Some(t) => format!("{label}:\n{}", cut(t, MAX_TEXT)),
            None => label,
        });
    }
    if e.results_truncated {
        parts.push("[more display outputs were dropped: the execution's limit was reached]".into());
    }
    let mut content = vec![ContentBlock::text(parts.join("\n\n"))];
    content.extend(images);
    CallToolResult::success(content)
}

/// A file's bytes: images as image content, UTF-8 as text, anything else as an embedded
/// base64 resource.
pub fn file(session_id: &str, path: &str, mime: &str, bytes: &[u8]) -> CallToolResult {
    let content = if IMAGE_TYPES.contains(&mime) {
        ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(bytes), mime)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => ContentBlock::text(cut(text, MAX_FILE_TEXT)),
            Err(_) => ContentBlock::resource(ResourceContents::BlobResourceContents {
                uri: format!("sandbox://sessions/{session_id}/files/{path}"),
                mime_type: Some(mime.to_owned()),
                blob: base64::engine::general_purpose::STANDARD.encode(bytes),
                meta: None,
            }),
        }
    };
    CallToolResult::success(vec![content])
}

/// A session in a line or two: id, template, status, packages.
pub fn session(s: &Session) -> String {
    let mut text = format!("session {} (template {}) is {}", s.id, s.template_id, s.status);
    if let Some(msg) = &s.error_message {
        text.push_str(&format!(": {msg}"));
    }
    if !s.installed_dependencies.is_empty() {
        let names: Vec<String> =
            s.installed_dependencies.iter().map(|d| format!("{}=={}", d.name, d.version)).collect();
        text.push_str(&format!("\ninstalled packages: {}", names.join(", ")));
    }
    if let Some(err) = &s.dependency_install_error {
        text.push_str(&format!("\nthe last package install failed: {}", cut(err, MAX_TEXT)));
    }
    text
}

/// A successful answer of one text part.
pub fn text(t: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_cuts_at_a_character() {
        assert_eq!(cut("abc", 10), "abc");
        let cut_text = cut("ééé", 3);
        assert!(cut_text.starts_with("é\n[... 4 more bytes cut]"), "{cut_text}");
    }

    #[test]
    fn binary_files_are_embedded_resources_and_text_is_text() {
        let r = file("s1", "a.bin", "application/octet-stream", &[0xff, 0x00]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["content"][0]["type"], "resource");
        assert_eq!(v["content"][0]["resource"]["blob"], "/wA=");
        let r = file("s1", "a.txt", "text/plain", b"hi");
        assert_eq!(serde_json::to_value(&r).unwrap()["content"][0]["text"], "hi");
    }
}

//! `GET /docs`: the API reference as one self-contained HTML page, rendered on the server from
//! the OpenAPI document (no scripts, no fonts, nothing fetched from elsewhere: it works on a
//! machine without internet access).

use serde_json::Value;
use std::fmt::Write;
use std::sync::OnceLock;

/// The page (rendered once).
pub fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render(&serde_json::from_str(&super::openapi_json()).unwrap_or(Value::Null)))
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
code,pre{font-family:ui-monospace,monospace;font-size:13px}h2{border-bottom:1px solid #ccc;margin-top:2em}\
.op{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}.m{font-weight:bold;text-transform:uppercase;\
display:inline-block;min-width:4.5em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;\
padding:2px 8px;text-align:left;vertical-align:top}nav a{margin-right:1em}";

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A schema's name when it is a reference, else its type, briefly.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return any.iter().map(type_of).collect::<Vec<_>>().join(" | ");
    }
    match schema["type"].as_str() {
        Some("array") => format!("{}[]", type_of(&schema["items"])),
        Some(t) => esc(t),
        None => match schema["type"].as_array() {
            Some(ts) => ts.iter().filter_map(Value::as_str).map(esc).collect::<Vec<_>>().join(" | "),
            None => "any".into(),
        },
    }
}

fn render(doc: &Value) -> String {
    let mut h = String::new();
    let title = esc(doc["info"]["title"].as_str().unwrap_or("API"));
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title} <small>{}</small></h1><p>{}</p><p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a>. \
         Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>.</p><nav>",
        esc(doc["info"]["version"].as_str().unwrap_or("")),
        esc(doc["info"]["description"].as_str().unwrap_or("")),
    );
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (t["name"].as_str().unwrap_or("").to_owned(), t["description"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    for (name, _) in &tags {
        let _ = write!(h, "<a href=\"#tag-{0}\">{0}</a>", esc(name));
    }
    h.push_str("<a href=\"#schemas\">schemas</a></nav>");
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    for (tag, description) in &tags {
        let _ = write!(h, "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>", esc(tag), esc(description));
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap_or(&empty) {
                if op["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == tag.as_str())) {
                    operation(&mut h, method, path, op);
                }
            }
        }
    }
    h.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap_or(&empty) {
        let _ = write!(
            h,
            "<h3 id=\"schema-{0}\">{0}</h3><p>{1}</p>",
            esc(name),
            esc(schema["description"].as_str().unwrap_or(""))
        );
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if let Some(props) = schema["properties"].as_object() {
            h.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>");
            for (field, p) in props {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(field),
                    type_of(p),
                    if required.contains(&field.as_str()) { "yes" } else { "" },
                    esc(p["description"].as_str().unwrap_or("")),
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</body></html>");
    h
}

/// One operation: method, path, description, parameters, body and responses.
fn operation(h: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        h,
        "<div class=\"op\"><p><span class=\"m\">{}</span> <code>{}</code></p><p>{}</p>",
        esc(method),
        esc(path),
        esc(op["description"].as_str().or(op["summary"].as_str()).unwrap_or("")).replace("\n\n", "</p><p>"),
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        h.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr>");
        for p in params {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                esc(p["description"].as_str().unwrap_or("")),
            );
        }
        h.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (mime, c) in content {
            let _ = write!(h, "<p>Body (<code>{}</code>): {}</p>", esc(mime), type_of(&c["schema"]));
        }
    }
    h.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let body = r["content"]
            .as_object()
            .map(|c| c.values().map(|c| type_of(&c["schema"])).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{body}</td></tr>",
            esc(status),
            esc(r["description"].as_str().unwrap_or(""))
        );
    }
    h.push_str("</table></div>");
}

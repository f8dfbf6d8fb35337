//! `sandbox mcp`: a stdio MCP transport for desktop hosts, relaying newline-delimited JSON-RPC
//! messages to the server's streamable-HTTP MCP endpoint (`<url>/mcp`) and its answers (a JSON
//! body, or Server-Sent Events) back, one message a line. Nothing but JSON-RPC goes to stdout.

use crate::client::{Client, Result};
use crate::sse::{Event, Events};
use reqwest::{Method, header};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The header naming the MCP session.
const SESSION_HEADER: &str = "Mcp-Session-Id";
/// The header carrying the negotiated protocol version.
const VERSION_HEADER: &str = "MCP-Protocol-Version";

/// What later requests carry: the session id and the negotiated protocol version.
#[derive(Debug, Default)]
struct Negotiated {
    session: Option<String>,
    version: Option<String>,
}

/// Relays stdin to `<url>/mcp` until stdin ends, then ends the MCP session.
pub async fn run(client: &Client) -> Result<()> {
    let negotiated = Arc::new(Mutex::new(Negotiated::default()));
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(message) = rx.recv().await {
            let mut line = serde_json::to_vec(&message).unwrap_or_default();
            line.push(b'\n');
            if out.write_all(&line).await.and(out.flush().await).is_err() {
                break;
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("sandbox mcp: not JSON: {e}");
                let _ = tx.send(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}}));
                continue;
            }
        };
        let relay = relay(client.clone(), message.clone(), negotiated.clone(), tx.clone());
        if message["method"] == "initialize" {
            // Later requests need the session id its answer carries.
            relay.await;
        } else {
            tasks.spawn(relay);
        }
    }
    while tasks.join_next().await.is_some() {}
    let session = negotiated.lock().expect("not poisoned").session.clone();
    if let Some(id) = session {
        let req = client.request(Method::DELETE, client.url(["mcp"])).header(SESSION_HEADER, id);
        if let Err(e) = req.send().await {
            eprintln!("sandbox mcp: ending the session: {e}");
        }
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// POSTs one message (or batch) and sends the messages of the answer to `out`; a failed request
/// is answered with a JSON-RPC error for each request in it, so the host is never left waiting.
async fn relay(
    client: Client,
    message: Value,
    negotiated: Arc<Mutex<Negotiated>>,
    out: mpsc::UnboundedSender<Value>,
) {
    let mut req = client
        .request(Method::POST, client.url(["mcp"]))
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::CONTENT_TYPE, "application/json")
        .body(message.to_string());
    {
        let n = negotiated.lock().expect("not poisoned");
        if let Some(id) = &n.session {
            req = req.header(SESSION_HEADER, id);
        }
        if let Some(v) = &n.version {
            req = req.header(VERSION_HEADER, v);
        }
    }
    let fail = |why: String| {
        eprintln!("sandbox mcp: {why}");
        for reply in error_replies(&message, &why) {
            let _ = out.send(reply);
        }
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return fail(crate::client::Error::from(e).to_string()),
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return fail(format!("the server answered {status}: {}", body.trim()));
    }
    if let Some(id) = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        negotiated.lock().expect("not poisoned").session = Some(id.to_owned());
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let forward = |m: Value| {
        if let Some(v) = negotiated_version(&message, &m) {
            negotiated.lock().expect("not poisoned").version = Some(v);
        }
        let _ = out.send(m);
    };
    if is_sse {
        let mut events = Events::new(resp);
        loop {
            match events.next().await {
                Ok(Some(event)) => message_of_event(&event).into_iter().for_each(forward),
                Ok(None) => break,
                Err(e) => return fail(format!("the event stream broke: {e}")),
            }
        }
    } else {
        match resp.bytes().await {
            Ok(body) => match messages_of_json(&body) {
                Ok(messages) => messages.into_iter().for_each(forward),
                Err(e) => fail(format!("the server's answer is not JSON-RPC: {e}")),
            },
            Err(e) => fail(format!("reading the answer: {e}")),
        }
    }
}

/// The messages of a JSON body: one message, a batch, or none (an empty body).
fn messages_of_json(body: &[u8]) -> serde_json::Result<Vec<Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    Ok(match serde_json::from_slice(body)? {
        Value::Array(batch) => batch,
        one => vec![one],
    })
}

/// The message an SSE event carries (`message` events with data; others, such as priming
/// events with no data, carry none).
fn message_of_event(event: &Event) -> Option<Value> {
    if event.event != "message" || event.data.trim().is_empty() {
        return None;
    }
    match serde_json::from_str(&event.data) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("sandbox mcp: an event that is not JSON: {e}");
            None
        }
    }
}

/// The protocol version an answer to `request` (an `initialize`) settles on.
fn negotiated_version(request: &Value, answer: &Value) -> Option<String> {
    (request["method"] == "initialize" && answer["id"] == request["id"])
        .then(|| answer["result"]["protocolVersion"].as_str().map(str::to_owned))
        .flatten()
}

/// JSON-RPC error answers for the requests (messages with a method and an id) in `message`.
fn error_replies(message: &Value, why: &str) -> Vec<Value> {
    let all = match message {
        Value::Array(batch) => batch.iter().collect(),
        one => vec![one],
    };
    all.into_iter()
        .filter(|m| m.get("method").is_some() && m.get("id").is_some_and(|id| !id.is_null()))
        .map(|m| json!({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32603, "message": why}}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Parser;

    #[test]
    fn json_bodies_are_one_message_a_batch_or_nothing() {
        assert_eq!(
            messages_of_json(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap(),
            vec![json!({"jsonrpc":"2.0","id":1,"result":{}})]
        );
        assert_eq!(
            messages_of_json(br#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"x"}]"#)
                .unwrap(),
            vec![json!({"jsonrpc":"2.0","id":1,"result":{}}), json!({"jsonrpc":"2.0","method":"x"})]
        );
        assert!(messages_of_json(b" \n").unwrap().is_empty());
        assert!(messages_of_json(b"<html>").is_err());
    }

    #[test]
    fn sse_bodies_give_their_messages_in_order() {
        let body = concat!(
            "id: e0\ndata: \n\n",
            "event: message\nid: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\n",
            "data: \"params\":{\"progress\":1}}\n\n",
            ": ping\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n",
        );
        let mut parser = Parser::default();
        let messages: Vec<Value> = body
            .as_bytes()
            .chunks(5)
            .flat_map(|c| parser.feed(c))
            .filter_map(|e| message_of_event(&e))
            .collect();
        assert_eq!(
            messages,
            vec![
                json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}),
                json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}}),
            ]
        );
    }

    #[test]
    fn the_version_comes_from_the_initialize_answer() {
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}});
        let answer = json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}});
        assert_eq!(negotiated_version(&init, &answer).as_deref(), Some("2025-06-18"));
        let other = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        assert_eq!(negotiated_version(&other, &answer), None);
    }

    #[test]
    fn failed_requests_get_errors_and_notifications_none() {
        let batch = json!([{"jsonrpc":"2.0","id":3,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]);
        let replies = error_replies(&batch, "down");
        assert_eq!(replies, vec![json!({"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"down"}})]);
        assert!(error_replies(&json!({"jsonrpc":"2.0","id":3,"result":{}}), "down").is_empty());
    }
}

//! A small client for the REST API: authenticated JSON calls, list pages and streamed bodies.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

/// What went wrong, with a stable `code`: the server's error code, or one of the CLI's own
/// (`config_missing`, `connection_failed`, `invalid_argument`, `io_error`, `bad_response`).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// The stable code.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Error { code: code.to_owned(), message: message.into() }
    }

    /// A command-line argument that cannot be used.
    pub fn argument(message: impl Into<String>) -> Self {
        Error::new("invalid_argument", message)
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        let code = if e.is_connect() || e.is_timeout() { "connection_failed" } else { "request_failed" };
        Error::new(code, message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new("io_error", e.to_string())
    }
}

/// The result of a CLI operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Which part of a list to fetch: `limit` items from `offset` (the server's default when unset).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Page {
    /// At most this many items.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Skip this many items first.
    #[arg(long)]
    pub offset: Option<u64>,
}

/// One page of a list: the server's document as it came, and the items in it.
#[derive(Debug)]
pub struct Listing {
    /// The response body (an object with `items` and `total`, or an array).
    pub raw: Value,
    /// The listed items.
    pub items: Vec<Value>,
}

/// An authenticated client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`, maybe with a path prefix) using `key`.
    pub fn new(base: &str, key: &str) -> Result<Self> {
        let base = Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| Error::new("invalid_url", format!("not an http(s) URL: {base}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("sandbox-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { http, base, key: key.to_owned() })
    }

    /// The URL of `segments` below the base URL, each segment percent-encoded as needed.
    pub fn url<S: AsRef<str>>(&self, segments: impl IntoIterator<Item = S>) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.path_segments_mut().expect("http URLs have paths").pop_if_empty().extend(segments);
        url
    }

    /// The URL of `/api/v1/<segments>`.
    pub fn api<S: AsRef<str>>(&self, segments: impl IntoIterator<Item = S>) -> Url {
        let prefix = ["api", "v1"].into_iter().map(str::to_owned);
        self.url(prefix.chain(segments.into_iter().map(|s| s.as_ref().to_owned())))
    }

    /// A request to `url` carrying the key.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.key)
    }

    /// Sends `req`; an answer that is not a success becomes an [`Error`] with the server's code.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(error_of(resp).await)
    }

    /// A JSON call: `body` as the JSON request body; the answer's JSON (`Null` when empty).
    pub async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value> {
        let mut req = self.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        json_of(self.send(req).await?).await
    }

    /// `GET` of `url` as JSON.
    pub async fn get(&self, url: Url) -> Result<Value> {
        self.call(Method::GET, url, None).await
    }

    /// `POST` of `body` to `url`.
    pub async fn post(&self, url: Url, body: &Value) -> Result<Value> {
        self.call(Method::POST, url, Some(body)).await
    }

    /// `DELETE` of `url`.
    pub async fn delete(&self, url: Url) -> Result<Value> {
        self.call(Method::DELETE, url, None).await
    }

    /// One page of the list at `url`, with `query` (filters) besides the page. Every list goes
    /// through here: an object answer has its items in `items` (or `files`), an array answer
    /// is the items.
    pub async fn list(&self, mut url: Url, page: Page, query: &[(&str, &str)]) -> Result<Listing> {
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            if let Some(limit) = page.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(offset) = page.offset {
                pairs.append_pair("offset", &offset.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let raw = self.get(url).await?;
        let items = match &raw {
            Value::Array(items) => items.clone(),
            Value::Object(o) => match o.get("items").or_else(|| o.get("files")) {
                Some(Value::Array(items)) => items.clone(),
                _ => return Err(Error::new("bad_response", format!("not a list: {raw}"))),
            },
            _ => return Err(Error::new("bad_response", format!("not a list: {raw}"))),
        };
        Ok(Listing { raw, items })
    }
}

/// The JSON body of a successful answer (`Null` when empty).
pub async fn json_of(resp: Response) -> Result<Value> {
    let bytes = resp.bytes().await?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::new("bad_response", format!("the server's answer is not JSON: {e}")))
}

/// The error an unsuccessful answer stands for: the server's `code` and `message`, or the
/// HTTP status when the body is not the API's error envelope.
pub async fn error_of(resp: Response) -> Error {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    error_from(status, &body)
}

/// The error of an answer with `status` and `body`.
pub fn error_from(status: StatusCode, body: &[u8]) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v[name].as_str()).map(str::to_owned);
    match field("code") {
        Some(code) => {
            let mut message = field("message").unwrap_or_default();
            if let Some(Value::Array(errors)) = parsed.as_ref().map(|v| &v["errors"]) {
                for e in errors {
                    let (f, m) = (e["field"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""));
                    message.push_str(&format!("; {f}: {m}"));
                }
            }
            Error { code, message }
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let reason = status.canonical_reason().unwrap_or("error");
            Error::new(
                &format!("http_{}", status.as_u16()),
                format!("{reason} {}", text.trim()).trim().to_owned(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_a_path_prefix() {
        let c = Client::new("http://127.0.0.1:9/prefix/", "k").unwrap();
        assert_eq!(
            c.api(["sessions", "a b", "files", "x/y"]).as_str(),
            "http://127.0.0.1:9/prefix/api/v1/sessions/a%20b/files/x%2Fy"
        );
        assert_eq!(c.url(["mcp"]).as_str(), "http://127.0.0.1:9/prefix/mcp");
        assert_eq!(Client::new("ftp://x", "k").unwrap_err().code, "invalid_url");
    }

    #[test]
    fn errors_carry_the_servers_code_or_the_status() {
        let e = error_from(StatusCode::NOT_FOUND, br#"{"code":"session_not_found","message":"no such"}"#);
        assert_eq!(e.to_string(), "session_not_found: no such");
        let e = error_from(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"code":"validation_error","message":"bad","errors":[{"field":"cpu","message":"too many"}]}"#,
        );
        assert_eq!(e.to_string(), "validation_error: bad; cpu: too many");
        let e = error_from(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.to_string(), "http_502: Bad Gateway upstream down");
    }
}

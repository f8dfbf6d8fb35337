//! Plain HTTP forwarding of absolute-form requests, without hop-by-hop or `Proxy-*` headers.

use crate::audit::Attempt;
use crate::decision::{Decision, Failure};
use crate::destination::Destination;
use crate::proxy::{EXECUTION_HEADER, ProxyBody, Session, Upstream, refuse, text};
use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::AbortHandle;

/// Headers that concern one connection only (RFC 9110 §7.6.1), besides those `Connection`
/// names and every `Proxy-*` header.
const HOP_BY_HOP: [HeaderName; 6] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Forwards one plain HTTP request in absolute form (`GET http://host:port/path`): decided on
/// its URI's authority, sent on a fresh connection in origin form with `Host` set to that
/// authority, its response streamed back; hop-by-hop and `Proxy-*` headers go neither way.
pub(crate) async fn forward(
    session: &Session,
    mut attempt: Attempt,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(Ok(destination)) = Destination::from_http_uri(request.uri()) else {
        return refuse(attempt, Decision::Error(Failure::BadRequest));
    };
    let upstream = match session.open(&mut attempt, &destination).await {
        Ok(upstream) => upstream,
        Err(decision) => return refuse(attempt, decision),
    };
    let Upstream { io, traffic, permit } = upstream;
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(handshake) => handshake,
        Err(error) => return upstream_failed(&error),
    };
    let idle_timeout = session.idle_timeout();
    let driver = tokio::spawn(async move {
        tokio::select! {
            ended = connection => if let Err(error) = ended {
                tracing::debug!(%error, "egress forward: the destination's connection failed");
            },
            () = traffic.idle(idle_timeout) => tracing::debug!("egress forward idle, closed"),
        }
    });
    let driver = AbortOnDrop(driver.abort_handle());
    match sender.send_request(outgoing(request, &destination)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let body = Tracked { body, _attempt: attempt, _permit: permit, _driver: driver };
            Response::from_parts(parts, body.boxed())
        }
        Err(error) => upstream_failed(&error),
    }
}

/// 502 for a destination that was reached but did not answer with HTTP.
fn upstream_failed(error: &hyper::Error) -> Response<ProxyBody> {
    tracing::debug!(%error, "egress forward: no response from the destination");
    text(StatusCode::BAD_GATEWAY, "egress: the destination did not answer\n".into())
}

/// The request as the destination gets it: origin form, `Host` from the URI, HTTP/1.1, no
/// hop-by-hop, `Proxy-*` or execution header.
fn outgoing(request: Request<Incoming>, destination: &Destination) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(EXECUTION_HEADER);
    let host = match destination.port {
        80 => destination.host.to_string(),
        port => format!("{}:{port}", destination.host),
    };
    parts.headers.insert(HOST, HeaderValue::from_str(&host).expect("a parsed host is a valid header value"));
    Request::from_parts(parts, body)
}

/// Removes the hop-by-hop headers, those `Connection` names, and every `Proxy-*` header.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let proxy: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("proxy-")).cloned().collect();
    for name in HOP_BY_HOP.iter().chain(&named).chain(&proxy) {
        headers.remove(name);
    }
}

/// Aborts the task driving the destination's connection when the response is done with.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body that keeps its attempt (audited when the body is done with), its place in
/// the session's connection limit and its connection's driver until then.
struct Tracked {
    body: Incoming,
    _attempt: Attempt,
    _permit: OwnedSemaphorePermit,
    _driver: AbortOnDrop,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_proxy_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Private, bad name"),
            ("connection", "Upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-anything", "1"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-private", "secret"),
            ("content-length", "5"),
            ("authorization", "Bearer kept"),
            ("x-forwarded-proto", "http"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["authorization", "content-length", "x-forwarded-proto"]);
    }
}

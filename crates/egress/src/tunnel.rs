//! CONNECT tunnels: decide, connect, answer 200, relay bytes both ways (TLS is not intercepted).

use crate::audit::Attempt;
use crate::decision::{Decision, Failure};
use crate::destination::Destination;
use crate::proxy::{ProxyBody, Session, Upstream, refuse};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Answers a CONNECT request; an allowed tunnel goes on in a task of the session.
pub(crate) async fn open(
    session: &Session,
    mut attempt: Attempt,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let destination =
        request.uri().authority().map(|authority| Destination::parse_authority(authority.as_str()));
    let Some(Ok(destination)) = destination else {
        return refuse(attempt, Decision::Error(Failure::BadRequest));
    };
    let upstream = match session.open(&mut attempt, &destination).await {
        Ok(upstream) => upstream,
        Err(decision) => return refuse(attempt, decision),
    };
    let idle_timeout = session.idle_timeout();
    session.spawn(async move {
        // The record is written when the tunnel ends, with its byte counts.
        let _attempt = attempt;
        match hyper::upgrade::on(request).await {
            Ok(client) => relay(TokioIo::new(client), upstream, idle_timeout).await,
            Err(error) => tracing::debug!(%error, "egress tunnel: the client did not take the upgrade"),
        }
    });
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    response.extensions_mut().insert(ReasonPhrase::from_static(b"Connection Established"));
    response
}

/// Copies bytes both ways, each side's end passed on to the other, until both have ended or
/// nothing has moved for `idle_timeout`.
async fn relay<C: AsyncRead + AsyncWrite + Unpin>(mut client: C, upstream: Upstream, idle_timeout: Duration) {
    let Upstream { io: mut destination, traffic, permit: _permit } = upstream;
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut destination) => {
            if let Err(error) = copied {
                tracing::debug!(%error, "egress tunnel ended with an error");
            }
        }
        () = traffic.idle(idle_timeout) => tracing::debug!("egress tunnel idle, closed"),
    }
}

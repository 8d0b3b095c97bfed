//! The cached read's own lane. `GET /v1/tenants/{tenant}/secrets/{key}` is most of the
//! traffic, so a request of exactly that shape (a plain path: no query, no percent-escape,
//! a valid tenant and key) is answered without axum's router: no route lookup, no path
//! parameters decoded into the request, no boxed route services around the handler (about
//! a seventh of a cached read's instructions, docs/bench.md, eighth round). It goes through
//! the same `edge` (request id, span, limits, time limit, metrics, access audit) and the
//! same handler body (`secrets::read_current`) as the routed request. Every other request,
//! including any this lane could only refuse, goes to the router, which gives the same
//! answers and errors as before (a test holds the two lanes' answers equal).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::{BoxFuture, Either};

use super::access::RouteTemplate;
use super::edge::Edge;
use super::{extract, secrets, AppState};
use crate::domain::{SecretKey, TenantSlug};

/// The template of the route the lane serves.
pub const SECRET_READ: &str = "/v1/tenants/{tenant}/secrets/{key}";

/// The whole HTTP application: axum's router, with the cached read's lane in front of it.
#[derive(Clone)]
pub struct App {
    router: Router,
    /// None: every request goes through the router.
    lane: Option<Arc<Edge>>,
    /// The connection's peer, when served over one (`server`): handed to the lane's edge
    /// directly, and to the router as `ConnectInfo`.
    peer: Option<SocketAddr>,
}

impl App {
    pub(super) fn new(router: Router, edge: Edge) -> Self {
        Self {
            router,
            lane: Some(Arc::new(edge)),
            peer: None,
        }
    }

    /// The application for one connection from `peer`.
    pub fn for_peer(&self, peer: SocketAddr) -> Self {
        Self {
            peer: Some(peer),
            ..self.clone()
        }
    }

    /// The same application with every request going through the router, to hold the
    /// lane's answers equal to the router's.
    pub fn without_lane(mut self) -> Self {
        self.lane = None;
        self
    }
}

/// A router alone, without the lane (for routers built without `router_with_state`).
impl From<Router> for App {
    fn from(router: Router) -> Self {
        Self {
            router,
            lane: None,
            peer: None,
        }
    }
}

impl<B> tower::Service<Request<B>> for App
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        axum::routing::future::RouteFuture<Infallible>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some((edge, (slug, key))) = self.lane.as_ref().zip(plain_secret_read(&req)) else {
            if let Some(peer) = self.peer {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            return Either::Right(self.router.call(req));
        };
        let client = self.peer;
        let edge = edge.clone();
        let req = req.map(Body::new);
        Either::Left(Box::pin(async move {
            let route = Some(RouteTemplate::Lane {
                template: SECRET_READ,
                tenant: slug.clone(),
            });
            let mut response = edge
                .serve(route, client, req, |req| read(&edge.state, req, slug, key))
                .await;
            set_content_length(&mut response);
            Ok(response)
        }))
    }
}

/// The tenant and key of a `GET` of the lane's shape; None sends the request to the router.
fn plain_secret_read<B>(req: &Request<B>) -> Option<(TenantSlug, SecretKey)> {
    if req.method() != Method::GET || req.uri().query().is_some() {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/v1/tenants/")?;
    let (tenant, rest) = rest.split_at(rest.find('/')?);
    let key = rest.strip_prefix("/secrets/")?;
    // A valid slug or key has no `/` and no `%`: decoding leaves it as it is, so these are
    // the segments routing would match.
    Some((TenantSlug::parse(tenant).ok()?, SecretKey::parse(key).ok()?))
}

/// What `secrets::get_secret` does once its extractors have run.
async fn read(state: &AppState, req: Request<Body>, slug: TenantSlug, key: SecretKey) -> Response {
    let (parts, _body) = req.into_parts();
    let answer = async {
        let who = extract::caller_of(&parts.headers, &parts.extensions, state).await?;
        let rid = extract::request_id_of(&parts.headers);
        secrets::read_current(state, &slug, &key, &who, rid).await
    };
    answer.await.into_response()
}

/// `content-length` from a body of known size, as axum's routes set it.
fn set_content_length(response: &mut Response) {
    if response.headers().contains_key(header::CONTENT_LENGTH) {
        return;
    }
    if let Some(size) = http_body::Body::size_hint(response.body()).exact() {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
}

#[cfg(test)]
mod tests {
    use super::plain_secret_read;
    use axum::http::{Method, Request};

    /// Which requests the lane takes; everything else is the router's (tests/lane.rs holds
    /// the two lanes' answers equal).
    #[test]
    fn the_lane_takes_plain_reads_only() {
        let take = |method: Method, uri: &str| {
            let req = Request::builder().method(method).uri(uri).body(()).unwrap();
            plain_secret_read(&req).map(|(t, k)| format!("{t} {}", k.as_str()))
        };
        let read = |uri: &str| take(Method::GET, uri);
        assert_eq!(
            read("/v1/tenants/acme/secrets/stripe_key").as_deref(),
            Some("acme stripe_key")
        );
        assert_eq!(
            read("http://vault:8200/v1/tenants/a-1/secrets/K.2").as_deref(),
            Some("a-1 K.2")
        );
        for uri in [
            "/v1/tenants/acme/secrets/stripe_key?version=2",
            "/v1/tenants/acme/secrets/stripe_key?",
            "/v1/tenants/acme/secrets/stripe%5Fkey",
            "/v1/tenants/ac%6De/secrets/stripe_key",
            "/v1/tenants/acme/secrets/stripe_key/",
            "/v1/tenants/acme/secrets/a/b",
            "/v1/tenants/acme/secrets/a/secrets/b",
            "/v1/tenants/acme/x/secrets/k",
            "/v1/tenants/acme/secrets/",
            "/v1/tenants//secrets/k",
            "/v1/tenants/acme/secrets/..",
            "/v1/tenants/ACME!/secrets/k",
            "/v1/tenants/acme/secrets",
            "/v1/tenants/acme/versions/k",
            "/v2/tenants/acme/secrets/k",
            "//v1/tenants/acme/secrets/k",
        ] {
            assert_eq!(read(uri), None, "{uri}");
        }
        for method in [Method::HEAD, Method::PUT, Method::DELETE, Method::POST] {
            assert_eq!(
                take(method.clone(), "/v1/tenants/acme/secrets/k"),
                None,
                "{method}"
            );
        }
    }
}

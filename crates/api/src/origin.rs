//! Where the client sees this server: the scheme and host that absolute links (a list's
//! `nextLink`) are built on.
//!
//! The scheme is the listener's: `https` on the HTTPS listener, which marks its requests with
//! [`ServedOverTls`], else `http`. The host is the request's own (`Host`, or the authority of
//! an HTTP/2 request), which names what the client dialled: a client that forges it misleads
//! only itself. `X-Forwarded-Proto` and `X-Forwarded-Host` replace them only on a request whose
//! peer is one of the operator's trusted proxies: from anyone else they would let a client
//! point the links that others follow, with their tokens, at another host.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::AppState;

/// Marks a request that arrived over TLS (the HTTPS listener inserts it).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// The scheme and host of this server as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: &'static str,
    pub host: String,
}

impl Origin {
    /// The absolute URL of `path_and_query` (which starts with `/`) on this origin.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", self.scheme, self.host)
    }
}

/// One `--trusted-proxy`: an address, or a CIDR block of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is neither an IP address nor a CIDR block (such as 10.0.0.0/8)")]
pub struct InvalidTrustedProxy(String);

impl FromStr for TrustedProxy {
    type Err = InvalidTrustedProxy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(TrustedProxy)
            .map_err(|_| InvalidTrustedProxy(s.to_string()))
    }
}

/// The proxies whose `X-Forwarded-*` headers are believed; none unless the operator names them.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[TrustedProxy]>);

impl TrustedProxies {
    pub fn new(proxies: Vec<TrustedProxy>) -> Self {
        TrustedProxies(proxies.into())
    }

    fn trust(&self, peer: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6 addresses.
        let peer = peer.to_canonical();
        self.0.iter().any(|proxy| proxy.0.contains(&peer))
    }
}

/// Middleware: resolves the request's [`Origin`] and adds it to the request's extensions.
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let tls = request.extensions().get::<ServedOverTls>().is_some();
    let origin = origin_of(
        request.headers(),
        request.uri(),
        tls,
        peer.is_some_and(|peer| state.trusted_proxies.trust(peer)),
    );
    request.extensions_mut().insert(origin);
    next.run(request).await
}

fn origin_of(headers: &HeaderMap, uri: &Uri, tls: bool, from_trusted_proxy: bool) -> Origin {
    // A proxy that appends to these headers puts its own view last.
    let forwarded = |name: &str| {
        from_trusted_proxy
            .then(|| headers.get(name)?.to_str().ok()?.rsplit(',').next())
            .flatten()
            .map(str::trim)
    };
    let scheme = match forwarded("x-forwarded-proto").map(str::to_ascii_lowercase) {
        Some(proto) if proto == "https" => "https",
        Some(proto) if proto == "http" => "http",
        _ if tls => "https",
        _ => "http",
    };
    let own_host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .and_then(plain_authority)
        .or_else(|| uri.authority().and_then(|a| plain_authority(a.as_str())));
    let host = forwarded("x-forwarded-host")
        .and_then(plain_authority)
        .or(own_host)
        .unwrap_or_else(|| "localhost".to_string());
    Origin { scheme, host }
}

/// `host[:port]`, nothing else: no user info, path or spaces.
fn plain_authority(value: &str) -> Option<String> {
    let authority = Authority::from_str(value.trim()).ok()?;
    (!authority.as_str().contains('@')).then(|| authority.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn origin(scheme: &'static str, host: &str) -> Origin {
        Origin {
            scheme,
            host: host.to_string(),
        }
    }

    #[test]
    fn the_listener_and_the_host_header_decide_unless_a_trusted_proxy_forwards() {
        let uri = Uri::from_static("/api/devices");
        let forged = headers(&[
            ("host", "flotilla.local:8443"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
        ]);
        assert_eq!(
            origin_of(&forged, &uri, true, false),
            origin("https", "flotilla.local:8443")
        );
        assert_eq!(
            origin_of(&forged, &uri, false, true),
            origin("http", "evil.example")
        );
        let appended = headers(&[
            ("host", "inner:8080"),
            ("x-forwarded-proto", "http, HTTPS"),
            ("x-forwarded-host", "a.example, central.example"),
        ]);
        assert_eq!(
            origin_of(&appended, &uri, false, true),
            origin("https", "central.example")
        );
        // Values that are not a scheme or a plain host are not believed, even from a proxy.
        let odd = headers(&[
            ("host", "inner:8080"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "user@evil.example"),
        ]);
        assert_eq!(
            origin_of(&odd, &uri, true, true),
            origin("https", "inner:8080")
        );
        assert_eq!(
            origin_of(&headers(&[("host", "a b")]), &uri, false, false),
            origin("http", "localhost")
        );
        // HTTP/2 carries the host in the request's authority.
        let h2 = Uri::from_static("https://h2.example:443/api/devices");
        assert_eq!(
            origin_of(&HeaderMap::new(), &h2, true, false),
            origin("https", "h2.example:443")
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        let proxies = TrustedProxies::new(vec![
            "127.0.0.1".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            " fd00::/8".parse().unwrap(),
        ]);
        for trusted in ["127.0.0.1", "10.1.200.3", "::ffff:127.0.0.1", "fd12::1"] {
            assert!(proxies.trust(trusted.parse().unwrap()), "{trusted}");
        }
        for untrusted in ["127.0.0.2", "10.2.0.1", "::1"] {
            assert!(!proxies.trust(untrusted.parse().unwrap()), "{untrusted}");
        }
        assert!(!TrustedProxies::default().trust("127.0.0.1".parse().unwrap()));
        let err = "10.0.0.0/33".parse::<TrustedProxy>().unwrap_err();
        assert!(err.to_string().contains("'10.0.0.0/33'"), "{err}");
        assert!("proxy.example".parse::<TrustedProxy>().is_err());
    }
}

//! Where deliveries may go: the checks on an endpoint URL when it is registered, and, with
//! `--webhook-private-addresses false`, a resolver that drops every non-public address so
//! a host name cannot lead a delivery into the server's own network (also not by
//! answering differently at delivery time than at registration).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    #[error("has {0} bytes, more than the {1} allowed")]
    TooLong(usize, usize),
    #[error("is not a URL: {0}")]
    Malformed(String),
    #[error("must start with http:// or https://, not {0}:")]
    Scheme(String),
    #[error("must name a host")]
    NoHost,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not have a #fragment")]
    Fragment,
    #[error("points at the non-public address {0}, which this server does not deliver to")]
    Private(IpAddr),
}

/// `raw` as an endpoint URL: http or https, a host, no credentials or fragment, at most
/// `max_bytes` long; a literal non-public address only when `private_ok`.
pub fn check_url(raw: &str, max_bytes: usize, private_ok: bool) -> Result<url::Url, UrlError> {
    if raw.len() > max_bytes {
        return Err(UrlError::TooLong(raw.len(), max_bytes));
    }
    let url = url::Url::parse(raw).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    let ip = match url.host() {
        None => return Err(UrlError::NoHost),
        Some(url::Host::Domain("")) => return Err(UrlError::NoHost),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip
        && !private_ok
        && !is_public(ip)
    {
        return Err(UrlError::Private(ip));
    }
    Ok(url)
}

/// Whether `ip` is a global unicast address: not loopback, private (RFC 1918, RFC 4193),
/// link-local, shared (RFC 6598), unspecified, multicast, broadcast, documentation or
/// otherwise reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves with the system's resolver and keeps only public addresses; a name with none
/// left fails to resolve, so the delivery fails (and is retried) without a connection.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| check_url(u, 2048, true).map(|_| ());
        assert_eq!(ok("https://hooks.example.org/veche"), Ok(()));
        assert_eq!(ok("http://10.0.0.5:8080/in"), Ok(()));
        assert!(matches!(ok("ftp://example.org/"), Err(UrlError::Scheme(_))));
        assert!(matches!(
            ok("javascript:alert(1)"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(ok("not a url"), Err(UrlError::Malformed(_))));
        assert_eq!(ok("https://u:p@example.org/"), Err(UrlError::Credentials));
        assert_eq!(ok("https://example.org/#x"), Err(UrlError::Fragment));
        let long = format!("https://example.org/{}", "a".repeat(100));
        assert!(matches!(
            check_url(&long, 64, true),
            Err(UrlError::TooLong(_, 64))
        ));
        for private in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://169.254.169.254/latest",
            "http://[::ffff:192.168.1.1]/",
            "http://0.0.0.0/",
        ] {
            assert!(
                matches!(check_url(private, 2048, false), Err(UrlError::Private(_))),
                "{private}"
            );
        }
        assert!(check_url("https://93.184.215.14/", 2048, false).is_ok());
        assert!(check_url("https://hooks.example.org/", 2048, false).is_ok());
    }
}

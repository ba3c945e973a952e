//! The `Origin` check: which browser pages may open a connection.
//!
//! Origins are compared the way browsers serialize them (RFC 6454): the
//! `url` crate parses both the allowed list and the request's header, so
//! `https://Example.com:443/` and `https://example.com` are the same origin
//! and a default port never causes a false 403.

use ::http::HeaderMap;

/// The serialized origin of `origin` (`scheme://host[:port]`, lower case,
/// without a default port or a path), or `None` when it is not a tuple
/// origin (not a URL, `null`, `file:`, ...).
pub(crate) fn normalize_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin.trim()).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Whether a request with `headers` may connect given the `allowed`
/// origins (normalized): always when none are configured or the request
/// has no `Origin` (not a browser).
pub(crate) fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let mut origins = headers.get_all("origin").iter();
    match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(origin), None) => origin
            .to_str()
            .ok()
            .and_then(normalize_origin)
            .is_some_and(|o| allowed.contains(&o)),
        // Two Origin headers: no browser sends that.
        (Some(_), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_serialize_them() {
        let n = |o: &str| normalize_origin(o);
        assert_eq!(
            n("https://Example.COM").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            n("https://example.com:443/").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            n("http://example.com:80").as_deref(),
            Some("http://example.com")
        );
        assert_eq!(
            n("http://localhost:8000").as_deref(),
            Some("http://localhost:8000")
        );
        assert_eq!(
            n("https://example.com:8443").as_deref(),
            Some("https://example.com:8443")
        );
        assert_eq!(n("null"), None);
        assert_eq!(n("example.com"), None);
        assert_eq!(n("file:///etc/passwd"), None);
    }

    #[test]
    fn the_check() {
        let allowed = vec![normalize_origin("https://example.com").unwrap()];
        let mut headers = HeaderMap::new();
        assert!(
            origin_allowed(&allowed, &headers),
            "no Origin: not a browser"
        );
        headers.insert("origin", "https://example.com:443".parse().unwrap());
        assert!(origin_allowed(&allowed, &headers));
        headers.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&allowed, &headers));
        headers.insert("origin", "null".parse().unwrap());
        assert!(!origin_allowed(&allowed, &headers));
        headers.append("origin", "https://example.com".parse().unwrap());
        assert!(!origin_allowed(&allowed, &headers), "two Origin headers");
        assert!(origin_allowed(&[], &headers), "no list: every origin");
    }
}

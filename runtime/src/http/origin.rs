//! The `Origin` check: which browser pages may open a connection.

use async_tungstenite::tungstenite::http::HeaderMap;

/// Lower case, without a trailing slash: how origins are compared.
pub(crate) fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
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
            .is_ok_and(|o| allowed.contains(&normalize_origin(o))),
        // Two Origin headers: no browser sends that.
        (Some(_), Some(_)) => false,
    }
}

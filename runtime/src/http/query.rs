//! Query strings: `application/x-www-form-urlencoded` decoding, by the
//! `form_urlencoded` crate (the one `url` uses), so `+` is a space, `%XX` a
//! byte, and invalid escapes and UTF-8 are kept or replaced rather than
//! refused.

/// The decoded query string of a request, in request order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `raw`, the query string without its `?`.
    pub(crate) fn parse(raw: &str) -> Self {
        let pairs = form_urlencoded::parse(raw.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        Query { pairs }
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in request order.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let query = Query::parse("token=s%20e+c&empty=&flag&x=%zz&y=%4&&u=%C3%A9");
        let expect = [
            ("token", "s e c"),
            ("empty", ""),
            ("flag", ""),
            ("x", "%zz"),
            ("y", "%4"),
            ("u", "é"),
        ];
        let got: Vec<(&str, &str)> = query
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert_eq!(Query::parse("a=%FF").get("a"), Some("\u{FFFD}"));
        assert_eq!(Query::parse("a=%").get("a"), Some("%"));
        assert_eq!(Query::parse("a=1&a=2").get("a"), Some("1"));
        assert_eq!(Query::parse("").get("a"), None);
    }
}

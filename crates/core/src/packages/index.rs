//! Package index URLs: what makes one acceptable, how it is shown without its password, and
//! which ones the operator allows installs from.

/// Longest index URL accepted.
pub const MAX_INDEX_URL_LEN: usize = 512;

/// Checks a package index URL: `http` or `https`, with a host, at most 512 characters.
pub fn validate_index_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_INDEX_URL_LEN {
        return Err(format!("longer than {MAX_INDEX_URL_LEN} characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} must be an http:// or https:// URL with a host"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(url)
}

/// The package indexes sessions may install from: the default index, and the operator's
/// `dependencies.allowed_index_urls`. Anything else is refused before an installer starts, so a
/// tenant cannot make the platform fetch an address of the operator's network.
///
/// An entry is `scheme://host[:port]/path`: the scheme and host must match (a host `*.corp.example`
/// matches any name below `corp.example`), the port must match (`:*` matches any), and the URL's
/// path must lie under the entry's path. Credentials in the URL do not take part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexAllowList {
    entries: Vec<AllowedIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedIndex {
    scheme: String,
    /// A host name, or `.suffix` for `*.suffix`.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    path: String,
}

impl AllowedIndex {
    fn parse(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("{raw:?} is not a URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (authority, any_port) = match authority.strip_suffix(":*") {
            Some(a) => (a, true),
            None => (authority, false),
        };
        let (authority, wildcard) = match authority.strip_prefix("*.") {
            Some(a) => (a, true),
            None => (authority, false),
        };
        let url = validate_index_url(&format!("{scheme}://{authority}{path}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{raw:?}: an allowed index has no credentials"));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        Ok(AllowedIndex {
            scheme: url.scheme().to_owned(),
            host: if wildcard { format!(".{host}") } else { host },
            port: if any_port { None } else { url.port_or_known_default() },
            path: url.path().to_owned(),
        })
    }

    fn allows(&self, url: &url::Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let host_ok = match self.host.strip_prefix('.') {
            Some(suffix) => host.strip_suffix(suffix).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == self.host,
        };
        let path = url.path();
        let path_ok = path == self.path
            || (self.path.ends_with('/') && path.starts_with(&self.path))
            || path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/'));
        url.scheme() == self.scheme
            && host_ok
            && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
            && path_ok
    }
}

impl IndexAllowList {
    /// The default index and the extra entries; fails naming the first invalid entry.
    pub fn new(default_index: &str, extra: &[String]) -> Result<Self, String> {
        let entries = std::iter::once(default_index)
            .chain(extra.iter().map(String::as_str))
            .map(AllowedIndex::parse)
            .collect::<Result<_, _>>()?;
        Ok(IndexAllowList { entries })
    }

    /// Whether installs may use `url`.
    pub fn allows(&self, url: &url::Url) -> bool {
        self.entries.iter().any(|e| e.allows(url))
    }
}

/// The URL with any password replaced by `***`, for responses and logs.
pub fn redact_index_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls_are_checked_and_passwords_never_shown() {
        for ok in
            ["https://pypi.org/simple/", "http://127.0.0.1:8080/simple", "https://user:tok@pypi.corp/simple/"]
        {
            assert!(validate_index_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "pypi.org/simple",
            "ftp://x/simple",
            "file:///etc/passwd",
            "https://",
            "http://a b/",
            &format!("https://x/{}", "a".repeat(600)),
        ] {
            assert!(validate_index_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact_index_url("https://user:tok@pypi.corp/simple/"),
            "https://user:***@pypi.corp/simple/"
        );
        assert_eq!(redact_index_url("https://pypi.org/simple/"), "https://pypi.org/simple/");
    }

    #[test]
    fn only_allowed_indexes_pass() {
        let list = IndexAllowList::new(
            "https://pypi.org/simple/",
            &[
                "https://*.corp.example/pypi".into(),
                "http://127.0.0.1:*/".into(),
                "https://mirror.example:8443/simple/".into(),
            ],
        )
        .unwrap();
        let allowed = |u: &str| list.allows(&url::Url::parse(u).unwrap());
        for ok in [
            "https://pypi.org/simple/",
            "https://PyPI.org/simple/sub/",
            "https://user:tok@pypi.org/simple/",
            "https://a.corp.example/pypi",
            "https://a.b.corp.example/pypi/simple/",
            "http://127.0.0.1:9/",
            "http://127.0.0.1:1234/simple/",
            "https://mirror.example:8443/simple/",
        ] {
            assert!(allowed(ok), "{ok} should be allowed");
        }
        for bad in [
            "http://pypi.org/simple/",
            "https://pypi.org:8443/simple/",
            "https://pypi.org/other/",
            "https://pypi.org.evil.example/simple/",
            "https://evil.example/simple/?https://pypi.org/simple/",
            "https://corp.example/pypi",
            "https://xcorp.example/pypi",
            "https://a.corp.example/pypiX",
            "http://127.0.0.2:9/",
            "http://169.254.169.254/latest/meta-data/",
            "https://mirror.example/simple/",
        ] {
            assert!(!allowed(bad), "{bad} should be refused");
        }
        assert!(IndexAllowList::new("https://pypi.org/simple/", &["https://u:p@x.example/".into()]).is_err());
        assert!(IndexAllowList::new("https://pypi.org/simple/", &["not a url".into()]).is_err());
    }
}

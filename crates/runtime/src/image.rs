//! Image references (checked before a template may name one) and the progress of a pull.

/// An image reference split into its parts: `[registry/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The repository, with its registry when one is named (`127.0.0.1:5000/team/python`).
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference` with the grammar Docker's reference package accepts; the error says
    /// what is wrong.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        if reference.is_empty() || reference.len() > 512 {
            return Err("must be 1-512 characters".into());
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                check_digest(digest)?;
                (name, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        check_repository(repository)?;
        Ok(ImageRef { repository: repository.to_owned(), tag: tag.map(str::to_owned), digest })
    }

    /// The reference to pull: the digest when given, else the tag, else `latest` (a pull
    /// without either would fetch every tag of the repository).
    pub fn pull_target(&self) -> (String, String) {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => (format!("{}@{digest}", self.repository), String::new()),
            (None, Some(tag)) => (self.repository.clone(), tag.clone()),
            (None, None) => (self.repository.clone(), "latest".into()),
        }
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let bad = || format!("digest {digest:?} is not ALGORITHM:HEX (sha256:<64 hex digits>)");
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(format!("tag {tag:?} is not 1-128 of letters, digits, '_', '.', '-'")) }
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() || repository.len() > 255 {
        return Err("the repository name must be 1-255 characters".into());
    }
    let mut parts: Vec<&str> = repository.split('/').collect();
    // The first part names a registry when it has a '.' or a port, or is `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        check_domain(parts.remove(0))?;
    }
    for p in parts {
        if !path_component(p) {
            return Err(format!(
                "{p:?} is not a repository path component: lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host.split('.').all(label) && port_ok {
        Ok(())
    } else {
        Err(format!("{domain:?} is not a registry host[:port]"))
    }
}

/// Lowercase letters and digits in runs separated by one '.', one or two '_', or dashes.
fn path_component(p: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut rest = p;
    loop {
        let run = rest.find(|c: char| !alnum(c)).unwrap_or(rest.len());
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let sep = rest.find(alnum).unwrap_or(rest.len());
        let separator = &rest[..sep];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        rest = &rest[sep..];
    }
}

/// How far a pull got: what a progress bar needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Layer bytes downloaded.
    pub bytes_done: u64,
    /// Layer bytes to download, as far as announced.
    pub bytes_total: u64,
    /// Layers downloaded and unpacked, or already present.
    pub layers_done: u32,
    /// Layers, as far as announced.
    pub layers_total: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/team/py-thon_3:v1.2-rc").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000/team/py-thon_3", Some("v1.2-rc"))
        );
        assert_eq!(r.pull_target(), ("127.0.0.1:5000/team/py-thon_3".into(), "v1.2-rc".into()));
        let r = ImageRef::parse("sandbox/python-basic").unwrap();
        assert_eq!(r.pull_target(), ("sandbox/python-basic".into(), "latest".into()));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/x:1@{digest}")).unwrap();
        assert_eq!(r.pull_target(), (format!("localhost:5000/x@{digest}"), String::new()));
        for ok in ["busybox", "a__b/c---d/e.f:TAG_1", "registry.example.com/x/y", "localhost/x"] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "UPPER/case",
            "x:",
            "x:-tag",
            "x::y",
            "a//b",
            "a/b/",
            "a..b",
            "a___b",
            "-a",
            "x@sha256:short",
            "x@md5",
            "host:99999999/x",
            "spaces are/not allowed",
            "ümlaut",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_tag = format!("x:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }
}

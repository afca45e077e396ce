//! What a `Debug` of a configuration shows in place of a secret. Secrets (the JWT secret, AI
//! keys, the peer secret) are replaced by [`REDACTED`]; URLs keep what locates the service
//! and lose their password ([`Url`]), so a logged configuration still says where it connects.

use std::fmt;

/// Printed instead of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// Shows a secret that may be absent as `Some(<redacted>)` or `None`.
pub(crate) struct Secret<'a, T>(pub &'a Option<T>);

impl<T> fmt::Debug for Secret<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => write!(f, "Some({REDACTED})"),
            None => f.write_str("None"),
        }
    }
}

/// Shows a URL with its password (and any query, which may carry a token) replaced; a text
/// that does not parse as a URL is not shown at all.
pub(crate) struct Url<'a>(pub &'a str);

impl fmt::Debug for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(mut url) = url::Url::parse(self.0) else {
            return f.write_str(REDACTED);
        };
        if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
            return f.write_str(REDACTED);
        }
        if url.query().is_some() {
            url.set_query(Some(REDACTED));
        }
        write!(f, "{:?}", url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_its_host_and_loses_its_password_and_query() {
        let shown = format!(
            "{:?}",
            Url("postgres://tandem:hunter2@db:5432/tandem?sslpassword=x")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("sslpassword=x"), "{shown}");
        assert!(shown.contains("db:5432/tandem"), "{shown}");
        assert_eq!(format!("{:?}", Url("not a url hunter2")), REDACTED);
        assert_eq!(
            format!("{:?}", Url("sqlite://data/tandem.db")),
            "\"sqlite://data/tandem.db\""
        );
    }

    #[test]
    fn a_secret_shows_only_whether_it_is_set() {
        assert_eq!(
            format!("{:?}", Secret(&Some("hunter2"))),
            "Some(<redacted>)"
        );
        assert_eq!(format!("{:?}", Secret::<String>(&None)), "None");
    }
}

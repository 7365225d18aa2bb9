//! Credentials that must never reach a log, an error or `Debug` output.
//!
//! Every backend keeps its passwords and secret keys in a [`Secret`], whose `Debug` and
//! `Display` print `***`, and prints connection URLs through [`mask_url_password`].

use std::fmt;

/// What a masked secret prints as.
pub const MASK: &str = "***";

/// A password, secret key or token. `Debug` and `Display` print [`MASK`]; only
/// [`Secret::expose`] gives the value, at the one place that hands it to a client library.
///
/// ```
/// use waybill_core::secret::Secret;
///
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password:?} {password}"), "*** ***");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the client library that needs it. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (usually a configuration mistake).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`; a URL without a password is
/// returned as it is. The last `@` of the authority ends the user information, so a password
/// holding an unescaped `@` is masked whole.
///
/// ```
/// use waybill_core::secret::mask_url_password;
///
/// assert_eq!(
///     mask_url_password("amqps://app:s3cret@mq:5671/%2f"),
///     "amqps://app:***@mq:5671/%2f"
/// );
/// assert_eq!(mask_url_password("postgres://db/shop"), "postgres://db/shop");
/// ```
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_replaced_and_the_rest_kept() {
        assert_eq!(
            mask_url_password("postgres://app:s3cr%40t@db:5432/shop?sslmode=verify-full"),
            "postgres://app:***@db:5432/shop?sslmode=verify-full"
        );
        assert_eq!(
            mask_url_password("postgres://db/shop"),
            "postgres://db/shop"
        );
        assert_eq!(mask_url_password("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(mask_url_password("not a url"), "not a url");
        assert_eq!(
            mask_url_password("amqps://u:p@q@h/%2f"),
            "amqps://u:***@h/%2f",
            "an unescaped @ in the password"
        );
        assert_eq!(
            mask_url_password("amqp://user@h/?p=a:b"),
            "amqp://user@h/?p=a:b",
            "a user without a password, and a colon after the authority"
        );
    }

    #[test]
    fn a_secret_never_formats_its_value() {
        let s = Secret::from("topsecret-value");
        let printed = format!("{s} {s:?} {:?}", Some(s.clone()));
        assert!(!printed.contains("topsecret"), "{printed}");
        assert_eq!(s.expose(), "topsecret-value");
        assert!(!s.is_empty());
    }
}

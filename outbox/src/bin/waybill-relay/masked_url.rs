//! URLs as the relay prints them: with the password replaced.

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`; a URL without a password
/// is returned as it is.
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::masked_url;

    #[test]
    fn the_password_is_replaced_and_the_rest_kept() {
        assert_eq!(
            masked_url("postgres://app:s3cr%40t@db:5432/shop?sslmode=verify-full"),
            "postgres://app:***@db:5432/shop?sslmode=verify-full"
        );
        assert_eq!(masked_url("postgres://db/shop"), "postgres://db/shop");
        assert_eq!(masked_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            masked_url("amqps://u:p@q@h/%2f"),
            "amqps://u:***@h/%2f",
            "an unescaped @ in the password"
        );
    }
}

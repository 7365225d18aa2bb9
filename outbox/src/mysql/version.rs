//! Which MySQL and MariaDB servers the outbox runs on: both need `SKIP LOCKED` and the
//! `information_schema.innodb_trx` horizon, so MySQL 8.0 or later and MariaDB 10.6 or later.

use crate::error::OutboxError;

/// The oldest MySQL the outbox supports.
pub(crate) const MYSQL_MIN: (u32, u32) = (8, 0);
/// The oldest MariaDB the outbox supports.
pub(crate) const MARIADB_MIN: (u32, u32) = (10, 6);

/// A server version as `SELECT VERSION()` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerVersion {
    /// MariaDB (its version string says so) rather than MySQL.
    pub mariadb: bool,
    /// Major and minor version.
    pub release: (u32, u32),
}

impl ServerVersion {
    /// Parses `VERSION()`: `8.0.36`, `8.4.0-log`, `10.11.19-MariaDB-0+deb12u1`, or the
    /// `5.5.5-10.11.6-MariaDB` form older MariaDB servers report to clients.
    ///
    /// # Errors
    /// [`OutboxError::Unsupported`] naming the text when it holds no version.
    pub fn parse(text: &str) -> Result<Self, OutboxError> {
        let mariadb = text.contains("MariaDB");
        let text = match text.strip_prefix("5.5.5-") {
            Some(rest) if mariadb => rest,
            _ => text,
        };
        let mut numbers = text
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => Ok(Self {
                mariadb,
                release: (major, minor),
            }),
            _ => Err(OutboxError::Unsupported(format!(
                "cannot read the server version {text:?}"
            ))),
        }
    }

    /// Refuses a server older than the supported minimum.
    ///
    /// # Errors
    /// [`OutboxError::Unsupported`] naming the version found and the minimum.
    pub fn check(&self, reported: &str) -> Result<(), OutboxError> {
        let (name, min) = if self.mariadb {
            ("MariaDB", MARIADB_MIN)
        } else {
            ("MySQL", MYSQL_MIN)
        };
        if self.release < min {
            return Err(OutboxError::Unsupported(format!(
                "{name} {reported} is too old for the waybill outbox: it needs {name} {}.{} or \
                 later (SKIP LOCKED and information_schema.innodb_trx)",
                min.0, min.1
            )));
        }
        Ok(())
    }
}

/// Reads the server's version and refuses one older than the minimum.
///
/// # Errors
/// [`OutboxError::Unsupported`] for an old server, or a database error.
pub(crate) async fn check_server(pool: &sqlx::MySqlPool) -> Result<(), OutboxError> {
    let reported: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(pool)
        .await
        .map_err(|e| crate::error::classify(e, None))?;
    ServerVersion::parse(&reported)?.check(&reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reported: &str) -> Result<(), String> {
        ServerVersion::parse(reported)
            .and_then(|v| v.check(reported))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn old_servers_are_refused_with_the_minimum_named() {
        let err = verdict("5.7.44").unwrap_err();
        assert!(
            err.contains("MySQL 5.7.44") && err.contains("8.0 or later"),
            "{err}"
        );
        let err = verdict("10.5.2-MariaDB").unwrap_err();
        assert!(
            err.contains("MariaDB 10.5.2") && err.contains("10.6 or later"),
            "{err}"
        );
        let err = verdict("5.5.5-10.4.1-MariaDB-log").unwrap_err();
        assert!(err.contains("10.6 or later"), "{err}");
        assert!(verdict("not a version")
            .unwrap_err()
            .contains("server version"));
    }

    #[test]
    fn supported_servers_are_accepted() {
        verdict("8.0.36").unwrap();
        verdict("8.4.0-log").unwrap();
        verdict("10.11.19-MariaDB-0+deb12u1").unwrap();
        verdict("5.5.5-10.6.0-MariaDB").unwrap();
        verdict("11.4.2-MariaDB").unwrap();
        assert_eq!(
            ServerVersion::parse("10.11.19-MariaDB-0+deb12u1").unwrap(),
            ServerVersion {
                mariadb: true,
                release: (10, 11)
            }
        );
    }
}

//! Errors of setting up a Redis store.

use redis::RedisError;

/// The Redis store could not be set up.
///
/// Messages name the server by address only, never with its password.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The server did not answer or refused the connection (it may be down or unreachable).
    #[error(
        "Redis at {address} is not reachable: {reason}. Start it (e.g. `redis-server --port \
         <port>`) or point the store at a running server"
    )]
    Unreachable {
        /// `host:port` of the server.
        address: String,
        /// What the client reported.
        reason: String,
    },
    /// The server refused the credentials (wrong password, or a password given to a server
    /// that has none).
    #[error("Redis at {address} refused the credentials: {reason}")]
    AuthenticationFailed {
        /// `host:port` of the server.
        address: String,
        /// What the server said.
        reason: String,
    },
    /// The server answered something else that prevents use (wrong database number, a
    /// command disabled by its configuration).
    #[error("Redis at {address} failed: {reason}")]
    Server {
        /// `host:port` of the server.
        address: String,
        /// What the server said.
        reason: String,
    },
}

impl RedisStoreError {
    /// Classifies a setup failure against the server at `address`.
    pub(crate) fn from_redis(address: &str, error: &RedisError) -> Self {
        let address = address.to_owned();
        let reason = describe(error);
        if error.kind() == redis::ErrorKind::AuthenticationFailed
            || reason.contains("AUTH")
            || reason.contains("WRONGPASS")
            || reason.contains("NOAUTH")
        {
            Self::AuthenticationFailed { address, reason }
        } else if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
            Self::Unreachable { address, reason }
        } else {
            Self::Server { address, reason }
        }
    }
}

/// A Redis error as text. The client's errors carry the server's answer or the I/O error,
/// never the connection URL.
pub(crate) fn describe(error: &RedisError) -> String {
    error.to_string()
}

//! A PostgreSQL cluster of a test's own, started with TLS on a free port with the test's
//! certificates, and stopped (and removed) on drop.
//!
//! Clients connect over TCP with TLS only (`hostssl` with `scram-sha-256`) as role
//! [`ROLE`] with password [`PASSWORD`]; the test's own setup goes over the Unix socket.

use std::path::PathBuf;
use std::process::Command;

use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

use super::private_postgres::{
    bin_dir, cluster_dir, free_port, give_to_postgres, initdb, run_as_postgres,
    run_as_postgres_status,
};
use super::test_certificates::{CertifiedKey, TestCa};

/// The role tests log in as (owner of database [`DATABASE`]).
pub const ROLE: &str = "waybill_tls";
/// Its password.
pub const PASSWORD: &str = "Tls-Only-Secret-7h3q";
/// The database tests use.
pub const DATABASE: &str = "waybill_tls";

/// A running cluster; stopped with `pg_ctl stop -m immediate` and deleted on drop.
pub struct TlsPostgres {
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl TlsPostgres {
    /// initdb, the certificate `server` (signed by `ca`, whose bundle the server also gets),
    /// `ssl = on`, TLS-only host lines, a role with a password, start.
    pub async fn start(server: &CertifiedKey) -> Self {
        let dir = cluster_dir("tls");
        initdb(&dir);
        let data = dir.join("data");
        let port = free_port();
        let cluster = Self { dir, port };
        cluster.write_certificate(server);
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).unwrap();
        settings.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nssl = on\nssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\npassword_encryption = 'scram-sha-256'\n\
             max_connections = 30\nshared_buffers = 16MB\n",
            cluster.dir.display()
        ));
        std::fs::write(&conf, settings).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        run_as_postgres(
            Command::new(bin_dir().join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        let mut admin = PgConnectOptions::new()
            .socket(&cluster.dir)
            .port(port)
            .username("postgres")
            .database("postgres")
            .connect()
            .await
            .expect("connect over the cluster's Unix socket");
        for statement in [
            format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"),
            format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        ] {
            sqlx::query(&statement)
                .execute(&mut admin)
                .await
                .expect(&statement);
        }
        cluster
    }

    /// A URL for `host` (e.g. `localhost` or `127.0.0.1`) with `password` and the query
    /// `params` (e.g. `sslmode=verify-full&sslrootcert=/path`).
    pub fn url(&self, host: &str, password: &str, params: &str) -> String {
        format!(
            "postgres://{ROLE}:{password}@{host}:{}/{DATABASE}?{params}",
            self.port
        )
    }

    /// Writes `ca`'s bundle into the cluster's folder and returns its path.
    pub fn write_ca(&self, name: &str, ca: &TestCa) -> PathBuf {
        let path = self.dir.join(format!("{name}.pem"));
        std::fs::write(&path, &ca.cert_pem).unwrap();
        path
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn write_certificate(&self, server: &CertifiedKey) {
        let data = self.dir.join("data");
        std::fs::write(data.join("server.crt"), &server.cert_pem).unwrap();
        let key = data.join("server.key");
        std::fs::write(&key, &server.key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        give_to_postgres(&data.join("server.crt"));
        give_to_postgres(&key);
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = run_as_postgres_status(
            Command::new(bin_dir().join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

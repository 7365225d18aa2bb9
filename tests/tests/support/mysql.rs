//! A fresh MySQL/MariaDB database per test, on the server the tests use.

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;

/// The server's admin URL: `WAYBILL_MYSQL_URL`, or the local default (root, no password).
pub fn admin_url() -> String {
    std::env::var("WAYBILL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

/// A database created for one test and dropped by [`MySqlTestDb::drop_db`].
pub struct MySqlTestDb {
    /// Pool on the new database.
    pub pool: MySqlPool,
    /// Its URL.
    pub url: String,
    name: String,
}

impl MySqlTestDb {
    /// Creates an empty database with the waybill migrations applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        waybill_outbox::mysql::migrate(&db.pool)
            .await
            .expect("migrations apply");
        db
    }

    /// Creates an empty database.
    pub async fn empty() -> Self {
        let name = format!(
            "wb_test_{}",
            waybill_core::MessageId::new().to_string().replace('-', "")
        );
        admin(&format!("CREATE DATABASE {name}")).await;
        let url = url_of(&name);
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .connect(&url)
            .await
            .expect("connect to the test database");
        Self { pool, url, name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pool and drops the database.
    pub async fn drop_db(self) {
        self.pool.close().await;
        admin(&format!("DROP DATABASE IF EXISTS {}", self.name)).await;
    }
}

/// The URL of database `name` on the test server (same user and options as the admin URL).
pub fn url_of(name: &str) -> String {
    let admin = admin_url();
    let (base, options) = match admin.split_once('?') {
        Some((base, options)) => (base.to_owned(), format!("?{options}")),
        None => (admin.clone(), String::new()),
    };
    match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => {
            format!("{server}/{name}{options}")
        }
        _ => panic!("WAYBILL_MYSQL_URL needs a database part: {admin}"),
    }
}

/// Runs one statement as the admin user.
pub async fn admin(sql: &str) {
    let pool = admin_pool().await;
    sqlx::query(sql)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

async fn admin_pool() -> MySqlPool {
    match MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&admin_url())
        .await
    {
        Ok(pool) => pool,
        Err(e) => panic!(
            "MySQL/MariaDB is not reachable at {} ({e}). Start it with `scripts/brokers start \
             mariadb` or point WAYBILL_MYSQL_URL at a server where this user may create \
             databases and users.",
            admin_url()
        ),
    }
}

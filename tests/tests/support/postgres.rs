//! A fresh PostgreSQL database per test, on the server the tests use.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// The server's admin URL: `WAYBILL_POSTGRES_URL`, or the local default (trust auth).
pub fn admin_url() -> String {
    std::env::var("WAYBILL_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test and dropped by [`TestDb::drop_db`].
pub struct TestDb {
    /// Pool on the new database.
    pub pool: PgPool,
    /// Its URL.
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates an empty database with the waybill migrations applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        waybill_outbox::postgres::migrate(&db.pool)
            .await
            .expect("migrations apply");
        db
    }

    /// Creates an empty database.
    pub async fn empty() -> Self {
        let admin = admin_pool().await;
        let name = format!(
            "wb_test_{}",
            waybill_core::MessageId::new().to_string().replace('-', "")
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("CREATE DATABASE");
        admin.close().await;
        let url = match admin_url().rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("WAYBILL_POSTGRES_URL needs a database part"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&url)
            .await
            .expect("connect to the test database");
        Self { pool, url, name }
    }

    /// Closes the pool and drops the database.
    pub async fn drop_db(self) {
        self.pool.close().await;
        let admin = admin_pool().await;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .expect("DROP DATABASE");
        admin.close().await;
    }
}

async fn admin_pool() -> PgPool {
    match PgPoolOptions::new().max_connections(2).connect(&admin_url()).await {
        Ok(pool) => pool,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {} ({e}). Start it with `scripts/brokers start postgres` \
             or point WAYBILL_POSTGRES_URL at a server where this user may create databases.",
            admin_url()
        ),
    }
}

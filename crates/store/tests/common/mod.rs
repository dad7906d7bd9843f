//! What the store's integration tests share: a fresh PostgreSQL database on the test server
//! (`FLOTILLA_TEST_POSTGRES`), dropped at the end.

use sqlx::PgPool;

/// A fresh database on the test server, dropped by `drop_now`.
pub struct Database {
    server: String,
    name: String,
}

impl Database {
    /// A new database named after `prefix`, or `None` (the test skips) without
    /// `FLOTILLA_TEST_POSTGRES`.
    pub async fn fresh(prefix: &str) -> Option<Database> {
        let Ok(server) = std::env::var("FLOTILLA_TEST_POSTGRES") else {
            eprintln!("skipped: needs FLOTILLA_TEST_POSTGRES");
            return None;
        };
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let admin = PgPool::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(Database { server, name })
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub async fn drop_now(self) {
        let admin = PgPool::connect(&format!("{}/postgres", self.server))
            .await
            .unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

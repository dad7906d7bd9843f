//! An in-process Flotilla server for tests, beneath the end-to-end tests that run the binary:
//! the parts the binary wires (`flotilla::wiring`), on a fresh database per server, with the
//! REST API on a free loopback port and device connections served over in-memory streams.
//!
//! With `FLOTILLA_TEST_POSTGRES` set to a server URL (e.g. `postgres://postgres@127.0.0.1:5432`),
//! each server gets a fresh PostgreSQL database, dropped afterwards; otherwise a SQLite file in
//! a fresh directory.

mod database;

use std::net::SocketAddr;
use std::sync::Arc;

use flotilla::bootstrap::{self, SuppliedAdminToken};
use flotilla::wiring::{self, Parts};
use flotilla_gateway::Hub;
use flotilla_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

pub use database::{TestDatabase, psql};

/// The api-version the helpers send.
pub const API_VERSION: &str = "2022-07-31";

/// A running server, stopped and its database removed when dropped.
pub struct TestServer {
    /// A client of the REST API, as the administrator.
    pub api: Api,
    pub store: Store,
    pub hub: Hub,
    parts: Parts,
    http: JoinHandle<()>,
    // Last: dropped after the tasks that use it are stopped.
    _database: TestDatabase,
}

impl TestServer {
    /// Starts a server on a fresh database, set up as a first start of the binary.
    pub async fn start() -> TestServer {
        let database = TestDatabase::fresh();
        let store = Store::connect(database.url())
            .await
            .expect("the test database opens");
        let admin_token = format!("testkit-admin-{}", flotilla_model::keys::random_hex::<24>());
        let supplied = SuppliedAdminToken::parse(&admin_token).expect("a long enough token");
        let app = bootstrap::run(&store, database.dir(), Some(&supplied))
            .await
            .expect("the first start's setup");
        let parts = wiring::start(
            &store,
            wiring::Settings {
                app,
                instance: flotilla_model::keys::random_hex::<16>(),
                assigned_hub: "localhost".into(),
                engine: Default::default(),
                clock: Arc::new(flotilla_jobs::clock::SystemClock),
                trusted_proxies: Default::default(),
            },
        )
        .await
        .expect("the server's parts start");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rest = flotilla_dashboard::app(parts.state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let http = tokio::spawn(async move {
            axum::serve(listener, rest)
                .await
                .expect("the REST API serves");
        });
        TestServer {
            api: Api {
                base,
                token: admin_token,
                client: reqwest::Client::new(),
            },
            store,
            hub: parts.hub.clone(),
            parts,
            http,
            _database: database,
        }
    }

    /// A device-side byte stream to the gateway: the server end is served as a connection from
    /// the device endpoint is (MQTT 3.1.1, after TLS), so tests write and read raw packets.
    pub fn connect_device(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(flotilla_gateway::connection::serve(
            server,
            self.hub.clone(),
            "in-process test".into(),
        ));
        client
    }

    /// The application's DPS ID scope.
    pub fn id_scope(&self) -> &str {
        &self.parts.state.id_scope
    }

    /// Stops the parts in the binary's order (see its `shutdown`) and closes the store.
    pub async fn stop(self) {
        self.http.abort();
        self.parts.replica.stop();
        self.parts.scheduler.stop().await;
        self.parts.webhooks.stop().await;
        self.parts.engine.stop().await;
        self.store.close().await;
    }
}

/// A client of the REST API: every request carries the token and the api-version.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    /// The token, as the `Authorization` header carries it.
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    /// Sends a request to `/api{path}` and answers the status and the body as JSON (`Null`
    /// when empty).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/api{path}", self.base))
            .query(&[("api-version", API_VERSION)])
            .header("Authorization", &self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.expect("a readable body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        };
        (status, body)
    }
}

//! The proxy logs in to backends with every method PostgreSQL offers, and accepts clients with
//! every method it offers.

use shardgate::config::{ClientAuthMethod, UserSecret};
use shardgate::local_cluster::BackendAuth;

use crate::harness::{TestProxy, cluster, cluster_with_auth, config, sqlstate};

async fn select_one(proxy: &TestProxy) -> i32 {
    proxy
        .connect()
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_with_md5_password_and_trust() {
    for auth in [BackendAuth::Md5, BackendAuth::Password, BackendAuth::Trust] {
        let mut cfg = config(cluster_with_auth(auth));
        if auth == BackendAuth::Trust {
            cfg.databases[0].shard_map.shards[0].primary.password = None;
        }
        let proxy = TestProxy::start(cfg).await;
        assert_eq!(select_one(&proxy).await, 1, "backend auth {auth:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_md5_and_trust() {
    let mut cfg = config(cluster());
    cfg.auth_method = ClientAuthMethod::Md5;
    let proxy = TestProxy::start(cfg.clone()).await;
    assert_eq!(select_one(&proxy).await, 1);
    let wrong = format!(
        "host=127.0.0.1 port={} user=app password=nope dbname=app",
        proxy.port()
    );
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "28P01");

    cfg.auth_method = ClientAuthMethod::Trust;
    cfg.users[0].secret = UserSecret::None;
    let proxy = TestProxy::start(cfg).await;
    let anything = format!("host=127.0.0.1 port={} user=app dbname=app", proxy.port());
    let (client, connection) = tokio_postgres::connect(&anything, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_checked_against_stored_verifiers_and_hashes() {
    // The SCRAM verifier PostgreSQL itself stored for the role: no plain text in the config.
    let admin = crate::harness::connect_direct(&cluster().primaries[0]).await;
    let verifier: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(verifier.starts_with("SCRAM-SHA-256$"));
    let mut cfg = config(cluster());
    cfg.users[0].secret = UserSecret::ScramVerifier(verifier);
    let proxy = TestProxy::start(cfg.clone()).await;
    assert_eq!(select_one(&proxy).await, 1);
    let wrong = format!(
        "host=127.0.0.1 port={} user=app password=nope dbname=app",
        proxy.port()
    );
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "28P01");

    cfg.auth_method = ClientAuthMethod::Md5;
    cfg.users[0].secret = UserSecret::Md5Hash(format!("md5{:x}", md5::compute("appapp")));
    let proxy = TestProxy::start(cfg).await;
    assert_eq!(select_one(&proxy).await, 1);
}

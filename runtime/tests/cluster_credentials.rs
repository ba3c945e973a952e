//! Redis credentials come from the URL and never reach the logs or the
//! errors: every line this binary logs, at every level, is captured and
//! searched for the password. A binary of its own, for its own subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use wharf::{Cluster, Error};
use wharf_test_support::*;

const PASSWORD: &str = "s3cret-Pa55";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[async_std::test]
async fn the_password_never_appears_in_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let mut redis = RedisServer::start_with_password(Some(PASSWORD));
    assert!(redis.url().contains(PASSWORD));

    // The right password: a working node whose logs show the URL redacted.
    let node = start(member_server().cluster(Cluster::new(redis.url()).namespace("creds"))).await;
    let (_ann, _) = member(&node, "/room", &["room"]).await;
    until_count(&node.registry.group("room"), 1).await;
    // A wrong one: refused at bind, and the error does not quote it.
    let wrong = format!("redis://:{PASSWORD}-nope@127.0.0.1:{}", redis.port);
    let refused = member_server()
        .cluster(Cluster::new(&wrong))
        .bind("127.0.0.1:0")
        .await;
    let Err(Error::Cluster(why)) = refused else {
        panic!("expected Error::Cluster, got {refused:?}");
    };
    assert!(!why.contains(PASSWORD), "{why}");
    assert!(why.contains(":***@127.0.0.1"), "{why}");
    // The link's down and up lines.
    redis.restart();
    eventually("the node reconnected", || {
        node.stats()
            .cluster
            .is_some_and(|c| c.up && c.reconnects == 1)
    })
    .await;
    let logs = captured.text();
    assert!(logs.contains("joined the cluster"), "{logs}");
    assert!(logs.contains("cluster link down"), "{logs}");
    assert!(logs.contains("cluster link up again"), "{logs}");
    assert!(logs.contains("redis://:***@127.0.0.1"), "{logs}");
    assert!(!logs.contains(PASSWORD), "the password was logged:\n{logs}");
    assert!(!format!("{:?}", Cluster::new(redis.url())).contains(PASSWORD));
}

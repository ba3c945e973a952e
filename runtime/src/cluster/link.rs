//! The link to Redis: joining the cluster at bind, and the one task per
//! node that keeps the link up.
//!
//! The task runs sessions. A session is one command connection and one
//! pub/sub connection; it starts by refreshing the node's alive key,
//! subscribing to the node's own channel and to every group and route with
//! local members, and rewriting every count (Redis may have restarted
//! empty), then runs three loops until one fails:
//!
//! - the receiver hands every message of the subscribed channels to the
//!   node (`node.rs`);
//! - the publisher drains the node's queue in order, a pipeline of up to
//!   [`MAX_BATCH`] envelopes at a time;
//! - the maintainer writes the counts of the targets that changed (one
//!   write per target per flush, however many changes came in between),
//!   subscribes before a count says the node has members and unsubscribes
//!   after it says it has none, and refreshes the alive key every
//!   [`BEAT`].
//!
//! When a session fails the link is down: one `warn` line, what waits for
//! the publisher is dropped and counted, and the task reconnects with a
//! backoff from [`MIN_BACKOFF`] to [`MAX_BACKOFF`]; the next session's
//! start resubscribes and rewrites everything, and one `warn` line says the
//! link is up again. The task ends when the node shuts down (after
//! removing its counts and alive key) or when the server is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, select, Either};
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::AsyncConnectionConfig;

use super::config::Cluster;
use super::keys::Keys;
use super::node::{scrub, Node, Parts, MAX_BATCH};
use crate::connection::registry::Registry;
use crate::connection::target::Target;
use crate::error::{Error, Result};
use crate::rt;

/// How often a node refreshes its alive key.
pub(crate) const BEAT: Duration = Duration::from_secs(2);
/// The alive key's expiry: a node that stops refreshing it (it died, or
/// lost Redis) stops being counted this long after its last refresh.
pub(crate) const ALIVE_TTL: Duration = Duration::from_secs(6);
/// Time to open a connection, and for any one command to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest pause between reconnection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Tries to find a node number not held by a live node.
const NUMBER_TRIES: usize = 64;

fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
}

/// Joins the cluster: connects to Redis, takes a node number, claims its
/// alive key, connects `registry` to the node and starts the link task.
/// Fails with `Error::Cluster` (never quoting the password) when Redis
/// cannot be reached or refuses.
pub(crate) async fn join(
    cluster: &Cluster,
    registry: &Registry,
    close_timeout: Duration,
) -> Result<Arc<Node>> {
    cluster.validate()?;
    let password = super::keys::password(&cluster.url);
    let shown = super::keys::redact(&cluster.url);
    let fail = |what: &str, err: &dyn std::fmt::Display| {
        Error::Cluster(format!(
            "{what} Redis at {shown}: {}",
            scrub(err, password.as_deref())
        ))
    };
    let client = redis::Client::open(cluster.url.as_str()).map_err(|_| {
        Error::config(
            "cluster",
            format!("{shown} is not a Redis URL (redis://[user:password@]host[:port][/db])"),
        )
    })?;
    let mut commands = match rt::timeout(
        IO_TIMEOUT + Duration::from_millis(500),
        client.get_multiplexed_async_connection_with_config(&connection_config()),
    )
    .await
    {
        Some(Ok(commands)) => commands,
        Some(Err(err)) => return Err(fail("cannot connect to", &err)),
        None => return Err(fail("cannot connect to", &"timed out")),
    };
    let keys = Keys::new(&cluster.namespace);
    let mut claimed = None;
    for _ in 0..NUMBER_TRIES {
        let seq: u64 = redis::cmd("INCR")
            .arg(keys.node_seq())
            .query_async(&mut commands)
            .await
            .map_err(|err| fail("refused by", &err))?;
        let number = (seq.saturating_sub(1) % u64::from(u16::MAX) + 1) as u16;
        let name = cluster
            .node_name
            .clone()
            .unwrap_or_else(|| format!("node-{number}"));
        let set: redis::Value = redis::cmd("SET")
            .arg(keys.alive_key(number))
            .arg(&name)
            .arg("NX")
            .arg("PX")
            .arg(ALIVE_TTL.as_millis() as u64)
            .query_async(&mut commands)
            .await
            .map_err(|err| fail("refused by", &err))?;
        if set != redis::Value::Nil {
            claimed = Some((number, name));
            break;
        }
    }
    let Some((number, name)) = claimed else {
        return Err(Error::Cluster(format!(
            "no free node number in namespace {:?} after {NUMBER_TRIES} tries",
            cluster.namespace
        )));
    };
    let node = Arc::new(Node::new(Parts {
        number,
        name,
        keys,
        url: cluster.url.clone(),
        client,
        registry: registry.downgrade(),
        max_payload: cluster.max_payload,
        publish_queue: cluster.publish_queue,
        close_timeout,
    }));
    registry.set_remote(Arc::clone(&node) as Arc<dyn crate::connection::target::Remote>);
    // The first session opens before `bind` returns: from then on every
    // selector reaches the cluster.
    let session = match open(&node, commands).await {
        Ok(session) => session,
        Err(why) => {
            node.finish();
            return Err(Error::Cluster(format!(
                "cannot subscribe on Redis at {shown}: {why}"
            )));
        }
    };
    node.set_up(true, Some(session.commands.clone()));
    tracing::info!(
        node = node.number,
        name = %node.name,
        namespace = %cluster.namespace,
        redis = %node.shown_url,
        "joined the cluster"
    );
    rt::spawn(run(Arc::clone(&node), session));
    Ok(node)
}

/// Why a session ended.
enum End {
    /// The node is shutting down, or the server is gone.
    Stopped,
    /// Redis failed: the text says how.
    Lost(String),
}

/// The link task: sessions, with reconnections between them.
async fn run(node: Arc<Node>, first: Session) {
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    // `Some` while the link is down: since when.
    let mut down_since: Option<Instant> = None;
    loop {
        if node.stopping() || node.registry.upgrade().is_none() {
            break;
        }
        let opened = match first.take() {
            Some(session) => Ok(session),
            None => match rt::timeout(
                IO_TIMEOUT + Duration::from_millis(500),
                node.client
                    .get_multiplexed_async_connection_with_config(&connection_config()),
            )
            .await
            {
                Some(Ok(commands)) => open(&node, commands).await,
                Some(Err(err)) => Err(node.scrub(err)),
                None => Err("connecting timed out".to_owned()),
            },
        };
        let why = match opened {
            Ok(session) => {
                backoff = MIN_BACKOFF;
                // Logged before the link reads as up in `Stats`, so whoever
                // sees it up there also finds the line in the logs.
                match down_since.take() {
                    Some(since) => {
                        tracing::warn!(
                            node = node.number,
                            redis = %node.shown_url,
                            down_ms = since.elapsed().as_millis() as u64,
                            "cluster link up again; subscriptions and counts restored"
                        );
                        node.counters
                            .reconnects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    None => tracing::debug!(node = node.number, "cluster link up"),
                }
                node.set_up(true, Some(session.commands.clone()));
                match session.run(&node).await {
                    End::Stopped => break,
                    End::Lost(why) => why,
                }
            }
            Err(why) => why,
        };
        node.set_up(false, None);
        if down_since.is_none() {
            down_since = Some(Instant::now());
            tracing::warn!(
                node = node.number,
                redis = %node.shown_url,
                error = %why,
                "cluster link down; serving local connections only, reconnecting"
            );
        } else {
            tracing::debug!(node = node.number, error = %why, "cluster reconnection failed");
        }
        node.drop_queued();
        // The pause, cut short by a shutdown.
        let listener = node.wake.listen();
        if node.stopping() {
            break;
        }
        let _ = rt::timeout(backoff, listener).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    node.set_up(false, None);
    node.drop_queued();
    node.finish();
    tracing::debug!(node = node.number, "cluster link ended");
}

/// One session's connections and the channels it has subscribed.
struct Session {
    commands: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
    subscribed: HashSet<String>,
}

/// Opens a session on `commands`: the pub/sub connection, the alive key,
/// the node's channel, then every target's subscription and count.
async fn open(
    node: &Arc<Node>,
    commands: MultiplexedConnection,
) -> std::result::Result<Session, String> {
    let pubsub = match rt::timeout(
        IO_TIMEOUT + Duration::from_millis(500),
        node.client.get_async_pubsub(),
    )
    .await
    {
        Some(Ok(pubsub)) => pubsub,
        Some(Err(err)) => return Err(node.scrub(err)),
        None => return Err("connecting timed out".to_owned()),
    };
    let (mut sink, stream) = pubsub.split();
    let own = node.keys.node_channel(node.number);
    timed(sink.subscribe(&own))
        .await
        .map_err(|err| node.scrub(err))?;
    let mut session = Session {
        commands,
        sink,
        stream,
        subscribed: HashSet::from([own]),
    };
    session.beat(node).await?;
    session.resync(node).await?;
    Ok(session)
}

/// A Redis call under [`IO_TIMEOUT`] (pub/sub calls have no timeout of
/// their own).
async fn timed<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> std::result::Result<T, String> {
    match rt::timeout(IO_TIMEOUT, call).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(err)) => Err(err.to_string()),
        None => Err("Redis did not answer in time".to_owned()),
    }
}

impl Session {
    /// Runs the receiver, the publisher and the maintainer until one ends.
    async fn run(self, node: &Arc<Node>) -> End {
        let Session {
            commands,
            sink,
            stream,
            subscribed,
        } = self;
        let mut maintainer = Maintainer {
            commands: commands.clone(),
            sink,
            subscribed,
        };
        let receive = Box::pin(receive(node, stream));
        let publish = Box::pin(publish(node, commands));
        let maintain = Box::pin(async move { maintainer.run(node).await });
        match select(select(receive, publish), maintain).await {
            Either::Left((Either::Left((end, _)), _)) => end,
            Either::Left((Either::Right((end, _)), _)) => end,
            Either::Right((end, _)) => end,
        }
    }

    async fn beat(&mut self, node: &Node) -> std::result::Result<bool, String> {
        beat(node, &mut self.commands).await
    }

    /// Subscribes and writes the count of every target with local members,
    /// and deletes the counts this node wrote for the others.
    async fn resync(&mut self, node: &Node) -> std::result::Result<(), String> {
        let mut maintainer = Maintainer {
            commands: self.commands.clone(),
            sink: self.sink.clone(),
            subscribed: std::mem::take(&mut self.subscribed),
        };
        let result = maintainer.resync(node).await;
        self.subscribed = maintainer.subscribed;
        result
    }
}

/// Refreshes the alive key; whether it still existed (false: it had
/// expired, or Redis lost it, and the counts must be written again).
async fn beat(
    node: &Node,
    commands: &mut MultiplexedConnection,
) -> std::result::Result<bool, String> {
    let existed: i64 = timed(
        redis::Script::new(BEAT_SCRIPT)
            .key(node.keys.alive_key(node.number))
            .arg(&node.name)
            .arg(ALIVE_TTL.as_millis() as u64)
            .invoke_async(commands),
    )
    .await
    .map_err(|err| node.scrub(err))?;
    Ok(existed == 1)
}

/// Refreshes `KEYS[1]` with value `ARGV[1]` and expiry `ARGV[2]` ms;
/// returns whether it existed before.
const BEAT_SCRIPT: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return existed
";

async fn receive(node: &Arc<Node>, mut stream: PubSubStream) -> End {
    while let Some(msg) = stream.next().await {
        node.receive(msg.get_channel_name(), msg.get_payload_bytes());
    }
    End::Lost("the subscription connection closed".to_owned())
}

async fn publish(node: &Node, mut commands: MultiplexedConnection) -> End {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let Ok(first) = node.outgoing_rx.recv().await else {
            return End::Stopped;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match node.outgoing_rx.try_recv() {
                Ok(out) => batch.push(out),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for out in &batch {
            pipe.cmd("PUBLISH").arg(&out.channel).arg(&out.payload[..]);
        }
        match pipe.query_async::<Vec<i64>>(&mut commands).await {
            Ok(receivers) => {
                node.counters
                    .published
                    .fetch_add(batch.len() as u64, Relaxed);
                for (out, n) in batch.into_iter().zip(
                    receivers
                        .into_iter()
                        .map(Some)
                        .chain(std::iter::repeat(None)),
                ) {
                    if let Some(done) = out.done {
                        let _ = done.try_send(n);
                    }
                }
            }
            Err(err) => {
                node.dropped(batch.len());
                for out in batch {
                    if let Some(done) = out.done {
                        let _ = done.try_send(None);
                    }
                }
                return End::Lost(node.scrub(err));
            }
        }
    }
}

/// Writes counts and follows subscriptions (see the module docs).
struct Maintainer {
    commands: MultiplexedConnection,
    sink: PubSubSink,
    subscribed: HashSet<String>,
}

impl Maintainer {
    async fn run(&mut self, node: &Node) -> End {
        let mut next_beat = Instant::now() + BEAT;
        let mut left = false;
        loop {
            if node.stopping() || node.registry.upgrade().is_none() {
                self.leave(node).await;
                return End::Stopped;
            }
            if node.leaving() && !left {
                self.leave(node).await;
                left = true;
            }
            let dirty = node.take_dirty();
            if !dirty.is_empty() {
                if let Err(why) = self.flush(node, dirty).await {
                    return End::Lost(why);
                }
            }
            if Instant::now() >= next_beat && !node.leaving() {
                match beat(node, &mut self.commands).await {
                    Ok(true) => {}
                    // The alive key had gone (a stall longer than its
                    // expiry): other nodes may have deleted our counts.
                    Ok(false) => {
                        if let Err(why) = self.resync(node).await {
                            return End::Lost(why);
                        }
                    }
                    Err(why) => return End::Lost(why),
                }
                next_beat = Instant::now() + BEAT;
            }
            let listener = node.wake.listen();
            if node.has_dirty() || node.stopping() || node.leaving() != left {
                continue;
            }
            let nap = next_beat.saturating_duration_since(Instant::now());
            let _ = rt::timeout(nap, listener).await;
        }
    }

    async fn resync(&mut self, node: &Node) -> std::result::Result<(), String> {
        let Some(registry) = node.registry.upgrade() else {
            return Ok(());
        };
        let mut targets: HashSet<Target> = registry.local_targets().into_iter().collect();
        drop(registry);
        targets.extend(super::node::lock_written(node).iter().cloned());
        // Whatever was dirty is covered.
        drop(node.take_dirty());
        self.flush(node, targets.into_iter().collect()).await
    }

    /// Brings Redis in line with the local counts of `targets`.
    async fn flush(
        &mut self,
        node: &Node,
        targets: Vec<Target>,
    ) -> std::result::Result<(), String> {
        let Some(registry) = node.registry.upgrade() else {
            return Ok(());
        };
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        let mut written = Vec::new();
        let mut deleted = Vec::new();
        let mut pipe = redis::pipe();
        // Leaving: subscriptions still follow the members, counts are gone.
        let leaving = node.leaving();
        for target in targets {
            let (Some(channel), Some(key)) =
                (node.keys.channel(&target), node.keys.count_key(&target))
            else {
                continue;
            };
            let count = registry.local_count(&target, None);
            if count > 0 {
                if !self.subscribed.contains(&channel) {
                    subscribe.push(channel);
                }
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(node.number)
                    .arg(count)
                    .ignore();
                written.push(target);
            } else {
                pipe.cmd("HDEL").arg(&key).arg(node.number).ignore();
                if self.subscribed.contains(&channel) {
                    unsubscribe.push(channel);
                }
                deleted.push(target);
            }
        }
        drop(registry);
        // Subscribed before the count says this node has members ...
        let sink = &self.sink;
        let results = join_all(subscribe.iter().map(|channel| {
            let mut sink = sink.clone();
            async move { timed(sink.subscribe(channel)).await }
        }))
        .await;
        for (channel, result) in subscribe.into_iter().zip(results) {
            result.map_err(|err| node.scrub(err))?;
            self.subscribed.insert(channel);
        }
        if !leaving && (!written.is_empty() || !deleted.is_empty()) {
            timed(pipe.query_async::<()>(&mut self.commands))
                .await
                .map_err(|err| node.scrub(err))?;
            let mut mine = super::node::lock_written(node);
            for target in deleted {
                mine.remove(&target);
            }
            mine.extend(written);
        }
        // ... and unsubscribed after it says it has none.
        let results = join_all(unsubscribe.iter().map(|channel| {
            let mut sink = sink.clone();
            async move { timed(sink.unsubscribe(channel)).await }
        }))
        .await;
        for (channel, result) in unsubscribe.into_iter().zip(results) {
            result.map_err(|err| node.scrub(err))?;
            self.subscribed.remove(&channel);
        }
        Ok(())
    }

    /// A graceful exit: this node's counts and alive key go at once.
    async fn leave(&mut self, node: &Node) {
        let mut pipe = redis::pipe();
        let targets: Vec<Target> = super::node::lock_written(node).drain().collect();
        for target in &targets {
            if let Some(key) = node.keys.count_key(target) {
                pipe.cmd("HDEL").arg(key).arg(node.number).ignore();
            }
        }
        pipe.cmd("DEL")
            .arg(node.keys.alive_key(node.number))
            .ignore();
        match timed(pipe.query_async::<()>(&mut self.commands)).await {
            Ok(()) => tracing::debug!(
                node = node.number,
                "removed this node's counts and alive key"
            ),
            Err(err) => tracing::warn!(
                node = node.number,
                error = %node.scrub(err),
                "left the cluster without removing its counts; they expire with its alive key"
            ),
        }
    }
}

//! This server as a node of the cluster: the [`Remote`] the registry
//! calls, the publisher's queue, the requests waiting for answers, the
//! targets whose counts must be written, and the link's counters.
//!
//! Nothing here waits on Redis but the futures of `close` and `count`,
//! each bounded by its deadline; the link task (`link.rs`) owns the
//! connections and drains what is queued here. Every queue and table is
//! bounded: the publisher's queue by `Cluster::publish_queue`, the answers
//! to one request by the nodes expected to answer, the pending requests by
//! the requests in progress, the dirty set by the targets with members.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_listener::Event;
use redis::aio::MultiplexedConnection;

use super::envelope::{Body, Envelope};
use super::keys::{node_of, Keys};
use crate::connection::close::{CloseCode, CloseSummary};
use crate::connection::handle::ConnId;
use crate::connection::message::Message;
use crate::connection::registry::WeakRegistry;
use crate::connection::target::{Remote, Target};
use crate::connection::BoxFuture;
use crate::error::{Error, Result};
use crate::rt;

/// Close requests from other nodes being carried out at once; more are
/// dropped (and counted) until some finish.
const MAX_RESPONDERS: usize = 1024;
/// Largest number of envelopes one pipeline of the publisher carries.
pub(crate) const MAX_BATCH: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One envelope waiting for the publisher, with where to say how many
/// subscribers it reached (`None`: it was not published).
pub(crate) struct Outgoing {
    pub(crate) channel: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) done: Option<rt::Sender<Option<i64>>>,
}

/// The link's counters (see `Stats::cluster`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// A snapshot of the link's state and counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkStats {
    pub(crate) up: bool,
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    pub(crate) invalid: u64,
    pub(crate) reconnects: u64,
}

/// This server as a cluster node.
pub(crate) struct Node {
    pub(crate) number: u16,
    pub(crate) name: String,
    pub(crate) keys: Keys,
    /// The Redis URL as it may be logged.
    pub(crate) shown_url: String,
    /// The URL's password, scrubbed from error texts.
    password: Option<String>,
    pub(crate) client: redis::Client,
    pub(crate) registry: WeakRegistry,
    max_payload: usize,
    /// How long a requester waits for the other nodes' answers.
    reply_deadline: Duration,
    up: AtomicBool,
    pub(crate) counters: Counters,
    outgoing: rt::Sender<Outgoing>,
    pub(crate) outgoing_rx: rt::Receiver<Outgoing>,
    dirty: Mutex<HashSet<Target>>,
    /// Targets whose count field this node has written (non-zero) and not
    /// yet deleted.
    written: Mutex<HashSet<Target>>,
    /// Wakes the link's maintainer: a target is dirty, or the node stops.
    pub(crate) wake: Event,
    pending: Mutex<HashMap<u64, rt::Sender<(u16, Body)>>>,
    next_request: AtomicU64,
    /// The current session's command connection, for `count` and `close`.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// A graceful shutdown began: counts are removed and no longer written.
    leaving: AtomicBool,
    stopping: AtomicBool,
    finished: AtomicBool,
    finished_event: Event,
    responders: AtomicUsize,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("number", &self.number)
            .field("name", &self.name)
            .field("redis", &self.shown_url)
            .finish_non_exhaustive()
    }
}

/// Everything a node is made of, gathered at bind.
pub(crate) struct Parts {
    pub(crate) number: u16,
    pub(crate) name: String,
    pub(crate) keys: Keys,
    pub(crate) url: String,
    pub(crate) client: redis::Client,
    pub(crate) registry: WeakRegistry,
    pub(crate) max_payload: usize,
    pub(crate) publish_queue: usize,
    pub(crate) close_timeout: Duration,
}

impl Node {
    pub(crate) fn new(parts: Parts) -> Self {
        let (outgoing, outgoing_rx) = rt::bounded(parts.publish_queue);
        Node {
            number: parts.number,
            name: parts.name,
            keys: parts.keys,
            shown_url: super::keys::redact(&parts.url),
            password: super::keys::password(&parts.url),
            client: parts.client,
            registry: parts.registry,
            max_payload: parts.max_payload,
            reply_deadline: parts.close_timeout + Duration::from_secs(1),
            up: AtomicBool::new(false),
            counters: Counters::default(),
            outgoing,
            outgoing_rx,
            dirty: Mutex::default(),
            written: Mutex::default(),
            wake: Event::new(),
            pending: Mutex::default(),
            next_request: AtomicU64::new(1),
            commands: Mutex::new(None),
            leaving: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            finished_event: Event::new(),
            responders: AtomicUsize::new(0),
        }
    }

    /// `text` (an error's) with the URL's password replaced by `***`.
    pub(crate) fn scrub(&self, text: impl std::fmt::Display) -> String {
        scrub(text, self.password.as_deref())
    }

    pub(crate) fn is_up(&self) -> bool {
        // Acquire, paired with `set_up`'s Release: whoever reads the link
        // as up also sees what was counted and logged before it came up.
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self, up: bool, commands: Option<MultiplexedConnection>) {
        *lock(&self.commands) = commands;
        self.up.store(up, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            up: self.is_up(),
            published: c.published.load(Relaxed),
            received: c.received.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            invalid: c.invalid.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
        }
    }

    pub(crate) fn dropped(&self, n: usize) {
        self.counters.dropped.fetch_add(n as u64, Relaxed);
    }

    /// The dirty targets, emptied.
    pub(crate) fn take_dirty(&self) -> Vec<Target> {
        lock(&self.dirty).drain().collect()
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !lock(&self.dirty).is_empty()
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// Starts leaving (a graceful shutdown's drain): this node's counts and
    /// alive key are removed at once and no longer written, while sends
    /// and closes still cross Redis until [`shutdown`](Self::shutdown).
    pub(crate) fn leave(&self) {
        self.leaving.store(true, Relaxed);
        self.wake.notify(usize::MAX);
    }

    pub(crate) fn leaving(&self) -> bool {
        self.leaving.load(Relaxed)
    }

    /// Leaves the cluster: the link removes this node's counts and alive
    /// key and ends. Waits for that, at most `limit`.
    pub(crate) async fn shutdown(&self, limit: Duration) {
        self.stopping.store(true, Relaxed);
        self.up.store(false, Relaxed);
        self.wake.notify(usize::MAX);
        self.outgoing.close();
        let finished = async {
            loop {
                if self.finished.load(Relaxed) {
                    return;
                }
                let listener = self.finished_event.listen();
                if self.finished.load(Relaxed) {
                    return;
                }
                listener.await;
            }
        };
        let _ = rt::timeout(limit, finished).await;
    }

    /// The link task has ended.
    pub(crate) fn finish(&self) {
        self.up.store(false, Relaxed);
        self.finished.store(true, Relaxed);
        self.finished_event.notify(usize::MAX);
    }

    /// Drops what waits for the publisher (the link is down), counting it.
    pub(crate) fn drop_queued(&self) {
        let mut n = 0;
        while let Ok(out) = self.outgoing_rx.try_recv() {
            if let Some(done) = out.done {
                let _ = done.try_send(None);
            }
            n += 1;
        }
        self.dropped(n);
    }

    /// Hands an envelope to the publisher; false (and counted) when its
    /// queue is full or closed.
    fn enqueue(
        &self,
        channel: String,
        payload: Vec<u8>,
        done: Option<rt::Sender<Option<i64>>>,
    ) -> bool {
        let out = Outgoing {
            channel,
            payload,
            done,
        };
        if self.outgoing.try_send(out).is_err() {
            self.dropped(1);
            return false;
        }
        true
    }

    fn commands(&self) -> Option<MultiplexedConnection> {
        lock(&self.commands).clone()
    }

    /// Per live node other than this one, its member count of `target`,
    /// from Redis (dead nodes' entries are removed on the way).
    async fn remote_counts(&self, target: &Target) -> Result<Vec<(u16, u64)>> {
        let down = || Error::Cluster("the link to Redis is down".into());
        let mut commands = self.commands().ok_or_else(down)?;
        let key = self.keys.count_key(target).ok_or_else(down)?;
        let flat: Vec<i64> = redis::Script::new(COUNT_SCRIPT)
            .key(key)
            .arg(self.keys.alive_prefix())
            .invoke_async(&mut commands)
            .await
            .map_err(|err| Error::Cluster(self.scrub(err)))?;
        Ok(flat
            .chunks_exact(2)
            .filter_map(|pair| {
                let node = u16::try_from(pair[0]).ok().filter(|&n| n != 0)?;
                let count = u64::try_from(pair[1]).ok()?;
                (node != self.number).then_some((node, count))
            })
            .collect())
    }

    /// Registers a request's answers' channel; its id.
    fn register(&self, capacity: usize) -> (u64, rt::Receiver<(u16, Body)>) {
        let (tx, rx) = rt::bounded(capacity.max(1));
        let id = self.next_request.fetch_add(1, Relaxed);
        lock(&self.pending).insert(id, tx);
        (id, rx)
    }

    fn unregister(&self, id: u64) {
        let removed = lock(&self.pending).remove(&id);
        drop(removed);
    }

    /// Publishes a request and waits for the publisher's word: how many
    /// subscribers it reached, `None` when it was not published.
    async fn request(&self, channel: String, envelope: Envelope, until: Instant) -> Option<i64> {
        let (done, published) = rt::bounded(1);
        if !self.enqueue(channel, envelope.encode(), Some(done)) {
            return None;
        }
        let left = until.saturating_duration_since(Instant::now());
        rt::timeout(left, published.recv()).await?.ok().flatten()
    }

    async fn close_remote(
        &self,
        target: &Target,
        except: Option<ConnId>,
        code: CloseCode,
        reason: &str,
    ) -> CloseSummary {
        let mut summary = CloseSummary::default();
        let Some(channel) = self.keys.channel(target) else {
            return summary;
        };
        if !self.is_up() {
            self.dropped(1);
            return summary;
        }
        let until = Instant::now() + self.reply_deadline;
        let mut expected: HashSet<u16> = match target {
            Target::Conn(id) => HashSet::from([node_of(*id)]),
            _ => match self.remote_counts(target).await {
                Ok(counts) => counts
                    .into_iter()
                    .filter(|&(_, n)| n > 0)
                    .map(|(node, _)| node)
                    .collect(),
                Err(err) => {
                    tracing::debug!(error = %err, "cluster close: no counts; closing local members only");
                    self.dropped(1);
                    return summary;
                }
            },
        };
        expected.remove(&self.number);
        let (request, answers) = self.register(expected.len() + 16);
        let envelope = Envelope {
            origin: self.number,
            request,
            body: Body::Close {
                target: target.clone(),
                except,
                code,
                reason: reason.to_owned(),
            },
        };
        match self.request(channel, envelope, until).await {
            // Nobody listens on a connection's node channel: that node is
            // gone, and its connections with it.
            Some(0) if matches!(target, Target::Conn(_)) => expected.clear(),
            Some(0) | None => {}
            Some(_) => {
                while !expected.is_empty() {
                    let left = until.saturating_duration_since(Instant::now());
                    match rt::timeout(left, answers.recv()).await {
                        Some(Ok((
                            from,
                            Body::Reply {
                                summary: theirs, ..
                            },
                        ))) => {
                            summary.add(&theirs);
                            expected.remove(&from);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
        self.unregister(request);
        summary.unanswered = expected.len();
        if summary.unanswered > 0 {
            tracing::debug!(
                unanswered = summary.unanswered,
                "cluster close: nodes did not answer in time"
            );
        }
        summary
    }

    async fn count_remote(&self, target: &Target) -> Result<usize> {
        if !self.is_up() {
            return Err(Error::Cluster("the link to Redis is down".into()));
        }
        let Target::Conn(id) = target else {
            if !Keys::mirrored(target) {
                return Ok(0);
            }
            let counts = self.remote_counts(target).await?;
            return Ok(counts.iter().map(|&(_, n)| n as usize).sum());
        };
        let owner = node_of(*id);
        let until = Instant::now() + self.reply_deadline;
        let (request, answers) = self.register(4);
        let envelope = Envelope {
            origin: self.number,
            request,
            body: Body::Count {
                target: target.clone(),
            },
        };
        let channel = self.keys.node_channel(owner);
        let result = match self.request(channel, envelope, until).await {
            None => Err(Error::Cluster("the count request was not published".into())),
            Some(0) => Ok(0),
            Some(_) => loop {
                let left = until.saturating_duration_since(Instant::now());
                match rt::timeout(left, answers.recv()).await {
                    Some(Ok((from, Body::Reply { count, .. }))) if from == owner => {
                        break Ok(usize::try_from(count).unwrap_or(usize::MAX))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        break Err(Error::Cluster(format!(
                            "node {owner} did not answer in time"
                        )))
                    }
                }
            },
        };
        self.unregister(request);
        result
    }

    /// Handles one message from a subscribed channel. Never panics on any
    /// input: what does not decode, or does not belong on the channel it
    /// came on, is counted and ignored.
    pub(crate) fn receive(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        self.counters.received.fetch_add(1, Relaxed);
        let envelope = match Envelope::decode(payload, self.max_payload) {
            Ok(envelope) => envelope,
            Err(why) => {
                self.counters.invalid.fetch_add(1, Relaxed);
                tracing::debug!(
                    channel,
                    len = payload.len(),
                    why = why.as_str(),
                    "ignored an invalid cluster envelope"
                );
                return;
            }
        };
        // Our own: its members were served when it was sent.
        if envelope.origin == self.number {
            return;
        }
        let belongs = match &envelope.body {
            Body::Send { target, .. } | Body::Close { target, .. } | Body::Count { target } => {
                let here = match target {
                    Target::Conn(id) => node_of(*id) == self.number,
                    _ => true,
                };
                here && self.keys.channel(target).as_deref() == Some(channel)
            }
            Body::Reply { .. } => self.keys.node_channel(self.number) == channel,
        };
        if !belongs {
            self.counters.invalid.fetch_add(1, Relaxed);
            tracing::debug!(channel, "ignored a cluster envelope on the wrong channel");
            return;
        }
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let Envelope {
            origin,
            request,
            body,
        } = envelope;
        match body {
            Body::Send {
                target,
                except,
                msg,
            } => {
                registry.send_local(&target, except, &msg);
            }
            Body::Count { target } => {
                let count = registry.local_count(&target, None) as u64;
                self.reply(origin, request, CloseSummary::default(), count);
            }
            Body::Close {
                target,
                except,
                code,
                reason,
            } => {
                if self.responders.fetch_add(1, Relaxed) >= MAX_RESPONDERS {
                    self.responders.fetch_sub(1, Relaxed);
                    self.dropped(1);
                    return;
                }
                let node = Arc::clone(self);
                rt::spawn(async move {
                    let summary = registry.close_local(&target, except, code, &reason).await;
                    drop(registry);
                    node.reply(origin, request, summary, 0);
                    node.responders.fetch_sub(1, Relaxed);
                });
            }
            Body::Reply { .. } => {
                let waiting = lock(&self.pending).get(&request).cloned();
                // An answer after its deadline finds nobody waiting.
                if let Some(waiting) = waiting {
                    let _ = waiting.try_send((origin, body));
                }
            }
        }
    }

    fn reply(&self, to: u16, request: u64, summary: CloseSummary, count: u64) {
        let envelope = Envelope {
            origin: self.number,
            request,
            body: Body::Reply { summary, count },
        };
        if self.is_up() {
            self.enqueue(self.keys.node_channel(to), envelope.encode(), None);
        } else {
            self.dropped(1);
        }
    }
}

/// The targets whose count field this node has written and not deleted.
pub(crate) fn lock_written(node: &Node) -> MutexGuard<'_, HashSet<Target>> {
    lock(&node.written)
}

/// `text` with `password` replaced by `***`.
pub(crate) fn scrub(text: impl std::fmt::Display, password: Option<&str>) -> String {
    let text = text.to_string();
    match password {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text,
    }
}

/// Sums nothing itself: returns, for every field of the count hash
/// (`KEYS[1]`) whose node is alive (`ARGV[1]` .. node exists), the node
/// and its count, flat; deletes the fields of dead nodes (or garbage).
const COUNT_SCRIPT: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #fields, 2 do
  local node = tonumber(fields[i])
  local count = tonumber(fields[i + 1])
  if node and count and redis.call('EXISTS', ARGV[1] .. fields[i]) == 1 then
    out[#out + 1] = node
    out[#out + 1] = count
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return out
";

impl Remote for Node {
    fn owns(&self, id: ConnId) -> bool {
        node_of(id) == self.number
    }

    fn changed(&self, target: &Target) {
        if Keys::mirrored(target) {
            lock(&self.dirty).insert(target.clone());
            self.wake.notify(1);
        }
    }

    fn send(&self, target: &Target, except: Option<ConnId>, msg: &Message) {
        let Some(channel) = self.keys.channel(target) else {
            return;
        };
        if msg.len() > self.max_payload {
            tracing::debug!(
                len = msg.len(),
                max = self.max_payload,
                "message too large for the cluster; sent to local members only"
            );
            self.dropped(1);
            return;
        }
        if !self.is_up() {
            self.dropped(1);
            return;
        }
        let envelope = Envelope {
            origin: self.number,
            request: 0,
            body: Body::Send {
                target: target.clone(),
                except,
                msg: msg.clone(),
            },
        };
        self.enqueue(channel, envelope.encode(), None);
    }

    fn close<'a>(
        &'a self,
        target: &'a Target,
        except: Option<ConnId>,
        code: CloseCode,
        reason: &'a str,
    ) -> BoxFuture<'a, CloseSummary> {
        Box::pin(self.close_remote(target, except, code, reason))
    }

    fn count<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<usize>> {
        Box::pin(self.count_remote(target))
    }
}

//! The server's table of live connections.
//!
//! A connection is in the registry from the moment its upgrade completes
//! until its socket is closed; the driver removes it before the close
//! handler runs, so the registry never holds a finished connection. The
//! registry holds handles only: it never keeps a socket or a task alive.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures_util::future::join_all;

use super::close::{CloseCode, CloseOutcome, CloseSummary};
use super::handle::{ConnId, Handle};
use super::message::Message;
use crate::error::Result;

/// Live connections of one server: count, look up, broadcast, close.
///
/// Cloning is cheap; every clone sees the same table.
#[derive(Clone, Default)]
pub struct Registry {
    map: Arc<Mutex<HashMap<ConnId, Handle>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("count", &self.count())
            .finish()
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Handle>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, handle: Handle) {
        self.lock().insert(handle.id(), handle);
    }

    pub(crate) fn remove(&self, id: ConnId) {
        let removed = self.lock().remove(&id);
        drop(removed);
    }

    /// Number of live connections.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     conn.send(format!("{} online", conn.registry().count())).await
    /// }
    /// ```
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The connection with this id, if it is still live.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn poke(registry: &wharf::Registry, id: wharf::ConnId) -> wharf::Result<()> {
    ///     match registry.get(id) {
    ///         Some(handle) => handle.send("poke").await,
    ///         None => Ok(()), // already gone
    ///     }
    /// }
    /// ```
    pub fn get(&self, id: ConnId) -> Option<Handle> {
        self.lock().get(&id).cloned()
    }

    /// A snapshot of every live connection, in no particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// fn tick(registry: &wharf::Registry) {
    ///     for handle in registry.handles() {
    ///         let _ = handle.try_send("tick");
    ///     }
    /// }
    /// ```
    pub fn handles(&self) -> Vec<Handle> {
        self.lock().values().cloned().collect()
    }

    /// Queues `msg` on every open connection of route `path` without
    /// waiting, and returns how many took it.
    ///
    /// A connection whose send queue is full does not get the message (and
    /// is not counted): one slow reader never stalls a broadcast. Nor does
    /// one whose peer broke the protocol: while its handlers finish the
    /// messages received before (their replies are still sent), it is on
    /// its way out. The message is shared, not copied, between connections.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_message(conn: &wharf::Conn, msg: wharf::Message) -> wharf::Result<()> {
    ///     let delivered = conn.registry().broadcast(conn.path(), msg);
    ///     tracing::debug!(delivered, "broadcast");
    ///     Ok(())
    /// }
    /// ```
    pub fn broadcast(&self, path: &str, msg: impl Into<Message>) -> usize {
        let msg = msg.into();
        let targets: Vec<Handle> = self
            .lock()
            .values()
            .filter(|h| h.path() == path)
            .cloned()
            .collect();
        targets
            .iter()
            .filter(|h| h.shared.try_broadcast(msg.clone()))
            .count()
    }

    /// Closes connection `id` (see [`Handle::close`]); `None` when it is
    /// not live.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn revoke(registry: &wharf::Registry, id: wharf::ConnId) {
    ///     match registry.close(id, wharf::CloseCode::POLICY_VIOLATION, "Token revoked").await {
    ///         Some(Ok(outcome)) => tracing::info!(%id, %outcome, "revoked"),
    ///         Some(Err(err)) => tracing::error!(%id, %err, "bad close code"),
    ///         None => tracing::debug!(%id, "not connected"),
    ///     }
    /// }
    /// ```
    pub async fn close(
        &self,
        id: ConnId,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Option<Result<CloseOutcome>> {
        let handle = self.get(id)?;
        Some(handle.close(code, reason).await)
    }

    /// Closes every live connection at once and waits for all handshakes
    /// (each bounded by the close timeout). Returns how they ended.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn maintenance(registry: wharf::Registry) -> wharf::Result<()> {
    ///     let summary = registry.close_all(wharf::CloseCode::SERVICE_RESTART, "Back soon").await?;
    ///     tracing::info!(clean = summary.clean, timed_out = summary.timed_out, "all closed");
    ///     Ok(())
    /// }
    /// ```
    pub async fn close_all(
        &self,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Result<CloseSummary> {
        let started = Instant::now();
        let code = code.into();
        // Validate once, so an invalid code is an error rather than N errors.
        super::close::validate(code, reason)?;
        let handles = self.handles();
        let outcomes = join_all(handles.iter().map(|h| h.close(code, reason))).await;
        let mut summary = CloseSummary::default();
        for outcome in outcomes.into_iter().flatten() {
            summary.count(outcome);
        }
        summary.duration = started.elapsed();
        Ok(summary)
    }
}

//! What a selector addresses, and what the registry asks of a cluster to
//! reach the other nodes. Plain definitions shared by the registry (which
//! keeps the local members of each target) and the selector (which runs
//! operations on them); the `cluster/` folder implements [`Remote`].

use std::sync::Arc;

use super::close::{CloseCode, CloseSummary};
use super::handle::ConnId;
use super::message::Message;
use super::BoxFuture;
use crate::error::Result;

/// What a selector addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// Every connection.
    All,
    /// The connections accepted on one request path.
    Route(Arc<str>),
    /// The members of one group (a checked name).
    Group(Arc<str>),
    /// One connection.
    Conn(ConnId),
}

/// What the registry asks of a cluster: carry each selector operation to
/// the other nodes, and mirror local member counts. Implemented by
/// `cluster/`; every method returns without waiting on the network except
/// the futures, which are bounded by their own deadlines.
pub(crate) trait Remote: Send + Sync {
    /// Whether connection `id` was opened on this node.
    fn owns(&self, id: ConnId) -> bool;
    /// The local member count of `target` (never a `Conn`) changed.
    /// Called outside the registry's lock; must not block.
    fn changed(&self, target: &Target);
    /// Hands `msg` to the other nodes' members of `target` but `except`;
    /// drops (and counts) it when that is not possible now.
    fn send(&self, target: &Target, except: Option<ConnId>, msg: &Message);
    /// Closes the other nodes' members; what they answered, with
    /// `unanswered` set for the nodes that did not.
    fn close<'a>(
        &'a self,
        target: &'a Target,
        except: Option<ConnId>,
        code: CloseCode,
        reason: &'a str,
    ) -> BoxFuture<'a, CloseSummary>;
    /// The other nodes' members of `target` (see `Selector::count` for
    /// `except`).
    fn count<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<usize>>;
}

//! Admission at accept time: the overall and per-IP connection limits and
//! the per-IP connection rate (a token bucket).
//!
//! Decided from the peer's address alone, before a byte of the request is
//! read, so a connect/close flood costs one map lookup per socket. A
//! [`Permit`] holds a socket's place until it is dropped. A socket from a
//! trusted proxy is admitted under the overall limit alone, and takes its
//! per-IP place later, under its client's address, once that is known
//! ([`Permit::admit_client`]). This module never touches a socket.
//!
//! Memory stays bounded by the clients actually present: an address's entry
//! goes away once it holds no socket and its bucket has refilled, and the
//! table is swept of such entries whenever it doubles.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::config::{Config, ConnectRate};
use crate::http::RejectReason;

#[derive(Debug)]
struct Entry {
    /// Sockets this address holds now.
    open: usize,
    /// Tokens left, as of `at`.
    tokens: f64,
    at: Instant,
}

impl Entry {
    fn refill(&mut self, rate: Option<ConnectRate>, now: Instant) {
        if let Some(rate) = rate {
            let earned = now.duration_since(self.at).as_secs_f64() * rate.per_second;
            self.tokens = (self.tokens + earned).min(f64::from(rate.burst));
        }
        self.at = now;
    }

    /// Whether the entry carries no information worth keeping.
    fn is_idle(&self, rate: Option<ConnectRate>) -> bool {
        self.open == 0 && rate.is_none_or(|r| self.tokens >= f64::from(r.burst))
    }
}

#[derive(Debug)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Size at which the next sweep runs.
    sweep_at: usize,
}

/// The admission state of one server.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    rate: Option<ConnectRate>,
    total: AtomicUsize,
    /// Only used when a per-IP policy is set.
    table: Mutex<Table>,
}

const FIRST_SWEEP: usize = 1024;

impl Admission {
    pub(crate) fn new(config: &Config) -> Self {
        Admission {
            max_total: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            rate: config.connect_rate,
            total: AtomicUsize::new(0),
            table: Mutex::new(Table {
                entries: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }

    fn per_ip(&self) -> bool {
        self.max_per_ip.is_some() || self.rate.is_some()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a socket from `ip`, or says which limit refuses it. A refused
    /// connection still spends a rate token when one is left: a client
    /// hammering the server does not earn its way back in while it does.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, RejectReason> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_total.is_some_and(|max| total > max) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(RejectReason::MaxConnections);
        }
        if self.per_ip() {
            if let Err(why) = self.admit_ip(ip) {
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(why);
            }
        }
        Ok(Permit {
            admission: Arc::clone(self),
            ip: Some(ip),
        })
    }

    /// Admits a socket under the overall limit alone (one from a trusted
    /// proxy, whose client is not known yet); see [`Permit::admit_client`].
    pub(crate) fn admit_deferred(self: &Arc<Self>) -> Result<Permit, RejectReason> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_total.is_some_and(|max| total > max) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(RejectReason::MaxConnections);
        }
        Ok(Permit {
            admission: Arc::clone(self),
            ip: None,
        })
    }

    fn admit_ip(&self, ip: IpAddr) -> Result<(), RejectReason> {
        let now = Instant::now();
        let mut table = self.table();
        let burst = self.rate.map_or(0.0, |r| f64::from(r.burst));
        let entry = table.entries.entry(ip).or_insert(Entry {
            open: 0,
            tokens: burst,
            at: now,
        });
        entry.refill(self.rate, now);
        if self.max_per_ip.is_some_and(|max| entry.open >= max) {
            return Err(RejectReason::PerIpLimit);
        }
        if self.rate.is_some() {
            if entry.tokens < 1.0 {
                return Err(RejectReason::RateLimited);
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        if table.entries.len() >= table.sweep_at {
            self.sweep(&mut table, now);
        }
        Ok(())
    }

    /// Drops the entries of addresses that hold nothing and are owed
    /// nothing; the next sweep runs when the table has doubled since.
    fn sweep(&self, table: &mut Table, now: Instant) {
        let rate = self.rate;
        table.entries.retain(|_, entry| {
            entry.refill(rate, now);
            !entry.is_idle(rate)
        });
        table.sweep_at = (table.entries.len() * 2).max(FIRST_SWEEP);
    }

    fn release(&self, ip: Option<IpAddr>) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let Some(ip) = ip.filter(|_| self.per_ip()) else {
            return;
        };
        let mut table = self.table();
        if let Some(entry) = table.entries.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
            entry.refill(self.rate, Instant::now());
            if entry.is_idle(self.rate) {
                table.entries.remove(&ip);
            }
        }
    }

    /// Sockets admitted and not yet released.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// A socket's place in the limits; released on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    /// The address whose per-IP place this holds; `None` while a socket
    /// from a trusted proxy has not named its client.
    ip: Option<IpAddr>,
}

impl Permit {
    /// Whether the per-IP checks are still to run (see
    /// [`Admission::admit_deferred`]).
    pub(crate) fn is_deferred(&self) -> bool {
        self.ip.is_none()
    }

    /// Runs the per-IP checks for a deferred permit under `client`, its
    /// client's address, and holds the place under it until dropped. On a
    /// refusal the permit stays deferred (holding the overall place only).
    pub(crate) fn admit_client(&mut self, client: IpAddr) -> Result<(), RejectReason> {
        if self.ip.is_some() {
            return Ok(());
        }
        if self.admission.per_ip() {
            self.admission.admit_ip(client)?;
        }
        self.ip = Some(client);
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(config: Config) -> Arc<Admission> {
        Arc::new(Admission::new(&config))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn overall_limit_counts_every_socket_and_releases_on_drop() {
        let adm = admission(Config {
            max_connections: Some(2),
            ..Config::default()
        });
        let one = adm.admit(A).unwrap();
        let _two = adm.admit(B).unwrap();
        assert_eq!(adm.admit(A).unwrap_err(), RejectReason::MaxConnections);
        drop(one);
        assert!(adm.admit(A).is_ok());
    }

    #[test]
    fn per_ip_limit_is_per_address() {
        let adm = admission(Config {
            max_connections_per_ip: Some(1),
            ..Config::default()
        });
        let held = adm.admit(A).unwrap();
        assert_eq!(adm.admit(A).unwrap_err(), RejectReason::PerIpLimit);
        let _b = adm.admit(B).unwrap();
        drop(held);
        let _again = adm.admit(A).unwrap();
        assert_eq!(adm.total(), 2);
    }

    #[test]
    fn rate_allows_a_burst_then_refuses() {
        let adm = admission(Config {
            connect_rate: Some(ConnectRate::new(0.001, 3)),
            ..Config::default()
        });
        for _ in 0..3 {
            drop(adm.admit(A).unwrap());
        }
        assert_eq!(adm.admit(A).unwrap_err(), RejectReason::RateLimited);
        assert!(adm.admit(B).is_ok());
    }

    #[test]
    fn deferred_permits_take_their_place_under_the_client() {
        let adm = admission(Config {
            max_connections_per_ip: Some(1),
            max_connections: Some(3),
            ..Config::default()
        });
        // Two from one proxy: the overall limit only.
        let mut one = adm.admit_deferred().unwrap();
        let mut two = adm.admit_deferred().unwrap();
        assert!(one.is_deferred());
        one.admit_client(A).unwrap();
        assert!(!one.is_deferred());
        assert_eq!(two.admit_client(A).unwrap_err(), RejectReason::PerIpLimit);
        assert!(two.is_deferred());
        two.admit_client(B).unwrap();
        let mut three = adm.admit_deferred().unwrap();
        assert_eq!(three.admit_client(A).unwrap_err(), RejectReason::PerIpLimit);
        assert_eq!(
            adm.admit_deferred().unwrap_err(),
            RejectReason::MaxConnections
        );
        drop(three);
        drop(one);
        // A's place went with the permit that held it.
        let _direct = adm.admit(A).unwrap();
        drop(two);
        assert_eq!(adm.total(), 1);
        assert_eq!(adm.table().entries.len(), 1);
    }

    #[test]
    fn idle_entries_leave_the_table() {
        let adm = admission(Config {
            max_connections_per_ip: Some(5),
            ..Config::default()
        });
        for i in 0..3000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(adm.admit(ip).unwrap());
        }
        assert!(adm.table().entries.is_empty());
        assert_eq!(adm.total(), 0);
    }

    #[test]
    fn rate_limited_entries_are_swept_once_refilled() {
        let adm = admission(Config {
            connect_rate: Some(ConnectRate::new(1e9, 1)),
            ..Config::default()
        });
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(adm.admit(ip).unwrap());
        }
        // At a billion tokens a second every entry refills at once and is
        // removed on release.
        assert!(adm.table().entries.len() < FIRST_SWEEP);
    }
}

//! The requests under way: a count that a shutdown (and a test) waits on until every
//! request begun has ended, and whether a stop has begun (which readiness reports).
//!
//! A request, once begun, runs to its end even if its client hangs up (see
//! `api::detached`), so "the client has gone" says nothing about whether its change is
//! made. This owns only that count and the wait for it to reach zero; it must not cancel,
//! reorder or refuse anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// How many requests are under way. Cloning shares the count.
#[derive(Debug, Clone)]
pub struct InFlight {
    count: Arc<watch::Sender<usize>>,
    stopping: Arc<AtomicBool>,
}

/// One request under way; the count goes down when it is dropped, however the request
/// ended (answered, failed or panicked).
#[derive(Debug)]
#[must_use = "the request counts as under way only while its ticket lives"]
pub struct Ticket {
    count: Arc<watch::Sender<usize>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.count.send_modify(|count| *count -= 1);
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self { count: Arc::new(watch::Sender::new(0)), stopping: Arc::new(AtomicBool::new(false)) }
    }
}

impl InFlight {
    /// Counts a request as under way until the ticket is dropped.
    pub fn begin(&self) -> Ticket {
        self.count.send_modify(|count| *count += 1);
        Ticket { count: Arc::clone(&self.count) }
    }

    /// Marks that the process is stopping: readiness answers 503 from now on, so a load
    /// balancer sends new work to another node. Requests are still accepted and served.
    pub fn stop_begun(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`InFlight::stop_begun`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How many requests are under way now.
    pub fn now(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until no request is under way, for at most `within`. Requests that begin
    /// meanwhile are waited for too. `Err` carries how many were still under way.
    pub async fn drained(&self, within: Duration) -> Result<(), usize> {
        let mut receiver = self.count.subscribe();
        match tokio::time::timeout(within, receiver.wait_for(|count| *count == 0)).await {
            Ok(Ok(_)) => Ok(()),
            // The sender lives as long as `self`: the wait cannot lose it.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wait_ends_when_the_last_ticket_is_dropped() {
        let in_flight = InFlight::default();
        assert_eq!(in_flight.drained(Duration::from_millis(1)).await, Ok(()), "nothing under way");
        let first = in_flight.begin();
        let second = in_flight.begin();
        assert_eq!(in_flight.now(), 2);
        assert_eq!(in_flight.drained(Duration::from_millis(20)).await, Err(2), "two under way");
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.drained(Duration::from_secs(30)).await })
        };
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one is still under way");
        drop(second);
        assert_eq!(waiter.await.expect("waiter"), Ok(()));
        assert_eq!(in_flight.now(), 0);
    }

    #[test]
    fn a_stop_is_seen_by_every_clone() {
        let in_flight = InFlight::default();
        let clone = in_flight.clone();
        assert!(!clone.stopping());
        in_flight.stop_begun();
        assert!(clone.stopping());
    }

    #[tokio::test]
    async fn a_panicking_request_still_ends() {
        let in_flight = InFlight::default();
        let ticket = in_flight.begin();
        let task = tokio::spawn(async move {
            let _ticket = ticket;
            panic!("the request failed");
        });
        assert!(task.await.is_err());
        assert_eq!(in_flight.drained(Duration::from_secs(5)).await, Ok(()));
    }
}

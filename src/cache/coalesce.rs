//! Request coalescing: concurrent misses for one key make one upstream request.
//!
//! The first miss becomes the leader and registers a slot; later misses subscribe to it and
//! wait for the leader's verdict: a [`Fill`] to stream from, "not shared" (the response may
//! not serve others, so each fetches for itself) or a failure to report.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::fill::Fill;
use super::key::KeyHash;

/// What waiting requests learn from the leader.
#[derive(Clone)]
pub enum Phase {
    /// The leader's request is still on its way.
    Waiting,
    /// The response is being stored: stream it.
    Ready(Arc<Fill>),
    /// The response cannot be shared: fetch for yourself.
    NotShared,
    /// The stored entry was revalidated and is fresh again: look it up.
    Updated,
    /// The upstream could not be reached: answer with this status and message.
    Failed(http::StatusCode, Arc<str>),
}

/// One fetch in flight: the leader's verdict, as its followers read it. A mutex and one
/// `Notify` rather than a watch channel, whose sends and drop each wake through eight: this
/// is set up and torn down on every miss.
pub struct Slot {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Slot {
    fn new() -> Self {
        Self { phase: Mutex::new(Phase::Waiting), changed: Notify::new() }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.lock().clone()
    }

    /// Waits for the leader's verdict: the first phase after `Waiting`.
    pub async fn verdict(&self) -> Phase {
        loop {
            let phase = self.phase();
            if !matches!(phase, Phase::Waiting) {
                return phase;
            }
            // Registered, then the phase read again: a verdict set in between still wakes it.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if matches!(*self.phase.lock(), Phase::Waiting) {
                changed.await;
            }
        }
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock() = phase;
        self.changed.notify_waiters();
    }
}

/// The table of in-flight fetches. foldhash, seeded per process, instead of SipHash: the
/// table is read and written several times per miss.
#[derive(Default)]
pub struct Coalescer {
    slots: Mutex<HashMap<KeyHash, Arc<Slot>, foldhash::fast::RandomState>>,
}

/// The outcome of [`Coalescer::join`].
pub enum Joined {
    /// This request fetches; it must report through the guard.
    Leader(LeaderGuard),
    /// Another request is fetching; wait on this.
    Follower(Arc<Slot>),
}

impl Coalescer {
    /// Becomes the leader for `hash` or follows the existing one.
    pub fn join(self: &Arc<Self>, hash: KeyHash) -> Joined {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(&hash) {
            let joinable = match &*slot.phase.lock() {
                Phase::Waiting => true,
                Phase::Ready(fill) => fill.joinable(),
                _ => false,
            };
            if joinable {
                return Joined::Follower(slot.clone());
            }
        }
        let slot = Arc::new(Slot::new());
        slots.insert(hash, slot.clone());
        Joined::Leader(LeaderGuard { table: self.clone(), hash, slot, done: false })
    }

    /// Number of fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.lock().len()
    }
}

/// The leader's handle on its slot. Dropping it without a verdict releases the followers to
/// fetch for themselves, so a cancelled leader never strands them.
pub struct LeaderGuard {
    table: Arc<Coalescer>,
    hash: KeyHash,
    slot: Arc<Slot>,
    done: bool,
}

impl LeaderGuard {
    /// Publishes the fill; the slot stays registered (late requests join it) until
    /// [`LeaderGuard::complete`] or drop.
    pub fn ready(&self, fill: Arc<Fill>) {
        self.slot.set(Phase::Ready(fill));
    }

    /// Releases followers to fetch for themselves.
    pub fn not_shared(mut self) {
        self.finish(Phase::NotShared);
    }

    /// Tells followers the stored entry is fresh again.
    pub fn updated(mut self) {
        self.finish(Phase::Updated);
    }

    /// Reports an upstream failure to the followers.
    pub fn failed(mut self, status: http::StatusCode, message: Arc<str>) {
        self.finish(Phase::Failed(status, message));
    }

    /// Unregisters the slot once the fill's entry is stored (or abandoned).
    pub fn complete(mut self) {
        self.unregister();
        self.done = true;
    }

    fn finish(&mut self, phase: Phase) {
        self.unregister();
        self.slot.set(phase);
        self.done = true;
    }

    fn unregister(&self) {
        let mut slots = self.table.slots.lock();
        if slots.get(&self.hash).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            slots.remove(&self.hash);
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.done {
            let released = !matches!(&*self.slot.phase.lock(), Phase::Ready(_));
            self.unregister();
            if released {
                self.slot.set(Phase::NotShared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_join_follows_and_a_dropped_leader_releases_it() {
        let table = Arc::new(Coalescer::default());
        let Joined::Leader(leader) = table.join([1; 32]) else { panic!("first is leader") };
        let Joined::Follower(rx) = table.join([1; 32]) else { panic!("second follows") };
        assert!(matches!(table.join([2; 32]), Joined::Leader(_)));
        drop(leader);
        assert!(matches!(rx.phase(), Phase::NotShared));
        assert_eq!(table.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_waiting_follower_is_woken_by_the_verdict() {
        let table = Arc::new(Coalescer::default());
        let Joined::Leader(leader) = table.join([1; 32]) else { panic!() };
        let Joined::Follower(slot) = table.join([1; 32]) else { panic!() };
        let follower = tokio::spawn(async move { slot.verdict().await });
        for _ in 0..3 {
            tokio::task::yield_now().await; // the follower runs until it waits
        }
        assert!(!follower.is_finished());
        leader.not_shared();
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), follower).await;
        assert!(matches!(woken.expect("the follower was woken").unwrap(), Phase::NotShared));
    }

    #[test]
    fn failure_is_broadcast() {
        let table = Arc::new(Coalescer::default());
        let Joined::Leader(leader) = table.join([1; 32]) else { panic!() };
        let Joined::Follower(rx) = table.join([1; 32]) else { panic!() };
        leader.failed(http::StatusCode::BAD_GATEWAY, "down".into());
        assert!(matches!(rx.phase(), Phase::Failed(s, _) if s.as_u16() == 502));
    }
}

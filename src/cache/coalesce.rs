//! Request coalescing: concurrent misses for one key make one upstream request.
//!
//! The first miss becomes the leader and registers a slot; later misses subscribe to it and
//! wait for the leader's verdict: a [`Fill`] to stream from, "not shared" (the response may
//! not serve others, so each fetches for itself) or a failure to report.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

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

type Slot = Arc<watch::Sender<Phase>>;

/// The table of in-flight fetches.
#[derive(Default)]
pub struct Coalescer {
    slots: Mutex<HashMap<KeyHash, Slot>>,
}

/// The outcome of [`Coalescer::join`].
pub enum Joined {
    /// This request fetches; it must report through the guard.
    Leader(LeaderGuard),
    /// Another request is fetching; wait on this.
    Follower(watch::Receiver<Phase>),
}

impl Coalescer {
    /// Becomes the leader for `hash` or follows the existing one.
    pub fn join(self: &Arc<Self>, hash: KeyHash) -> Joined {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(&hash) {
            let joinable = match &*slot.borrow() {
                Phase::Waiting => true,
                Phase::Ready(fill) => fill.joinable(),
                _ => false,
            };
            if joinable {
                return Joined::Follower(slot.subscribe());
            }
        }
        let slot = Arc::new(watch::Sender::new(Phase::Waiting));
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
    slot: Slot,
    done: bool,
}

impl LeaderGuard {
    /// Publishes the fill; the slot stays registered (late requests join it) until
    /// [`LeaderGuard::complete`] or drop.
    pub fn ready(&self, fill: Arc<Fill>) {
        self.slot.send_replace(Phase::Ready(fill));
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
        self.slot.send_replace(phase);
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
            let released = !matches!(&*self.slot.borrow(), Phase::Ready(_));
            self.unregister();
            if released {
                self.slot.send_replace(Phase::NotShared);
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
        assert!(matches!(&*rx.borrow(), Phase::NotShared));
        assert_eq!(table.in_flight(), 0);
    }

    #[test]
    fn failure_is_broadcast() {
        let table = Arc::new(Coalescer::default());
        let Joined::Leader(leader) = table.join([1; 32]) else { panic!() };
        let Joined::Follower(rx) = table.join([1; 32]) else { panic!() };
        leader.failed(http::StatusCode::BAD_GATEWAY, "down".into());
        assert!(matches!(&*rx.borrow(), Phase::Failed(s, _) if s.as_u16() == 502));
    }
}

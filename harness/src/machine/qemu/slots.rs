//! Guest slots: no more emulated guests run at once than this machine has
//! cores. Under TCG every running guest keeps a host core busy, so a third
//! guest on two cores only slows the other two down until their probes time
//! out (issue 25: four guests on two cores failed every aarch64 scenario).
//!
//! A [`Slot`] is held for as long as a QEMU process runs its vCPUs: from
//! boot to terminate, across a stop/start of the same instance; a pooled
//! guest that is paused between scenarios (QMP `stop`, no vCPU runs) gives
//! its slot back and takes one again before it resumes.
//!
//! N is `std::thread::available_parallelism()` (which honours CPU affinity
//! and cgroup quotas), or `HARNESS_GUEST_SLOTS` (for a measured reason, e.g.
//! KVM guests that idle). Per process: one harness run schedules its own
//! guests; other people's processes show up in the measured pace
//! ([`super::pace`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slot pool of one process.
pub struct Slots {
    sem: Arc<Semaphore>,
    total: usize,
    next: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    holders: BTreeMap<u64, String>,
    waiting: BTreeMap<u64, (String, Instant)>,
}

/// One running guest's slot; dropping it frees the slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    id: u64,
    slots: &'static Slots,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.state.lock().unwrap().holders.remove(&self.id);
    }
}

/// See [`Slots::note_waiting`].
pub struct Waiting {
    id: u64,
    slots: &'static Slots,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.slots.state.lock().unwrap().waiting.remove(&self.id);
    }
}

/// `HARNESS_GUEST_SLOTS`, else the cores available to this process.
pub fn configured(env: Option<&str>) -> usize {
    env.and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// This process's slots.
pub fn global() -> &'static Slots {
    static S: OnceLock<Slots> = OnceLock::new();
    S.get_or_init(|| {
        Slots::new(configured(
            std::env::var("HARNESS_GUEST_SLOTS").ok().as_deref(),
        ))
    })
}

impl Slots {
    pub fn new(total: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(total)),
            total,
            next: AtomicU64::new(0),
            state: Mutex::default(),
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Take a slot for the guest `label`, waiting (with a line saying so,
    /// and which guests hold the slots) while all are taken.
    pub async fn acquire(&'static self, label: &str) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let permit = match self.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let holders = {
                    let mut st = self.state.lock().unwrap();
                    st.waiting.insert(id, (label.to_string(), Instant::now()));
                    st.holders.values().cloned().collect::<Vec<_>>()
                };
                eprintln!(
                    "guest slots: {label} waits for a guest slot ({} of {} in use: {}; HARNESS_GUEST_SLOTS to change)",
                    holders.len(),
                    self.total,
                    holders.join(", ")
                );
                let t = Instant::now();
                let p = self
                    .sem
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the guest slot semaphore is never closed");
                self.state.lock().unwrap().waiting.remove(&id);
                eprintln!(
                    "guest slots: {label} got a guest slot after {:.0} s",
                    t.elapsed().as_secs_f64()
                );
                p
            }
        };
        self.state
            .lock()
            .unwrap()
            .holders
            .insert(id, label.to_string());
        Slot {
            _permit: permit,
            id,
            slots: self,
        }
    }

    /// A slot now, if one is free.
    pub fn try_acquire(&'static self, label: &str) -> Option<Slot> {
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.state
            .lock()
            .unwrap()
            .holders
            .insert(id, label.to_string());
        Some(Slot {
            _permit: permit,
            id,
            slots: self,
        })
    }

    /// Note that `label` waits for a slot by other means (e.g. polling for
    /// a free slot or an idle pooled guest), until the guard drops; listed
    /// by [`Slots::waiting`].
    pub fn note_waiting(&'static self, label: &str) -> Waiting {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.state
            .lock()
            .unwrap()
            .waiting
            .insert(id, (label.to_string(), Instant::now()));
        Waiting { id, slots: self }
    }

    /// Guests waiting for a slot now, with how long they have waited.
    pub fn waiting(&self) -> Vec<(String, Duration)> {
        self.state
            .lock()
            .unwrap()
            .waiting
            .values()
            .map(|(l, t)| (l.clone(), t.elapsed()))
            .collect()
    }

    /// Guests holding a slot now.
    pub fn holders(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .holders
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_default_to_the_cores_and_take_a_positive_override() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(configured(None), cores);
        assert_eq!(configured(Some("3")), 3);
        assert_eq!(configured(Some("0")), cores);
        assert_eq!(configured(Some("x")), cores);
    }

    #[tokio::test]
    async fn a_third_guest_waits_until_a_slot_is_freed() {
        let s: &'static Slots = Box::leak(Box::new(Slots::new(2)));
        let a = s.acquire("a").await;
        let _b = s.acquire("b").await;
        assert_eq!(s.holders(), ["a", "b"]);
        let c = tokio::spawn(async move { s.acquire("c").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.waiting().len(), 1);
        assert_eq!(s.waiting()[0].0, "c");
        assert!(!c.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), c)
            .await
            .expect("c gets the freed slot")
            .unwrap();
        assert!(s.waiting().is_empty());
        assert_eq!(s.holders(), ["b", "c"]);
        assert!(s.try_acquire("d").is_none());
        let w = s.note_waiting("d");
        assert_eq!(s.waiting()[0].0, "d");
        drop(w);
        assert!(s.waiting().is_empty());
    }
}

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
//! KVM guests that idle). Machine-wide for one user: besides this
//! process's semaphore a slot is one of N lock files
//! (`$TMPDIR/harness-guest-slots-<uid>/slot-<i>`, or
//! `HARNESS_GUEST_SLOTS_DIR`) held with `flock`, so two harness processes
//! (the e2e run and the guest tests beside it in `ci/test.sh`, or a
//! developer's second terminal) never run more guests than cores between
//! them; the kernel releases a dead process's lock. Other users' and
//! other programs' load shows up in the measured pace ([`super::pace`]).
//!
//! Priority: a process that does not yield (`HARNESS_GUEST_SLOTS_YIELD`
//! unset: the e2e) marks its demand with a `flock`'d `want-<pid>-<n>` file
//! in the same directory while it waits for a slot, and from its start
//! until its first guest has one ([`Slots::announce`]); a yielding process
//! takes no slot while such a file is held. Measured without it: the
//! guest tests beside the e2e took both slots while the e2e was still
//! resolving its images, and its first scenarios waited 116–213 s.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slot pool of one process, and its share of the machine's.
pub struct Slots {
    sem: Arc<Semaphore>,
    total: usize,
    next: AtomicU64,
    state: Mutex<State>,
    /// Where the machine-wide lock files live (`None`: this process only).
    dir: Option<PathBuf>,
    /// `HARNESS_GUEST_SLOTS_YIELD` (seconds): take a machine-wide slot only
    /// once one has stayed free this long, so another process that takes
    /// slot after slot (the e2e's contract pool, between its scenarios)
    /// keeps them; ci/test.sh sets it for the guest tests beside the e2e.
    yield_after: Option<Duration>,
}

#[derive(Default)]
struct State {
    holders: BTreeMap<u64, String>,
    waiting: BTreeMap<u64, (String, Instant)>,
    /// Demand announced at the start of a run ([`Slots::announce`]).
    announced: Option<Demand>,
}

/// A held `want-*` file: this process waits for (or is about to need) a
/// machine-wide slot; yielding processes take none while it is held.
/// Dropping it removes the file (and the kernel drops its `flock`).
struct Demand {
    _file: File,
    path: PathBuf,
}

impl Drop for Demand {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One running guest's slot; dropping it frees the slot (its lock file's
/// `flock` goes with the file handle).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _file: Option<File>,
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
    _demand: Option<Demand>,
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

/// `HARNESS_GUEST_SLOTS_DIR`, else `$TMPDIR/harness-guest-slots-<uid>`.
pub fn machine_dir(env: Option<&str>) -> PathBuf {
    match env.map(str::trim).filter(|s| !s.is_empty()) {
        Some(d) => PathBuf::from(d),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => {
            std::env::temp_dir().join(format!("harness-guest-slots-{}", unsafe { libc::getuid() }))
        }
    }
}

/// This process's slots, shared machine-wide through [`machine_dir`].
pub fn global() -> &'static Slots {
    static S: OnceLock<Slots> = OnceLock::new();
    S.get_or_init(|| {
        Slots::machine_wide(
            configured(std::env::var("HARNESS_GUEST_SLOTS").ok().as_deref()),
            machine_dir(std::env::var("HARNESS_GUEST_SLOTS_DIR").ok().as_deref()),
        )
        .yielding(
            std::env::var("HARNESS_GUEST_SLOTS_YIELD")
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
        )
    })
}

impl Slots {
    /// Slots of this process only.
    pub fn new(total: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(total)),
            total,
            next: AtomicU64::new(0),
            state: Mutex::default(),
            dir: None,
            yield_after: None,
        }
    }

    /// Yield to other processes (see `yield_after`).
    pub fn yielding(self, after: Option<Duration>) -> Slots {
        Slots {
            yield_after: after,
            ..self
        }
    }

    /// Slots shared with every process that uses the same `dir`.
    pub fn machine_wide(total: usize, dir: PathBuf) -> Slots {
        Slots {
            dir: Some(dir),
            ..Slots::new(total)
        }
    }

    /// One of the machine's N lock files, if one is free: locked, with
    /// this process's pid and `label` written into it (what a waiting
    /// process names). A directory that cannot be made or a file that
    /// cannot be opened says so and counts as free (this process's own
    /// semaphore still bounds its guests).
    fn try_lock_file(&self, label: &str) -> Result<Option<File>, ()> {
        let Some(dir) = &self.dir else {
            return Err(());
        };
        use std::os::unix::fs::DirBuilderExt as _;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            eprintln!(
                "guest slots: cannot create {} ({e}); slots are per process",
                dir.display()
            );
            return Err(());
        }
        for i in 0..self.total {
            let path = dir.join(format!("slot-{i}"));
            let mut f = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) => {
                    eprintln!(
                        "guest slots: cannot open {} ({e}); slots are per process",
                        path.display()
                    );
                    return Err(());
                }
            };
            if f.try_lock().is_ok() {
                let _ = f.set_len(0);
                let _ = write!(f, "pid {} {label}", std::process::id());
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// What the machine's locked slot files say (other processes' guests).
    fn machine_holders(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return vec![];
        };
        (0..self.total)
            .filter_map(|i| {
                let mut f = File::open(dir.join(format!("slot-{i}"))).ok()?;
                if f.try_lock_shared().is_ok() {
                    return None;
                }
                let mut s = String::new();
                f.rewind().ok()?;
                f.read_to_string(&mut s).ok()?;
                Some(s)
            })
            .collect()
    }

    /// A new demand file, if this process does not yield and shares its
    /// slots machine-wide.
    fn demand(&self) -> Option<Demand> {
        let dir = self.dir.as_ref()?;
        if self.yield_after.is_some() {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("want-{}-{n}", std::process::id());
        // Locked before it gets its `want-` name: a yielding process never
        // sees it unlocked and takes it for stale.
        let tmp = dir.join(format!(".{name}"));
        let file = File::create(&tmp).ok()?;
        file.try_lock().ok()?;
        let path = dir.join(name);
        std::fs::rename(&tmp, &path).ok()?;
        Some(Demand { _file: file, path })
    }

    /// Whether a non-yielding process holds a demand file (a stale one,
    /// whose process died, is removed).
    fn others_want(&self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        // (Only yielding processes ask, and they make no demand files.)
        let mut want = false;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("want-") {
                continue;
            }
            let Ok(f) = File::open(e.path()) else {
                continue;
            };
            if f.try_lock_shared().is_err() {
                want = true;
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        }
        want
    }

    /// Mark this process's demand from now until its first guest has a
    /// slot, or `within` at most (a run that never boots a guest must not
    /// keep yielding processes waiting): the e2e calls it before it
    /// resolves images, so the guest tests beside it do not take the
    /// slots in the meantime. A no-op for a yielding or per-process pool.
    pub fn announce(&'static self, within: Duration) {
        let Some(d) = self.demand() else {
            return;
        };
        self.state.lock().unwrap().announced = Some(d);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(within).await;
                self.state.lock().unwrap().announced = None;
            });
        }
    }

    /// Withdraw [`Slots::announce`]'s demand (at the end of a run: a
    /// static's fields are never dropped, so its file would stay behind).
    pub fn withdraw(&self) {
        let d = self.state.lock().unwrap().announced.take();
        drop(d);
    }

    /// The machine-wide half of a slot: a lock file, waiting (and saying
    /// which processes hold the slots) while every one is taken.
    async fn lock_file(&self, label: &str) -> Option<File> {
        let mut said = None;
        let mut waiting_demand = None;
        let mut free_since: Option<Instant> = None;
        loop {
            if let (Some(after), Some(_)) = (self.yield_after, &self.dir) {
                if self.machine_holders().len() < self.total && !self.others_want() {
                    let since = *free_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < after {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                } else {
                    free_since = None;
                    if said.is_none() {
                        eprintln!(
                            "guest slots: {label} yields to other processes' guests (HARNESS_GUEST_SLOTS_YIELD): waits until a slot has stayed free for {after:?} ({})",
                            self.machine_holders().join(", ")
                        );
                        said = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            }
            match self.try_lock_file(label) {
                Err(()) => return None,
                Ok(Some(f)) => {
                    if let Some(t) = said {
                        eprintln!(
                            "guest slots: {label} got a guest slot after {:.0} s",
                            t.elapsed().as_secs_f64()
                        );
                    }
                    return Some(f);
                }
                Ok(None) => {
                    if waiting_demand.is_none() {
                        waiting_demand = self.demand();
                    }
                    if said.is_none() {
                        eprintln!(
                            "guest slots: {label} waits for a guest slot held by another process ({} of {}: {}; HARNESS_GUEST_SLOTS to change)",
                            self.total,
                            self.total,
                            self.machine_holders().join(", ")
                        );
                        said = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
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
                eprintln!(
                    "guest slots: {label} got a guest slot after {:.0} s",
                    t.elapsed().as_secs_f64()
                );
                p
            }
        };
        // Listed as waiting while another process holds the machine's slots.
        self.state
            .lock()
            .unwrap()
            .waiting
            .entry(id)
            .or_insert_with(|| (label.to_string(), Instant::now()));
        let file = self.lock_file(label).await;
        let mut st = self.state.lock().unwrap();
        st.waiting.remove(&id);
        st.holders.insert(id, label.to_string());
        let announced = st.announced.take();
        drop(st);
        drop(announced);
        Slot {
            _permit: permit,
            _file: file,
            id,
            slots: self,
        }
    }

    /// A slot now, if one is free (in this process and on the machine).
    pub fn try_acquire(&'static self, label: &str) -> Option<Slot> {
        if self.yield_after.is_some() && self.others_want() {
            return None;
        }
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        let file = match self.try_lock_file(label) {
            Ok(Some(f)) => Some(f),
            Ok(None) => return None,
            Err(()) => None,
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let announced = {
            let mut st = self.state.lock().unwrap();
            st.holders.insert(id, label.to_string());
            st.announced.take()
        };
        drop(announced);
        Some(Slot {
            _permit: permit,
            _file: file,
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
        Waiting {
            id,
            slots: self,
            _demand: self.demand(),
        }
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

    /// Two processes' slot pools on one lock directory (flock locks are
    /// per open file, so two pools in one process stand for two).
    #[tokio::test]
    async fn a_second_process_waits_for_the_machine_wide_slot() {
        let dir = tempfile::tempdir().unwrap();
        let one: &'static Slots =
            Box::leak(Box::new(Slots::machine_wide(1, dir.path().to_path_buf())));
        let two: &'static Slots =
            Box::leak(Box::new(Slots::machine_wide(1, dir.path().to_path_buf())));
        let a = one.acquire("guest-a").await;
        assert!(
            two.try_acquire("guest-b").is_none(),
            "the other process's pool must see the slot taken"
        );
        assert_eq!(
            two.machine_holders(),
            [format!("pid {} guest-a", std::process::id())]
        );
        let b = tokio::spawn(async move { two.acquire("guest-b").await });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!b.is_finished(), "guest-b must wait while guest-a runs");
        assert_eq!(two.waiting()[0].0, "guest-b");
        drop(a);
        let _b = tokio::time::timeout(Duration::from_secs(5), b)
            .await
            .expect("guest-b gets the slot guest-a freed")
            .unwrap();
        assert!(two.waiting().is_empty());
        assert!(one.try_acquire("guest-c").is_none());
    }

    /// A yielding process takes no slot while another announced its
    /// demand or waits for one (its `want-*` file is held), free or not;
    /// it goes on once the demand is met. A stale demand file does not
    /// block it.
    #[tokio::test]
    async fn a_yielding_process_leaves_the_slot_to_one_that_wants_it() {
        let dir = tempfile::tempdir().unwrap();
        let eager: &'static Slots =
            Box::leak(Box::new(Slots::machine_wide(1, dir.path().to_path_buf())));
        let polite: &'static Slots = Box::leak(Box::new(
            Slots::machine_wide(1, dir.path().to_path_buf())
                .yielding(Some(Duration::from_millis(200))),
        ));
        std::fs::write(dir.path().join("want-999999999-0"), "").unwrap();
        eager.announce(Duration::from_secs(60));
        assert!(polite.try_acquire("test-guest").is_none());
        let p = tokio::spawn(async move { polite.acquire("test-guest").await });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            !p.is_finished(),
            "the yielding guest took the free slot while another process announced it wants one"
        );
        // The announcing process gets its guest: the demand is met.
        let a = eager.acquire("pool-1").await;
        assert!(
            !dir.path().join("want-999999999-0").exists(),
            "stale demand removed"
        );
        drop(a);
        let _p = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("the yielding guest gets the slot once nobody else wants it")
            .unwrap();
        eager.announce(Duration::from_secs(60));
        assert!(polite.others_want());
        eager.withdraw();
        assert!(!polite.others_want());
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("want-"))
                .count(),
            0,
            "no demand file left behind"
        );
        // Waiting (here: polling for an idle pool guest) is demand too.
        let w = eager.note_waiting("pool-2");
        assert!(polite.others_want());
        drop(w);
        assert!(!polite.others_want());
    }

    /// A yielding pool takes a slot only once it has stayed free: another
    /// process that takes the slot back at once keeps it.
    #[tokio::test]
    async fn a_yielding_process_waits_until_a_slot_stays_free() {
        let dir = tempfile::tempdir().unwrap();
        let eager: &'static Slots =
            Box::leak(Box::new(Slots::machine_wide(1, dir.path().to_path_buf())));
        let polite: &'static Slots = Box::leak(Box::new(
            Slots::machine_wide(1, dir.path().to_path_buf())
                .yielding(Some(Duration::from_millis(1500))),
        ));
        let a = eager.acquire("pool-1").await;
        let p = tokio::spawn(async move { polite.acquire("test-guest").await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A short gap between two of the eager process's guests.
        drop(a);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = eager.acquire("pool-2").await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(
            !p.is_finished(),
            "the yielding guest took the slot in a short gap"
        );
        drop(b);
        let _p = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("the yielding guest gets the slot once it stays free")
            .unwrap();
        assert!(eager.try_acquire("pool-3").is_none());
    }
}

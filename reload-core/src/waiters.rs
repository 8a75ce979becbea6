//! [`WaitList`]: the one wait-list engine of the crate. Threads and async
//! tasks wait on it until a condition the slot owns changes: a draining
//! version's last lease being given back, a quiesced reload's gate opening,
//! a reload's turn coming free.
//!
//! The discipline that makes it free of lost wake-ups: a waiter *registers
//! first, then looks* at the condition; whoever changes the condition
//! *changes it first, then wakes* everyone registered. The list's mutex
//! orders the two: if the waiter's look missed the change, its registration
//! came before the waker emptied the list, so the waker unparks it (and an
//! unpark that precedes the park makes the park return at once).
//!
//! Any number of waiters, with or without deadlines, threads and tasks in
//! any mix: a wake wakes every one registered, and a waiter that gives up
//! (a deadline passed, a future dropped) takes out its own entry and no
//! other. Every waiter looks again after it is woken, so a wake that was
//! stale or spurious costs a look, never a wrong answer.

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::loom::{current_thread, park_until, Mutex, Parked, Thread};

/// Parked threads and async tasks waiting for one condition.
#[derive(Default)]
pub(crate) struct WaitList {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    threads: Vec<Thread>,
    tasks: Vec<(u64, Waker)>,
    /// Names each task registration, so a task that leaves removes its own
    /// entry (a `Waker` has no identity to compare by).
    next_task: u64,
}

/// A task's place in a [`WaitList`], kept by the future that waits; `None`
/// until it first registers. Hand it to [`WaitList::leave`] when the future
/// is dropped before it completed.
pub(crate) type TaskEntry = Option<u64>;

impl WaitList {
    /// Registers the calling thread; look at the condition after this, and
    /// park only if it still holds.
    fn register_thread(&self) {
        let me = current_thread();
        let mut waiting = self.waiting.lock();
        // A thread woken spuriously registers again; once is enough.
        if !waiting.threads.iter().any(|t| t.id() == me.id()) {
            waiting.threads.push(me);
        }
    }

    /// Takes the calling thread's own entry out (if a wake has not already).
    fn unregister_thread(&self) {
        let me = current_thread().id();
        self.waiting.lock().threads.retain(|t| t.id() != me);
    }

    /// Parks the calling thread until `ready` returns `true` (then `true`)
    /// or `deadline` passes with `ready` still `false` (then `false`).
    /// `ready` is called with no lock held, after each registration, so it
    /// may take locks of its own and change state (take a turn) when it
    /// answers `true`.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let mut expired = false;
        loop {
            // Register, then look.
            self.register_thread();
            let done = ready();
            if done || expired {
                self.unregister_thread();
                return done;
            }
            // A wake-up may be spurious or stale (an unpark token left from
            // an earlier wait): the loop looks again either way, and looks
            // once more after the deadline before giving up.
            expired = park_until(deadline) == Parked::Expired;
        }
    }

    /// The async form of [`wait_until`](Self::wait_until): `Ready` once
    /// `ready` returns `true`; otherwise the task's waker is registered in
    /// `entry` (replacing the waker it had there) and woken by the next
    /// [`wake_all`](Self::wake_all).
    pub(crate) fn poll_until(
        &self,
        entry: &mut TaskEntry,
        cx: &mut Context<'_>,
        mut ready: impl FnMut() -> bool,
    ) -> Poll<()> {
        if ready() {
            self.leave(entry);
            return Poll::Ready(());
        }
        {
            let mut waiting = self.waiting.lock();
            let id = match *entry {
                Some(id) => id,
                None => {
                    let id = waiting.next_task;
                    waiting.next_task += 1;
                    *entry = Some(id);
                    id
                }
            };
            match waiting.tasks.iter_mut().find(|(i, _)| *i == id) {
                Some((_, w)) if w.will_wake(cx.waker()) => {}
                Some((_, w)) => w.clone_from(cx.waker()),
                None => waiting.tasks.push((id, cx.waker().clone())),
            }
        }
        // Registered, then look.
        if ready() {
            self.leave(entry);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Takes a task's own entry out (a future dropped, or done).
    pub(crate) fn leave(&self, entry: &mut TaskEntry) {
        if let Some(id) = entry.take() {
            self.waiting.lock().tasks.retain(|(i, _)| *i != id);
        }
    }

    /// Wakes everyone registered. Call after changing the condition.
    pub(crate) fn wake_all(&self) {
        // Taken under the lock, woken outside it: a woken thread's first
        // act is to register again, which takes this lock.
        let (threads, tasks) = {
            let mut waiting = self.waiting.lock();
            (
                std::mem::take(&mut waiting.threads),
                std::mem::take(&mut waiting.tasks),
            )
        };
        for thread in threads {
            thread.unpark();
        }
        for (_, waker) in tasks {
            waker.wake();
        }
    }

    /// Threads and tasks registered right now (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        let waiting = self.waiting.lock();
        waiting.threads.len() + waiting.tasks.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn every_waiter_is_woken_and_a_waiter_that_gives_up_leaves_only_itself() {
        let list = Arc::new(WaitList::default());
        let flag = Arc::new(AtomicBool::new(false));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (list, flag) = (Arc::clone(&list), Arc::clone(&flag));
                std::thread::spawn(move || list.wait_until(None, || flag.load(Ordering::Acquire)))
            })
            .collect();
        // One more gives up at once: it takes its own entry out, not theirs.
        let deadline = Instant::now() + Duration::from_millis(1);
        assert!(!list.wait_until(Some(deadline), || false));
        // Wait for the four to be parked (registered), however slow they are.
        while list.len() < 4 {
            std::thread::yield_now();
        }
        flag.store(true, Ordering::Release);
        list.wake_all();
        for w in waiters {
            assert!(w.join().expect("waiter"), "woken with the flag set");
        }
        assert_eq!(list.len(), 0);
    }

    /// A waker that counts its wakes (and, by its `Arc`, who holds it).
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Tasks: one entry per task however often it polls, the latest waker
    /// kept, a task that leaves takes out only its own entry, and a wake
    /// reaches every task still registered.
    #[test]
    fn each_task_keeps_one_entry_with_its_latest_waker_and_leaves_alone() {
        let list = WaitList::default();
        let wakers: Vec<Arc<Counting>> = (0..3).map(|_| Arc::default()).collect();
        let poll = |entry: &mut TaskEntry, w: &Arc<Counting>| {
            let waker = Waker::from(Arc::clone(w));
            list.poll_until(entry, &mut Context::from_waker(&waker), || false)
        };
        let (mut a, mut b) = (None, None);
        assert!(poll(&mut a, &wakers[0]).is_pending());
        assert!(poll(&mut a, &wakers[0]).is_pending());
        assert_eq!(list.len(), 1, "one entry for a task polled twice");
        // Polled again with another waker: that one replaces the first.
        assert!(poll(&mut a, &wakers[1]).is_pending());
        assert_eq!(list.len(), 1);
        assert_eq!(Arc::strong_count(&wakers[0]), 1, "the old waker is let go");
        assert!(poll(&mut b, &wakers[2]).is_pending());
        assert_eq!(list.len(), 2);
        // `b` leaves: `a` stays registered and is woken.
        list.leave(&mut b);
        assert_eq!((list.len(), b), (1, None));
        list.wake_all();
        let wakes: Vec<usize> = wakers.iter().map(|w| w.0.load(Ordering::SeqCst)).collect();
        assert_eq!(wakes, [0, 1, 0]);
        assert_eq!(list.len(), 0);
        // Ready at the first look: nothing registered.
        let mut c = None;
        let waker = Waker::from(Arc::clone(&wakers[2]));
        assert!(list
            .poll_until(&mut c, &mut Context::from_waker(&waker), || true)
            .is_ready());
        assert_eq!((list.len(), c), (0, None));
    }
}

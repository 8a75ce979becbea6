//! [`WaitList`]: threads and tasks parked until a condition the slot owns
//! changes (a quiesce's gate opening, a reload's turn coming free).
//!
//! The discipline that makes it free of lost wake-ups: a waiter *registers
//! first, then looks* at the condition; whoever changes the condition
//! *changes it first, then wakes* everyone registered. The list's mutex
//! orders the two: if the waiter's look missed the change, its registration
//! came before the waker emptied the list, so the waker unparks it (and an
//! unpark that precedes the park makes the park return at once).

use std::task::Waker;

use crate::loom::{current_thread, Mutex, Thread};

/// Parked threads and async tasks waiting for one condition.
#[derive(Default)]
pub(crate) struct WaitList {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    threads: Vec<Thread>,
    wakers: Vec<Waker>,
}

impl WaitList {
    /// Registers the calling thread; look at the condition after this, and
    /// park only if it still holds.
    pub(crate) fn register_thread(&self) {
        let me = current_thread();
        let mut waiting = self.waiting.lock();
        // A thread woken spuriously registers again; once is enough.
        if !waiting.threads.iter().any(|t| t.id() == me.id()) {
            waiting.threads.push(me);
        }
    }

    /// Registers a task's waker; look at the condition after this.
    pub(crate) fn register_waker(&self, waker: &Waker) {
        let mut waiting = self.waiting.lock();
        if !waiting.wakers.iter().any(|w| w.will_wake(waker)) {
            waiting.wakers.push(waker.clone());
        }
    }

    /// Wakes everyone registered. Call after changing the condition.
    pub(crate) fn wake_all(&self) {
        let Waiting { threads, wakers } = std::mem::take(&mut *self.waiting.lock());
        for thread in threads {
            thread.unpark();
        }
        for waker in wakers {
            waker.wake();
        }
    }
}

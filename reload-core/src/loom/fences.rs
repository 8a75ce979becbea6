//! The asymmetric fence pair of the call path (normal builds).
//!
//! Both store-buffering pairs of `drain.rs` need a `SeqCst` fence on each
//! side. On x86-64 that is a locked instruction (`mfence` or `lock or`),
//! the largest single cost of a call. The caller's side runs on every
//! call and the reloader's side once per cut-over or drain check, so the
//! reloader pays for both: [`light`] is a compiler fence, and [`heavy`]
//! issues `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every
//! running thread of the process execute a full memory barrier (an IPI) and
//! relies on the context switch's barrier for the others. A `heavy` then
//! acts as a `SeqCst` fence inserted into every caller's program at some
//! point between its entry and return, which is all a store-buffering pair
//! needs: wherever that point falls in a caller's "write; `light`; read",
//! either the caller's write is visible to the reloader's read after the
//! barrier, or the caller's read comes after the barrier and so after the
//! reloader's write. This is the scheme of folly's `asymmetricLightBarrier`
//! and liburcu's membarrier flavour.
//!
//! Which pair is used is chosen once, by [`init`], before the first slot
//! exists: `membarrier` is queried and this process registered for the
//! private expedited command. Where that fails (not Linux, a kernel before
//! 4.14, a seccomp filter), or `RELOAD_CORE_FENCES=symmetric` is set, both
//! sides are `fence(SeqCst)`: the protocol as it was, with one locked
//! instruction per side.
//!
//! The mode is read with `Relaxed`, and that is enough. A caller that reads
//! "not asymmetric" fences fully, which is correct against either reloader.
//! A reloader reads it after the slot it reloads was created, so after
//! `init` returned on the creating thread, and whatever handed the slot to
//! the reloader's thread orders that: a reloader never sees the mode
//! unset while a caller already relies on it.

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};
use std::sync::Once;

use super::FenceMode;

const UNSET: u8 = 0;
const ASYMMETRIC: u8 = 1;
const SYMMETRIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// The environment variable that forces the symmetric pair.
pub(crate) const FENCES_VAR: &str = "RELOAD_CORE_FENCES";

/// Chooses the pair, once per process. Called by every slot's constructor
/// (after the first, a load and a branch).
pub(crate) fn init() {
    static CHOSEN: Once = Once::new();
    CHOSEN.call_once(|| {
        let forced = std::env::var_os(FENCES_VAR).is_some_and(|v| v == "symmetric");
        let mode = if !forced && membarrier::register() {
            ASYMMETRIC
        } else {
            SYMMETRIC
        };
        // Relaxed: `Once` publishes it to every later `init`, and the slot
        // that follows publishes it to every reloader (module docs).
        MODE.store(mode, Ordering::Relaxed);
    });
}

/// The pair this process uses (symmetric until the first slot is made).
pub(crate) fn mode() -> FenceMode {
    match MODE.load(Ordering::Relaxed) {
        ASYMMETRIC => FenceMode::Asymmetric,
        _ => FenceMode::Symmetric,
    }
}

/// The caller's side of a store-buffering pair: a compiler fence when the
/// reloader pays, a full fence otherwise.
#[inline(always)]
pub(crate) fn light() {
    if MODE.load(Ordering::Relaxed) == ASYMMETRIC {
        // Keeps the compiler from moving the caller's write after its read;
        // the CPU's reordering is the heavy side's to undo.
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The reloader's side: a full fence here, and, in the asymmetric mode, one
/// in every other running thread of the process.
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    if MODE.load(Ordering::Relaxed) == ASYMMETRIC {
        membarrier::expedited();
    }
}

#[cfg(target_os = "linux")]
mod membarrier {
    // From `linux/membarrier.h`.
    const CMD_QUERY: libc::c_int = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn call(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no pointer
        // and touches no memory of ours; an unknown command is an error
        // return, not undefined behaviour.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    /// Whether the private expedited command is supported and this process
    /// is now registered for it.
    pub(super) fn register() -> bool {
        let supported = call(CMD_QUERY);
        supported >= 0
            && supported & libc::c_long::from(CMD_PRIVATE_EXPEDITED) != 0
            && call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// The heavy barrier. Once registered it cannot fail with valid
    /// arguments; if it does anyway (a seccomp filter installed after the
    /// mode was chosen), callers running with compiler fences would no
    /// longer be ordered, and no later choice can make their past calls
    /// safe: stop the process rather than risk a call on a finalized
    /// plugin. `RELOAD_CORE_FENCES=symmetric` avoids this for a host that
    /// sandboxes itself after start-up.
    pub(super) fn expedited() {
        if call(CMD_PRIVATE_EXPEDITED) != 0 {
            eprintln!(
                "reload-core: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after \
                 registration ({}); the call path's fences are no longer ordered. \
                 Set {}=symmetric if this process restricts system calls after start-up.",
                std::io::Error::last_os_error(),
                super::FENCES_VAR,
            );
            std::process::abort();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod membarrier {
    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn expedited() {}
}

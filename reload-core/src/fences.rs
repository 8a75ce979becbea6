//! Which fences the call path uses: [`fence_mode`].
//!
//! A call (`enter`, then dropping the lease) and a reload meet in two
//! store-buffering pairs, and each pair needs a full fence on both sides.
//! Where the kernel offers `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
//! (Linux 4.14 and later, not forbidden by seccomp), the reloader issues
//! it instead and the caller's fence becomes a compiler fence: the call
//! path then runs no locked instruction. Elsewhere both sides fence. The
//! choice is made once per process, when the first slot is created, and
//! never changes; `RELOAD_CORE_FENCES=symmetric` in the environment at
//! that moment forces the fenced pair (for a host that installs a seccomp
//! filter forbidding `membarrier` after start-up: with the asymmetric pair
//! chosen, a heavy barrier that later fails stops the process, since the
//! calls already made could no longer be ordered).
//!
//! Both modes keep every guarantee of [`docs::contract`](crate::docs::contract);
//! they differ in who pays. `docs/drain.md`, "The asymmetric pair", has the
//! argument, and `docs/performance.md` the costs.

pub use crate::loom::FenceMode;

/// The fence pair this process's call path uses: chosen when the first
/// [`Slot`](crate::Slot) is created, fixed from then on.
pub fn fence_mode() -> FenceMode {
    crate::loom::fence_mode()
}

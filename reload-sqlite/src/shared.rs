//! What every SQLite object of one [`Hot`](crate::Hot) shares, on every
//! connection it is attached to: the registry, the plugins its objects
//! name (each with an index into a statement's scope), and their counters.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use reload_core::registry::{Call, OwnedCall, Registry};

use crate::error::{panic_message, HotError};
use crate::plugin::SqlPlugin;
use crate::wire::WireError;

/// One plugin's counters, kept by the crate (the registry keeps the rest).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Calls made through SQL (rows, steps, batches).
    pub calls: AtomicU64,
    /// Of those, failed.
    pub errors: AtomicU64,
    /// Deploys and reverts from SQL that committed.
    pub deploys: AtomicU64,
    /// Deploys and reverts from SQL that were refused.
    pub refusals: AtomicU64,
    /// The last error a call or a deploy saw.
    pub last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(crate) fn failed(&self, e: &HotError) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock() = Some(e.to_string());
    }
}

pub(crate) struct Shared<P: SqlPlugin> {
    pub registry: Arc<Registry<P>>,
    /// The plugins the objects call, by scope index.
    pub plugins: Box<[String]>,
    pub counters: Box<[Counters]>,
    /// The statement scope's auxiliary-data key (negative: statement-wide).
    pub key: i32,
    /// A lease per row instead of per statement.
    pub per_row: bool,
}

impl<P: SqlPlugin> Shared<P> {
    pub fn index(&self, plugin: &str) -> Option<usize> {
        self.plugins.iter().position(|p| p == plugin)
    }

    pub fn enter(&self, i: usize) -> Result<OwnedCall<P>, HotError> {
        self.registry
            .enter_owned(&self.plugins[i])
            .map_err(|source| HotError::Enter {
                plugin: self.plugins[i].clone(),
                source,
            })
    }

    /// Runs one call of plugin `i` on `call`'s version, containing a panic
    /// of the plugin or of `reply`, and counts it.
    pub fn run<R>(
        &self,
        i: usize,
        call: &Call<'_, P>,
        input: &[u8],
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, HotError> {
        match catch_unwind(AssertUnwindSafe(|| call.plugin().call_sql(input, reply))) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.call_failed(i, call, e.to_string(), false)),
            Err(payload) => Err(self.call_failed(i, call, panic_message(&*payload), true)),
        }
    }

    /// [`Shared::run`] with a reply to decode: a reply that does not is
    /// [`HotError::Reply`], named and counted. The decoder's error is small,
    /// so a row that succeeds moves no large error type around.
    pub fn run_decoding<R>(
        &self,
        i: usize,
        call: &Call<'_, P>,
        input: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<R, WireError>,
    ) -> Result<R, HotError> {
        match self.run(i, call, input, decode)? {
            Ok(r) => Ok(r),
            Err(source) => Err(self.bad_reply(i, call, source)),
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_reply(&self, i: usize, call: &Call<'_, P>, source: WireError) -> HotError {
        let e = HotError::Reply {
            plugin: self.plugins[i].clone(),
            version: call.manifest().version().to_string(),
            source,
        };
        self.failed(i, e)
    }

    /// Counts a failure of plugin `i` (off the call path: rows that
    /// succeed never come here).
    #[cold]
    #[inline(never)]
    pub(crate) fn failed(&self, i: usize, e: HotError) -> HotError {
        self.counters[i].failed(&e);
        e
    }

    /// Names and counts a failed or panicked call of plugin `i`.
    #[cold]
    #[inline(never)]
    fn call_failed(
        &self,
        i: usize,
        call: &Call<'_, P>,
        message: String,
        panicked: bool,
    ) -> HotError {
        let plugin = self.plugins[i].clone();
        let version = call.manifest().version().to_string();
        let e = if panicked {
            HotError::Panicked {
                plugin,
                version,
                message,
            }
        } else {
            HotError::Call {
                plugin,
                version,
                message,
            }
        };
        self.failed(i, e)
    }
}

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
        reply: impl FnOnce(&[u8]) -> Result<R, HotError>,
    ) -> Result<R, HotError> {
        let version = || call.manifest().version().to_string();
        let plugin = || self.plugins[i].clone();
        let ran = catch_unwind(AssertUnwindSafe(|| call.plugin().call_sql(input, reply)));
        let result = match ran {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(HotError::Call {
                plugin: plugin(),
                version: version(),
                message: e.to_string(),
            }),
            Err(payload) => Err(HotError::Panicked {
                plugin: plugin(),
                version: version(),
                message: panic_message(&*payload),
            }),
        };
        if let Err(e) = &result {
            self.counters[i].failed(e);
        }
        result
    }
}

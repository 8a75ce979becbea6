//! The demo's plugin: a rule whose package is a small JSON document. It
//! answers requests, fails one in `error_every` (a bad version), counts
//! what it served (state, carried across reloads), and reads data of the
//! schemas in `reads_schema`: a node whose data is at another schema
//! refuses it, as a storage plugin would refuse a node's newer files.

use std::sync::atomic::{AtomicU64, Ordering};

use reload_core::manifest::Manifest;
use reload_core::registry::Package;
use reload_core::{BoxError, Hooks, Stateful};
use serde::{Deserialize, Serialize};

/// A rule package.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleDoc {
    pub version: String,
    /// 0: never fails; n: every n-th request fails.
    pub error_every: u64,
    /// The data schemas it reads, inclusive.
    pub reads_schema: (u32, u32),
}

#[derive(Debug)]
pub struct Rule {
    pub doc: RuleDoc,
    pub served: AtomicU64,
}

impl Hooks for Rule {
    type Context = ();
    fn version(&self) -> &str {
        &self.doc.version
    }
}

impl Stateful for Rule {
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(
            self.served.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "eight bytes")?;
        *self.served.get_mut() = u64::from_le_bytes(bytes);
        Ok(())
    }
}

impl Rule {
    /// One request: whether it succeeded.
    pub fn serve(&self) -> bool {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        self.doc.error_every == 0 || !n.is_multiple_of(self.doc.error_every)
    }
}

/// A package of the rule in `bytes`, for a node whose data is at
/// `data_schema`.
pub fn unpack(bytes: &[u8], data_schema: u32) -> Result<Package<Rule>, BoxError> {
    let doc: RuleDoc = serde_json::from_slice(bytes)?;
    let (lo, hi) = doc.reads_schema;
    if !(lo..=hi).contains(&data_schema) {
        return Err(format!(
            "rules {} reads data schemas {lo}..={hi}; this node's data is at schema {data_schema}",
            doc.version
        )
        .into());
    }
    let manifest = Manifest::new("rules", &doc.version)?;
    let rule = Rule {
        doc,
        served: AtomicU64::new(0),
    };
    Ok(Package::new(rule, manifest, bytes.to_vec()))
}

/// A package's bytes.
pub fn doc(version: &str, error_every: u64, reads_schema: (u32, u32)) -> Vec<u8> {
    serde_json::to_vec(&RuleDoc {
        version: version.to_owned(),
        error_every,
        reads_schema,
    })
    .unwrap_or_default()
}

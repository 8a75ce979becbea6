//! The plugin libraries the host deploys: the `http-route` crate built
//! once per variant, with the kind's feature, the variant's behaviour and
//! `RELOAD_PLUGIN_VERSION`, each result copied aside under its own name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One build: a plugin kind at a version, with a behaviour (`""`, `wrong`,
/// `slow`, `future-abi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// `transform`, `filter` or `stream`.
    pub kind: &'static str,
    /// The manifest's version.
    pub version: &'static str,
    /// The misbehaviour, if any.
    pub behaviour: &'static str,
}

const fn v(kind: &'static str, version: &'static str, behaviour: &'static str) -> Variant {
    Variant {
        kind,
        version,
        behaviour,
    }
}

/// Every variant the run deploys.
pub const VARIANTS: &[Variant] = &[
    v("transform", "1.0.0", ""),
    v("transform", "1.1.0", ""),
    v("transform", "1.2.0", "future-abi"),
    v("filter", "1.0.0", ""),
    v("filter", "1.1.0", ""),
    v("filter", "1.2.0", "wrong"),
    v("stream", "1.0.0", ""),
    v("stream", "1.1.0", ""),
    v("stream", "1.2.0", "slow"),
];

/// Where the builds are.
#[derive(Clone, Debug)]
pub struct Builds {
    dir: PathBuf,
}

impl Builds {
    /// The library of `kind` at `version`.
    pub fn path(&self, kind: &str, version: &str) -> PathBuf {
        self.dir
            .join(format!("{kind}-{version}{}", std::env::consts::DLL_SUFFIX))
    }
}

/// Builds every variant (release) into `<target>/http-plugins`.
///
/// # Errors
///
/// A build failed, or its library is not where cargo puts it.
pub fn build() -> Result<Builds, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("http-plugins");
    let dir = target.join("built");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let builds = Builds { dir };
    for variant in VARIANTS {
        let features = [variant.kind, variant.behaviour]
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "--quiet", "-p", "http-route"])
            .args(["--no-default-features", "--features", &features])
            .arg("--target-dir")
            .arg(&target)
            .env("RELOAD_PLUGIN_VERSION", variant.version)
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building {variant:?} failed: {status}"));
        }
        let lib = target.join("release").join(format!(
            "{}http_route{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        let to = builds.path(variant.kind, variant.version);
        fs::copy(&lib, &to).map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    Ok(builds)
}

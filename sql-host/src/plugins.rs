//! Building the plugin libraries the host deploys: each kind (`udf`, `cdc`,
//! `index`, `agg`, `store`, `job`, `money`) is one crate under `plugins/`, built once per variant with
//! `RELOAD_PLUGIN_VERSION` (the manifest's version) and features (the
//! variant's behaviour), each result copied aside under its own name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One build of a plugin crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The plugin (and crate `sql-<kind>`).
    pub kind: &'static str,
    /// Its manifest version.
    pub version: &'static str,
    /// Cargo features (`wrong`, `future-abi`, `schema2`, `open-fails`), or
    /// empty for a good build.
    pub feature: &'static str,
}

impl Variant {
    /// The file name it is copied to.
    pub fn file_name(&self) -> String {
        let tag = if self.feature.is_empty() {
            String::new()
        } else {
            format!("-{}", self.feature)
        };
        format!(
            "{}-{}{tag}{}",
            self.kind,
            self.version,
            std::env::consts::DLL_SUFFIX
        )
    }
}

/// The variants the run deploys.
pub const VARIANTS: &[Variant] = &[
    Variant {
        kind: "udf",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "udf",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "udf",
        version: "1.2.0",
        feature: "wrong",
    },
    Variant {
        kind: "udf",
        version: "1.3.0",
        feature: "future-abi",
    },
    Variant {
        kind: "cdc",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "cdc",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "index",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "index",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "index",
        version: "2.0.0",
        feature: "schema2",
    },
    Variant {
        kind: "index",
        version: "1.2.0",
        feature: "open-fails",
    },
    Variant {
        kind: "agg",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "agg",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "store",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "store",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "job",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "job",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "money",
        version: "1.0.0",
        feature: "",
    },
    Variant {
        kind: "money",
        version: "1.1.0",
        feature: "",
    },
    Variant {
        kind: "money",
        version: "2.0.0",
        feature: "tag2",
    },
];

/// The built libraries, by variant.
#[derive(Clone, Debug)]
pub struct Builds {
    dir: PathBuf,
}

impl Builds {
    /// The library of `kind` at `version` (the variant must be in
    /// [`VARIANTS`]).
    pub fn path(&self, kind: &str, version: &str) -> PathBuf {
        let variant = VARIANTS
            .iter()
            .find(|v| v.kind == kind && v.version == version);
        match variant {
            Some(v) => self.dir.join(v.file_name()),
            None => self.dir.join(format!("{kind}-{version}-unknown")),
        }
    }

    /// Every built library.
    pub fn all(&self) -> impl Iterator<Item = (&'static Variant, PathBuf)> + '_ {
        VARIANTS.iter().map(|v| (v, self.dir.join(v.file_name())))
    }
}

fn workspace_root() -> Result<PathBuf, String> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .ok_or_else(|| "no workspace root".to_owned())
}

/// Builds every variant with `cargo` (the one running us, if any), in
/// release mode, into `<target>/sql-plugins`, and copies each library to
/// `<target>/sql-plugins/built/`.
///
/// # Errors
///
/// A build failed, or a library is not where cargo puts it.
pub fn build() -> Result<Builds, String> {
    let root = workspace_root()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("sql-plugins");
    let built = target.join("built");
    fs::create_dir_all(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Each variant is built to the same output name and copied aside: a
    // second process building at the same time (two test runs) must not
    // swap a variant between our build and our copy.
    let lock_path = target.join("build.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    for v in VARIANTS {
        let krate = format!("sql-{}", v.kind);
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args(["build", "--release", "--quiet", "-p", &krate])
            .arg("--target-dir")
            .arg(&target)
            .env("RELOAD_PLUGIN_VERSION", v.version);
        if !v.feature.is_empty() {
            cmd.args(["--features", v.feature]);
        }
        let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building {krate} {} failed: {status}", v.version));
        }
        let lib = target.join("release").join(format!(
            "{}sql_{}{}",
            std::env::consts::DLL_PREFIX,
            v.kind,
            std::env::consts::DLL_SUFFIX
        ));
        let to = built.join(v.file_name());
        fs::copy(&lib, &to).map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    Ok(Builds { dir: built })
}

//! Builds the workspace's WebAssembly component guests from source, for
//! tests, benchmarks and demos. Two ways in:
//!
//! - **C, with a real toolchain** ([`c_component`]): `wit-bindgen`'s C
//!   generator writes the bindings of a WIT world, Debian's `clang` (14,
//!   with `lld`) compiles the guest against `wasi-libc` as a reactor, and
//!   `wit-component` turns the core module into a component. The guest
//!   imports nothing (it uses `malloc` and `memcpy`, never a WASI call), so
//!   no WASI adapter is needed. Without `clang` or `wasi-libc` the build
//!   says so ([`BuildError::NoToolchain`]): tests skip with that reason
//!   unless `GUESTS_REQUIRE_CLANG=1`, which CI sets.
//! - **WAT, by hand** ([`wat_component`]): a core module written in the
//!   text format against the canonical ABI, given its WIT world and
//!   encoded as a component. For guests that must misbehave precisely
//!   (trap, loop, lie about lengths), which no compiler writes on purpose.
//!
//! [`with_manifest`] appends the `reload-manifest` custom section a host
//! reads before it compiles anything.
//!
//! Why C: it is the one compiled language whose WebAssembly toolchain
//! installs here from the package registries (Debian's `clang`, `lld`,
//! `wasi-libc` and `libclang-rt-14-dev-wasm32`); no Rust wasm target can
//! be installed on this machine. The generator and the encoder are the
//! crates `wit-bindgen-cli` and `wasm-tools` are made of, at the releases
//! wasmtime 36 builds on, so they share its parsers.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, Context as _};

pub mod wat;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The library's own WIT package (`reload:plugin`).
pub fn plugin_wit() -> PathBuf {
    workspace().join("reload-core/wit")
}

/// The test hosts' WIT packages (`guests/wit/<dir>`).
pub fn host_wit(dir: &str) -> PathBuf {
    workspace().join("guests/wit").join(dir)
}

/// A C source of `guests/c`.
pub fn c_source(name: &str) -> PathBuf {
    workspace().join("guests/c").join(name)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Why a guest was not built.
#[derive(Debug)]
pub enum BuildError {
    /// `clang` (with the wasm32 target and `lld`) or `wasi-libc` is not
    /// installed: the guest cannot be built here.
    NoToolchain(String),
    /// Anything else: the WIT, the generator, the compiler, the encoder.
    Failed(anyhow::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoToolchain(why) => write!(f, "no C toolchain for wasm32-wasi: {why}"),
            BuildError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        BuildError::Failed(e)
    }
}

/// `Some(component)`, or `None` after printing why the C toolchain is
/// missing; panics if it is missing and `GUESTS_REQUIRE_CLANG=1`, or if
/// the build fails for any other reason.
pub fn c_or_skip(source: &str, wit: &Path, world: &str, defines: &[&str]) -> Option<Vec<u8>> {
    match c_component(&c_source(source), wit, world, defines) {
        Ok(bytes) => Some(bytes),
        Err(BuildError::NoToolchain(why)) => {
            assert!(
                std::env::var_os("GUESTS_REQUIRE_CLANG").is_none_or(|v| v != "1"),
                "GUESTS_REQUIRE_CLANG=1 but {why}"
            );
            eprintln!("skipped: the C guest `{source}` cannot be built here: {why}");
            None
        }
        Err(e) => panic!("building `{source}`: {e}"),
    }
}

/// The compiler: `$CLANG`, else `clang-14`, else `clang`.
fn clang() -> Result<String, BuildError> {
    let candidates = std::env::var("CLANG")
        .ok()
        .into_iter()
        .chain(["clang-14".to_owned(), "clang".to_owned()]);
    for cc in candidates {
        if Command::new(&cc).arg("--version").output().is_ok() {
            return Ok(cc);
        }
    }
    Err(BuildError::NoToolchain(
        "neither $CLANG, `clang-14` nor `clang` runs (apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)"
            .to_owned(),
    ))
}

/// Builds `source` (C) as a component of `world` from the WIT package at
/// `wit`, with `-D` `defines`. Built once per process for the same
/// arguments.
///
/// # Errors
///
/// [`BuildError::NoToolchain`] if the compiler or `wasi-libc` is missing;
/// [`BuildError::Failed`] otherwise.
pub fn c_component(
    source: &Path,
    wit: &Path,
    world: &str,
    defines: &[&str],
) -> Result<Vec<u8>, BuildError> {
    static BUILT: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let key = format!("{}|{}|{world}|{defines:?}", source.display(), wit.display());
    let built = BUILT.get_or_init(Default::default);
    if let Some(bytes) = built.lock().map_err(|_| anyhow!("poisoned"))?.get(&key) {
        return Ok(bytes.clone());
    }
    let bytes = build_c(source, wit, world, defines)?;
    built
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .insert(key, bytes.clone());
    Ok(bytes)
}

fn build_c(
    source: &Path,
    wit: &Path,
    world: &str,
    defines: &[&str],
) -> Result<Vec<u8>, BuildError> {
    let cc = clang()?;
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading {}", wit.display()))?;
    let world_id = resolve.select_world(package, Some(world))?;

    // The bindings: `<world>.h`, `<world>.c` and `<world>_component_type.o`
    // (the world's type, which the linker keeps and the encoder reads).
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&resolve, world_id, &mut files)?;
    let dir =
        std::env::temp_dir().join(format!("reload-guests-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut inputs = vec![source.to_path_buf()];
    for (name, contents) in files.iter() {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        if name.ends_with(".c") || name.ends_with(".o") {
            inputs.push(path);
        }
    }

    let out = dir.join("guest.wasm");
    let mut cmd = Command::new(&cc);
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-fuse-ld=lld",
        "-Wall",
        "-Werror",
        "-Wno-unused-function",
        "-Wl,--strip-debug",
    ])
    .arg("-I")
    .arg(&dir);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.args(&inputs).arg("-o").arg(&out);
    let output = cmd.output().with_context(|| format!("running {cc}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A compiler without the target or the sysroot is a missing
        // toolchain, not a broken guest.
        let missing = [
            "wasm-ld",
            "stdlib.h",
            "libc.a",
            "crt1",
            "unable to find library",
            "No available targets",
            "libclang_rt",
        ]
        .iter()
        .any(|m| stderr.contains(m));
        if missing {
            return Err(BuildError::NoToolchain(format!(
                "{cc} cannot build for wasm32-wasi: {stderr}"
            )));
        }
        return Err(anyhow!("{cc} failed on {}:\n{stderr}", source.display()).into());
    }
    let core = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let component = ComponentEncoder::default()
        .module(&core)?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    Ok(component)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A component from a core module in the text format, written against the
/// canonical ABI of `world` in the WIT package at `wit` (a directory or a
/// file).
///
/// # Errors
///
/// The text does not parse, or the module does not fit the world.
pub fn wat_component(wat: &str, wit: &Path, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit)?;
    encode_wat(wat, &resolve, package, world)
}

/// As [`wat_component`], with the WIT package given as text.
///
/// # Errors
///
/// As [`wat_component`].
pub fn wat_component_in(wat: &str, wit_text: &str, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("inline.wit", wit_text)?;
    encode_wat(wat, &resolve, package, world)
}

fn encode_wat(
    wat: &str,
    resolve: &Resolve,
    package: wit_parser::PackageId,
    world: &str,
) -> anyhow::Result<Vec<u8>> {
    let world_id = resolve.select_world(package, Some(world))?;
    let mut core = ::wat::parse_str(wat)?;
    wit_component::embed_component_metadata(&mut core, resolve, world_id, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .module(&core)?
        .validate(true)
        .encode()
}

/// `component` with a `reload-manifest` custom section holding `manifest`
/// (its text form) appended: what a host reads before compiling anything.
pub fn with_manifest(component: &[u8], manifest: &str) -> Vec<u8> {
    let mut out = component.to_vec();
    let section = reload_core::wasm::MANIFEST_SECTION;
    reload_core::wasm::append_custom_section(&mut out, section, manifest.as_bytes());
    out
}

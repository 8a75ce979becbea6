//! Plugins as native libraries (the `dylib` feature): a `cdylib` built with
//! [`reload_abi::export_plugin!`] becomes a [`DylibPlugin`], which fits a
//! [`Slot`](crate::Slot) or a [`Registry`](crate::registry::Registry) like
//! any other plugin.
//!
//! The lifecycle maps onto the library's:
//!
//! | phase | what happened to the library |
//! |---|---|
//! | `Loaded` ([`Loader::package`]) | the file was read once, checked to be a whole ELF file, its manifest read from its `.reload_manifest` section *without mapping it*, and the same bytes written to a private copy |
//! | (the registry's verifier) | runs on exactly those bytes and that manifest, before anything is mapped |
//! | `Linked` (`link`) | the private copy is mapped (`dlopen`), its descriptor's magic, ABI version and size checked, its manifest compared with the section's, an instance created |
//! | `Initialized` (`init`) | the plugin's `init` ran |
//! | `Draining` | calls in flight finish; each holds a lease, and the lease keeps the version, hence the library, alive |
//! | `Removed` | `shutdown` ran after the drain; dropping the value destroys the instance, unmaps the library and deletes the private copy |
//!
//! Why a private copy per version: `dlopen` of a path that is already
//! loaded returns the already-loaded library, so reloading "the same file"
//! would silently keep the old code; and a build that rewrites the original
//! in place would change the bytes under a mapped library. Each version maps
//! its own uniquely named copy, which nothing else writes.
//!
//! What unloading cannot promise, and what this module does about it, is in
//! `docs/dylib.md`.

mod elf;
mod entry;
mod state;
mod watch;

use std::ffi::c_void;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use elf::ElfError;
pub use reload_abi::wire::WireError;
use reload_abi::{Descriptor, DescriptorFn, EntryFn, ABI_VERSION, DESCRIPTOR_SYMBOL, MAGIC};
pub use watch::{AutoReload, Change, Outcome, Refusal, Watcher};

use crate::manifest::{Manifest, ManifestError};
use crate::registry::Package;
use crate::{BoxError, Hooks, Resource};

/// Why a library was refused or a call into it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DylibError {
    /// Reading the file or writing the private copy failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Not a whole ELF file, or no manifest section.
    #[error("{path}: {source}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ElfError,
    },
    /// The manifest section does not decode.
    #[error("{path}: bad manifest: {source}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: ManifestError,
    },
    /// The dynamic loader refused it, or the descriptor symbol is missing.
    #[error("loading {path}: {reason}")]
    Load {
        /// The private copy.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The descriptor is not one this host speaks.
    #[error("{path}: ABI mismatch: {what} is {found:#x}, this host expects {expected:#x}")]
    Abi {
        /// The private copy.
        path: PathBuf,
        /// Magic, version or size.
        what: &'static str,
        /// The library's.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// The descriptor's manifest differs from the section's.
    #[error("{path}: the descriptor's manifest differs from the `.reload_manifest` section")]
    ManifestMismatch {
        /// The private copy.
        path: PathBuf,
    },
    /// The plugin's `create` returned null.
    #[error("the plugin could not create an instance")]
    Create,
    /// An entry point failed; the plugin's message.
    #[error("the plugin failed: {0}")]
    Failed(String),
    /// An entry point panicked (caught inside the library).
    #[error("the plugin panicked: {0}")]
    Panicked(String),
    /// An entry point returned a status the ABI does not define.
    #[error("the plugin returned unknown status {0}")]
    Status(i32),
    /// An entry point's output is not where or what the ABI says: longer
    /// than the host's buffer it claims to be in, longer than its
    /// allocation, or over the host's limit ([`MAX_OUTPUT`]).
    #[error("`{entry}` returned a bad output: {reason}")]
    Output {
        /// The entry point.
        entry: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An entry point's reply does not decode ([`reload_abi::wire`]).
    #[error("`{entry}` returned bytes that do not decode: {source}")]
    Garbage {
        /// The entry point.
        entry: &'static str,
        /// The decoder's error.
        source: WireError,
    },
    /// The plugin was called before `link` (a bug in the host).
    #[error("the library is not linked")]
    NotLinked,
}

/// The longest reply the host takes from an entry point (64 MiB): a
/// persisted index or a state larger than this is refused, typed.
pub const MAX_OUTPUT: usize = 64 << 20;

/// The manifest bytes of a plugin library file, read without mapping it,
/// after checking that the file is a whole ELF library (see
/// [`Loader::package`]). For hosts that want to inspect a file first; the
/// fuzz target `elf` feeds it arbitrary bytes.
///
/// # Errors
///
/// An [`ElfError`].
pub fn manifest_section(bytes: &[u8]) -> Result<&[u8], ElfError> {
    elf::section(bytes, reload_abi::MANIFEST_SECTION)
}

/// Makes private copies of plugin libraries and turns files into
/// [`Package`]s. Copies go in a directory of this process
/// (`<temp>/reload-core-<pid>` by default), one per version, named uniquely;
/// a version deletes its copy when it is dropped, and the loader deletes
/// the directory when it is dropped.
#[derive(Debug)]
pub struct Loader {
    dir: PathBuf,
    next: Arc<AtomicU64>,
}

impl Loader {
    /// A loader with its copies under the system's temporary directory.
    ///
    /// # Errors
    ///
    /// The directory could not be created.
    pub fn new() -> io::Result<Self> {
        Loader::in_dir(std::env::temp_dir().join(format!("reload-core-{}", std::process::id())))
    }

    /// A loader with its copies in `dir` (created; stale copies from an
    /// earlier run of the same process id are removed).
    ///
    /// # Errors
    ///
    /// The directory could not be created.
    pub fn in_dir(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Loader {
            dir,
            next: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Where the copies go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Private copies that exist now (versions not yet dropped).
    pub fn copies(&self) -> usize {
        fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }

    /// Reads `path` once, checks it, and makes a package of it (see the
    /// [module docs](self)): nothing of the library runs until `link`.
    ///
    /// # Errors
    ///
    /// [`DylibError::Io`], [`DylibError::Elf`] (not a whole ELF file: still
    /// being written, or not a library), [`DylibError::Manifest`].
    pub fn package(&self, path: &Path) -> Result<Package<DylibPlugin>, DylibError> {
        let io = |source| DylibError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = fs::read(path).map_err(io)?;
        let section = manifest_section(&bytes).map_err(|source| DylibError::Elf {
            path: path.to_owned(),
            source,
        })?;
        let manifest = Manifest::decode(section).map_err(|source| DylibError::Manifest {
            path: path.to_owned(),
            source,
        })?;
        let file = path
            .file_name()
            .map_or_else(|| "plugin".into(), |f| f.to_string_lossy().into_owned());
        let plugin = private_copy(&self.dir, &self.next, &file, &bytes, &manifest, section)?;
        // A revert makes the version again from the same bytes: a new
        // private copy, mapped afresh (the old one was unmapped).
        let dir = self.dir.clone();
        let next = Arc::clone(&self.next);
        let respawn = move |manifest: &Manifest, bytes: &[u8]| -> Result<DylibPlugin, BoxError> {
            let section = manifest_section(bytes).map_err(|e| e.to_string())?;
            Ok(private_copy(&dir, &next, &file, bytes, manifest, section)?)
        };
        Ok(Package::new(plugin, manifest, bytes).respawn(respawn))
    }
}

/// Writes `bytes` to a new private copy in `dir` and makes an unlinked
/// version of it.
fn private_copy(
    dir: &Path,
    next: &AtomicU64,
    file: &str,
    bytes: &[u8],
    manifest: &Manifest,
    section: &[u8],
) -> Result<DylibPlugin, DylibError> {
    let n = next.fetch_add(1, Ordering::Relaxed);
    let copy = dir.join(format!("{n:06}-{file}"));
    // The very bytes checked (and, by the registry, verified) are the
    // ones mapped: written once, here, and never reopened for writing.
    let written = fs::File::create_new(&copy).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&copy);
        return Err(DylibError::Io {
            path: copy,
            source: e,
        });
    }
    Ok(DylibPlugin {
        name: manifest.name().to_owned(),
        version: manifest.version().to_string(),
        section: section.to_vec(),
        linked: None,
        copy: PrivateCopy(copy),
        schema: 0,
        resources: Vec::new(),
    })
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Versions still alive keep their mapped copies open; removing the
        // names is harmless on Unix (the mapping stays).
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A private copy, deleted when dropped (after the library is unmapped).
#[derive(Debug)]
struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A mapped library and its instance.
struct Linked {
    instance: *mut c_void,
    descriptor: *const Descriptor,
    // Declared last: dropped after the instance is destroyed (see `Drop`).
    library: libloading::Library,
}

/// One version of a plugin library (see the [module docs](self)).
pub struct DylibPlugin {
    name: String,
    version: String,
    /// The manifest section's bytes, for comparison with the descriptor.
    section: Vec<u8>,
    linked: Option<Linked>,
    // After `linked`: the copy is deleted once the library is unmapped.
    copy: PrivateCopy,
    /// The state schema and resources the library declared at link.
    schema: u32,
    resources: Vec<Resource>,
}

// SAFETY: `export_plugin!` requires the plugin type to be `Send + Sync`;
// the instance pointer is only used through its entry points, which take
// `&` (calls) or run exclusively (init, shutdown, destroy: the lifecycle
// gives us `&mut self` for those). The library handle is `Send + Sync`.
unsafe impl Send for DylibPlugin {}
// SAFETY: as above; `&DylibPlugin` only makes calls.
unsafe impl Sync for DylibPlugin {}

impl fmt::Debug for DylibPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DylibPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("copy", &self.copy.0)
            .field("linked", &self.linked.is_some())
            .finish()
    }
}

impl DylibPlugin {
    /// One call into the library.
    ///
    /// # Errors
    ///
    /// The plugin's failure or (caught) panic, as a [`DylibError`].
    pub fn call(&self, input: &[u8]) -> Result<Vec<u8>, DylibError> {
        self.call_with(input, <[u8]>::to_vec)
    }

    /// One call into the library, its reply lent to `f` rather than copied
    /// out (most replies fit the host's stack buffer, so this allocates
    /// nothing on the host's side).
    ///
    /// # Errors
    ///
    /// The plugin's failure or (caught) panic, or a bad reply, as a
    /// [`DylibError`]; `f` does not run.
    pub fn call_with<R>(&self, input: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, DylibError> {
        let linked = self.linked.as_ref().ok_or(DylibError::NotLinked)?;
        // SAFETY: as in `shared`: a shared entry on a live library.
        unsafe {
            entry::run(
                &*linked.descriptor,
                |d| d.call,
                linked.instance,
                "call",
                input,
                f,
            )
        }
    }

    /// The private copy this version maps.
    pub fn path(&self) -> &Path {
        &self.copy.0
    }

    fn link_library(&mut self) -> Result<Linked, DylibError> {
        let path = self.copy.0.clone();
        // SAFETY: mapping runs the library's initializers; the file is our
        // private copy of bytes that were checked and verified, which is
        // as much as a host can do before trusting native code.
        let library = unsafe { libloading::Library::new(&path) }.map_err(|e| DylibError::Load {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // SAFETY: the symbol is declared by the ABI as a `DescriptorFn`.
        let describe: libloading::Symbol<'_, DescriptorFn> =
            unsafe { library.get(DESCRIPTOR_SYMBOL) }.map_err(|e| DylibError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        // SAFETY: calling the ABI's descriptor function, which takes no
        // arguments and returns a pointer to static data.
        let descriptor = unsafe { describe() };
        if descriptor.is_null() {
            return Err(DylibError::Load {
                path,
                reason: "the descriptor function returned null".to_owned(),
            });
        }
        let abi = |what, found: u64, expected: u64| DylibError::Abi {
            path: path.clone(),
            what,
            found,
            expected,
        };
        // Read the fixed prefix field by field before trusting the rest of
        // the layout: magic, version, size.
        // SAFETY: every descriptor version starts with these three fields;
        // the pointer is to static data in the mapped library.
        let (magic, version, size) = unsafe {
            let d = descriptor.cast::<u8>();
            (
                d.cast::<u64>().read_unaligned(),
                d.add(8).cast::<u32>().read_unaligned(),
                d.add(12).cast::<u32>().read_unaligned(),
            )
        };
        if magic != MAGIC {
            return Err(abi("the magic", magic, MAGIC));
        }
        if version != ABI_VERSION {
            return Err(abi("the ABI version", version.into(), ABI_VERSION.into()));
        }
        let expected = std::mem::size_of::<Descriptor>() as u64;
        if u64::from(size) != expected {
            return Err(abi("the descriptor size", size.into(), expected));
        }
        // SAFETY: magic, version and size match: it is a `Descriptor`.
        let d = unsafe { &*descriptor };
        // SAFETY: the descriptor's manifest is static data of that length.
        let manifest = unsafe { std::slice::from_raw_parts(d.manifest, d.manifest_len) };
        if manifest != self.section.as_slice() {
            return Err(DylibError::ManifestMismatch { path });
        }
        // SAFETY: the ABI's constructor.
        let instance = unsafe { (d.create)() };
        if instance.is_null() {
            return Err(DylibError::Create);
        }
        Ok(Linked {
            instance,
            descriptor,
            library,
        })
    }

    /// Runs an entry point that reads the instance (calls may share it).
    fn shared(
        &self,
        pick: fn(&Descriptor) -> EntryFn,
        what: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, DylibError> {
        let linked = self.linked.as_ref().ok_or(DylibError::NotLinked)?;
        // SAFETY: the descriptor is live while the library is (`linked`
        // holds both, and a lease or `&self` keeps `self` alive); a shared
        // entry may run on many threads at once (the ABI's contract).
        unsafe {
            entry::run(
                &*linked.descriptor,
                pick,
                linked.instance,
                what,
                input,
                <[u8]>::to_vec,
            )
        }
    }

    /// Runs an entry point that takes the instance exclusively.
    fn exclusive(
        &mut self,
        pick: fn(&Descriptor) -> EntryFn,
        what: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, DylibError> {
        let linked = self.linked.as_ref().ok_or(DylibError::NotLinked)?;
        // SAFETY: as in `shared`, and `&mut self`: no other entry runs on
        // the instance meanwhile.
        unsafe {
            entry::run(
                &*linked.descriptor,
                pick,
                linked.instance,
                what,
                input,
                <[u8]>::to_vec,
            )
        }
    }
}

impl DylibPlugin {
    /// Destroys the instance and unmaps the library, if linked.
    fn unlink(&mut self) {
        if let Some(linked) = self.linked.take() {
            // SAFETY: the last use of the instance: no lease exists (the
            // version was drained and shut down, never served, or its link
            // is being undone), and the library is still mapped (dropped
            // just below).
            unsafe { ((*linked.descriptor).destroy)(linked.instance) };
            // Unmaps the library (`dlclose`), after which no pointer into
            // it is used again.
            drop(linked.library);
        }
    }

    /// Reads what the version declares: its state schema and resources.
    fn describe(&mut self) -> Result<(), DylibError> {
        let description = self.shared(|d| d.describe, "describe", &[])?;
        let (schema, resources) =
            reload_abi::wire::decode_description(&description).map_err(|source| {
                DylibError::Garbage {
                    entry: "describe",
                    source,
                }
            })?;
        self.schema = schema;
        self.resources = resources.into_iter().map(Resource::from).collect();
        Ok(())
    }
}

impl Drop for DylibPlugin {
    fn drop(&mut self) {
        // Then `copy` deletes the file.
        self.unlink();
    }
}

impl Hooks for DylibPlugin {
    /// The configuration bytes the library's `init` receives (`b""` for
    /// none): whatever the host passes when it registers or reloads.
    type Context = [u8];

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn link(&mut self) -> Result<(), BoxError> {
        let linked = self.link_library()?;
        self.linked = Some(linked);
        // What the version declares is read once, here: a library whose
        // description does not decode is refused before it initializes,
        // and unlinked, so a retried `link` starts from nothing.
        if let Err(e) = self.describe() {
            self.unlink();
            return Err(e.into());
        }
        Ok(())
    }

    fn init(&mut self, config: &[u8]) -> Result<(), BoxError> {
        self.exclusive(|d| d.init, "init", config)?;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.exclusive(|d| d.shutdown, "shutdown", &[])?;
        Ok(())
    }
}

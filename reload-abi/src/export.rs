//! The entry points [`export_plugin!`](crate::export_plugin) exports,
//! generic over the plugin type: each turns the C call into a call of the
//! [`Plugin`] method, catches a panic, and writes the reply as [`Output`]
//! describes. Not public API: the macro is.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::ffi::c_void;
use core::mem::ManuallyDrop;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::wire;
use crate::{Descriptor, EntryFn, Output, Plugin, Status, ABI_VERSION, MAGIC};

/// The descriptor of plugin type `T`.
pub const fn descriptor<T: Plugin>(manifest: *const u8, manifest_len: usize) -> Descriptor {
    Descriptor {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        size: core::mem::size_of::<Descriptor>() as u32,
        manifest,
        manifest_len,
        create: create::<T>,
        destroy: destroy::<T>,
        free,
        init: init::<T> as EntryFn,
        call: call::<T>,
        shutdown: shutdown::<T>,
        describe: describe::<T>,
        save: save::<T>,
        migrate: migrate::<T>,
        restore: restore::<T>,
        persist: persist::<T>,
        check_compat: check_compat::<T>,
        open: open::<T>,
        checkpoint: checkpoint::<T>,
        resume: resume::<T>,
        close: close::<T>,
    }
}

fn message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => String::from(*s),
            Err(_) => String::from("a non-string panic"),
        },
    }
}

/// The input slice (a null pointer with length 0 is the empty slice).
///
/// # Safety
///
/// `ptr` is valid for `len` bytes of reads, or `len` is 0.
unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

/// Runs `f` with panics caught and writes its reply.
///
/// # Safety
///
/// `buf` is valid for `cap` bytes of writes and `out` for one [`Output`]
/// write (the host's).
unsafe fn respond(
    buf: *mut u8,
    cap: usize,
    out: *mut Output,
    f: impl FnOnce() -> Result<Vec<u8>, String>,
) -> i32 {
    let (status, bytes) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(bytes)) => (Status::Ok, bytes),
        Ok(Err(e)) => (Status::Failed, e.into_bytes()),
        Err(payload) => (Status::Panicked, message(payload).into_bytes()),
    };
    let reply = if bytes.len() <= cap {
        if !bytes.is_empty() {
            // SAFETY: it fits the host's buffer of `cap` bytes.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
        }
        Output {
            ptr: core::ptr::null_mut(),
            len: bytes.len(),
            cap: 0,
        }
    } else {
        // Handed to the host, which gives it back through `free`.
        let mut bytes = ManuallyDrop::new(bytes);
        Output {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    };
    // SAFETY: the caller's contract.
    unsafe { out.write(reply) };
    status as i32
}

/// Gives back an output allocation.
///
/// # Safety
///
/// `ptr`, `len`, `cap` came from one [`Output`] this library handed out,
/// each given back once.
pub unsafe extern "C" fn free(ptr: *mut u8, len: usize, cap: usize) {
    // SAFETY: the caller's contract: a `Vec<u8>` of this library's.
    drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
}

/// # Safety
///
/// Called by the host, once per instance.
pub unsafe extern "C" fn create<T: Plugin>() -> *mut c_void {
    match catch_unwind(|| Box::new(T::new())) {
        Ok(b) => Box::into_raw(b).cast(),
        Err(_) => core::ptr::null_mut(),
    }
}

/// # Safety
///
/// `this` came from `create::<T>`; destroyed once, after every other entry.
pub unsafe extern "C" fn destroy<T: Plugin>(this: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(this.cast::<T>()) })
    }));
}

/// Defines entry points on `&T` (`shared`) or `&mut T` (`exclusive`), with
/// the decoded input.
macro_rules! entry {
    ($(#[$doc:meta])* $name:ident, shared, |$this:ident, $input:ident| $body:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// `this` came from `create::<T>` and is live; `input` is valid for
        /// `input_len` bytes; `buf`/`cap`/`out` as in [`Output`].
        pub unsafe extern "C" fn $name<T: Plugin>(
            this: *mut c_void,
            input_ptr: *const u8,
            input_len: usize,
            buf: *mut u8,
            cap: usize,
            out: *mut Output,
        ) -> i32 {
            // SAFETY: the caller's contract; shared entries only read.
            let $this: &T = unsafe { &*this.cast::<T>() };
            // SAFETY: the caller's contract.
            let $input = unsafe { input(input_ptr, input_len) };
            // SAFETY: the caller's contract.
            unsafe { respond(buf, cap, out, || $body) }
        }
    };
    ($(#[$doc:meta])* $name:ident, exclusive, |$this:ident, $input:ident| $body:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// As for the shared entries, and the host runs no other entry on
        /// the instance meanwhile.
        pub unsafe extern "C" fn $name<T: Plugin>(
            this: *mut c_void,
            input_ptr: *const u8,
            input_len: usize,
            buf: *mut u8,
            cap: usize,
            out: *mut Output,
        ) -> i32 {
            // SAFETY: the caller's contract: exclusive access.
            let $this: &mut T = unsafe { &mut *this.cast::<T>() };
            // SAFETY: the caller's contract.
            let $input = unsafe { input(input_ptr, input_len) };
            // SAFETY: the caller's contract.
            unsafe { respond(buf, cap, out, || $body) }
        }
    };
}

fn bad(e: wire::WireError) -> String {
    alloc::format!("bad request from the host: {e}")
}

entry!(
    /// `Plugin::init` with the configuration bytes.
    init, exclusive, |this, config| this.init(config).map(|()| Vec::new())
);
entry!(
    /// `Plugin::call`.
    call, shared, |this, input| this.call(input)
);
entry!(
    /// `Plugin::shutdown`.
    shutdown, exclusive, |this, _input| this.shutdown().map(|()| Vec::new())
);
entry!(
    /// `Plugin::schema` and `Plugin::resources`.
    describe, shared, |this, _input| Ok(wire::encode_description(this.schema(), &this.resources()))
);
entry!(
    /// `Plugin::save`.
    save, shared, |this, _input| this.save().map(|s| wire::encode_saved(s.as_deref()))
);
entry!(
    /// `Plugin::migrate`, one step.
    migrate, shared, |this, input| {
        let (from, state) = wire::decode_at_schema(input).map_err(bad)?;
        let (to, state) = this.migrate(from, state.to_vec())?;
        Ok(wire::encode_at_schema(to, &state))
    }
);
entry!(
    /// `Plugin::restore`.
    restore, exclusive, |this, state| this.restore(state).map(|()| Vec::new())
);
entry!(
    /// `Plugin::persist`.
    persist, shared, |this, input| this.persist(wire::decode_name(input).map_err(bad)?)
);
entry!(
    /// `Plugin::check_compat`.
    check_compat, shared, |this, input| {
        let (old, persisted) = wire::decode_compat(input).map_err(bad)?;
        this.check_compat(&old, persisted).map(|()| Vec::new())
    }
);
entry!(
    /// `Plugin::open`.
    open, exclusive, |this, input| {
        let (name, persisted) = wire::decode_named(input).map_err(bad)?;
        this.open(name, persisted).map(|()| Vec::new())
    }
);
entry!(
    /// `Plugin::checkpoint`.
    checkpoint, shared, |this, input| {
        let name = wire::decode_name(input).map_err(bad)?;
        this.checkpoint(name).map(|p| p.to_le_bytes().to_vec())
    }
);
entry!(
    /// `Plugin::resume`.
    resume, exclusive, |this, input| {
        let (name, position) = wire::decode_named_position(input).map_err(bad)?;
        this.resume(name, position).map(|()| Vec::new())
    }
);
entry!(
    /// `Plugin::close`.
    close, exclusive, |this, input| {
        this.close(wire::decode_name(input).map_err(bad)?);
        Ok(Vec::new())
    }
);

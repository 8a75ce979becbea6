//! A broken `adder`: its manifest is fine, but its descriptor claims an ABI
//! version the host does not speak (as a library built against a future
//! `reload-abi` would). The host must refuse it with a typed error, never
//! call into it, and keep the old version serving.
#![allow(missing_docs)]

use std::ffi::c_void;

use reload_abi::{Descriptor, Output};

#[used]
#[link_section = ".reload_manifest"]
static MANIFEST: [u8; 59] = *b"reload-manifest 1\nname adder\nversion 1.2.0\nexport call\n\n\n\n\n";

unsafe extern "C" fn create() -> *mut c_void {
    // Never reached: the host checks the ABI version first.
    std::process::abort()
}

unsafe extern "C" fn entry(
    _: *mut c_void,
    _: *const u8,
    _: usize,
    _: *mut u8,
    _: usize,
    _: *mut Output,
) -> i32 {
    std::process::abort()
}

unsafe extern "C" fn destroy(_: *mut c_void) {
    std::process::abort()
}

unsafe extern "C" fn free(_: *mut u8, _: usize, _: usize) {
    std::process::abort()
}

static DESCRIPTOR: Descriptor = Descriptor {
    magic: reload_abi::MAGIC,
    abi_version: 999,
    size: core::mem::size_of::<Descriptor>() as u32,
    manifest: MANIFEST.as_ptr(),
    manifest_len: MANIFEST.len(),
    create,
    destroy,
    free,
    init: entry,
    call: entry,
    shutdown: entry,
    describe: entry,
    save: entry,
    migrate: entry,
    restore: entry,
    persist: entry,
    check_compat: entry,
    open: entry,
    checkpoint: entry,
    resume: entry,
    close: entry,
};

#[no_mangle]
extern "C" fn reload_plugin_descriptor() -> *const Descriptor {
    &DESCRIPTOR
}

//! A library whose entry points lie: a well-formed descriptor and
//! manifest, then replies that do not decode, lengths past the host's
//! buffer or past its own allocation, and statuses the ABI does not
//! define. What it does depends on the request, so one library exercises
//! every path; the host must answer each with a typed error.
//!
//! `call` with input:
//! - `len`: claims 1000 bytes in the host's buffer (which is smaller);
//! - `alloc`: hands an allocation whose length exceeds its capacity;
//! - `status`: returns status 42;
//! - `big`: a valid reply of 100 000 bytes through its own allocation;
//! - anything else: echoes it.
//!
//! `save` replies with an unknown tag, `checkpoint` with three bytes,
//! `migrate` with two; `describe` is valid (one stream, `s`), so the
//! library links and the rest can be reached.
#![allow(missing_docs)]

use std::ffi::c_void;
use std::mem::ManuallyDrop;

use reload_abi::{wire, Descriptor, Output};

struct Garbage;

impl reload_abi::Plugin for Garbage {
    fn new() -> Self {
        Garbage
    }
    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        Ok(input.to_vec())
    }
}

/// Writes `bytes` as the library's own allocation.
///
/// # Safety
///
/// `out` is the host's.
unsafe fn owned(out: *mut Output, bytes: Vec<u8>, claim: Option<usize>) {
    let mut bytes = ManuallyDrop::new(bytes);
    // SAFETY: the host's `out`.
    unsafe {
        out.write(Output {
            ptr: bytes.as_mut_ptr(),
            len: claim.unwrap_or(bytes.len()),
            cap: bytes.capacity(),
        })
    };
}

unsafe extern "C" fn call(
    _: *mut c_void,
    input: *const u8,
    len: usize,
    buf: *mut u8,
    cap: usize,
    out: *mut Output,
) -> i32 {
    // SAFETY: the host's input slice.
    let input = unsafe { std::slice::from_raw_parts(input, len) };
    match input {
        // SAFETY: the host's `out`; the claim is the lie under test.
        b"len" => unsafe {
            out.write(Output {
                ptr: std::ptr::null_mut(),
                len: cap + 744,
                cap: 0,
            })
        },
        // SAFETY: as above.
        b"alloc" => unsafe { owned(out, vec![7; 16], Some(1 << 40)) },
        b"status" => return 42,
        // SAFETY: as above.
        b"big" => unsafe { owned(out, vec![9; 100_000], None) },
        _ => {
            let n = input.len().min(cap);
            // SAFETY: `n <= cap`, the host's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(input.as_ptr(), buf, n);
                out.write(Output {
                    ptr: std::ptr::null_mut(),
                    len: n,
                    cap: 0,
                });
            }
        }
    }
    0
}

/// Replies `bytes` with status Ok, in the host's buffer.
///
/// # Safety
///
/// The host's `buf`, `cap` and `out`.
unsafe fn reply(bytes: &[u8], buf: *mut u8, cap: usize, out: *mut Output) -> i32 {
    let n = bytes.len().min(cap);
    // SAFETY: the caller's contract; `n <= cap`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n);
        out.write(Output {
            ptr: std::ptr::null_mut(),
            len: n,
            cap: 0,
        });
    }
    0
}

macro_rules! replying {
    ($name:ident, $bytes:expr) => {
        unsafe extern "C" fn $name(
            _: *mut c_void,
            _: *const u8,
            _: usize,
            buf: *mut u8,
            cap: usize,
            out: *mut Output,
        ) -> i32 {
            // SAFETY: the host's buffers.
            unsafe { reply(&$bytes, buf, cap, out) }
        }
    };
}

replying!(
    describe,
    wire::encode_description(1, &[wire::Resource::stream("s", 1)])
);
replying!(save, [9u8, 1, 2]);
replying!(checkpoint, [1u8, 2, 3]);
replying!(migrate, [1u8, 2]);

const LEN: usize = reload_abi::manifest::manifest_len("garbage", "0.6.6", &["call"], &[]);

#[used]
#[link_section = ".reload_manifest"]
static MANIFEST: [u8; LEN] =
    reload_abi::manifest::manifest_bytes::<LEN>("garbage", "0.6.6", &["call"], &[]);

static DESCRIPTOR: Descriptor = {
    let mut d = reload_abi::export::descriptor::<Garbage>(MANIFEST.as_ptr(), LEN);
    d.call = call;
    d.describe = describe;
    d.save = save;
    d.checkpoint = checkpoint;
    d.migrate = migrate;
    d
};

#[no_mangle]
extern "C" fn reload_plugin_descriptor() -> *const Descriptor {
    &DESCRIPTOR
}

//! Calling one entry point of a library and taking its reply, as
//! [`reload_abi::Output`] describes: the reply is in our buffer (its length
//! checked against the buffer), or in the library's allocation (its length
//! checked against the allocation and [`MAX_OUTPUT`], copied, and given
//! back to the library's `free`). The entry point runs once per request,
//! whatever the size of its reply.

use std::ffi::c_void;

use reload_abi::{Descriptor, EntryFn, Output, Status};

use super::{DylibError, MAX_OUTPUT};

/// Runs `pick(descriptor)` on `instance` with `input`; on success, hands
/// the reply to `f` (borrowed: no copy when it fits our buffer).
///
/// # Safety
///
/// `descriptor` and `instance` belong to a mapped library that stays
/// mapped for the call, and the caller has the access the entry point
/// requires (exclusive for the ABI's exclusive entries).
pub(super) unsafe fn run<R>(
    descriptor: &Descriptor,
    pick: fn(&Descriptor) -> EntryFn,
    instance: *mut c_void,
    what: &'static str,
    input: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, DylibError> {
    // Most replies are small: a stack buffer saves an allocation and a
    // zeroing per call.
    let mut stack = [0u8; 256];
    let mut out = Output::empty();
    let entry = pick(descriptor);
    // SAFETY: the caller's contract for the library; the input, the
    // buffer and `out` are ours and sized as passed.
    let code = unsafe {
        entry(
            instance,
            input.as_ptr(),
            input.len(),
            stack.as_mut_ptr(),
            stack.len(),
            &mut out,
        )
    };
    let bad = |reason: String| DylibError::Output {
        entry: what,
        reason,
    };
    if out.ptr.is_null() {
        let len = stack.len();
        let reply = stack
            .get(..out.len)
            .ok_or_else(|| bad(format!("{} bytes claimed in a buffer of {len}", out.len)))?;
        return finish(code, reply, f);
    }
    let bytes = if out.len > out.cap {
        // Giving back a length over the capacity would be undefined in the
        // library's allocator: leak it rather.
        return Err(bad(format!(
            "{} bytes in an allocation of {}",
            out.len, out.cap
        )));
    } else {
        let copied = if out.len > MAX_OUTPUT {
            Err(bad(format!(
                "{} bytes, over the limit of {MAX_OUTPUT}",
                out.len
            )))
        } else {
            // SAFETY: the library's allocation of `cap >= len` bytes, which
            // it handed over and frees only when we give it back.
            Ok(unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec())
        };
        // SAFETY: the three values the library handed out, given back once.
        unsafe { (descriptor.free)(out.ptr, out.len, out.cap) };
        copied?
    };
    finish(code, &bytes, f)
}

fn finish<R>(code: i32, reply: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, DylibError> {
    let text = || String::from_utf8_lossy(reply).into_owned();
    match Status::from_raw(code) {
        Some(Status::Ok) => Ok(f(reply)),
        Some(Status::Failed) => Err(DylibError::Failed(text())),
        Some(Status::Panicked) => Err(DylibError::Panicked(text())),
        None => Err(DylibError::Status(code)),
    }
}

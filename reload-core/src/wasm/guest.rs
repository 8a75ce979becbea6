//! One instance of a module and the calls into it: every pointer and length
//! the guest hands back is checked against its memory before a byte is
//! read, and every trap, interrupt or exhausted fuel is a typed error of
//! that call.

use std::time::Duration;

use wasmtime::{
    Engine, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use super::{Limits, WasmError, TICK};

/// What a store carries: its resource limits.
pub(super) struct State {
    limits: StoreLimits,
}

/// An instantiated module with its memory and the two entry points every
/// call uses.
pub(super) struct Guest {
    store: Store<State>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    call: TypedFunc<(i32, i32), i64>,
}

/// Names of the guest ABI's exports.
pub(super) const ALLOC: &str = "reload_alloc";
pub(super) const CALL: &str = "reload_call";

fn classify(entry: &'static str, deadline: Duration, e: &wasmtime::Error) -> WasmError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => WasmError::Interrupted { entry, deadline },
        Some(Trap::OutOfFuel) => WasmError::OutOfFuel { entry },
        _ => WasmError::Trap {
            entry,
            message: format!("{e:#}"),
        },
    }
}

impl Guest {
    /// Instantiates `module` with `limits` (memory, instances).
    pub(super) fn new(
        engine: &Engine,
        module: &Module,
        limits: &Limits,
    ) -> Result<Self, WasmError> {
        let state = State {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .instances(1)
                .build(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        arm(&mut store, limits, "start")?;
        let instance = Instance::new(&mut store, module, &[])
            .map_err(|e| classify("instantiate", limits.deadline, &e))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(WasmError::MissingExport {
                name: "memory".to_owned(),
            })?;
        let alloc =
            instance
                .get_typed_func(&mut store, ALLOC)
                .map_err(|e| WasmError::Signature {
                    name: ALLOC,
                    reason: e.to_string(),
                })?;
        let call = instance
            .get_typed_func(&mut store, CALL)
            .map_err(|e| WasmError::Signature {
                name: CALL,
                reason: e.to_string(),
            })?;
        Ok(Guest {
            store,
            instance,
            memory,
            alloc,
            call,
        })
    }

    /// Whether the module exports `name`.
    pub(super) fn has(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Copies `input` into guest memory (through its `reload_alloc`).
    fn write_input(
        &mut self,
        entry: &'static str,
        input: &[u8],
        limits: &Limits,
    ) -> Result<(i32, i32), WasmError> {
        let len = i32::try_from(input.len()).map_err(|_| WasmError::BadReply {
            entry,
            reason: format!("input of {} bytes is over the guest's 2 GiB", input.len()),
        })?;
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| classify(entry, limits.deadline, &e))?;
        let at = self.check(entry, ptr as u32 as u64, input.len() as u64)?;
        self.memory.data_mut(&mut self.store)[at..at + input.len()].copy_from_slice(input);
        Ok((ptr, len))
    }

    /// Checks that `ptr..ptr + len` lies inside guest memory; its start.
    fn check(&mut self, entry: &'static str, ptr: u64, len: u64) -> Result<usize, WasmError> {
        let size = self.memory.data_size(&self.store) as u64;
        match ptr.checked_add(len) {
            Some(end) if end <= size => Ok(ptr as usize),
            _ => Err(WasmError::OutOfBounds {
                entry,
                ptr,
                len,
                memory: size,
            }),
        }
    }

    /// Reads a reply: `packed` is `ptr << 32 | len`; the first byte is the
    /// status (0 ok, 1 failed with a message), the rest the payload.
    fn read_reply<R>(
        &mut self,
        entry: &'static str,
        packed: i64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, WasmError> {
        let packed = packed as u64;
        let (ptr, len) = (packed >> 32, packed & 0xffff_ffff);
        let at = self.check(entry, ptr, len)?;
        let bytes = &self.memory.data(&self.store)[at..at + len as usize];
        match bytes.split_first() {
            Some((0, payload)) => Ok(f(payload)),
            Some((1, message)) => Err(WasmError::Failed {
                entry,
                message: String::from_utf8_lossy(message).into_owned(),
            }),
            Some((status, _)) => Err(WasmError::BadReply {
                entry,
                reason: format!("unknown status {status}"),
            }),
            None => Err(WasmError::BadReply {
                entry,
                reason: "an empty reply".to_owned(),
            }),
        }
    }

    /// `reload_call` with `input`; the reply lent to `f`.
    pub(super) fn call<R>(
        &mut self,
        input: &[u8],
        limits: &Limits,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, WasmError> {
        arm(&mut self.store, limits, "call")?;
        let (ptr, len) = self.write_input("call", input, limits)?;
        let packed = self
            .call
            .call(&mut self.store, (ptr, len))
            .map_err(|e| classify("call", limits.deadline, &e))?;
        self.read_reply("call", packed, f)
    }

    /// Another entry point of the guest ABI (`reload_save`, ...), with an
    /// input (`(ptr, len) -> i64`) or without (`() -> i64`).
    pub(super) fn invoke(
        &mut self,
        entry: &'static str,
        input: Option<&[u8]>,
        limits: &Limits,
    ) -> Result<Vec<u8>, WasmError> {
        arm(&mut self.store, limits, entry)?;
        let signature = |e: wasmtime::Error| WasmError::Signature {
            name: entry,
            reason: e.to_string(),
        };
        let packed = match input {
            Some(input) => {
                let (ptr, len) = self.write_input(entry, input, limits)?;
                let func: TypedFunc<(i32, i32), i64> = self
                    .instance
                    .get_typed_func(&mut self.store, entry)
                    .map_err(signature)?;
                func.call(&mut self.store, (ptr, len))
            }
            None => {
                let func: TypedFunc<(), i64> = self
                    .instance
                    .get_typed_func(&mut self.store, entry)
                    .map_err(signature)?;
                func.call(&mut self.store, ())
            }
        }
        .map_err(|e| classify(entry, limits.deadline, &e))?;
        self.read_reply(entry, packed, <[u8]>::to_vec)
    }
}

/// Sets the call's bounds: its epoch deadline and its fuel.
fn arm(store: &mut Store<State>, limits: &Limits, entry: &'static str) -> Result<(), WasmError> {
    // Ticks of `TICK`, rounded up, plus one: the tick in progress may be
    // nearly over when the call starts.
    let ticks = limits.deadline.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel).map_err(|e| WasmError::Trap {
            entry,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

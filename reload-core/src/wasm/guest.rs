//! One instance of a module and the calls into it: every pointer and length
//! the guest hands back is checked against its memory before a byte is
//! read, and every trap, interrupt or exhausted fuel is a typed error of
//! that call.
//!
//! # Deadlines on the clock
//!
//! The engine's epoch counts the ticker's ticks; an epoch count alone
//! would make a deadline late by every tick the ticker overslept. So a
//! call's [`Budget`] holds the instant it must end by, the store's epoch
//! deadline only says when to look at the clock next (the ticks the budget
//! has left, at least one), and the look decides: past the instant, the
//! guest traps with `Trap::Interrupt`; before it, it runs on to the next
//! look. A call is never interrupted before its deadline, and at most one
//! tick (plus the ticker's own scheduling) after it, however long the
//! deadline.

use std::time::{Duration, Instant};

use wasmtime::{
    Engine, Instance, Memory, Module, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder,
    Trap, TypedFunc, UpdateDeadline,
};

use super::{Limits, WasmError, TICK};

/// What a store carries: its resource limits and its current call's
/// deadline.
pub(super) struct State {
    limits: StoreLimits,
    /// `None`: no deadline (see [`Budget::start`]).
    until: Option<Instant>,
}

/// A store's data that carries a call's deadline: the core modules' own
/// [`State`], and the component stores' host data.
pub(super) trait Bounded: 'static {
    /// The instant the current call must end by (`None`: never).
    fn until(&self) -> Option<Instant>;
    /// Sets it, when a call's budget is armed.
    fn set_until(&mut self, until: Option<Instant>);
}

impl Bounded for State {
    fn until(&self) -> Option<Instant> {
        self.until
    }
    fn set_until(&mut self, until: Option<Instant>) {
        self.until = until;
    }
}

/// What one call may spend, start to end, whatever it runs on the way
/// (making an instance, its `reload_init`, the call itself): the instant it
/// must end by, and its fuel.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    until: Option<Instant>,
    fuel: Option<u64>,
    /// The limit it was made from, for the error.
    pub(super) deadline: Duration,
    /// When to look at the clock first: the whole ticks in `deadline`,
    /// counted from the budget's start (one read of the clock per call).
    first_look: u64,
}

impl Budget {
    /// A budget that starts now. A deadline past what the clock can
    /// represent from now (`Duration::MAX`, say) is no deadline.
    pub(super) fn start(limits: &Limits) -> Self {
        let until = Instant::now().checked_add(limits.deadline);
        Budget {
            until,
            fuel: limits.fuel,
            deadline: limits.deadline,
            first_look: until.map_or(NEVER, |_| whole_ticks(limits.deadline)),
        }
    }
}

/// Epoch ticks standing for "never": 2^40 ticks of 2 ms is 70 years, and
/// no epoch count comes near overflowing when this is added to it.
const NEVER: u64 = 1 << 40;

/// Ticks until the clock is next worth reading: the whole ticks left
/// before `until`, at least one. The ticker keeps the epoch on the clock
/// (it catches up after oversleeping), so this many ticks never end
/// after `until` by more than the ticker's lateness.
fn ticks_left(until: Option<Instant>) -> u64 {
    match until {
        Some(until) => whole_ticks(until.saturating_duration_since(Instant::now())),
        None => NEVER,
    }
}

/// The whole ticks in `span`, at least one, at most [`NEVER`].
fn whole_ticks(span: Duration) -> u64 {
    u64::try_from(span.as_nanos() / TICK.as_nanos())
        .unwrap_or(NEVER)
        .clamp(1, NEVER)
}

/// The store's epoch callback: the look at the clock.
pub(super) fn on_epoch<T: Bounded>(
    store: StoreContextMut<'_, T>,
) -> wasmtime::Result<UpdateDeadline> {
    match store.data().until() {
        Some(until) if Instant::now() >= until => Err(Trap::Interrupt.into()),
        until => Ok(UpdateDeadline::Continue(ticks_left(until))),
    }
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

pub(super) fn classify(entry: &'static str, deadline: Duration, e: &wasmtime::Error) -> WasmError {
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
    /// Instantiates `module` with `limits` (memory, instances), its start
    /// function (if any) spending from `budget`, which stays armed for
    /// what the caller runs next.
    pub(super) fn new(
        engine: &Engine,
        module: &Module,
        limits: &Limits,
        budget: &Budget,
    ) -> Result<Self, WasmError> {
        let state = State {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .instances(1)
                .build(),
            until: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(on_epoch);
        arm(&mut store, budget, "instantiate")?;
        let instance = Instance::new(&mut store, module, &[])
            .map_err(|e| classify("instantiate", budget.deadline, &e))?;
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

    /// Arms `budget` for what runs next on this instance (a fresh budget
    /// per call; an instance just made is armed already).
    pub(super) fn arm(&mut self, budget: &Budget, entry: &'static str) -> Result<(), WasmError> {
        arm(&mut self.store, budget, entry)
    }

    /// Copies `input` into guest memory (through its `reload_alloc`).
    fn write_input(
        &mut self,
        entry: &'static str,
        input: &[u8],
        budget: &Budget,
    ) -> Result<(i32, i32), WasmError> {
        let len = i32::try_from(input.len()).map_err(|_| WasmError::BadReply {
            entry,
            reason: format!("input of {} bytes is over the guest's 2 GiB", input.len()),
        })?;
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| classify(entry, budget.deadline, &e))?;
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

    /// `reload_call` with `input`, spending from the armed `budget`; the
    /// reply lent to `f`.
    pub(super) fn call<R>(
        &mut self,
        input: &[u8],
        budget: &Budget,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, WasmError> {
        let (ptr, len) = self.write_input("call", input, budget)?;
        let packed = self
            .call
            .call(&mut self.store, (ptr, len))
            .map_err(|e| classify("call", budget.deadline, &e))?;
        self.read_reply("call", packed, f)
    }

    /// Another entry point of the guest ABI (`reload_save`, ...), with an
    /// input (`(ptr, len) -> i64`) or without (`() -> i64`), spending from
    /// the armed `budget`.
    pub(super) fn invoke(
        &mut self,
        entry: &'static str,
        input: Option<&[u8]>,
        budget: &Budget,
    ) -> Result<Vec<u8>, WasmError> {
        let signature = |e: wasmtime::Error| WasmError::Signature {
            name: entry,
            reason: e.to_string(),
        };
        let packed = match input {
            Some(input) => {
                let (ptr, len) = self.write_input(entry, input, budget)?;
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
        .map_err(|e| classify(entry, budget.deadline, &e))?;
        self.read_reply(entry, packed, <[u8]>::to_vec)
    }
}

/// Sets the call's bounds: its deadline (and when to look at the clock
/// first) and its fuel.
pub(super) fn arm<T: Bounded>(
    store: &mut Store<T>,
    budget: &Budget,
    entry: &'static str,
) -> Result<(), WasmError> {
    store.data_mut().set_until(budget.until);
    // Each budget is armed once, just after it starts (a call's, right
    // after the pool's lock; a fresh instance's, just before it is made),
    // so its whole ticks serve without a second read of the clock: the
    // first look comes late by at most the moments in between, and the
    // callback then looks at the clock itself.
    store.set_epoch_deadline(budget.first_look);
    if let Some(fuel) = budget.fuel {
        store.set_fuel(fuel).map_err(|e| WasmError::Trap {
            entry,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

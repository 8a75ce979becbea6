//! [`Names`]: the name map as calls by name read it, in a slot of its own.
//!
//! The registry's map is copy-on-write: every registration and
//! unregistration publishes a new snapshot. Its admin paths read the
//! snapshot through `arc-swap`, whose load writes the thread's debt slot
//! with a locked instruction (and its guard's drop pays it back with
//! another). A call by name needs the snapshot for longer than the lookup,
//! since the plugin's slot lives in it, and wants no locked instruction.
//! So the same snapshots are also published as the versions of a [`Slot`]:
//! a call by name takes a borrowed lease on the current snapshot (no locked
//! instruction, see the drain's design), finds the plugin, and keeps that
//! lease until the call ends, so the node it found outlives its own lease.
//!
//! A snapshot replaced here drains like any version: it is an orphan (its
//! handle is dropped at once, publication never waits on calls), finalized
//! by the next publication's reap, or by the registry's drop, once no call
//! by name holds it. Both copies are published under the admin lock, map
//! first: a call by name may read a snapshot an instant older than the
//! map, as if it had started an instant earlier, and by the time a
//! registration or unregistration returns, both show it.
//!
//! A snapshot is a hash index of the map, not the ordered map itself:
//! the admin paths want name order, a call wants one lookup, in a few
//! instructions whatever the registry's size. Building it costs a
//! publication O(n), as the copy-on-write map does. The index is made for
//! that lookup: a name is found by its length and its first and last (up
//! to) eight bytes, which for a name of at most 16 bytes are all of it, so
//! that a lookup hashes and compares three words and calls no `memcmp`
//! (a longer name is compared whole once its three words match).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::{Map, Node};
use crate::{Hooks, Initialized, Plugin, Slot, Stateful};

/// One snapshot of the name map, as a slot version.
pub(crate) struct Names<P: Stateful> {
    /// The plugins, in name order: they drop in that order (loom needs
    /// the same drops in every execution).
    entries: Vec<Entry<P>>,
    /// Open addressing, linear probing: 1 + a position in `entries`, or 0
    /// for an empty slot. At most half full, so every probe ends.
    slots: Box<[u32]>,
    /// `slots.len() - 1` (a power of two, minus one).
    mask: usize,
    /// Per snapshot, so that names cannot be chosen to collide.
    seed: u64,
}

struct Entry<P: Stateful> {
    key: Key,
    name: Box<str>,
    node: Arc<Node<P>>,
}

/// What a name is found by: its length and its first and last (up to)
/// eight bytes. Equal keys are equal names when the length is at most 16.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    len: usize,
    head: u64,
    tail: u64,
}

impl Key {
    #[inline]
    fn of(name: &[u8]) -> Key {
        let len = name.len();
        let (head, tail) = match (name.first_chunk::<8>(), name.last_chunk::<8>()) {
            (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
            _ => match (name.first_chunk::<4>(), name.last_chunk::<4>()) {
                // 4 to 7 bytes: the first four and the last four cover all.
                (Some(head), Some(tail)) => (
                    u64::from(u32::from_le_bytes(*head)),
                    u64::from(u32::from_le_bytes(*tail)),
                ),
                // 0 to 3 bytes: the first, middle and last cover all.
                _ => {
                    let byte = |i: usize| name.get(i).map_or(0, |&b| u64::from(b));
                    (
                        byte(0) | byte(len / 2) << 8 | byte(len.wrapping_sub(1)) << 16,
                        0,
                    )
                }
            },
        };
        Key { len, head, tail }
    }

    /// One folded multiply of the three words.
    #[inline]
    fn hash(&self, seed: u64) -> u64 {
        let a = self.head ^ seed ^ (self.len as u64).rotate_left(32);
        let b = self.tail ^ 0x9e37_79b9_7f4a_7c15;
        let wide = u128::from(a).wrapping_mul(u128::from(b));
        (wide as u64) ^ ((wide >> 64) as u64)
    }
}

impl<P: Stateful> Names<P> {
    fn new(map: &Map<P>) -> Self {
        let seed = RandomState::new().hash_one(map.len());
        let entries: Vec<Entry<P>> = map
            .iter()
            .map(|(name, node)| Entry {
                key: Key::of(name.as_bytes()),
                name: name.as_str().into(),
                node: Arc::clone(node),
            })
            .collect();
        let size = (entries.len() * 2).next_power_of_two().max(1);
        let mask = size - 1;
        let mut slots = vec![0u32; size].into_boxed_slice();
        for (at, entry) in entries.iter().enumerate() {
            let mut i = entry.key.hash(seed) as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            // A registry of 2^32 plugins is out of reach of memory first.
            slots[i] = u32::try_from(at + 1).unwrap_or(u32::MAX);
        }
        Names {
            entries,
            slots,
            mask,
            seed,
        }
    }

    /// The node registered as `name` in this snapshot. Inlined: its
    /// registers are the caller's, with no spills around a call.
    #[inline(always)]
    pub(crate) fn get(&self, name: &str) -> Option<&Node<P>> {
        let key = Key::of(name.as_bytes());
        let mut i = key.hash(self.seed) as usize & self.mask;
        loop {
            let slot = *self.slots.get(i)?;
            let entry = self.entries.get((slot as usize).checked_sub(1)?)?;
            if entry.key == key && (key.len <= 16 || *entry.name == *name) {
                return Some(&entry.node);
            }
            i = (i + 1) & self.mask;
        }
    }
}

impl<P: Stateful> Hooks for Names<P> {
    type Context = ();

    fn name(&self) -> &str {
        // Kept out of `tracing` and `metrics` (see the constant).
        crate::events::INTERNAL
    }
}

/// A snapshot, ready to publish.
fn ready<P: Stateful>(map: &Arc<Map<P>>) -> Plugin<Names<P>, Initialized> {
    // `Names` keeps the default hooks: its `init` does nothing and cannot
    // fail or panic.
    match Plugin::new(Names::new(map)).ready(&()) {
        Ok(ready) => ready,
        Err(_) => unreachable!("the default init hook cannot fail"),
    }
}

/// The slot of snapshots.
pub(crate) fn slot<P: Stateful>(map: &Arc<Map<P>>) -> Slot<Names<P>> {
    Slot::new(ready(map))
}

/// Publishes `map` to calls by name; the replaced snapshot drains as an
/// orphan, and the ones that drained are finalized.
pub(crate) fn publish<P: Stateful>(names: &Slot<Names<P>>, map: &Arc<Map<P>>) {
    // Neither step can fail: `Names` has no hooks that could, the admin
    // lock serializes publications (no turn is held), and the slot is
    // never closed. Were one to fail anyway, the calls by name would keep
    // reading the previous snapshot: stale, never unsound.
    let _ = names.replace(ready(map));
    names.reap();
}

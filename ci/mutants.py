#!/usr/bin/env python3
"""The mutation suite: plausible single mistakes in every file that takes
part in a reload, each applied to a scratch copy of the repository, and the
test stage that rejects it.

Each mutant names the stages that should kill it, cheapest first; the run
tries them in order and records the first that fails (a test failure, a
loom causality violation or deadlock, or a hang past the stage's timeout).
A mutant that passes every stage it names SURVIVED: either a test is
missing (write it) or the mutant is equivalent (mark it `equivalent=` with
the one-line argument; equivalents are listed, not run, unless --all).

    python3 ci/mutants.py                 # every mutant (about an hour)
    python3 ci/mutants.py --quick         # six loom-stage mutants of the drain (CI)
    python3 ci/mutants.py --only NAME...  # some
    python3 ci/mutants.py --list          # the table of mutants, no run
    python3 ci/mutants.py --check         # every anchor found exactly once

Never touches the working tree. Builds go to target/mutants/{loom,plain},
so a second run rebuilds only what a mutant changed. Results: a Markdown
table on stdout and target/mutants/results.md.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Mutant:
    name: str
    file: str  # relative to the repository root
    edits: list  # [(old, new)]: old must occur exactly once
    kill: list  # [stage]: "loom:<test>", "test:<cargo test args>"
    what: str = ""
    equivalent: str = ""  # the one-line argument, if it is
    quick: bool = False  # part of CI's fast run
    more: list = field(default_factory=list)  # [(file, old, new)] in other files


CORE = "reload-core/src/"
M = []


def mutant(name, file, edits, kill, what, **kw):
    if isinstance(edits, tuple):
        edits = [edits]
    if not file.startswith(("lifecycle/", "reload-abi/")):
        file = CORE + file
    M.append(Mutant(name, file, edits, kill, what, **kw))


# ---------------------------------------------------------------- drain.rs
# The lock-free call path (#17): under loom the light and heavy fences are
# both `SeqCst` fences (loom/mocked.rs), so deleting either is a mistake
# loom can see; the counts' single-writer rule and the sum's read order are
# checked by loom_counts, the reused shells by loom_shell_reuse.
mutant("enter-without-light-fence", "drain.rs",
       ("    // The light fence: the caller's half of pair A, between the count\n"
        "    // and the re-load of `current`.\n    light_fence();\n",
        ""),
       ["loom:loom_call_races_replace"], "caller's fence of pair A deleted (first try and retries)", quick=True)
mutant("enter-without-recheck", "drain.rs",
       ("    light_fence();\n    let now = current.load(Ordering::Acquire, guard);",
        "    light_fence();\n    let now = seen;"),
       ["loom:loom_call_races_replace"], "the re-load of `current` after the count deleted (first try and retries)")
mutant("drain-without-heavy-fence", "drain.rs",
       ("        heavy_fence();\n        self.in_flight() == 0",
        "        self.in_flight() == 0"),
       ["loom:loom_call_races_replace"], "reloader's fence of pairs A and B deleted", quick=True)
mutant("wake-check-before-decrement", "drain.rs",
       [("        version.count_out(hold);\n", ""),
        ("            version.wake_if_drained();\n        }\n    }",
         "            version.wake_if_drained();\n        }\n        version.count_out(hold);\n    }")],
       ["loom:loom_release_wakes_drain"], "look at the phase before giving the lease back")
mutant("release-without-light-fence", "drain.rs",
       ("        // The light fence: the caller's half of pair B, between the count\n"
        "        // and the loads of the phase and the gate flag.\n        light_fence();\n",
        ""),
       ["loom:loom_release_wakes_drain", "loom:loom_lease_dropped_elsewhere"],
       "caller's fence of pair B deleted", quick=True)
mutant("in-flight-relaxed", "drain.rs",
       [("            .map(|c| c.shared.load(Ordering::Acquire))",
         "            .map(|c| c.shared.load(Ordering::Relaxed))"),
        ("            .map(|c| c.own.load(Ordering::Acquire))",
         "            .map(|c| c.own.load(Ordering::Relaxed))")],
       ["loom:loom_release_wakes_drain"], "the drain's sum no longer acquires the calls it waited for")
mutant("release-relaxed", "drain.rs",
       ("                own.load(Ordering::Relaxed).wrapping_sub(1),\n                Ordering::Release,",
        "                own.load(Ordering::Relaxed).wrapping_sub(1),\n                Ordering::Relaxed,"),
       ["loom:loom_release_wakes_drain", "loom:loom_call_races_replace"],
       "an owner's give-back no longer publishes its call (no pin precedes it any more: "
       "the equivalence of #18's `release-relaxed` is gone, as its note said)", quick=True)
mutant("release-shared-relaxed", "drain.rs",
       ("            counts.shared.fetch_add(1, Ordering::Release);",
        "            counts.shared.fetch_add(1, Ordering::Relaxed);"),
       ["loom:loom_lease_dropped_elsewhere", "loom:loom_counts"],
       "a give-back on another thread no longer publishes its call")
mutant("sum-own-first", "drain.rs",
       ("        let given_back: usize = self\n            .counts\n            .iter()\n"
        "            .map(|c| c.shared.load(Ordering::Acquire))\n            .fold(0, usize::wrapping_add);\n"
        "        let counted: usize = self\n            .counts\n            .iter()\n"
        "            .map(|c| c.own.load(Ordering::Acquire))\n            .fold(0, usize::wrapping_add);",
        "        let counted: usize = self\n            .counts\n            .iter()\n"
        "            .map(|c| c.own.load(Ordering::Acquire))\n            .fold(0, usize::wrapping_add);\n"
        "        let given_back: usize = self\n            .counts\n            .iter()\n"
        "            .map(|c| c.shared.load(Ordering::Acquire))\n            .fold(0, usize::wrapping_add);"),
       ["loom:loom_counts"], "the sum reads own words first: a give-back seen without its count",
       equivalent="every sum that decides anything follows a heavy fence, and by pair A that fence makes the "
                  "count of every lease granted on the version visible; an undo is given back on its own word "
                  "by its own thread. A give-back seen without its count needs a sum with no heavy fence "
                  "before it: only a releaser's look before the drain's first one, whose false zero wakes "
                  "nobody (no waiter registers before that first look). The order is kept as a defence "
                  "(loom_counts: 113 s, passes mutated)")
mutant("give-back-on-any-own-word", "drain.rs",
       ("        if hold.own() && owns_shard(shard) {", "        if hold.own() {"),
       ["loom:loom_counts"], "a thread gives a lease back on a word it does not own (a lost update)")
mutant("sharer-counts-on-own-word", "loom/mocked.rs",
       ("    (n % SHARDS, n < SHARDS)", "    (n % SHARDS, true)"),
       ["loom:loom_counts"], "a thread past the shard count writes an owned word (the shim's claim)")
mutant("count-in-plain-on-shared-word", "drain.rs",
       ("            counts.shared.fetch_sub(1, Ordering::Relaxed);",
         "            let w = &counts.shared;\n"
         "            w.store(w.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);"),
       ["loom:loom_counts"], "a sharer counts on the shared word by load-then-store (a lost update)")
mutant("undo-without-release", "drain.rs",
       ("        unsafe { Version::release(&raced) };",
        "        std::mem::forget(raced);"),
       ["loom:loom_call_races_replace"], "a retried acquire leaks its count on the old version")
mutant("reclaim-frees-the-shell", "drain.rs",
       ("        self.free.push(version);",
        "        drop(unsafe { Box::from_raw(version.as_ptr()) });"),
       ["loom:loom_shell_reuse"], "a finalized version's memory is freed though unpinned callers may hold it")
mutant("renew-keeps-the-generation", "drain.rs",
       ("        self.generation.store(generation, Ordering::Relaxed);\n", ""),
       ["test:-p reload-core --test call_path"], "a reused shell reports its last life's generation")
mutant("renew-keeps-the-phase", "drain.rs",
       ("        let walked = self.phase.recycle().and_then(|()| {",
        "        let walked = Ok::<(), lifecycle::PhaseError>(()).and_then(|()| {"),
       ["test:-p reload-core --test call_path"], "a reused shell stays Removed")
mutant("release-sum-without-fence", "drain.rs",
       ("        fence(Ordering::SeqCst);\n        if self.in_flight() != 0 {\n            return;\n        }",
        "        if self.in_flight() != 0 {\n            return;\n        }"),
       ["loom:loom_release_wakes_drain", "loom:loom_two_waiters"],
       "two releasers of a draining version each miss the other's count-out (store buffers)",
       equivalent="only in loom's model, where the light fence before this sum is a SeqCst fence already; "
                  "on hardware (a compiler fence) it is the lost wake-up the stateright model refutes: "
                  "`release_sum_unfenced` (model/tests/check.rs, snapshot unfenced_release_sum_counterexample)")
mutant("cut-over-stays-active", "drain.rs",
       ("    let drained = old.phase.transition(Phase::Active, Phase::Draining);\n"
        "    debug_assert_eq!(drained, Ok(()));",
        ""),
       ["loom:loom_release_wakes_drain"], "the cut-over does not mark the old version Draining")
mutant("is-drained-off-by-one", "drain.rs",
       ("        heavy_fence();\n        self.in_flight() == 0",
        "        heavy_fence();\n        self.in_flight() <= 1"),
       ["test:-p reload-core --test slot"], "drained with one lease still out")
mutant("poll-drained-without-fence", "drain.rs",
       ("        if self.is_drained() {\n            self.waiters.leave(entry);",
        "        if self.in_flight() == 0 {\n            self.waiters.leave(entry);"),
       ["loom:loom_drain_future"], "the async drain's first look skips the reloader's fence")
mutant("wait-drained-without-fence", "drain.rs",
       ("        self.is_drained() || self.waiters.wait_until(deadline, || self.in_flight() == 0)",
        "        self.in_flight() == 0 || self.waiters.wait_until(deadline, || self.in_flight() == 0)"),
       ["loom:loom_call_races_replace"], "the parked drain's first look skips the reloader's fence")
mutant("enter-ignores-the-gate", "drain.rs",
       ("    if seen.tag() == GATED {\n        return None;\n    }", ""),
       ["loom:loom_quiesce"], "a caller leases a gated version", quick=True)
mutant("release-ignores-the-gate", "drain.rs",
       (" || version.gated.load(Ordering::Relaxed)", ""),
       ["loom:loom_quiesce"], "the last release of a gated version does not wake the quiesce")
mutant("gate-closed-without-flag", "drain.rs",
       ("    version.gated.store(true, Ordering::Relaxed);", ""),
       ["loom:loom_quiesce"], "the gate is tagged but the version's flag not set")
mutant("open-gate-keeps-tag", "drain.rs",
       ("        current.store(seen.with_tag(0), Ordering::Release);",
        "        current.store(seen, Ordering::Release);"),
       ["loom:loom_quiesce"], "a rolled-back quiesce leaves the pointer tagged (callers spin)")

# ------------------------------------------------------------- waiters.rs
mutant("look-before-register", "waiters.rs",
       ("            self.register_thread();\n            let done = ready();",
        "            let done = ready();\n            self.register_thread();"),
       ["loom:loom_release_wakes_drain"], "a thread looks, then registers (the lost wake-up)", quick=True)
mutant("waiter-trusts-the-wake", "waiters.rs",
       ("            expired = park_until(deadline) == Parked::Expired;",
        "            expired = park_until(deadline) == Parked::Expired;\n"
        "            if !expired {\n                self.unregister_thread();\n                return true;\n            }"),
       ["loom:loom_turn"], "a woken thread answers `ready` without looking")
mutant("one-waiter-only", "waiters.rs",
       ("        if !waiting.threads.iter().any(|t| t.id() == me.id()) {\n            waiting.threads.push(me);\n        }",
        "        waiting.threads.clear();\n        waiting.threads.push(me);"),
       ["loom:loom_two_waiters"], "a new registration replaces the last (the bug of #14)", quick=True)
mutant("give-up-unregisters-all", "waiters.rs",
       ("self.waiting.lock().threads.retain(|t| t.id() != me);",
        "let _ = me; self.waiting.lock().threads.clear();"),
       ["loom:loom_two_waiters"], "a thread that gives up takes every thread out")
mutant("wake-one-not-all", "waiters.rs",
       ("        for thread in threads {\n            thread.unpark();\n        }",
        "        if let Some(thread) = threads.first() {\n            thread.unpark();\n        }"),
       ["loom:loom_two_waiters"], "wake one thread, not all")
mutant("task-registered-no-second-look", "waiters.rs",
       ("        // Registered, then look.\n        if ready() {\n            self.leave(entry);\n"
        "            Poll::Ready(())\n        } else {\n            Poll::Pending\n        }",
        "        Poll::Pending"),
       ["loom:loom_drain_future"], "a task registers its waker and does not look again")
mutant("task-keeps-stale-waker", "waiters.rs",
       ("                Some((_, w)) => w.clone_from(cx.waker()),", "                Some(_) => {}"),
       ["test:-p reload-core --lib waiters"], "a task polled with a new waker is woken through the old one")
mutant("task-wakes-first-only", "waiters.rs",
       ("        for (_, waker) in tasks {\n            waker.wake();\n        }",
        "        if let Some((_, waker)) = tasks.into_iter().next() {\n            waker.wake();\n        }"),
       ["loom:loom_gate_tasks"], "wake one task, not all")
mutant("task-leave-takes-all", "waiters.rs",
       ("            self.waiting.lock().tasks.retain(|(i, _)| *i != id);",
        "            let _ = id;\n            self.waiting.lock().tasks.clear();"),
       ["test:-p reload-core --lib waiters", "loom:loom_gate_tasks"], "a task that leaves takes every task out")
mutant("task-entry-not-kept", "waiters.rs",
       ("                    *entry = Some(id);\n", ""),
       ["test:-p reload-core --lib waiters"], "a task's entry is not remembered, so it cannot leave")
mutant("wake-under-the-lock", "waiters.rs",
       ("        let (threads, tasks) = {\n            let mut waiting = self.waiting.lock();\n"
        "            (\n                std::mem::take(&mut waiting.threads),\n"
        "                std::mem::take(&mut waiting.tasks),\n            )\n        };",
        "        let mut waiting = self.waiting.lock();\n        let (threads, tasks) = (\n"
        "                std::mem::take(&mut waiting.threads),\n"
        "                std::mem::take(&mut waiting.tasks),\n            );"),
       [], "wake while still holding the list's lock",
       equivalent="a woken thread's registration then waits for the lock a moment longer; every "
                  "wake is still delivered and every waiter looks again")

# ------------------------------------------------------------ draining.rs
mutant("try-finalize-without-fence", "draining.rs",
       ("        if self.is_drained() {\n            Ok(finalize(self.body)?)\n        } else {\n"
        "            Err(DrainError::TimedOut(self))\n        }\n    }\n\n    /// The drain as a `Future`",
        "        if self.in_flight() == 0 {\n            Ok(finalize(self.body)?)\n        } else {\n"
        "            Err(DrainError::TimedOut(self))\n        }\n    }\n\n    /// The drain as a `Future`"),
       ["loom:loom_drain_future"], "try_finalize's look skips the reloader's fence")
mutant("wait-deadline-ignores-timeout", "draining.rs",
       ("        if self.body.version().wait_drained(Some(deadline)) {\n            Ok(finalize(self.body)?)",
        "        if { self.body.version().wait_drained(Some(deadline)); true } {\n            Ok(finalize(self.body)?)"),
       ["test:-p reload-core --test slot"], "a timed-out wait finalizes anyway")
mutant("drain-future-drop-stays", "draining.rs",
       ("        if let Some(draining) = &self.draining {\n            draining.body.version().leave(&mut self.entry);\n        }",
        "        let _ = &self.draining;"),
       ["test:-p reload-core --test waiters"], "a dropped drain future leaves its waker registered")

# -------------------------------------------------------------- shared.rs
mutant("slot-drop-orphan-uncounted", "shared.rs",
       ("                this.orphans.fetch_add(1, Ordering::Relaxed);\n                #[cfg(feature = \"metrics\")]",
        "                #[cfg(feature = \"metrics\")]"),
       ["loom:loom_owned_lease"], "the slot's last version orphaned but not counted")
mutant("slot-drop-without-keepalive", "shared.rs",
       ("            }\n            writer.keep_alive(&this);\n        }\n        this.reap();\n        release(this);",
        "            }\n        }\n        this.reap();\n        release(this);"),
       ["test:-p reload-core --test owned"], "an owned lease outlives the slot's shared part")
mutant("adopt-not-orphaned", "shared.rs",
       ("                entry.orphaned = true;\n", ""),
       ["test:-p reload-core --test slot"], "a dropped draining handle is never finalized")
mutant("reap-not-only-orphans", "shared.rs",
       ("                    entry.orphaned && unsafe { entry.version.as_ref() }.is_drained()",
        "                    unsafe { entry.version.as_ref() }.is_drained()"),
       ["test:-p reload-core --test slot"], "reap finalizes a version its handle still owns")
mutant("reap-drops-keepalive-early", "shared.rs",
       ("            if !writer.draining.iter().any(|e| e.orphaned) {",
        "            if true {"),
       ["test:-p reload-core --test owned"], "the keepalive goes while orphans remain")
mutant("enter-slow-no-retry", "shared.rs",
       ("            if let Some(hold) = acquire(&self.current) {\n                return Ok(hold);\n            }\n        }",
        "            return acquire(&self.current).ok_or(TryEnterError::Quiescing);\n        }"),
       ["loom:loom_quiesce"], "a caller woken at the gate gives up if the next gate closed first")
mutant("poll-enter-no-retry", "shared.rs",
       ("            if gate.is_pending() {\n                return Poll::Pending;\n            }",
        "            let _ = gate;\n            return Poll::Pending;"),
       ["loom:loom_gate_tasks"], "a task that finds the gate open after registering stays pending")

# ---------------------------------------------------------------- lease.rs
mutant("owned-lease-never-reaps", "lease.rs",
       ("        unsafe { Shared::reap_after_release(self.shared, guard) }", "        drop(guard);"),
       ["loom:loom_owned_lease"], "the last owned lease on an orphan does not finalize it")

# ----------------------------------------------------------------- slot.rs
mutant("close-ignores-quiesce", "slot.rs",
       ("                if !writer.quiescing {", "                if true {"),
       ["loom:loom_gate_tasks"], "close cuts over while a quiesced commit holds the gate")
mutant("replace-ignores-turn", "slot.rs",
       ("        if writer.turn {\n            return Err((ReloadFault::InProgress, next));\n        }", ""),
       ["test:-p reload-core --test stateful"], "replace cuts over under a prepared reload")
mutant("track-forgets", "slot.rs",
       ("        writer.track(old, since);\n", "        let _ = &writer;\n"),
       ["test:-p reload-core --test slot"], "a cut-over version is not on the slot's list")

# ---------------------------------------------------------- reload/mod.rs
mutant("turn-drop-no-wake", "reload/mod.rs",
       ("        self.shared.turn_free.wake_all();\n", ""),
       ["loom:loom_turn"], "giving the turn back wakes no one")
mutant("turn-not-taken", "reload/mod.rs",
       ("            writer.turn = true;\n            Some(Ok(()))", "            Some(Ok(()))"),
       ["test:-p reload-core --test stateful"], "two reloads prepare at once")
mutant("turn-ignores-closed", "reload/mod.rs",
       ("            if shared.is_closed() {\n                return Some(Err(ReloadFault::Closed));\n            }\n            if writer.turn {",
        "            if writer.turn {"),
       ["test:-p reload-core --test stateful", "test:-p reload-core --test slot"], "a reload prepares on a closed slot")
mutant("compatibility-unchecked", "reload/mod.rs",
       ("        declared_compatible(&old_resources, &new_resources)?;\n", ""),
       ["test:-p reload-core --test stateful"], "prepare skips the resource compatibility check",
       )
mutant("veto-ignored", "reload/mod.rs",
       ("        if let Err(veto) = shared.listeners.vote(&shared.counters, &proposal) {",
        "        if let Some(veto) = shared.listeners.vote(&shared.counters, &proposal).err().filter(|_| false) {"),
       ["test:-p reload-core --test stateful"], "a listener's veto is ignored")

# ------------------------------------------------------- reload/quiesce.rs
mutant("quiesce-wake-before-open", "reload/quiesce.rs",
       ("        shared.gate_closed.store(false, Ordering::Release);\n        shared.gate.wake_all();",
        "        shared.gate.wake_all();\n        shared.gate_closed.store(false, Ordering::Release);"),
       ["loom:loom_quiesce"], "the gate's callers are woken before it opens (the lost wake-up)")
mutant("rollback-keeps-gate", "reload/quiesce.rs",
       ("            if self.armed {\n                open_gate(&shared.current);\n            }", ""),
       ["loom:loom_quiesce"], "a roll back does not reopen the gate on the old version")
mutant("carry-without-drain", "reload/quiesce.rs",
       ("            .drain_old(old, started, deadline)\n            .and_then(|()| self.carry_over(old));",
        "            .drain_old(old, started, Some(started))\n            .or(Ok(()))\n            .and_then(|()| self.carry_over(old));"),
       ["loom:loom_quiesce"], "the state is carried while calls may still run on the old version")
mutant("carry-failure-leaves-open", "reload/quiesce.rs",
       ("        if carried.is_err() {\n            close_opened(next.get_mut(), &mut self.opened);\n        }", ""),
       ["test:-p reload-core --test stateful"],
       "a failed carry closes the new version's resources only after the gate reopened")
mutant("flag-after-tag", "reload/quiesce.rs",
       [("        shared.gate_closed.store(true, Ordering::Release);\n        writer.quiescing = true;\n",
         "        writer.quiescing = true;\n"),
        ("            unreachable!(\"checked open under the writer lock\")\n        };",
         "            unreachable!(\"checked open under the writer lock\")\n        };\n"
         "        shared.gate_closed.store(true, Ordering::Release);")],
       [], "the gate flag is raised after the tag",
       equivalent="a caller that sees the tag before the flag finds the gate open, retries, and spins "
                  "until the flag is up: a few wasted retries, never a lease on the gated version")
mutant("cut-rolls-back", "reload/quiesce.rs",
       ("        quiesce.finish(false);", "        quiesce.finish(true);"),
       [], "after the cut-over, the guard also reopens the gate",
       equivalent="`open_gate` then finds the new version current and untagged and stores what is "
                  "there; no other reload can gate it while we hold the turn")

# --------------------------------------------------------- reload/group.rs
mutant("group-failure-leaves-open", "reload/group.rs",
       ("                if let Some(next) = member.next.as_mut() {\n                    close_opened(next.get_mut(), &mut member.opened);\n                }",
        "                let _ = member;"),
       ["test:-p reload-core --test stateful"],
       "a failed group commit closes what the carried members opened only after reopening the gates")
mutant("group-continues-after-failure", "reload/group.rs",
       ("                    Err(fault) => {\n                        failure = Some((i, fault));\n                        break;\n                    }\n                }\n            }\n        }",
        "                    Err(fault) => {\n                        failure = failure.or(Some((i, fault)));\n                    }\n                }\n            }\n        }"),
       ["test:-p reload-core --test stateful"], "a group keeps draining and carrying after a member failed")
mutant("group-rolled-back-false", "reload/group.rs",
       ("            let rolled_back = !gated.is_empty();", "            let rolled_back = false;"),
       ["test:-p reload-core --test stateful"], "a group failure says nothing was rolled back")

# Immediate members carried at prepare (#25): a commit that carries them
# again, or drops what they carried, runs or loses a transfer; the counter's
# book pins each hook to once per reload.
mutant("group-immediate-carries-again", "reload/group.rs",
       ("                    Mode::Immediate => Ok(member.carried.take().unwrap_or_default()),",
        "                    Mode::Immediate => member.carry_over(*old),"),
       ["test:-p reload-core --test stateful"], "a group commit carries its immediate members a second time")
mutant("group-immediate-drops-transfer", "reload/group.rs",
       ("                    Mode::Immediate => Ok(member.carried.take().unwrap_or_default()),",
        "                    Mode::Immediate => Ok(Default::default()),"),
       ["test:-p reload-core --test stateful"], "a group commit reports nothing carried for its immediate members")
mutant("commit-immediate-drops-transfer", "reload/mod.rs",
       ("                    transfer: self.carried.take().unwrap_or_default(),",
        "                    transfer: Default::default(),"),
       ["test:-p reload-core --test stateful"], "an immediate commit reports nothing carried")
mutant("prepare-immediate-carries-twice", "reload/mod.rs",
       ("            self.carried = Some(carried);\n        }\n        Ok(())",
        "            self.carried = Some(carried);\n            self.carried = Some(transfer(\n                &*old,\n                self.from_generation,\n                next.get_mut(),\n                &self.options.state,\n                &mut self.salvage,\n                &mut self.opened,\n            )?);\n        }\n        Ok(())"),
       ["test:-p reload-core --test stateful"], "an immediate prepare runs the transfer twice")

# --------------------------------------------------------- registry/call.rs
mutant("call-holds-while-waiting", "registry/call.rs",
       ("            deps.clear();\n            drop(root);\n            match attempt {",
        "            match attempt {"),
       ["loom:loom_registry"], "a call waits at a gate while holding leases (hold-and-wait)")
mutant("call-skips-range-check", "registry/call.rs",
       ("                Ok(lease) => {\n                    if !member.accepts(k, lease.generation(), lease.manifest()) {\n"
        "                        return Err(Attempt::Retry);\n                    }\n",
        "                Ok(lease) => {\n"),
       ["loom:loom_registry", "test:-p reload-core --test registry"], "a call leases a dependency outside its range")
mutant("call-diamond-unchecked", "registry/call.rs",
       ("                if !member.accepts(k, seen.lease.generation(), seen.lease.manifest()) {\n"
        "                    return Err(Attempt::Retry);\n                }\n                continue;",
        "                continue;"),
       ["loom:loom_registry"], "a dependency reached twice is not checked against the second path's range")
mutant("call-fast-path-skips-requirements", "registry/call.rs",
       ("            Ok(lease) if lease.deps.is_empty() => return Ok(Call::plain(lease, names)),",
        "            Ok(lease) => return Ok(Call::plain(lease, names)),"),
       ["test:-p reload-core --test registry"], "a call on a plugin with requirements leases none of them")

# ------------------------------------------------------ registry/reload.rs
# Found by #25's turn-timeout test in a fresh-clone CI run (1 in 13 races).
mutant("registry-turn-before-publish", "registry/reload.rs",
       ("                    held.push(p.keep_turn());", "                    held.push(if false { p.keep_turn() } else { None });"),
       ["test:-p reload-core --test registry"],
       "a registry reload gives the slot's turn back before it publishes the manifest it committed")

# -------------------------------------------------------- registry/names.rs
mutant("names-not-published", "registry/names.rs",
       ("    let _ = names.replace(ready(map));\n", ""),
       ["test:-p reload-core --test registry_calls"], "calls by name keep reading the first map: no plugin is ever found by name")
mutant("names-long-names-by-key", "registry/names.rs",
       ("            if entry.key == key && (key.len <= 16 || *entry.name == *name) {",
        "            if entry.key == key {"),
       ["test:-p reload-core --test registry_calls"], "a name over 16 bytes is found by its length and ends alone: a different name is taken for it")

# -------------------------------------------------------------- transfer.rs
mutant("migration-overshoot-accepted", "transfer.rs",
       ("            if to <= from || to > target {", "            if to <= from {"),
       ["test:-p reload-core --test stateful"], "a migration past the target schema is accepted")
mutant("resume-not-recorded", "transfer.rs",
       ("        run_hook(new, Hook::Resume, None, |p| p.resume(&r.name, *at))?;\n        opened.push(r.name.clone());",
        "        run_hook(new, Hook::Resume, None, |p| p.resume(&r.name, *at))?;"),
       ["test:-p reload-core --test stateful", "test:-p harness --test stateful_vs_model"],
       "a resumed stream is not closed when the reload fails later")

# -------------------------------------------------------------- envelope.rs
mutant("checksum-skipped", "envelope.rs",
       ("        if stored != computed {", "        if stored != computed && false {"),
       ["test:-p reload-core --lib envelope"], "a corrupted envelope's checksum is not checked")
mutant("trailing-bytes-accepted", "envelope.rs",
       ("        if found > needed {", "        if found > needed + 1 {"),
       ["test:-p reload-core --lib envelope"], "one trailing byte is accepted")
mutant("reserved-flags-ignored", "envelope.rs",
       ("        if header[5] != 0 {", "        if header[5] > 1 {"),
       ["test:-p reload-core --lib envelope"], "a reserved flag bit is accepted")

# The checksum and header fields at their special values (#25).
mutant("checksum-zero-skipped", "envelope.rs",
       ("        if stored != computed {", "        if stored != 0 && stored != computed {"),
       ["test:-p reload-core --lib envelope"], "an envelope whose checksum field is zero is not verified")
mutant("checksum-ones-skipped", "envelope.rs",
       ("        if stored != computed {", "        if stored != u32::MAX && stored != computed {"),
       ["test:-p reload-core --lib envelope"], "an envelope whose checksum field is all ones is not verified")
mutant("checksum-empty-payload-skipped", "envelope.rs",
       ("        if stored != computed {", "        if !payload.is_empty() && stored != computed {"),
       ["test:-p reload-core --lib envelope"], "an envelope with no payload is not verified (its header is)")
mutant("zero-length-trailing-accepted", "envelope.rs",
       ("        if found > needed {", "        if len != 0 && found > needed {"),
       ["test:-p reload-core --lib envelope"], "a declared length of zero lets trailing bytes through to the checksum")
mutant("format-zero-accepted", "envelope.rs",
       ("        if header[4] != FORMAT {", "        if header[4] != FORMAT && header[4] != 0 {"),
       ["test:-p reload-core --lib envelope"], "format byte zero is read as the current format")

# --------------------------------------------------- wasm/ and manifest.rs
# Bounded calls (#25): one budget per call, a deadline on the clock; and
# the manifest's encoded size checked as it is built.
mutant("wasm-fresh-rearms", "wasm/mod.rs",
       ("            None => self.fresh(&budget)?,",
        "            None => {\n                let mut g = self.fresh(&budget)?;\n                g.arm(&Budget::start(limits), \"call\")?;\n                g\n            }"),
       ["test:-p wasm-demo --test limits"], "a call that made its instance starts a fresh budget for the call itself")
mutant("wasm-epoch-ignores-clock", "wasm/guest.rs",
       ("        Some(until) if Instant::now() >= until => Err(Trap::Interrupt.into()),",
        "        Some(_) => Err(Trap::Interrupt.into()),"),
       ["test:-p wasm-demo --test limits"], "the first look at a deadline interrupts, whatever the clock says")
mutant("manifest-size-unchecked", "manifest.rs",
       ("            Some(len) if len <= MAX_LEN => {", "            Some(len) => {"),
       ["test:-p reload-core --test manifest_limits"], "a manifest is built past the size its decoder accepts")

# ------------------------------------------------------------ lifecycle/
mutant("illegal-edge-allowed", "lifecycle/src/lib.rs",
       ("    (Phase::Draining, Phase::Removed),", "    (Phase::Draining, Phase::Active),"),
       ["test:-p lifecycle", "test:-p reload-core --lib"], "the edge Draining -> Removed becomes Draining -> Active")
mutant("transition-load-then-store", "lifecycle/src/cell.rs",
       ("        self.0\n            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)\n            .map(drop)",
        "        let seen = self.0.load(Ordering::Acquire);\n"
        "        (if seen == from as u8 { self.0.store(to as u8, Ordering::Release); Ok(()) } else { Err(seen) })"),
       ["test:-p lifecycle", "loomlc:loom_cell"], "a phase transition by load-then-store instead of compare-and-swap")

# ------------------------------------------------------ reload-abi/src/wire.rs
mutant("wire-duplicate-accepted", "reload-abi/src/wire.rs",
       ("        if resources.iter().any(|x| x.name == next.name) {\n            return Err(WireError::Duplicate);\n        }\n", ""),
       ["test:-p reload-abi"], "a description naming one resource twice is accepted")
mutant("wire-name-one-too-long", "reload-abi/src/wire.rs",
       ("        if len == 0 || len > MAX_NAME {", "        if len == 0 || len > MAX_NAME + 1 {"),
       ["test:-p reload-abi"], "a name one byte over the limit is accepted")
mutant("wire-trailing-ignored", "reload-abi/src/wire.rs",
       ("            extra => Err(WireError::Trailing { extra }),", "            _extra => Ok(()),"),
       ["test:-p reload-abi"], "bytes after a reply are ignored")


def apply(mut, scratch):
    path = os.path.join(scratch, mut.file)
    src = open(os.path.join(ROOT, mut.file)).read()
    for old, new in mut.edits:
        n = src.count(old)
        if n != 1:
            raise SystemExit(f"{mut.name}: anchor found {n} times in {mut.file}: {old[:60]!r}")
        src = src.replace(old, new)
    open(path, "w").write(src)


def restore(mut, scratch):
    shutil.copy(os.path.join(ROOT, mut.file), os.path.join(scratch, mut.file))


def stage_cmd(stage):
    kind, _, arg = stage.partition(":")
    base_env = dict(os.environ)
    if kind in ("loom", "loomlc"):
        env = dict(base_env, RUSTFLAGS="--cfg loom --cfg crossbeam_loom",
                   LOOM_MAX_PREEMPTIONS=os.environ.get("LOOM_MAX_PREEMPTIONS", "2"),
                   CARGO_TARGET_DIR=os.path.join(ROOT, os.environ.get("MUTANTS_LOOM_TARGET",
                                                                      "target/mutants/loom")))
        pkg = "reload-core" if kind == "loom" else "lifecycle"
        return (["cargo", "test", "-q", "--profile", "loom", "-p", pkg, "--test", arg, "--",
                 "--test-threads=1"], env, 900)
    env = dict(base_env, RUSTFLAGS="", CARGO_TARGET_DIR=os.path.join(ROOT, "target/mutants/plain"))
    args = arg.split()
    # `--lib NAME` filters the unit tests by NAME.
    if "--lib" in args and args[-1] != "--lib":
        filt = args[-1]
        args = args[:-1] + ["--", filt]
    return (["cargo", "test", "-q"] + args, env, 600)


# What a failing stage said, most telling first: loom's own reports, then
# the test's assertion message (the line after "panicked at"), then where.
REASONS = [re.compile(p) for p in (
    r"Causality violation[^\n]*", r"deadlock(?=;)", r"S1 violated[^\"\n]*", r"outlived[^\"\n]*",
    r"Model exceeded maximum number of branches[^\n]*",
    r"panicked at [^\n]*\n([^\n]+)", r"assertion[^\n]*", r"panicked at [^\n]*", r"\S+ --- FAILED")]


def run_stage(stage, scratch, log):
    cmd, env, timeout = stage_cmd(stage)
    start = time.time()
    try:
        p = subprocess.run(cmd, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        out = p.stdout.decode(errors="replace")
        ok = p.returncode == 0
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + f"\n(timed out after {timeout} s: a hang)"
        ok = False
    open(log, "w").write(out)
    if ok:
        return None, time.time() - start
    if "error[E" in out and "could not compile" in out:
        return "DOES NOT COMPILE", time.time() - start
    why = "hang (timeout)" if "timed out after" in out else "failed"
    for pattern in REASONS:
        m = pattern.search(out)
        if m:
            why = m.group(m.lastindex or 0).strip()
            break
    return why[:110], time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--all", action="store_true", help="run the equivalents too")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip checking that each stage passes unmutated (CI: ci/loom.sh just did)")
    args = ap.parse_args()

    chosen = [m for m in M if m.edits]
    if args.only:
        chosen = [m for m in chosen if m.name in args.only]
    elif args.quick:
        chosen = [m for m in chosen if m.quick]
    if args.list:
        for m in chosen:
            print(f"| {m.name} | `{m.file}` | {m.what} | {', '.join(m.kill) or m.equivalent} |")
        print(f"{len(chosen)} mutants, {sum(1 for m in chosen if m.equivalent)} argued equivalent")
        return 0

    scratch = tempfile.mkdtemp(prefix="mutants-")
    try:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, stdout=subprocess.PIPE, check=True).stdout.split(b"\0")
        for f in files:
            if not f:
                continue
            f = f.decode()
            os.makedirs(os.path.join(scratch, os.path.dirname(f)), exist_ok=True)
            if os.path.isfile(os.path.join(ROOT, f)):
                shutil.copy2(os.path.join(ROOT, f), os.path.join(scratch, f))
        for m in chosen:
            apply(m, scratch)
            restore(m, scratch)
        if args.check:
            print(f"{len(chosen)} mutants: every anchor found exactly once")
            return 0
        logs = os.path.join(ROOT, "target/mutants/logs")
        os.makedirs(logs, exist_ok=True)
        # Every stage must pass on the unmutated code, or its kills mean
        # nothing. This also builds both target folders once.
        stages = sorted({st for m in chosen if not m.equivalent or args.all for st in m.kill})
        for stage in [] if args.no_baseline else stages:
            why, secs = run_stage(stage, scratch, os.path.join(logs, "baseline.log"))
            if why:
                print(f"baseline FAILED at {stage}: {why} (see target/mutants/logs/baseline.log)")
                return 2
            print(f"baseline   {stage} passes ({secs:.0f} s)", flush=True)
        rows, survived, killed, equivalent = [], [], 0, 0
        for m in chosen:
            if m.equivalent and not args.all:
                equivalent += 1
                rows.append(f"| {m.name} | `{m.file}` | {m.what} | equivalent: {m.equivalent} | | |")
                print(f"equivalent {m.name}", flush=True)
                continue
            apply(m, scratch)
            verdict, spent = None, 0.0
            for stage in m.kill:
                why, secs = run_stage(stage, scratch, os.path.join(logs, f"{m.name}.log"))
                spent += secs
                if why:
                    verdict = (stage, why)
                    break
            restore(m, scratch)
            if verdict and verdict[1] == "DOES NOT COMPILE":
                print(f"BROKEN     {m.name}: the mutant does not compile (fix the mutant)", flush=True)
                survived.append(m.name)
                rows.append(f"| {m.name} | `{m.file}` | {m.what} | does not compile | | |")
            elif verdict:
                killed += 1
                print(f"killed     {m.name} by {verdict[0]} in {spent:.0f} s: {verdict[1]}", flush=True)
                rows.append(f"| {m.name} | `{m.file}` | {m.what} | {verdict[0]} | {verdict[1]} | {spent:.0f} s |")
            else:
                survived.append(m.name)
                print(f"SURVIVED   {m.name} ({', '.join(m.kill)} passed)", flush=True)
                rows.append(f"| {m.name} | `{m.file}` | {m.what} | **survived** | | {spent:.0f} s |")
        table = ["| mutant | file | mistake | killed by | how | time |", "|---|---|---|---|---|---|"] + rows
        summary = (f"{killed} killed, {len(survived)} survived, {equivalent} equivalent (not run), "
                   f"of {len(chosen)}")
        open(os.path.join(ROOT, "target/mutants/results.md"), "w").write("\n".join(table + ["", summary, ""]))
        print("\n".join(table))
        print(summary)
        return 1 if survived else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Proves the loom tests have teeth: applies plausible mistakes to the drain
# path in a scratch copy of the repository and checks that loom rejects each.
# Never touches the working tree. Not part of .ci/run (it rebuilds per
# mutant); run it after changing the drain path or its loom tests.
#
#   bash ci/loom-mutants.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$root"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$scratch/"

export RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="$root/target/loom-mutants"
src="$scratch/reload-core/src"
mkdir -p "$scratch/orig"
cp "$src"/*.rs "$scratch/orig/"

# mutate OLD NEW [OLD NEW ...]: restores every file of src/ from the
# original, then rewrites $file (drain.rs unless set), each OLD (which must
# occur exactly once) replaced by its NEW.
file=drain.rs
mutate() {
  cp "$scratch/orig/"*.rs "$src/"
  python3 - "$src/$file" "$scratch/orig/$file" "$@" <<'PY'
import sys
path, orig, *pairs = sys.argv[1:]
src = open(orig).read()
for old, new in zip(pairs[::2], pairs[1::2]):
    if src.count(old) != 1:
        sys.exit(f"mutation anchor not found exactly once: {old!r}")
    src = src.replace(old, new)
open(path, "w").write(src)
PY
}

failures=0
# run NAME TEST [plain]: whether TEST rejects the mutant now in the scratch
# copy: a loom test, or with `plain` an ordinary test binary, for what loom
# cannot see (memory freed too early is not a loom event).
run() {
  local name="$1" test="$2" stage="${3:-loom}"
  local start=$(date +%s)
  local cmd=(cargo test -q --profile loom -p reload-core --test "$test" -- --test-threads=1)
  local env=()
  if [ "$stage" = plain ]; then
    cmd=(cargo test -q -p reload-core --test "$test")
    env=(RUSTFLAGS= CARGO_TARGET_DIR="$root/target/mutants-plain")
  fi
  if (cd "$scratch" && env "${env[@]}" timeout 900 "${cmd[@]}" >"$scratch/$name.log" 2>&1); then
    echo "SURVIVED  $name ($test passed): the $stage tests miss this mistake"
    failures=$((failures + 1))
  else
    local why
    why=$(grep -m1 -oE "Causality violation[^.]*|deadlock|S1 violated[^\"]*|outlived[^\"]*|assertion[^\n]*|panicked at [^:]*" "$scratch/$name.log" || echo "failed")
    echo "killed    $name by $test ($stage) in $(( $(date +%s) - start )) s: $why"
  fi
}

mutate $'        // SeqCst fence: the caller\'s half of pair A, between the increment\n        // and the re-load of `current`.\n        fence(Ordering::SeqCst);' \
       '        fence(Ordering::AcqRel);'
run "enter-fence-acqrel" loom_call_races_replace

mutate $'        fence(Ordering::SeqCst);\n        let now = current.load(Ordering::Acquire, &guard);' \
       '        let now = seen;'
run "enter-without-recheck" loom_call_races_replace

mutate $'        fence(Ordering::SeqCst);\n        self.in_flight() == 0' \
       $'        fence(Ordering::AcqRel);\n        self.in_flight() == 0'
run "drain-fence-acqrel" loom_call_races_replace

mutate $'        version.inflight[shard].fetch_sub(1, Ordering::Release);\n        // SeqCst fence: the caller\'s half of pair B, between the decrement\n        // and the loads of the phase and the gate flag.\n        fence(Ordering::SeqCst);' \
       $'        fence(Ordering::SeqCst);' \
       $'            version.wake_if_drained();\n        }' \
       $'            version.wake_if_drained();\n        }\n        version.inflight[shard].fetch_sub(1, Ordering::Release);'
run "wake-check-before-decrement" loom_release_wakes_drain

mutate $'        // SeqCst fence: the caller\'s half of pair B, between the decrement\n        // and the loads of the phase and the gate flag.\n        fence(Ordering::SeqCst);' \
       '        fence(Ordering::AcqRel);'
run "release-fence-acqrel" loom_lease_dropped_elsewhere

# The wait list (waiters.rs): one engine for the drain, the gate and the turn.
file=waiters.rs
mutate $'            self.register_thread();\n            let done = ready();' \
       $'            let done = ready();\n            self.register_thread();'
run "look-before-register" loom_release_wakes_drain

# Whenever a waiter wakes, trust the wake instead of looking again.
mutate $'            expired = park_until(deadline) == Parked::Expired;' \
       $'            expired = park_until(deadline) == Parked::Expired;\n            if !expired {\n                self.unregister_thread();\n                return true;\n            }'
run "waiter-trusts-the-wake" loom_turn

# One waiter at a time (the bug of #14): a new registration replaces the last.
mutate $'        if !waiting.threads.iter().any(|t| t.id() == me.id()) {\n            waiting.threads.push(me);\n        }' \
       $'        waiting.threads.clear();\n        waiting.threads.push(me);'
run "one-waiter-only" loom_two_waiters

# A waiter that gives up takes everyone out.
mutate 'self.waiting.lock().threads.retain(|t| t.id() != me);' \
       'let _ = me; self.waiting.lock().threads.clear();'
run "give-up-unregisters-all" loom_two_waiters

# Wake one, not all.
mutate $'        for thread in threads {\n            thread.unpark();\n        }' \
       $'        if let Some(thread) = threads.first() {\n            thread.unpark();\n        }'
run "wake-one-not-all" loom_two_waiters
file=drain.rs

# Waking whenever a draining version's lease is released, whatever the
# count, is only wasteful while the waiter re-checks; with a waiter that
# trusts the wake it finalizes under a live lease.
mutate $'        if self.in_flight() != 0 {\n            return;\n        }' \
       ''
file=waiters.rs
cp "$src/drain.rs" "$scratch/drain.mutated"
mutate $'            expired = park_until(deadline) == Parked::Expired;' \
       $'            expired = park_until(deadline) == Parked::Expired;\n            if !expired {\n                self.unregister_thread();\n                return true;\n            }'
cp "$scratch/drain.mutated" "$src/drain.rs"
run "wake-at-any-count-waiter-trusts-it" loom_release_wakes_drain
file=drain.rs

# Owned leases and orphans (shared.rs, lease.rs).
file=lease.rs
mutate '        unsafe { Shared::reap_after_release(self.shared, guard) }' '        drop(guard);'
run "owned-lease-never-reaps" loom_owned_lease
file=shared.rs
mutate $'            if let Ok(version) = cut_over(&this.current, None) {\n                writer.draining.push(Entry {\n                    version,\n                    since: Instant::now(),\n                    orphaned: true,\n                });\n                this.orphans.fetch_add(1, Ordering::Relaxed);\n            }' \
       $'            if let Ok(version) = cut_over(&this.current, None) {\n                writer.draining.push(Entry {\n                    version,\n                    since: Instant::now(),\n                    orphaned: true,\n                });\n            }'
run "slot-drop-orphan-uncounted" loom_owned_lease

# The slot's drop leaves no keepalive: an owned lease then outlives the
# slot's shared part. loom cannot see memory freed too early (and under
# loom the deferred free may never run), so a plain test that drives the
# collector and checks the debug canary must catch it.
mutate $'            }\n            writer.keep_alive(&this);\n        }\n        this.reap();' \
       $'            }\n        }\n        this.reap();'
run "slot-drop-without-keepalive" owned plain
file=drain.rs

# The gate of quiesced reloads (Q1-Q2 with pairs A and B).
mutate $'        if seen.tag() == GATED {\n            return None;\n        }' ''
run "enter-ignores-the-gate" loom_quiesce

mutate ' || version.gated.load(Ordering::Relaxed)' ''
run "release-ignores-the-gate" loom_quiesce

mutate $'    version.gated.store(true, Ordering::Relaxed);' ''
run "gate-closed-without-flag" loom_quiesce

echo "$failures mutant(s) survived"
exit $((failures > 0))

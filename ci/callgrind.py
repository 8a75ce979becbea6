#!/usr/bin/env python3
"""Instructions and locked instructions per call, counted by callgrind.

Counts do not depend on the machine's load, unlike times. For each design
in reload-core/examples/call_cost.rs this runs

    valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect='call_cost::<design>_calls' --dump-instr=yes \\
        --compress-pos=no --compress-strings=no \\
        target/release/examples/call_cost <design>

so only the measured loop is counted, then finds every locked instruction
(`lock`-prefixed, `xchg` with memory, which is implicitly locked, and
`mfence`) in the disassembly (`objdump -d`) of each object the loop ran in,
and sums how often callgrind saw each execute. Divided by the loop's calls.

    python3 ci/callgrind.py                       # every design
    python3 ci/callgrind.py lease arcswap         # some
    RELOAD_CORE_FENCES=symmetric python3 ci/callgrind.py lease   # the fallback
    python3 ci/callgrind.py --tower               # reload-tower's layer, per request
                                                  # (reload-tower/examples/layer_cost.rs)
    python3 ci/callgrind.py --wasm                # core module and component calls
                                                  # (wasm-demo/examples/wasm_cost.rs)

Prints a Markdown table; `--by-function` adds each function's share.
"""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target/release/examples/call_cost")
DESIGNS = ["lease", "owned_lease", "handle", "chain", "handle_call", "handle_owned", "by_name", "snapshot", "arcswap", "pin"]
CALLS = 100_000

LOCKED = re.compile(r"^\s*([0-9a-f]+):\s+(lock\b|xchg\s|mfence)")
XCHG_REGS = re.compile(r"xchg\s+%\w+,%\w+$")  # register-only xchg: not locked


def locked_addresses(obj, cache={}):
    if obj not in cache:
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        found = {}
        for line in out.splitlines():
            m = LOCKED.match(line)
            if m and not XCHG_REGS.search(line.strip()):
                found[int(m.group(1), 16)] = line.split(":", 1)[1].strip()
        cache[obj] = found
    return cache[obj]


TOWER_EXE = os.path.join(ROOT, "target/release/examples/layer_cost")
TOWER_DESIGNS = ["empty", "lease", "plain", "noop", "layered"]
TOWER_CALLS = 10_000


def measure(design, command=None, toggle=None):
    with tempfile.NamedTemporaryFile(suffix=".cg", delete=False) as f:
        out = f.name
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no",
         f"--toggle-collect={toggle or f'call_cost::{design}_calls'}", "--dump-instr=yes",
         "--compress-pos=no", "--compress-strings=no", f"--callgrind-out-file={out}"]
        + (command or [EXE, design]),
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, CALLS=str(CALLS)))
    total = 0
    by_fn = {}
    locked = {}
    obj = fn = None
    skip_next = False
    with open(out) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("ob="):
                obj = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("calls="):
                skip_next = True  # the next cost line is the call's inclusive cost
            elif line[:2] == "0x":
                if skip_next:
                    skip_next = False
                    continue
                addr, _line, ir = line.split()
                ir = int(ir)
                by_fn[fn] = by_fn.get(fn, 0) + ir
                if obj and os.path.exists(obj):
                    insn = locked_addresses(obj).get(int(addr, 16))
                    if insn:
                        key = (fn, insn)
                        locked[key] = locked.get(key, 0) + ir
    os.unlink(out)
    return total, by_fn, locked


def tower():
    """reload-tower's layer: instructions per request of each design."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "reload-tower", "--example", "layer_cost"],
                   cwd=ROOT, check=True)
    print(f"callgrind, {TOWER_CALLS} requests in process, one thread\n")
    print("| design | instructions per request | locked instructions per request |")
    print("|---|---|---|")
    for design in TOWER_DESIGNS:
        function = "router" if design in ("plain", "noop", "layered") else design
        total, _, locked = measure(design, [TOWER_EXE, design, str(TOWER_CALLS)],
                                   f"layer_cost::measure_{function}")
        print(f"| {design} | {total / TOWER_CALLS:.1f} | {sum(locked.values()) / TOWER_CALLS:.2f} |")


WASM_EXE = os.path.join(ROOT, "target/release/examples/wasm_cost")
WASM_DESIGNS = ["empty", "core", "bytes", "typed", "record"]
WASM_CALLS = 10_000


def wasm():
    """WebAssembly calls: instructions per call of each form, on a held lease."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "wasm-demo", "--example", "wasm_cost"],
                   cwd=ROOT, check=True)
    print(f"callgrind, {WASM_CALLS} calls, one thread (guest code included)\n")
    print("| design | instructions per call | locked instructions per call |")
    print("|---|---|---|")
    for design in WASM_DESIGNS:
        total, _, locked = measure(design, [WASM_EXE, design, str(WASM_CALLS)],
                                   f"wasm_cost::measure_{design}")
        print(f"| {design} | {total / WASM_CALLS:.1f} | {sum(locked.values()) / WASM_CALLS:.2f} |")


def main():
    if "--tower" in sys.argv:
        return tower()
    if "--wasm" in sys.argv:
        return wasm()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    by_function = "--by-function" in sys.argv
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "reload-core", "--example", "call_cost"],
                   cwd=ROOT, check=True)
    mode = os.environ.get("RELOAD_CORE_FENCES", "(auto)")
    print(f"callgrind, {CALLS} calls, one thread, RELOAD_CORE_FENCES={mode}\n")
    print("| design | instructions per call | locked instructions per call | which |")
    print("|---|---|---|---|")
    for design in args or DESIGNS:
        total, by_fn, locked = measure(design)
        n_locked = sum(locked.values())
        which = ", ".join(f"`{insn.split()[0]}` in {fn.split('::')[-1]} ×{count / CALLS:g}"
                          for (fn, insn), count in sorted(locked.items(), key=lambda kv: -kv[1])
                          if count >= CALLS // 100) or "none"
        print(f"| {design} | {total / CALLS:.1f} | {n_locked / CALLS:.2f} | {which} |")
        if by_function:
            for fn, ir in sorted(by_fn.items(), key=lambda kv: -kv[1]):
                if ir >= CALLS:
                    print(f"|   {fn} | {ir / CALLS:.1f} | | |")


if __name__ == "__main__":
    main()

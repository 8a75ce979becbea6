#!/usr/bin/env python3
"""Drives reload-sqlite's loadable extension from clients no one here wrote:
Python's sqlite3 module and the sqlite3 shell (Debian's), querying a hot
function while its library is replaced ten times. Every statement must see
one version, no statement may fail, and the last version deployed must be
the one serving at the end.

    python3 sqlite-ext/tests/clients.py EXTENSION BUILDS_DIR

BUILDS_DIR holds ver-1.0.0.so and ver-1.1.0.so (the `ver` plugin built at
two versions). Exits non-zero, saying why, if anything broke.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ext, builds = sys.argv[1], sys.argv[2]
versions = ["1.0.0", "1.1.0"]
work = tempfile.mkdtemp(prefix="reload-sqlite-ext-")
plugins = os.path.join(work, "plugins")
os.mkdir(plugins)
live = os.path.join(plugins, "ver.so")
db = os.path.join(work, "t.db")


def deploy(version):
    tmp = os.path.join(work, "ver.tmp")
    shutil.copy(os.path.join(builds, f"ver-{version}.so"), tmp)
    os.rename(tmp, live)


def connect():
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    return conn


def serving(conn):
    row = conn.execute("SELECT version FROM reload_plugins WHERE name = 'ver'").fetchone()
    return row[0] if row else None


failures = []
deploy("1.0.0")
setup = sqlite3.connect(db, isolation_level=None)
setup.execute("PRAGMA journal_mode=WAL")
setup.execute("CREATE TABLE t(x INTEGER)")
setup.execute("INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT i FROM n")
setup.close()

admin = connect()
assert admin.execute("SELECT reload_watch(?)", (plugins,)).fetchone()[0] == 1
assert serving(admin) == "1.0.0", serving(admin)

stop = threading.Event()
stats = {"python": [0, 0, set()], "shell": [0, 0, set()]}


def python_client():
    conn = connect()
    while not stop.is_set():
        try:
            n, v = conn.execute("SELECT count(DISTINCT ver(x)), min(ver(x)) FROM t").fetchone()
            stats["python"][0] += 1
            stats["python"][2].add(v)
            if n != 1:
                failures.append(f"python: a statement saw {n} versions")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            stats["python"][1] += 1
            failures.append(f"python: {e}")


def shell_client():
    # Shell sessions (each a process of its own, with its own registry
    # watching the same file), statements back to back until told to stop.
    script = (
        f".load {ext}\n.headers off\nSELECT 'watching|' || reload_watch('{plugins}');\n"
        + "SELECT count(DISTINCT ver(x)) || '|' || min(ver(x)) FROM t;\n" * 400
    )
    while not stop.is_set():
        out = subprocess.run(["sqlite3", db], input=script, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            n, _, v = line.partition("|")
            if n == "watching":
                continue
            stats["shell"][0] += 1
            stats["shell"][2].add(v)
            if n != "1":
                failures.append(f"shell: a statement saw {n} versions: {line}")
        if out.returncode != 0 or out.stderr.strip():
            stats["shell"][1] += 1
            failures.append(f"shell: exit {out.returncode}: {out.stderr.strip()[:300]}")
            break


threads = [threading.Thread(target=python_client), threading.Thread(target=shell_client)]
for t in threads:
    t.start()
time.sleep(0.5)
for i in range(10):
    version = versions[(i + 1) % 2]
    deploy(version)
    deadline = time.time() + 60
    while serving(admin) != version:
        if time.time() > deadline:
            failures.append(f"deploy {i + 1}: {version} never served")
            break
        time.sleep(0.01)
    time.sleep(0.3)
stop.set()
for t in threads:
    t.join()

reloads = admin.execute("SELECT reloads FROM reload_plugins WHERE name = 'ver'").fetchone()[0]
final = serving(admin)
for who, (ok, errors, seen) in stats.items():
    print(f"{who}: {ok} statements, {errors} errors, versions seen {sorted(seen)}")
print(f"reloads {reloads}, serving {final}")
if final != versions[10 % 2]:
    failures.append(f"serving {final} at the end")
if reloads != 10:
    failures.append(f"{reloads} reloads, not 10")
for who in stats:
    if stats[who][0] == 0:
        failures.append(f"{who}: no statement ran")
shutil.rmtree(work, ignore_errors=True)
if failures:
    print("FAILED:\n  " + "\n  ".join(failures[:20]))
    sys.exit(1)
print("ok: every statement on one version, 0 errors")

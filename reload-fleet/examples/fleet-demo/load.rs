//! The load generator: keep-alive HTTP/1.1 connections to every node,
//! `GET /` in a loop, every answer recorded as counts and version changes,
//! with when.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one node's answers showed.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Answers by version: (ok, err).
    pub answers: BTreeMap<String, (u64, u64)>,
    /// Requests that got no answer while the node was meant to be up.
    pub lost: u64,
    /// (when, version) each time the version answering changed.
    pub changes: Vec<(Instant, String)>,
    /// The last answer from each version.
    pub last: BTreeMap<String, Instant>,
}

pub struct Load {
    pub seen: Vec<Arc<Mutex<Seen>>>,
    /// Per node: up (the driver clears it before a kill).
    pub up: Vec<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Two connections per node, one request per millisecond each.
    pub fn start(ports: &[u16]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Load {
            seen: Vec::new(),
            up: Vec::new(),
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for &port in ports {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let up = Arc::new(AtomicBool::new(true));
            for _ in 0..2 {
                let (seen, up, stop) = (Arc::clone(&seen), Arc::clone(&up), Arc::clone(&stop));
                load.threads
                    .push(std::thread::spawn(move || drive(port, &seen, &up, &stop)));
            }
            load.seen.push(seen);
            load.up.push(up);
        }
        load
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Reads one response; its body into `body`.
fn read_response(r: &mut BufReader<TcpStream>, body: &mut String) -> std::io::Result<()> {
    let mut header = String::new();
    let mut length = 0usize;
    loop {
        header.clear();
        if r.read_line(&mut header)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = header.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut bytes = vec![0; length];
    r.read_exact(&mut bytes)?;
    body.push_str(&String::from_utf8_lossy(&bytes));
    Ok(())
}

fn drive(port: u16, seen: &Mutex<Seen>, up: &AtomicBool, stop: &AtomicBool) {
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        if !up.load(Ordering::Relaxed) {
            conn = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if conn.is_none() {
            conn = TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|s| Some((s.try_clone().ok()?, BufReader::new(s))));
            if conn.is_none() {
                // Up, but not listening yet (a restart): not a request.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        }
        let Some((w, r)) = conn.as_mut() else {
            continue;
        };
        line.clear();
        let answered = w
            .write_all(b"GET / HTTP/1.1\r\nHost: fleet\r\n\r\n")
            .is_ok()
            && read_response(r, &mut line).is_ok();
        let now = Instant::now();
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        if !answered {
            // Killed under the request: the driver clears `up` first, so
            // this is a request lost by a node meant to be serving.
            if up.load(Ordering::Relaxed) {
                s.lost += 1;
            }
            conn = None;
            continue;
        }
        let mut parts = line.split_whitespace();
        let version = parts.next().unwrap_or("-").to_owned();
        let ok = parts.next() == Some("ok");
        let e = s.answers.entry(version.clone()).or_default();
        if ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        if s.changes.last().map(|(_, v)| v) != Some(&version) {
            s.changes.push((now, version.clone()));
        }
        s.last.insert(version, now);
        drop(s);
        std::thread::sleep(Duration::from_millis(1));
    }
}

//! A real etcd on loopback, one per test: its own ports and data
//! directory, stopped (and restarted on the same data) at will.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary: `$ETCD`, else `etcd` on the `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Whether the tests can run here; prints why not. CI sets
/// `FLEET_REQUIRE_ETCD=1`, which turns a missing etcd into a failure.
pub fn available() -> bool {
    if binary().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("FLEET_REQUIRE_ETCD").is_none(),
        "FLEET_REQUIRE_ETCD is set and no etcd binary was found (set ETCD or install etcd-server)"
    );
    eprintln!("skipped: no etcd binary (install Debian's etcd-server, or set ETCD=/path/to/etcd)");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One etcd server.
pub struct EtcdServer {
    child: std::sync::Mutex<Option<Child>>,
    dir: PathBuf,
    client: u16,
    peer: u16,
}

impl EtcdServer {
    /// Starts one, in a fresh data directory (in memory, under `/dev/shm`,
    /// where there is one: etcd syncs every write, and a busy CI disk
    /// would make its latency the test's; else under `root`).
    pub fn start(root: &Path) -> Self {
        let client = free_port();
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.join(format!("reload-fleet-etcd-{}-{client}", std::process::id()))
        } else {
            root.join("etcd")
        };
        let _ = std::fs::remove_dir_all(&dir);
        let server = EtcdServer {
            child: std::sync::Mutex::new(None),
            dir,
            client,
            peer: free_port(),
        };
        server.restart();
        server
    }

    /// The client endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&self) {
        let child = self.child.lock().map(|mut c| c.take()).unwrap_or(None);
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data, and waits until it answers.
    // The child is kept and waited for in `stop` (and on drop).
    #[allow(clippy::zombie_processes)]
    pub fn restart(&self) {
        self.stop();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new(binary().expect("etcd"))
            .args(["--name", "fleet-test", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("fleet-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        if let Ok(mut c) = self.child.lock() {
            *c = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("127.0.0.1:{}", self.client);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&url) {
                use std::io::{Read, Write};
                let req = format!("GET /health HTTP/1.0\r\nHost: {url}\r\n\r\n");
                let mut body = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut body).is_ok()
                    && body.contains("\"health\":\"true\"")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

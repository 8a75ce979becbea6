//! The demo's driver: etcd, the node processes, the load, the rollouts,
//! the checks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reload_fleet::{
    Coordinator, DirStore, GateSpec, Keys, Outcome, PlanSpec, Progress, StageSpec, Target,
};

use crate::etcd::{self, EtcdServer};
use crate::load::{Load, Seen};
use crate::rule;

const NODES: [(&str, u32); 4] = [("a", 2), ("b", 2), ("c", 2), ("d", 3)];

struct Procs {
    children: Vec<Option<Child>>,
    ports: Vec<u16>,
    root: PathBuf,
    etcd: String,
}

impl Procs {
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let (name, schema) = NODES[i];
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .arg("node")
            .args([
                "--name",
                name,
                "--port",
                &self.ports[i].to_string(),
                "--etcd",
                &self.etcd,
            ])
            .arg("--store")
            .arg(self.root.join("store"))
            .arg("--state")
            .arg(self.root.join(name))
            .args(["--data-schema", &schema.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("node {name}: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if !line.starts_with("ready") {
            let _ = child.kill();
            return Err(format!("node {name} did not start: {line:?}"));
        }
        println!("   {}", line.trim_end());
        self.children[i] = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Ctx {
    rt: tokio::runtime::Runtime,
    coord: Coordinator,
    load: Load,
    procs: Arc<Mutex<Procs>>,
    etcd: Arc<EtcdServer>,
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Done,
    Aborted,
    Reverted,
}

#[derive(Clone, Copy)]
enum Inject {
    Nothing,
    KillAndRestart(usize),
    EtcdOutage(Duration),
}

struct Rollout {
    id: &'static str,
    from: Target,
    to: Target,
    stages: Vec<StageSpec>,
    expect: Expect,
    inject: Inject,
    /// The version whose failed answers are expected (the bad one).
    bad: Option<&'static str>,
}

pub fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("\nFAILED: an invariant broke (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("fleet demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn run() -> Result<bool, String> {
    if etcd::binary().is_none() {
        return Err("needs etcd: `apt-get install etcd-server`, or ETCD=/path/to/etcd (`bash ci/fleet-demo.sh` installs it)".into());
    }
    let root = std::env::temp_dir().join(format!("fleet-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let etcd = Arc::new(EtcdServer::start(&root));
    println!(
        "etcd {} at {}",
        etcd::binary()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        etcd.endpoint()
    );

    let store = DirStore::new(root.join("store"));
    let publish = |v: &str, error_every: u64, reads: (u32, u32)| {
        store
            .publish_bytes(&rule::doc(v, error_every, reads), &format!("rules-{v}"), v)
            .map_err(|e| e.to_string())
    };
    let v100 = publish("1.0.0", 0, (1, 3))?;
    let v110 = publish("1.1.0", 0, (1, 3))?;
    let v120 = publish("1.2.0", 0, (1, 2))?; // node d's data is at schema 3
    let v130 = publish("1.3.0", 20, (1, 3))?; // fails one request in twenty
    let v140 = publish("1.4.0", 0, (1, 3))?;
    let v150 = publish("1.5.0", 0, (1, 3))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let coord = rt
        .block_on(Coordinator::connect(
            &[etcd.endpoint()],
            Keys::default(),
            Duration::from_millis(700),
        ))
        .map_err(|e| e.to_string())?
        .with_poll(Duration::from_millis(50));
    // The fleet's version before any rollout.
    rt.block_on(coord.etcd().put(&coord.etcd().keys().fleet("rules"), &v100))
        .map_err(|e| e.to_string())?;

    println!("\nstarting {} host processes", NODES.len());
    let mut procs = Procs {
        children: (0..NODES.len()).map(|_| None).collect(),
        ports: (0..NODES.len())
            .map(|_| free_port())
            .collect::<Result<_, _>>()?,
        root: root.clone(),
        etcd: etcd.endpoint(),
    };
    for i in 0..NODES.len() {
        procs.spawn(i)?;
    }
    let load = Load::start(&procs.ports);
    std::thread::sleep(Duration::from_millis(500));
    let ctx = Ctx {
        rt,
        coord,
        load,
        procs: Arc::new(Mutex::new(procs)),
        etcd,
    };

    let canary_then = |rest: Vec<StageSpec>| {
        let mut s = vec![StageSpec::Percent {
            name: "canary".into(),
            percent: 25,
        }];
        s.extend(rest);
        s
    };
    let rest = || StageSpec::Rest {
        name: "rest".into(),
    };
    let rollouts = vec![
        Rollout {
            id: "r1-good",
            from: v100.clone(),
            to: v110.clone(),
            stages: canary_then(vec![
                StageSpec::Percent {
                    name: "half".into(),
                    percent: 50,
                },
                rest(),
            ]),
            expect: Expect::Done,
            inject: Inject::Nothing,
            bad: None,
        },
        Rollout {
            id: "r2-refused",
            from: v110.clone(),
            to: v120,
            stages: vec![StageSpec::Rest { name: "all".into() }],
            expect: Expect::Aborted,
            inject: Inject::Nothing,
            bad: None,
        },
        Rollout {
            id: "r3-bad",
            from: v110.clone(),
            to: v130,
            stages: canary_then(vec![rest()]),
            expect: Expect::Reverted,
            inject: Inject::Nothing,
            bad: Some("1.3.0"),
        },
        Rollout {
            id: "r4-node-killed",
            from: v110,
            to: v140.clone(),
            stages: canary_then(vec![rest()]),
            expect: Expect::Done,
            inject: Inject::KillAndRestart(2),
            bad: None,
        },
        Rollout {
            id: "r5-etcd-outage",
            from: v140,
            to: v150,
            stages: canary_then(vec![rest()]),
            expect: Expect::Done,
            inject: Inject::EtcdOutage(Duration::from_secs(3)),
            bad: None,
        },
    ];
    let mut all_ok = true;
    let mut summary = Vec::new();
    for r in &rollouts {
        let (ok, line) = rollout(&ctx, r)?;
        all_ok &= ok;
        summary.push(line);
    }
    ctx.load.stop();
    if let Ok(mut p) = ctx.procs.lock() {
        for i in 0..NODES.len() {
            p.kill(i);
        }
    }
    ctx.etcd.stop();
    let _ = std::fs::remove_dir_all(&root);
    println!("\n== summary");
    for line in summary {
        println!("{line}");
    }
    Ok(all_ok)
}

fn snapshot(load: &Load) -> Vec<Seen> {
    load.seen
        .iter()
        .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect()
}

fn rollout(ctx: &Ctx, r: &Rollout) -> Result<(bool, String), String> {
    println!(
        "\n== {}: rules {} -> {}, expecting {}",
        r.id,
        r.from.version,
        r.to.version,
        match r.expect {
            Expect::Done => "it to complete",
            Expect::Aborted => "an abort before any commit",
            Expect::Reverted => "a revert by the canary's gate",
        }
    );
    let spec = PlanSpec {
        id: r.id.to_owned(),
        plugin: "rules".into(),
        to: r.to.clone(),
        from: None,
        stages: r.stages.clone(),
        gate: GateSpec {
            soak: Duration::from_millis(1500),
            max_error_rate: 0.01,
            min_calls: 100,
            max_p99_us: None,
        },
        prepare_timeout_ms: 10_000,
        apply_timeout_ms: 15_000,
    };
    let before = snapshot(&ctx.load);
    let t0 = Instant::now();
    let plan = ctx
        .rt
        .block_on(ctx.coord.plan(spec))
        .map_err(|e| e.to_string())?;
    ctx.rt
        .block_on(ctx.coord.start(&plan))
        .map_err(|e| e.to_string())?;
    let mut injected: Option<std::thread::JoinHandle<()>> = None;
    let outcome = ctx
        .rt
        .block_on(ctx.coord.drive(&plan.id, |p| {
            let t = t0.elapsed().as_secs_f64();
            match p {
                // Retried; the outage is printed where it is injected.
                Progress::Unreachable(_) => {}
                _ => println!("[{t:5.1}s] {p}"),
            }
            if matches!(p, Progress::Soaking { stage: 0 }) && injected.is_none() {
                injected = inject(ctx, r.inject, t0);
            }
        }))
        .map_err(|e| e.to_string())?;
    if let Some(h) = injected {
        let _ = h.join();
    }
    let took = t0.elapsed();
    let mut problems = Vec::new();
    let outcome_ok = matches!(
        (&outcome, r.expect),
        (Outcome::Done, Expect::Done)
            | (Outcome::Aborted { .. }, Expect::Aborted)
            | (Outcome::Reverted { .. }, Expect::Reverted)
    );
    if !outcome_ok {
        problems.push(format!("outcome {outcome:?}"));
    }
    // Converged: every node answers with the version it should end on.
    let end = if r.expect == Expect::Done {
        &r.to.version
    } else {
        &r.from.version
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let converged = loop {
        let now = snapshot(&ctx.load);
        if now
            .iter()
            .all(|s| s.changes.last().is_some_and(|(_, v)| v == end))
        {
            break Instant::now();
        }
        if Instant::now() > deadline {
            problems.push(format!(
                "not every node answers with {end} 20 s after the end"
            ));
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the load see the converged fleet for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let after = snapshot(&ctx.load);

    let mut switches: Vec<Instant> = Vec::new();
    let mut total_ok = 0;
    let mut bad_errors = 0;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let name = NODES[i].0;
        let changes: Vec<&(Instant, String)> = a.changes[b.changes.len()..].iter().collect();
        let line: Vec<String> = changes
            .iter()
            .map(|(t, v)| format!("{v} at +{:.2} s", t.duration_since(t0).as_secs_f64()))
            .collect();
        let start = b.changes.last().map_or("-", |(_, v)| v.as_str());
        println!(
            "   {name}: {start}{}",
            if line.is_empty() {
                String::new()
            } else {
                format!(" -> {}", line.join(" -> "))
            }
        );
        switches.extend(changes.iter().map(|(t, _)| *t));
        let lost = a.lost - b.lost;
        if lost > 0 {
            problems.push(format!("{name}: {lost} requests lost while it was up"));
        }
        for (v, (ok, err)) in &a.answers {
            let (ok0, err0) = b.answers.get(v).copied().unwrap_or_default();
            let (ok, err) = (ok - ok0, err - err0);
            total_ok += ok;
            if err > 0 {
                if Some(v.as_str()) == r.bad {
                    bad_errors += err;
                } else {
                    problems.push(format!("{name}: {err} failed answers from {v}"));
                }
            }
            if r.expect == Expect::Aborted && *v == r.to.version && ok + err > 0 {
                problems.push(format!(
                    "{name} answered {} times from {v}, a version whose stage aborted",
                    ok + err
                ));
            }
        }
        if r.expect == Expect::Reverted {
            if let Some(last) = a.last.get(&r.to.version) {
                if *last > converged {
                    problems.push(format!(
                        "{name} answered from {} after the fleet was back",
                        r.to.version
                    ));
                }
            }
        }
    }
    let live_two = match (switches.iter().min(), switches.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    println!(
        "   {:.1} s; answers {total_ok} ok, {bad_errors} failed from the bad version; two versions live for {:.2} s",
        took.as_secs_f64(),
        live_two.as_secs_f64()
    );
    let ok = problems.is_empty();
    for p in &problems {
        println!("   BROKEN: {p}");
    }
    let verdict = if ok { "ok" } else { "BROKEN" };
    Ok((
        ok,
        format!(
            "{:<16} {:<10} {:>5.1} s  two versions live {:>5.2} s  {total_ok:>7} ok  {bad_errors:>4} bad-version errors  {verdict}",
            r.id,
            match outcome {
                Outcome::Done => "done",
                Outcome::Aborted { .. } => "aborted",
                Outcome::Reverted { .. } => "reverted",
            },
            took.as_secs_f64(),
            live_two.as_secs_f64()
        ),
    ))
}

fn inject(ctx: &Ctx, what: Inject, t0: Instant) -> Option<std::thread::JoinHandle<()>> {
    match what {
        Inject::Nothing => None,
        Inject::KillAndRestart(i) => {
            let procs = Arc::clone(&ctx.procs);
            let up = Arc::clone(&ctx.load.up[i]);
            Some(std::thread::spawn(move || {
                up.store(false, Ordering::Relaxed);
                let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
                p.kill(i);
                println!(
                    "[{:5.1}s] node {} killed",
                    t0.elapsed().as_secs_f64(),
                    NODES[i].0
                );
                drop(p);
                std::thread::sleep(Duration::from_secs(1));
                let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
                print!(
                    "[{:5.1}s] node {} restarted:",
                    t0.elapsed().as_secs_f64(),
                    NODES[i].0
                );
                if let Err(e) = p.spawn(i) {
                    println!(" FAILED: {e}");
                }
                up.store(true, Ordering::Relaxed);
            }))
        }
        Inject::EtcdOutage(d) => {
            let etcd = Arc::clone(&ctx.etcd);
            Some(std::thread::spawn(move || {
                etcd.stop();
                println!("[{:5.1}s] etcd stopped", t0.elapsed().as_secs_f64());
                std::thread::sleep(d);
                etcd.restart();
                println!("[{:5.1}s] etcd restarted", t0.elapsed().as_secs_f64());
            }))
        }
    }
}

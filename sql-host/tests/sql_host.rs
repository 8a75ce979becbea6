//! The SQL host and its plugin libraries: a shorter run of the main job
//! with the same checks, each refusal with the old version serving and its
//! state and resources intact, a revert of a library version, and a sink
//! whose state survives ten consecutive reloads of its file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::{Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::{ReloadOptions, Stateful};
use reload_sqlite::feed::{encode_batch, Change, Op};
use rusqlite::types::Value;
use sql_host::plugins::{self, Builds};
use sql_host::{check, Config};

fn builds() -> &'static Builds {
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    BUILDS.get_or_init(|| plugins::build().unwrap_or_else(|e| panic!("{e}")))
}

fn quiesced() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(60))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sql-host-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_short_run_holds_every_invariant() {
    let config = Config {
        clients: 2,
        // Round 3 deploys the wrong version; round 4 manages from SQL.
        rounds: 5,
        initial_rows: 1_000,
        initial_docs: 100,
        live: false,
        dir: Some(scratch("run")),
        ..Config::default()
    };
    let report = sql_host::run(builds(), &config).expect("the run starts");
    println!("{report}");
    assert!(report.ok(), "{report}");
    assert!(report.queries > 0 && report.udf_rows > 0);
    assert_eq!(report.query_errors, 0);
    assert_eq!(report.mixed_statements, 0);
    // The aggregate and the storage backend ran, on one version each.
    assert!(report.tallies > 0 && report.scans > 0);
    assert_eq!((report.tally_wrong, report.tally_mixed), (0, 0));
    assert_eq!((report.scan_wrong, report.scan_mixed), (0, 0));
    assert_eq!(report.scan_rows % 2_000, 0);
    // From SQL: udf deployed and reverted, money deployed; three refusals
    // naming the cause (a missing file, another plugin's library, a column
    // type that cannot read the stored amounts).
    assert_eq!(report.sql_deploys, 3);
    assert_eq!(report.sql_refusals.len(), 3, "{:?}", report.sql_refusals);
    for why in [
        "cannot deploy `udf`",
        "is plugin `agg`, not `udf`",
        "cannot read prices.amount at rowid 1",
    ] {
        assert!(
            report.sql_refusals.iter().any(|r| r.contains(why)),
            "no refusal for {why}: {:?}",
            report.sql_refusals
        );
    }
    assert_eq!(report.plugins_table.len(), 7, "{:?}", report.plugins_table);
    // The job ticked on more than one version and never failed; every
    // stored amount decoded right.
    assert!(
        report.job_ticks > 0 && report.job_versions >= 2,
        "{} ticks on {} versions",
        report.job_ticks,
        report.job_versions
    );
    assert_eq!((report.job_failures, report.money_wrong), (0, 0));
    assert!(report.money_checks > 0);
    // Round 3 deployed the wrong version; it was noticed and reverted, and
    // no statement started after the revert ran on it.
    assert_eq!(report.reverts, 1);
    assert!(
        report.wrong_rows_bad > 0,
        "the wrong version served and was noticed"
    );
    assert_eq!(report.after_revert, 0);
    assert!(report.delivery.exact(), "{:?}", report.delivery);
    assert_eq!(report.sink_state_delivered, report.delivery.committed);
    assert_eq!(report.reloads.get("cdc"), Some(&5));
    // 5 rounds with an index deploy each, two refused ones, and the end.
    assert_eq!(report.index_checks, 5 + 2 + 1);
    // The timeline draws.
    let svg = scratch("timeline").join("timeline.svg");
    sql_host::timeline::write(&report, &svg).expect("the timeline");
    let svg = fs::read_to_string(&svg).expect("an SVG");
    for text in [
        "<svg",
        "statement latency",
        "versions serving",
        "slow scan",
        "store",
    ] {
        assert!(svg.contains(text), "the timeline lacks {text}");
    }
    assert_eq!(report.index_mismatches, 0);
    let refusals = report.refusals.join("\n");
    for why in ["ABI mismatch", "schema 2", "cannot open"] {
        assert!(refusals.contains(why), "no refusal for {why}: {refusals}");
    }
    assert_eq!(report.copies_left, 0);
    assert_eq!(report.mapped_left, Some(0));
}

fn registry_with(
    loader: &Loader,
    kind: &str,
    version: &str,
    config: &[u8],
) -> Registry<DylibPlugin> {
    let registry = Registry::new(Unchecked);
    let package = loader
        .package(&builds().path(kind, version))
        .expect("packages");
    registry.register(package, config).expect("registered");
    registry
}

// The registry's own errors are large (names, versions, the packages handed
// back); a test returns them as they come.
#[allow(clippy::result_large_err)]
fn reload(
    registry: &Registry<DylibPlugin>,
    loader: &Loader,
    kind: &str,
    version: &str,
    config: &[u8],
) -> Result<(), reload_core::registry::Rejected<DylibPlugin>> {
    let package = loader
        .package(&builds().path(kind, version))
        .expect("packages");
    let report = registry.reload(vec![package], config, quiesced())?;
    for change in report.changes {
        change.committed.old.wait().expect("drained and shut down");
    }
    Ok(())
}

fn score(registry: &Registry<DylibPlugin>, x: i64) -> (i64, String) {
    let call = registry.enter("udf").expect("registered");
    let reply = call.plugin().call(&x.to_le_bytes()).expect("scored");
    let (s, v) = reply.split_at(8);
    (
        i64::from_le_bytes(s.try_into().expect("8 bytes")),
        String::from_utf8(v.to_vec()).expect("utf-8"),
    )
}

/// The udf's own state: rows it scored, carried across reloads.
fn scored(registry: &Registry<DylibPlugin>) -> u64 {
    let call = registry.enter("udf").expect("registered");
    let state = Stateful::save(call.plugin())
        .expect("saves")
        .expect("has state");
    u64::from_le_bytes(state.try_into().expect("8 bytes"))
}

#[test]
fn a_future_abi_is_refused_with_the_old_version_serving_and_its_state_intact() {
    let loader = Loader::in_dir(scratch("abi").join("copies")).expect("loader");
    let registry = registry_with(&loader, "udf", "1.0.0", b"");
    for x in 0..5 {
        assert_eq!(score(&registry, x), (x * 31 + 7, "1.0.0".to_owned()));
    }
    let refused = reload(&registry, &loader, "udf", "1.3.0", b"").expect_err("refused");
    match &refused.error {
        RegistryError::Reload { plugin, fault } => {
            assert_eq!(plugin, "udf");
            let text = fault.to_string();
            assert!(
                text.contains("ABI mismatch") && text.contains("0x3"),
                "{text}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(refused.packages.len(), 1, "the refused version comes back");
    drop(refused);
    assert_eq!(score(&registry, 10), (317, "1.0.0".to_owned()));
    assert_eq!(scored(&registry), 6, "the state was not touched");
    // The refused library was never initialized, and is gone.
    assert_eq!(loader.copies(), 1);
}

/// Feeds the index the insert of document `id`, at the position after its
/// own.
fn index_add(registry: &Registry<DylibPlugin>, id: i64, text: &str) {
    let call = registry.enter("index").expect("registered");
    let at = call.plugin().call(b"P").expect("its position");
    let pos = u64::from_le_bytes(at.try_into().expect("8 bytes")) + 1;
    let change = Change {
        pos,
        table: "docs".to_owned(),
        op: Op::Insert,
        rowid: id,
        value: Value::Text(text.to_owned()),
    };
    let reply = call
        .plugin()
        .call(&encode_batch(&[change]))
        .expect("indexed");
    assert_eq!(reply, pos.to_le_bytes(), "the index's new position");
}

fn index_dump(registry: &Registry<DylibPlugin>) -> Vec<u8> {
    let call = registry.enter("index").expect("registered");
    call.plugin().call(b"X").expect("dumped")
}

fn indexed(registry: &Registry<DylibPlugin>) -> (Vec<u8>, String) {
    let dump = index_dump(registry);
    let version = registry
        .enter("index")
        .expect("registered")
        .manifest()
        .version()
        .to_string();
    (dump, version)
}

#[test]
fn an_incompatible_index_schema_is_refused_on_the_real_bytes_with_the_index_intact() {
    let loader = Loader::in_dir(scratch("schema").join("copies")).expect("loader");
    let registry = registry_with(&loader, "index", "1.0.0", b"");
    index_add(&registry, 1, "Alpha beta");
    index_add(&registry, 2, "beta gamma");
    let before = indexed(&registry);
    let refused = reload(&registry, &loader, "index", "2.0.0", b"").expect_err("refused");
    let text = refused.error.to_string();
    assert!(
        text.contains("check_compat") && text.contains("persisted in schema 1"),
        "{text}"
    );
    // What the old version persisted is in the salvage, nothing lost.
    let salvage = &refused.salvage[0].1;
    assert_eq!(salvage.persisted.len(), 1);
    assert_eq!(salvage.persisted[0].0, "tokens");
    assert_eq!(salvage.persisted[0].1, before.0);
    drop(refused);
    assert_eq!(
        indexed(&registry),
        before,
        "the old index serves, unchanged"
    );
    let expected = check::decode_index(&before.0).expect("decodes");
    assert_eq!(expected.len(), 2);
    assert!(expected[&1].contains("alpha"));
}

#[test]
fn an_open_that_fails_is_refused_with_the_old_index_serving() {
    let loader = Loader::in_dir(scratch("open").join("copies")).expect("loader");
    let registry = registry_with(&loader, "index", "1.0.0", b"");
    index_add(&registry, 7, "drain lease slot");
    let before = indexed(&registry);
    let refused = reload(&registry, &loader, "index", "1.2.0", b"").expect_err("refused");
    assert!(
        refused.error.to_string().contains("cannot open"),
        "{}",
        refused.error
    );
    drop(refused);
    assert_eq!(indexed(&registry), before);
    // And a good version takes the index over afterwards.
    reload(&registry, &loader, "index", "1.1.0", b"").expect("reloaded");
    let after = indexed(&registry);
    assert_eq!(after.0, before.0, "the index was handed over");
    assert_eq!(after.1, "1.1.0");
}

#[test]
fn a_wrong_library_version_is_reverted_with_its_state_carried_back() {
    let loader = Loader::in_dir(scratch("revert").join("copies")).expect("loader");
    let registry = registry_with(&loader, "udf", "1.0.0", b"");
    score(&registry, 1);
    reload(&registry, &loader, "udf", "1.2.0", b"").expect("the wrong version commits");
    let (s, v) = score(&registry, 1);
    assert_eq!((s, v.as_str()), (39, "1.2.0"), "wrong: 38 + 1");
    let report = registry.revert("udf", b"", quiesced()).expect("reverted");
    for change in report.changes {
        assert_eq!(change.to.to_string(), "1.0.0");
        change
            .committed
            .old
            .wait()
            .expect("the wrong version drained");
    }
    assert_eq!(score(&registry, 1), (38, "1.0.0".to_owned()));
    // Scored by 1.0.0, then 1.2.0, then the fresh 1.0.0: carried through.
    assert_eq!(scored(&registry), 3);
    assert!(matches!(
        registry
            .revert("udf", b"", quiesced())
            .map(drop)
            .map_err(|r| r.error),
        Err(RegistryError::NothingToRevert { .. })
    ));
    // The versions reverted away from and replaced are unmapped: only the
    // current one's private copy is left.
    assert_eq!(loader.copies(), 1);
}

fn deliver(registry: &Registry<DylibPlugin>, from: u64, n: u64) -> u64 {
    let changes: Vec<Change> = (from..from + n)
        .map(|pos| Change {
            pos,
            table: "t".to_owned(),
            op: Op::Insert,
            rowid: pos as i64,
            value: Value::Text(format!("v{pos}")),
        })
        .collect();
    let call = registry.enter("cdc").expect("registered");
    let reply = call
        .plugin()
        .call(&encode_batch(&changes))
        .expect("delivered");
    u64::from_le_bytes(reply.try_into().expect("8 bytes"))
}

fn sink_state(registry: &Registry<DylibPlugin>) -> (u64, u64) {
    let call = registry.enter("cdc").expect("registered");
    let position = call.plugin().call(b"P").expect("position");
    let state = call.plugin().call(b"S").expect("state");
    (
        u64::from_le_bytes(position.try_into().expect("8 bytes")),
        u64::from_le_bytes(state[..8].try_into().expect("8 bytes")),
    )
}

#[test]
fn a_sinks_state_and_position_survive_ten_reloads_of_its_file() {
    let dir = scratch("sink");
    let out = dir.join("cdc.out");
    let config = format!("cdc_out={}\n", out.display()).into_bytes();
    let loader = Loader::in_dir(dir.join("copies")).expect("loader");
    // One watched path, replaced by each version in turn, as a deploy does.
    let live: &Path = &dir.join("cdc.so");
    let registry = Registry::new(Unchecked);
    fs::copy(builds().path("cdc", "1.0.0"), live).expect("deploy");
    registry
        .register(loader.package(live).expect("packages"), &config)
        .expect("registered");
    assert_eq!(deliver(&registry, 1, 10), 10, "the position after");
    let mut next = 11;
    for i in 0..10 {
        let version = if i % 2 == 0 { "1.1.0" } else { "1.0.0" };
        let tmp = dir.join("cdc.tmp");
        fs::copy(builds().path("cdc", version), &tmp).expect("copy");
        fs::rename(&tmp, live).expect("rename");
        let report = registry
            .reload(
                vec![loader.package(live).expect("packages")],
                &config,
                quiesced(),
            )
            .expect("reloaded");
        for change in report.changes {
            assert_eq!(change.to.to_string(), version);
            change.committed.old.wait().expect("drained");
        }
        // The position and the count came across; a re-sent change is
        // skipped, not delivered twice.
        assert_eq!(sink_state(&registry), (next - 1, next - 1));
        assert_eq!(
            deliver(&registry, next - 3, 8),
            next + 4,
            "three re-sent, five new"
        );
        next += 5;
    }
    assert_eq!(sink_state(&registry), (next - 1, next - 1));
    drop(registry);
    let lines: Vec<u64> = fs::read_to_string(&out)
        .expect("output")
        .lines()
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("pos")
        })
        .collect();
    assert_eq!(lines, (1..next).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(loader.copies(), 0);
}

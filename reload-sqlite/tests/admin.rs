//! Managing plugins from SQL: `reload_plugins`, `reload_deploy`,
//! `reload_revert`, and every refusal a SQL error with the old version
//! serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{table, version_text, Fixture, Probe};
use reload_core::registry::Package;
use reload_core::{BoxError, ReloadOptions};
use reload_sqlite::{Deployer, Hot};
use rusqlite::Connection;

/// Packages named by path: `/pkgs/<plugin>-<version>[-broken|-panics]`.
struct Pkgs(Fixture);

impl Deployer<Probe> for Pkgs {
    fn package(&self, _: &str, path: &Path) -> Result<Package<Probe>, BoxError> {
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        let parts: Vec<&str> = file.split('-').collect();
        match parts[..] {
            [name, version] => Ok(self.0.package(name, version, version_text())),
            [name, version, "broken"] => {
                let mut p = self.0.package(name, version, version_text()).into_plugin();
                p.broken = true;
                let manifest = reload_core::manifest::Manifest::new(name, version)?;
                Ok(Package::new(p, manifest, file.as_bytes().to_vec()))
            }
            [_, _, "panics"] => panic!("the deployer panicked on {file}"),
            _ => Err(format!("{}: no such file", path.display()).into()),
        }
    }

    fn context(&self, _: &str) -> &() {
        &()
    }

    fn options(&self, _: &str) -> ReloadOptions {
        ReloadOptions::immediate()
    }

    fn manages(&self, name: &str) -> bool {
        name != "locked"
    }
}

fn setup() -> (Fixture, Connection) {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    f.register("locked", "1.0.0", version_text());
    let conn = table(10);
    let deployer = Pkgs(Fixture {
        registry: Arc::clone(&f.registry),
        after_shutdown: Arc::clone(&f.after_shutdown),
    });
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .admin(deployer)
        .attach(&conn)
        .unwrap();
    (f, conn)
}

fn v(conn: &Connection) -> String {
    conn.query_row("SELECT v(1)", [], |r| r.get(0)).unwrap()
}

fn sql_err(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string()
}

type Row = (
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

fn row(conn: &Connection, name: &str) -> Row {
    conn.query_row(
        "SELECT name, version, generation, phase, in_flight, calls, reloads, refusals, last_error, revert_to
         FROM reload_plugins WHERE name = ?1",
        [name],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        },
    )
    .unwrap()
}

#[test]
fn deploy_and_revert_from_sql() {
    let (f, conn) = setup();
    assert_eq!(v(&conn), "1.0.0");
    let names: Vec<String> = conn
        .prepare("SELECT name FROM reload_plugins ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["locked", "v"]);
    let r = row(&conn, "v");
    assert_eq!(
        (r.0.as_str(), r.1.as_str(), r.3.as_str()),
        ("v", "1.0.0", "active")
    );
    assert_eq!((r.4, r.5, r.6, r.7), (0, 1, 0, 0));
    assert_eq!(r.9, None);
    let digest: String = conn
        .query_row(
            "SELECT digest FROM reload_plugins WHERE name = 'v'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(digest.len(), 64, "{digest}");

    let to: String = conn
        .query_row("SELECT reload_deploy('v', '/pkgs/v-2.0.0')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(to, "2.0.0");
    assert_eq!(v(&conn), "2.0.0");
    let r = row(&conn, "v");
    assert_eq!(
        (r.1.as_str(), r.6, r.9.as_deref()),
        ("2.0.0", 1, Some("1.0.0"))
    );

    let back: String = conn
        .query_row("SELECT reload_revert('v')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(back, "1.0.0");
    assert_eq!(v(&conn), "1.0.0");
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn every_refusal_is_a_sql_error_with_the_old_version_serving() {
    let (f, conn) = setup();
    let cases = [
        (
            "SELECT reload_deploy('v', '/pkgs/missing')",
            "cannot deploy `v` from /pkgs/missing: /pkgs/missing: no such file",
        ),
        (
            "SELECT reload_deploy('v', '/pkgs/other-2.0.0')",
            "the package at /pkgs/other-2.0.0 is plugin `other`, not `v`",
        ),
        (
            "SELECT reload_deploy('v', '/pkgs/v-2.0.0-broken')",
            "2.0.0 refuses to start",
        ),
        (
            "SELECT reload_deploy('v', '/pkgs/v-2.0.0-panics')",
            "deploying `v` panicked: the deployer panicked on v-2.0.0-panics",
        ),
        ("SELECT reload_revert('v')", "`v` refused: "),
        (
            "SELECT reload_deploy('locked', '/pkgs/locked-2.0.0')",
            "plugin `locked` is not managed from SQL here",
        ),
        (
            "SELECT reload_deploy('ghost', '/pkgs/ghost-2.0.0')",
            "`ghost` refused: ",
        ),
    ];
    for (i, (sql, want)) in cases.iter().enumerate() {
        let e = sql_err(&conn, sql);
        assert!(e.contains(want), "{sql}: {e}");
        assert_eq!(v(&conn), "1.0.0", "{sql}");
        if i < 5 {
            let r = row(&conn, "v");
            assert_eq!(r.7, i as i64 + 1, "{sql}: refusals");
            assert!(
                r.8.as_deref().is_some_and(|l| l.contains(want)),
                "{sql}: last error {:?}",
                r.8
            );
        }
    }
    // Still deployable after all that.
    let to: String = conn
        .query_row("SELECT reload_deploy('v', '/pkgs/v-3.0.0')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!((to.as_str(), v(&conn).as_str()), ("3.0.0", "3.0.0"));
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn without_admin_there_is_nothing_to_manage_from_sql() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(1);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    assert!(
        sql_err(&conn, "SELECT reload_deploy('v', '/pkgs/v-2.0.0')").contains("no such function")
    );
    assert!(sql_err(&conn, "SELECT name FROM reload_plugins").contains("no such table"));
}

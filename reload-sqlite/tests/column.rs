//! A schema-typed kind: a column type's new version must read every stored
//! value, checked on the real rows before the reload; a refusal leaves the
//! old version serving and the bytes as they were.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Behaviour, Fixture, Probe};
use reload_core::registry::Package;
use reload_core::{BoxError, ReloadOptions};
use reload_sqlite::{wire, Deployer, Hot};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Stores an INTEGER as `tag` then 8 bytes; reads back only its own tag
/// (`lenient` reads any tag).
fn int_type(tag: u8, lenient: bool) -> Behaviour {
    Arc::new(move |_, request| match request {
        [b'E', rest @ ..] => match wire::decode_all(rest).map_err(|e| e.to_string())?[..] {
            [ValueRef::Integer(x)] => {
                let mut out = vec![tag];
                out.extend_from_slice(&x.to_le_bytes());
                Ok(out)
            }
            _ => Err("stores integers".into()),
        },
        [b'D', t, rest @ ..] if (*t == tag || lenient) && rest.len() == 8 => {
            let x = i64::from_le_bytes(rest.try_into().unwrap());
            Ok(wire::encode_one(ValueRef::Integer(x)).unwrap())
        }
        [b'D', t, ..] => Err(format!("stored with tag {t}; this version reads tag {tag}")),
        _ => Err("unknown request".into()),
    })
}

struct Pkgs(Fixture);

impl Deployer<Probe> for Pkgs {
    fn package(&self, name: &str, path: &Path) -> Result<Package<Probe>, BoxError> {
        let behaviour = match path.to_str() {
            Some("/pkgs/same-tag") => int_type(1, false),
            Some("/pkgs/lenient") => int_type(2, true),
            Some("/pkgs/new-tag") => int_type(2, false),
            Some("/pkgs/panics") => Arc::new(|_: &str, _: &[u8]| -> Result<Vec<u8>, String> {
                panic!("the decoder panicked")
            }),
            _ => return Err("no such file".into()),
        };
        let version = match path.to_str() {
            Some("/pkgs/same-tag") => "1.1.0",
            Some("/pkgs/lenient") => "1.2.0",
            _ => "2.0.0",
        };
        Ok(self.0.package(name, version, behaviour))
    }

    fn context(&self, _: &str) -> &() {
        &()
    }

    fn options(&self, _: &str) -> ReloadOptions {
        ReloadOptions::immediate()
    }
}

#[test]
fn a_column_type_that_cannot_read_the_stored_rows_is_refused() {
    let f = Fixture::new();
    f.register("int", "1.0.0", int_type(1, false));
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE m(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    Hot::new(Arc::clone(&f.registry))
        .column_type("num", "int", "m", "v")
        .admin(Pkgs(Fixture {
            registry: Arc::clone(&f.registry),
            after_shutdown: Arc::clone(&f.after_shutdown),
        }))
        .attach(&conn)
        .unwrap();
    conn.execute_batch(
        "INSERT INTO m(v) SELECT num_encode(value) FROM generate_series(1, 50);
         INSERT INTO m(v) VALUES (NULL);",
    )
    .or_else(|_| {
        // generate_series is an extension: insert one by one.
        for i in 1..=50 {
            conn.execute("INSERT INTO m(v) VALUES (num_encode(?1))", [i])?;
        }
        conn.execute("INSERT INTO m(v) VALUES (NULL)", []).map(drop)
    })
    .unwrap();
    let sum = |conn: &Connection| -> i64 {
        conn.query_row("SELECT sum(num_decode(v)) FROM m", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sum(&conn), 1275);
    let stored = |conn: &Connection| -> Vec<Vec<u8>> {
        conn.prepare("SELECT v FROM m WHERE v IS NOT NULL ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = stored(&conn);
    let deploy = |path: &str| {
        conn.query_row("SELECT reload_deploy('int', ?1)", [path], |r| {
            r.get::<_, String>(0)
        })
    };
    // A version with another tag cannot read the rows: refused, hard.
    let e = deploy("/pkgs/new-tag").unwrap_err().to_string();
    assert!(
        e.contains("`int` 2.0.0 cannot read m.v at rowid 1: ") && e.contains("stored with tag 1"),
        "{e}"
    );
    let e = deploy("/pkgs/panics").unwrap_err().to_string();
    assert!(
        e.contains("cannot read m.v at rowid 1: it panicked: the decoder panicked"),
        "{e}"
    );
    // The old version serves, the bytes are as they were.
    let version: String = conn
        .query_row(
            "SELECT version FROM reload_plugins WHERE name = 'int'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "1.0.0");
    assert_eq!(stored(&conn), before);
    assert_eq!(sum(&conn), 1275);
    // A version that reads them is deployed.
    assert_eq!(deploy("/pkgs/same-tag").unwrap(), "1.1.0");
    assert_eq!(sum(&conn), 1275);
    assert_eq!(deploy("/pkgs/lenient").unwrap(), "1.2.0");
    assert_eq!(sum(&conn), 1275);
    // Once rows with the new tag exist, a strict old-tag version is refused.
    conn.execute("INSERT INTO m(v) VALUES (num_encode(1000))", [])
        .unwrap();
    let e = deploy("/pkgs/same-tag").unwrap_err().to_string();
    assert!(e.contains("cannot read m.v at rowid 52"), "{e}");
    assert_eq!(f.calls_after_shutdown(), 0);
}

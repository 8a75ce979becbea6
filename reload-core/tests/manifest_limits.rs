//! The manifest's limits are one set: every manifest that can be built
//! encodes to bytes that decode to it again, at each limit and past it.

use proptest::prelude::*;
use reload_core::manifest::{
    Manifest, ManifestError, MAX_ENTRIES, MAX_LEN, MAX_NAME, MAX_RANGE, MAX_VERSION,
};

fn round_trips(m: &Manifest) {
    let bytes = m.encode();
    assert!(bytes.len() <= MAX_LEN, "{} bytes encoded", bytes.len());
    assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(m));
}

/// A name of `len` characters, distinct for each `i`.
fn name(i: usize, len: usize) -> String {
    let mut n = format!("{i:x}.");
    while n.len() < len {
        n.push(char::from(b'a' + (n.len() % 26) as u8));
    }
    n.truncate(len);
    n
}

#[test]
fn names_at_their_limit_and_one_past() {
    let longest = "a".repeat(MAX_NAME);
    let m = Manifest::new(&longest, "1.0.0")
        .and_then(|m| m.export(&longest))
        .and_then(|m| m.requires(&"b".repeat(MAX_NAME), "^1", &[&longest]))
        .expect("every name at its limit");
    round_trips(&m);
    let over = "a".repeat(MAX_NAME + 1);
    assert!(matches!(
        Manifest::new(&over, "1.0.0"),
        Err(ManifestError::BadName { line: 0, .. })
    ));
    assert!(matches!(
        m.clone().export(&over),
        Err(ManifestError::BadName { .. })
    ));
    assert!(matches!(
        Manifest::decode(format!("reload-manifest 1\nname {over}\nversion 1.0.0\n").as_bytes()),
        Err(ManifestError::BadName { line: 2, .. })
    ));
}

#[test]
fn versions_at_their_limit_and_one_past() {
    // `1.0.0-` and a pre-release of the rest: exactly MAX_VERSION bytes.
    let at = format!("1.0.0-{}", "a".repeat(MAX_VERSION - 6));
    assert_eq!(at.len(), MAX_VERSION);
    let m = Manifest::new("p", &at).expect("at the limit");
    round_trips(&m);
    let over = format!("{at}b");
    for refused in [
        Manifest::new("p", &over),
        Manifest::decode(format!("reload-manifest 1\nname p\nversion {over}\n").as_bytes()),
    ] {
        assert!(
            matches!(&refused, Err(ManifestError::BadVersion { reason, .. }) if reason.contains("longer than 128")),
            "{refused:?}"
        );
    }
    // A version of any length is refused before it is parsed.
    let huge = format!("1.0.0+{}", "9".repeat(1 << 20));
    assert!(matches!(
        Manifest::new("p", &huge),
        Err(ManifestError::BadVersion { .. })
    ));
}

#[test]
fn ranges_at_their_limit_and_one_past() {
    // `>=1.0.0` and `,<N.0.0` pairs, no spaces: canonical as written.
    let mut range = ">=1.0.0".to_owned();
    let mut n = 2;
    while range.len() + 8 <= MAX_RANGE {
        range.push_str(&format!(",<{n}.0.0"));
        n += 1;
    }
    assert!(range.len() > MAX_RANGE - 8 && range.len() <= MAX_RANGE);
    let m = Manifest::new("p", "1.0.0")
        .and_then(|m| m.requires("q", &range, &[]))
        .expect("a long range");
    round_trips(&m);
    // A range whose canonical form grows past the limit (`1.0` is written
    // `^1.0`) is refused, even though its text fits.
    let mut bare = "1.0".to_owned();
    while bare.len() + 4 <= MAX_RANGE {
        bare.push_str(",1.0");
    }
    let refused = Manifest::new("p", "1.0.0").and_then(|m| m.requires("q", &bare, &[]));
    assert!(
        matches!(&refused, Err(ManifestError::BadRequirement { reason, .. }) if reason.contains("as written")),
        "{refused:?}"
    );
    let over = "^1.0.0".to_owned() + &",<9.0.0".repeat(MAX_RANGE / 7 + 1);
    assert!(matches!(
        Manifest::new("p", "1.0.0").and_then(|m| m.requires("q", &over, &[])),
        Err(ManifestError::BadRequirement { .. })
    ));
}

#[test]
fn entries_at_their_limit_and_one_past() {
    let mut m = Manifest::new("p", "1.0.0").expect("valid");
    for i in 0..MAX_ENTRIES {
        m = m.export(&name(i, 8)).expect("within the count");
    }
    assert_eq!(m.exports().len(), MAX_ENTRIES);
    round_trips(&m);
    assert!(matches!(
        m.clone().export("one-more"),
        Err(ManifestError::TooMany {
            what: "exports",
            ..
        })
    ));
    let uses: Vec<String> = (0..=MAX_ENTRIES).map(|i| name(i, 4)).collect();
    let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
    assert!(matches!(
        m.clone().requires("q", "^1", &uses),
        Err(ManifestError::TooMany {
            what: "used exports",
            ..
        })
    ));
    let m = m
        .requires("q", "^1", &uses[..MAX_ENTRIES])
        .expect("at the count");
    round_trips(&m);
}

/// The largest manifests: every count and name at its limit would be
/// megabytes, so the encoded size is what refuses, on the addition that
/// would pass it, and what was built up to it round-trips.
#[test]
fn the_encoded_size_is_checked_on_every_addition() {
    let mut m = Manifest::new(&"p".repeat(MAX_NAME), "1.0.0").expect("valid");
    for i in 0..MAX_ENTRIES {
        m = m.export(&name(i, MAX_NAME)).expect("256 exports of 64 fit");
    }
    let uses: Vec<String> = (0..MAX_ENTRIES).map(|i| name(i, MAX_NAME)).collect();
    let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
    let mut added = 0;
    let refused = loop {
        match m
            .clone()
            .requires(&name(1000 + added, MAX_NAME), "^1", &uses)
        {
            Ok(next) => {
                m = next;
                added += 1;
            }
            Err(e) => break e,
        }
    };
    // The exports take 18.4 KB and each requirement line 16.7 KB: two fit,
    // the third does not.
    assert_eq!(added, 2, "requirements of 256 long uses that fit");
    assert!(
        matches!(refused, ManifestError::TooLarge { len, max: MAX_LEN } if len > MAX_LEN),
        "{refused:?}"
    );
    round_trips(&m);
    let size = m.encode().len();
    assert!(size > MAX_LEN / 2, "{size}");
}

/// A manifest exactly `MAX_LEN` bytes long decodes, and one byte more (a
/// longer name) is refused, built or decoded.
#[test]
fn exactly_max_len_encodes_and_decodes() {
    let mut m = Manifest::new("p", "1.0.0").expect("valid");
    let mut i = 0;
    // Requirements of 200 uses of 64-character names: about 13 KB each.
    let uses: Vec<String> = (0..200).map(|i| name(i, MAX_NAME)).collect();
    let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
    while let Ok(next) = m.clone().requires(&name(9000 + i, 8), "^1", &uses) {
        m = next;
        i += 1;
    }
    // Top up with exports until less room is left than the shortest
    // export line takes (9 bytes: `export x\n`).
    loop {
        let room = MAX_LEN - m.encode().len();
        if room < "export \n".len() + 1 {
            break;
        }
        let len = (room - "export \n".len()).min(MAX_NAME);
        let export = name(100 + m.exports().len(), len);
        m = m
            .export(&export)
            .unwrap_or_else(|e| panic!("{room} bytes of room, a {len}-character export: {e}"));
    }
    let bytes = m.encode();
    let left = MAX_LEN - bytes.len();
    assert!(left < 9, "{left} bytes short");
    round_trips(&m);
    // The decoder refuses one byte more than MAX_LEN of the same text.
    let mut padded = bytes.clone();
    padded.extend(std::iter::repeat_n(b'\n', left + 1));
    assert_eq!(padded.len(), MAX_LEN + 1);
    assert_eq!(
        Manifest::decode(&padded),
        Err(ManifestError::TooLarge {
            len: MAX_LEN + 1,
            max: MAX_LEN
        })
    );
    padded.pop();
    assert_eq!(Manifest::decode(&padded).as_ref(), Ok(&m));
}

fn any_name() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,64}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the builder accepts round-trips within MAX_LEN; whatever it
    /// refuses is refused for a limit.
    #[test]
    fn what_builds_round_trips(
        name in any_name(),
        pre in "[a-z0-9]{0,160}",
        exports in prop::collection::vec(any_name(), 0..300),
        requires in prop::collection::vec(
            (any_name(), 1u64..40, prop::collection::vec(any_name(), 0..300)),
            0..8,
        ),
    ) {
        let version = if pre.is_empty() { "1.0.0".to_owned() } else { format!("1.0.0-{pre}") };
        let mut m = match Manifest::new(&name, &version) {
            Ok(m) => m,
            Err(e) => {
                prop_assert!(version.len() > MAX_VERSION, "{e}");
                return Ok(());
            }
        };
        for export in &exports {
            match m.clone().export(export) {
                Ok(next) => m = next,
                Err(ManifestError::Duplicate { .. } | ManifestError::TooMany { .. }
                    | ManifestError::TooLarge { .. }) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        for (dep, major, uses) in &requires {
            let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
            match m.clone().requires(dep, &format!(">={major}.0.0,<{}.0.0", major + 1), &uses) {
                Ok(next) => m = next,
                Err(ManifestError::Duplicate { .. } | ManifestError::TooMany { .. }
                    | ManifestError::TooLarge { .. } | ManifestError::RequiresItself { .. }) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let bytes = m.encode();
        prop_assert!(bytes.len() <= MAX_LEN);
        prop_assert_eq!(Manifest::decode(&bytes), Ok(m));
    }
}

#[test]
fn the_limits_are_what_the_docs_say() {
    assert_eq!(
        (MAX_NAME, MAX_VERSION, MAX_RANGE, MAX_ENTRIES, MAX_LEN),
        (64, 128, 128, 256, 65_536)
    );
}

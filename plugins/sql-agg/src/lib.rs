//! `agg`: the SQL host's aggregate, `tally(x)`, as a plugin library
//! (reload-sqlite's aggregate protocol: the host keeps the accumulator).
//!
//! The accumulator is `version:rows:sum`; a step by another version than
//! the one that started the group marks it `MIXED`, and the result is the
//! accumulator as TEXT, so the host checks both the arithmetic (against
//! SQL's own `count` and `sum` in the same statement) and that a group
//! finished on the version it started on.
#![allow(missing_docs)]

include!("../../shared/version.rs");
include!("../../shared/wire.rs");

pub struct Agg;

fn parse(acc: &[u8]) -> Result<(String, i64, i64), String> {
    if acc.is_empty() {
        return Ok((VERSION.to_owned(), 0, 0));
    }
    let text = std::str::from_utf8(acc).map_err(|_| "accumulator not UTF-8")?;
    let mut parts = text.rsplitn(3, ':');
    let sum = parts.next().and_then(|s| s.parse().ok());
    let rows = parts.next().and_then(|s| s.parse().ok());
    let tag = parts.next();
    match (tag, rows, sum) {
        (Some(tag), Some(rows), Some(sum)) => Ok((tag.to_owned(), rows, sum)),
        _ => Err(format!("a bad accumulator: {text}")),
    }
}

impl reload_abi::Plugin for Agg {
    fn new() -> Self {
        Agg
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let (op, acc, args) = wire::aggregate(input)?;
        let (tag, rows, sum) = parse(acc)?;
        let tag = if tag == VERSION {
            tag
        } else {
            format!("MIXED({tag}+{VERSION})")
        };
        match op {
            b's' => {
                let x = wire::read_integer(args)?;
                Ok(format!("{tag}:{}:{}", rows + 1, sum.wrapping_add(x)).into_bytes())
            }
            b'f' => {
                let mut out = Vec::new();
                wire::text(&mut out, &format!("{tag}:{rows}:{sum}"));
                Ok(out)
            }
            op => Err(format!("tally has no op {op}")),
        }
    }
}

export!(Agg, "agg", ["tally"]);

// reload-sqlite's change-feed records (`reload_sqlite::feed`), read by hand:
// a plugin library does not link SQLite.
//
// record := position u64 | op u8 | rowid i64 | table length u32 | table
//         | value (tag, then i64 / f64 / u32 length and bytes)
#[allow(dead_code)]
mod feed {
    pub enum Val<'a> {
        Null,
        Integer(i64),
        Real(f64),
        Text(&'a str),
        Blob(&'a [u8]),
    }

    impl std::fmt::Display for Val<'_> {
        /// How the SQL host's sink writes a value (the host checks it the
        /// same way).
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Val::Null => Ok(()),
                Val::Integer(i) => write!(f, "{i}"),
                Val::Real(r) => write!(f, "{r}"),
                Val::Text(t) => f.write_str(t),
                Val::Blob(b) => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
            }
        }
    }

    pub struct Record<'a> {
        pub pos: u64,
        pub op: u8,
        pub rowid: i64,
        pub table: &'a str,
        pub value: Val<'a>,
    }

    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("truncated change record".to_owned());
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }

    fn word<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
        let mut w = [0u8; N];
        w.copy_from_slice(take(bytes, N)?);
        Ok(w)
    }

    fn utf8(b: &[u8]) -> Result<&str, String> {
        std::str::from_utf8(b).map_err(|e| e.to_string())
    }

    /// The records of a `D` request (after its `D`).
    pub fn records(mut bytes: &[u8]) -> Result<Vec<Record<'_>>, String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let pos = u64::from_le_bytes(word(&mut bytes)?);
            let op = take(&mut bytes, 1)?[0];
            let rowid = i64::from_le_bytes(word(&mut bytes)?);
            let len = u32::from_le_bytes(word(&mut bytes)?) as usize;
            let table = utf8(take(&mut bytes, len)?)?;
            let value = match take(&mut bytes, 1)?[0] {
                0 => Val::Null,
                1 => Val::Integer(i64::from_le_bytes(word(&mut bytes)?)),
                2 => Val::Real(f64::from_le_bytes(word(&mut bytes)?)),
                tag @ (3 | 4) => {
                    let len = u32::from_le_bytes(word(&mut bytes)?) as usize;
                    let body = take(&mut bytes, len)?;
                    if tag == 3 {
                        Val::Text(utf8(body)?)
                    } else {
                        Val::Blob(body)
                    }
                }
                tag => return Err(format!("unknown value tag {tag}")),
            };
            out.push(Record { pos, op, rowid, table, value });
        }
        Ok(out)
    }
}

// reload-sqlite's value encoding (`reload_sqlite::wire`), the parts these
// plugins need, by hand: a plugin library does not link SQLite.
#[allow(dead_code)]
mod wire {
    pub fn integer(out: &mut Vec<u8>, i: i64) {
        out.push(1);
        out.extend_from_slice(&i.to_le_bytes());
    }

    pub fn text(out: &mut Vec<u8>, s: &str) {
        out.push(3);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// One INTEGER argument.
    pub fn read_integer(bytes: &[u8]) -> Result<i64, String> {
        match bytes {
            [1, rest @ ..] if rest.len() == 8 => {
                Ok(i64::from_le_bytes(rest.try_into().map_err(|_| "8 bytes")?))
            }
            [0] => Ok(0),
            _ => Err("takes one integer".to_owned()),
        }
    }

    /// An aggregate request: its op, its accumulator, its arguments.
    pub fn aggregate(request: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
        let (&op, rest) = request.split_first().ok_or("an empty request")?;
        let len = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or("no accumulator length")? as usize;
        let acc = rest.get(4..4 + len).ok_or("a truncated accumulator")?;
        Ok((op, acc, &rest[4 + len..]))
    }
}

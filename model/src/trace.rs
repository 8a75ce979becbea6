//! Counterexamples, printed for people.

use std::fmt::{Debug, Write};

use stateright::{Checker, Model};

/// Finds the counterexample the checker discovered for `property` and
/// renders it as numbered steps, each followed by what it changed, or
/// `None` if the property held.
pub fn counterexample<M, C>(checker: &C, property: &'static str) -> Option<String>
where
    M: Model,
    M::State: Debug + Clone + PartialEq,
    M::Action: Debug + Clone + PartialEq,
    C: Checker<M>,
{
    let path = checker.discovery(property)?;
    let mut out = format!("counterexample to \"{property}\":\n");
    let steps = path.into_vec();
    let mut last: Option<String> = None;
    for (i, (state, action)) in steps.iter().enumerate() {
        let now = format!("{state:?}");
        if i == 0 {
            let _ = writeln!(out, "  start: {now}");
        } else if let Some(prev) = &last {
            let _ = writeln!(out, "         {}", diff(prev, &now));
        }
        if let Some(action) = action {
            let _ = writeln!(out, "  {:>2}. {action:?}", i + 1);
        }
        last = Some(now);
    }
    Some(out)
}

/// The fields of a `Debug` struct rendering that changed, as `name: value`.
fn diff(before: &str, after: &str) -> String {
    let b = fields(before);
    let changed: Vec<String> = fields(after)
        .into_iter()
        .filter(|f| !b.contains(f))
        .collect();
    if changed.is_empty() {
        "(no change)".to_owned()
    } else {
        format!("-> {}", changed.join(", "))
    }
}

/// Splits `Name { a: x, b: [y, z] }` into its top-level `a: x` fields.
fn fields(debug: &str) -> Vec<String> {
    let inner = debug
        .find('{')
        .and_then(|start| debug.rfind('}').map(|end| &debug[start + 1..end]))
        .unwrap_or(debug);
    let mut out = Vec::new();
    let (mut depth, mut field) = (0i32, String::new());
    for ch in inner.chars() {
        match ch {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(field.trim().to_owned());
                field.clear();
                continue;
            }
            _ => {}
        }
        field.push(ch);
    }
    if !field.trim().is_empty() {
        out.push(field.trim().to_owned());
    }
    out
}

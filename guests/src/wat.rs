//! The guests written by hand in the text format, each a core module
//! against the canonical ABI of its world, encoded as a component.

use crate::{host_wit, plugin_wit, wat_component, wat_component_in};

/// The scalar `my:udf` function, as a guest of version `1.0.0` or `1.1.0`
/// (`1.1.0` adds `eval-with`): `eval(x) = 2x`, logging `x` through the
/// host; `eval(-1)` traps, `eval(-2)` spins forever.
///
/// # Panics
///
/// On a version other than those two (the test's own mistake).
pub fn udf(version: &str) -> Vec<u8> {
    let with = match version {
        "1.0.0" => "",
        "1.1.0" => {
            r#"(func (export "my:udf/scalar@1.1.0#eval-with") (param $x i64) (param $scale i64) (result i64)
                 (i64.mul (call $eval (local.get $x)) (local.get $scale)))"#
        }
        other => panic!("no udf guest of version {other}"),
    };
    let wat = udf_wat(version, with);
    wat_component(&wat, &host_wit(&format!("udf-{version}")), "udf").expect("the udf guest encodes")
}

fn udf_wat(version: &str, extra: &str) -> String {
    format!(
        r#"(module
  (import "my:udf/host@{version}" "log" (func $log (param i64)))
  (func $eval (param $x i64) (result i64)
    (if (i64.eq (local.get $x) (i64.const -1)) (then unreachable))
    (if (i64.eq (local.get $x) (i64.const -2)) (then (loop $spin (br $spin))))
    (call $log (local.get $x))
    (i64.mul (local.get $x) (i64.const 2)))
  (export "my:udf/scalar@{version}#eval" (func $eval))
  {extra}
)"#
    )
}

/// The same guest built against `my:udf` at any `version` (the 1.0.0 WIT
/// with its version changed): a guest of an interface version no host
/// binding was made for.
pub fn udf_at(version: &str) -> Vec<u8> {
    let wit = std::fs::read_to_string(host_wit("udf-1.0.0").join("udf.wit"))
        .expect("the udf WIT")
        .replace("my:udf@1.0.0", &format!("my:udf@{version}"));
    wat_component_in(&udf_wat(version, ""), &wit, "udf").expect("the udf guest encodes")
}

/// A `reload:plugin` guest (world `plugin`) that echoes its input, except
/// that input `lie` makes it reply with a list reaching past its memory,
/// `trap` makes it trap, and `loop` makes it spin forever.
pub fn echo() -> Vec<u8> {
    wat_component(ECHO, &plugin_wit(), "plugin").expect("the echo guest encodes")
}

const ECHO: &str = r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  ;; A bump allocator: enough for a test guest, never frees.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
    (global.set $next (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 1)))))
    (local.get $at))
  (func $is (param $ptr i32) (param $len i32) (param $word i32) (param $n i32) (result i32)
    (if (i32.ne (local.get $len) (local.get $n)) (then (return (i32.const 0))))
    (block $no
      (loop $each
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (local.get $ptr)) (i32.load8_u (local.get $word))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (local.set $word (i32.add (local.get $word) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $each)))
    (i32.const 0))
  (data (i32.const 16) "lietraploop")
  (func (export "reload:plugin/guest@0.1.0#call") (param $ptr i32) (param $len i32) (result i32)
    (if (call $is (local.get $ptr) (local.get $len) (i32.const 19) (i32.const 4)) (then unreachable))
    (if (call $is (local.get $ptr) (local.get $len) (i32.const 23) (i32.const 4))
      (then (loop $spin (br $spin))))
    ;; The return area at 64: ok (0), then the list's pointer and length.
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (local.get $ptr))
    (i32.store (i32.const 72) (local.get $len))
    (if (call $is (local.get $ptr) (local.get $len) (i32.const 16) (i32.const 3))
      (then
        (i32.store (i32.const 68) (i32.const 0x7ffffff0))
        (i32.store (i32.const 72) (i32.const 4096))))
    (i32.const 64))
)"#;

/// The benchmark's work, `x * 31 + 7`, as a `reload:plugin` guest (world
/// `plugin`): 8 bytes little-endian in, 8 bytes out.
pub fn score() -> Vec<u8> {
    wat_component(SCORE, &plugin_wit(), "plugin").expect("the score guest encodes")
}

const SCORE: &str = r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  ;; A bump allocator that starts over at every call's input: the host
  ;; allocates the input, then the call replies from a fixed area.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (i32.const 1024))
  (func (export "reload:plugin/guest@0.1.0#call") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.ne (local.get $len) (i32.const 8))
      (then
        ;; err("8 bytes"), the message at 32.
        (i32.store8 (i32.const 64) (i32.const 1))
        (i32.store (i32.const 68) (i32.const 32))
        (i32.store (i32.const 72) (i32.const 7))
        (return (i32.const 64))))
    (i64.store (i32.const 128)
      (i64.add (i64.mul (i64.load (local.get $ptr)) (i64.const 31)) (i64.const 7)))
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 128))
    (i32.store (i32.const 72) (i32.const 8))
    (i32.const 64))
  (data (i32.const 32) "8 bytes")
)"#;

/// The benchmark's work as a typed `my:udf@1.1.0` guest: `eval(x) = x * 31
/// + 7`, `eval-with({x, scale}) = eval(x) * scale`, no host call.
pub fn score_udf() -> Vec<u8> {
    let wat = r#"(module
  (func $eval (param $x i64) (result i64)
    (i64.add (i64.mul (local.get $x) (i64.const 31)) (i64.const 7)))
  (export "my:udf/scalar@1.1.0#eval" (func $eval))
  (func (export "my:udf/scalar@1.1.0#eval-with") (param $x i64) (param $scale i64) (result i64)
    (i64.mul (call $eval (local.get $x)) (local.get $scale)))
)"#;
    wat_component(wat, &host_wit("udf-1.1.0"), "udf").expect("the score udf encodes")
}

//! The guests of the tests, the demo and the benchmark, written in the
//! WebAssembly text format and compiled by `wat` (this machine has no
//! `wasm32` Rust target; `docs/wasm.md` says how to build a guest from
//! Rust or C). Each is a template with its variations as parameters, and
//! the manifest is appended as a `reload-manifest` custom section, as a
//! Rust guest would emit it with `#[link_section]`.

/// What a counter guest does differently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Its manifest version.
    pub version: String,
    /// What a call adds to the count.
    pub step: u64,
    /// Its state schema.
    pub schema: u32,
    /// `reload_restore` refuses.
    pub fail_restore: bool,
    /// A call whose first input byte is `0xff` loops forever.
    pub loops: bool,
    /// `reload_call` replies with a pointer past its memory.
    pub out_of_bounds: bool,
    /// Leaves out the `count` export its manifest lists.
    pub missing_export: bool,
}

impl Counter {
    /// A good counter at `version`, adding one per call, state schema 1.
    pub fn new(version: &str) -> Self {
        Counter {
            version: version.to_owned(),
            step: 1,
            schema: 1,
            ..Counter::default()
        }
    }
}

/// Appends `manifest` as the `reload-manifest` custom section.
pub fn with_manifest(mut module: Vec<u8>, manifest: &str) -> Vec<u8> {
    let section = reload_core::wasm::MANIFEST_SECTION;
    reload_core::wasm::append_custom_section(&mut module, section, manifest.as_bytes());
    module
}

fn compile(text: &str) -> Vec<u8> {
    // The templates are ours: a failure here is a bug in this file.
    wat::parse_str(text).unwrap_or_else(|e| panic!("a guest template does not parse: {e}"))
}

/// Shared pieces: the reply packer, the failure reply, the input buffer.
const PRELUDE: &str = r#"
  (memory (export "memory") 1)
  ;; 0..8 the count, 8 shut down; 1024.. input; 2048.. replies; 3072.. messages
  (data (i32.const 3072) "\01restore refused")
  (data (i32.const 3104) "\01called after its shutdown")
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
  (func $ok (result i64)
    (i32.store8 (i32.const 2048) (i32.const 0))
    (call $pack (i32.const 2048) (i32.const 1)))
  (func (export "reload_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 1024)) (then unreachable))
    (i32.const 1024))
"#;

/// A stateful counter: each call adds `step` and replies with the count
/// (eight bytes); its state is the count.
pub fn counter(c: &Counter) -> Vec<u8> {
    let looping = if c.loops {
        "(if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 255)) (then (loop $spin (br $spin))))"
    } else {
        ""
    };
    let reply = if c.out_of_bounds {
        "(call $pack (i32.const 0x7fff0000) (i32.const 9))"
    } else {
        "(call $pack (i32.const 2048) (i32.const 9))"
    };
    let restore = if c.fail_restore {
        "(return (call $pack (i32.const 3072) (i32.const 16)))"
    } else {
        ""
    };
    let count_export = if c.missing_export {
        ""
    } else {
        r#"(func (export "count") (result i64) (i64.load (i32.const 0)))"#
    };
    let text = format!(
        r#"(module {PRELUDE}
  (func (export "reload_call") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.load8_u (i32.const 8)) (then (return (call $pack (i32.const 3104) (i32.const 26)))))
    {looping}
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const {step})))
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i64.store (i32.const 2049) (i64.load (i32.const 0)))
    {reply})
  {count_export}
  (func (export "reload_shutdown") (result i64)
    (i32.store8 (i32.const 8) (i32.const 1))
    (call $ok))
  (func (export "reload_describe") (result i64)
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i32.store (i32.const 2049) (i32.const {schema}))
    (i32.store (i32.const 2053) (i32.const 0))
    (call $pack (i32.const 2048) (i32.const 9)))
  (func (export "reload_save") (result i64)
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i32.store8 (i32.const 2049) (i32.const 1))
    (i64.store (i32.const 2050) (i64.load (i32.const 0)))
    (call $pack (i32.const 2048) (i32.const 10)))
  (func (export "reload_migrate") (param $ptr i32) (param $len i32) (result i64)
    ;; schema n -> n + 1, the count unchanged
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i32.store (i32.const 2049) (i32.add (i32.load (local.get $ptr)) (i32.const 1)))
    (i64.store (i32.const 2053) (i64.load (i32.add (local.get $ptr) (i32.const 4))))
    (call $pack (i32.const 2048) (i32.const 13)))
  (func (export "reload_restore") (param $ptr i32) (param $len i32) (result i64)
    {restore}
    (if (i32.ne (local.get $len) (i32.const 8)) (then unreachable))
    (i64.store (i32.const 0) (i64.load (local.get $ptr)))
    (call $ok)))"#,
        step = c.step,
        schema = c.schema,
    );
    let manifest = format!(
        "reload-manifest 1\nname counter\nversion {}\nexport count\n",
        c.version
    );
    with_manifest(compile(&text), &manifest)
}

/// A stateless UDF: `x` (eight bytes) to `x * 31 + 7`; pooled instances.
pub fn score(version: &str) -> Vec<u8> {
    let text = format!(
        r#"(module {PRELUDE}
  (func (export "reload_call") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.ne (local.get $len) (i32.const 8)) (then unreachable))
    (i32.store8 (i32.const 2048) (i32.const 0))
    (i64.store (i32.const 2049)
      (i64.add (i64.mul (i64.load (local.get $ptr)) (i64.const 31)) (i64.const 7)))
    (call $pack (i32.const 2048) (i32.const 9)))
  (func (export "score") (param i64) (result i64)
    (i64.add (i64.mul (local.get 0) (i64.const 31)) (i64.const 7))))"#
    );
    let manifest = format!("reload-manifest 1\nname score\nversion {version}\nexport score\n");
    with_manifest(compile(&text), &manifest)
}

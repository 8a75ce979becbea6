//! The C guests build from source and are components of their worlds.

#[test]
fn the_counter_builds() {
    let Some(bytes) = wasm_guests::c_or_skip(
        "counter.c",
        &wasm_guests::plugin_wit(),
        "stateful-plugin",
        &["COUNTER_SCHEMA=2"],
    ) else {
        return;
    };
    assert_eq!(&bytes[..4], b"\0asm");
}

#[test]
fn the_indexed_guest_builds() {
    let Some(bytes) = wasm_guests::c_or_skip(
        "indexed.c",
        &wasm_guests::plugin_wit(),
        "resource-plugin",
        &[],
    ) else {
        return;
    };
    assert_eq!(&bytes[..4], b"\0asm");
}

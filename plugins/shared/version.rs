// The version in the manifest: Cargo's, unless the build sets
// RELOAD_PLUGIN_VERSION (the SQL host builds several versions of one crate
// that way; cargo rebuilds when the variable changes).
const VERSION: &str = match option_env!("RELOAD_PLUGIN_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Exports `$ty` under `$name`, or, with the `future-abi` feature, a
/// descriptor claiming the next ABI version (as a library built against a
/// newer `reload-abi` would): the host must refuse it at link, typed.
macro_rules! export {
    ($ty:ty, $name:expr, [$($export:expr),*]) => {
        #[cfg(not(feature = "future-abi"))]
        reload_abi::export_plugin!($ty, name: $name, version: VERSION, exports: [$($export),*]);

        #[cfg(feature = "future-abi")]
        const _: () = {
            const EXPORTS: &[&str] = &[$($export),*];
            const LEN: usize = reload_abi::manifest::manifest_len($name, VERSION, EXPORTS, &[]);
            #[used]
            #[link_section = ".reload_manifest"]
            static MANIFEST: [u8; LEN] =
                reload_abi::manifest::manifest_bytes::<LEN>($name, VERSION, EXPORTS, &[]);
            static DESCRIPTOR: reload_abi::Descriptor = {
                let mut d = reload_abi::export::descriptor::<$ty>(MANIFEST.as_ptr(), LEN);
                d.abi_version = reload_abi::ABI_VERSION + 1;
                d
            };
            #[no_mangle]
            extern "C" fn reload_plugin_descriptor() -> *const reload_abi::Descriptor {
                &DESCRIPTOR
            }
        };
    };
}

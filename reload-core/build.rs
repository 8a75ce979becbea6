//! The long-form docs (`src/docs.rs`) include the workspace's `docs/*.md`
//! and README. A packaged crate has no workspace around it: there the
//! modules point to the repository instead of failing the build.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(workspace_docs)");
    println!("cargo::rerun-if-changed=../docs");
    println!("cargo::rerun-if-changed=../README.md");
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("../docs/contract.md").is_file() && here.join("../README.md").is_file() {
        println!("cargo::rustc-cfg=workspace_docs");
    }
}

//! The workspace README shows the crate's README example: the two copies
//! must agree, so the one a reader copies is the one that runs as a
//! doctest.

#[test]
fn the_workspace_readme_shows_the_doctested_snippet() {
    let here = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| std::fs::read_to_string(format!("{here}/{p}")).unwrap_or_default();
    // The code between the fences (the workspace's copy is marked
    // `ignore`: reload-core runs the workspace README as its doctest, and
    // reload-core cannot depend on this crate).
    let crate_readme = read("README.md");
    let start = crate_readme.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let end = crate_readme[start..].find("```").expect("its end") + start;
    let snippet = &crate_readme[start..end];
    let root = read("../README.md");
    assert!(
        root.contains(snippet),
        "README.md does not show reload-sqlite/README.md's example as it is"
    );
}

//! Locating the shared conformance corpus. CI has `../shared` beside the checkout; when it
//! is missing the tests fail loudly rather than pass vacuously.

use std::path::PathBuf;

pub fn conformance_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("WEFT_CONFORMANCE_DIR").map(PathBuf::from),
        Some(manifest.join("../../../shared/conformance")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("INDEX.json").is_file() {
            return c;
        }
    }
    panic!(
        "the conformance corpus was not found: expected ../shared/conformance beside the repository \
         (or set WEFT_CONFORMANCE_DIR). These tests must not be skipped."
    );
}

//! Anything at all fed to the config loader must come back as objects and diagnostics,
//! never as a panic, a hang or unbounded memory. Validation and every analyzer run over
//! whatever loaded, since they walk attacker-shaped trees too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_config::Bundle;
use weft_config::analyze::analyze_bundle;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bundle = Bundle::load_str("fuzz.yaml", text);
    let _ = analyze_bundle(&bundle, Default::default());
});

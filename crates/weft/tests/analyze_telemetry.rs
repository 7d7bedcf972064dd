//! `weft analyze` on telemetry config: errors inside access-log formats and CEL expressions
//! point at the offending operator (file:line:col inside the YAML string) and suggest a fix.

use std::path::Path;
use std::process::{Command, Output};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("weft runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const MESH: &str = "apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: mesh, namespace: istio-system}
spec:
  meshConfig:
    accessLogFile: /dev/stdout
    accessLogFormat: \"[%START_TIME%] %REQ(:METHOD)% %RESPONSE_COD% %BYTES_SENT%\\n\"
";

const TELEMETRY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: shop}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter:
      expression: \"response.code >= 400 && request.hots == 'cart'\"
";

#[test]
fn unknown_operator_is_reported_with_its_position_and_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "mesh.yaml", MESH);
    let o = weft(&["analyze", &f]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("error[IST0106]"), "{out}");
    assert!(
        out.contains("invalid accessLogFormat: unknown command operator `%RESPONSE_COD%`"),
        "{out}"
    );
    // Line 7; the string starts at column 22, the operator 31 characters into it.
    assert!(out.contains(&format!("{f}:7:53")), "{out}");
    assert!(out.contains("did you mean %RESPONSE_CODE%?"), "{out}");

    // The machine-readable output carries the same position and field.
    let o = weft(&["analyze", "-o", "json", &f]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let d = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "spec.meshConfig.accessLogFormat")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(7), Some(53))
    );
}

#[test]
fn access_log_filter_errors_point_into_the_expression() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "telemetry.yaml", TELEMETRY);
    let o = weft(&["analyze", &f]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("unknown attribute `request.hots`"), "{out}");
    assert!(out.contains(&format!("{f}:8:44")), "{out}");
    assert!(out.contains("did you mean `request.host`?"), "{out}");
}

#[test]
fn valid_telemetry_config_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let text = MESH.replace("%RESPONSE_COD%", "%RESPONSE_CODE%")
        + "---\n"
        + &TELEMETRY.replace("request.hots", "request.host");
    let f = write(dir.path(), "ok.yaml", &text);
    let o = weft(&["analyze", &f]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("error["), "{out}");
}

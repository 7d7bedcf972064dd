//! `weft analyze` as a user runs it: real process, real files, exit codes and output formats.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("weft runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const GOOD: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
";

const BAD_TYPE: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports:
  - name: http
    port: \"9080\"
";

#[test]
fn shop_example_is_clean() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    let o = weft(&["analyze", root]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("error["), "{out}");
}

#[test]
fn error_exits_1_and_points_at_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "svc.yaml", BAD_TYPE);
    let o = weft(&["analyze", &f]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("error[IST0106]"), "{out}");
    assert!(
        out.contains("spec.ports[0].port: expected an integer, found the string \"9080\""),
        "{out}"
    );
    assert!(out.contains(&format!("{f}:7:11")), "{out}");
    assert!(out.contains("help: remove the quotes: 9080"), "{out}");
    assert!(out.contains("in Service default/reviews"), "{out}");
}

#[test]
fn json_and_yaml_outputs_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "svc.yaml", BAD_TYPE);
    let o = weft(&["analyze", "-o", "json", &f]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let first = &v[0];
    assert_eq!(first["code"], "IST0106");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 7);
    assert_eq!(first["column"], 11);
    assert_eq!(first["field"], "spec.ports[0].port");
    assert_eq!(first["resource"]["kind"], "Service");
    let o = weft(&["analyze", "-o", "yaml", &f]);
    let out = stdout(&o);
    assert!(out.contains("code: IST0106"), "{out}");
    assert!(out.contains("line: 7"), "{out}");
}

#[test]
fn stdin_and_clean_input_exit_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(GOOD.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("1 object from 1 file"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn fail_on_threshold() {
    let dir = tempfile::tempdir().unwrap();
    // An empty file is only a warning.
    write(dir.path(), "good.yaml", GOOD);
    write(dir.path(), "empty.yaml", "\n");
    let d = dir.path().display().to_string();
    assert_eq!(weft(&["analyze", &d]).status.code(), Some(0));
    assert_eq!(
        weft(&["analyze", "--fail-on", "warning", &d]).status.code(),
        Some(1)
    );
}

#[test]
fn unreadable_inputs_exit_2_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("latin1.yaml"), b"kind: Service\nname: caf\xe9\n").unwrap();
    std::fs::write(p.join("binary.yaml"), b"\x00\x01\x02ELF").unwrap();
    let huge = std::fs::File::create(p.join("huge.yaml")).unwrap();
    huge.set_len(17 * 1024 * 1024).unwrap();
    let o = weft(&["analyze", &p.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(out.contains("latin1.yaml is not UTF-8 text"), "{out}");
    assert!(out.contains("binary.yaml is a binary file"), "{out}");
    assert!(
        out.contains("huge.yaml is 17 MiB, over weft's 16 MiB limit"),
        "{out}"
    );
    let o = weft(&["analyze", "/nonexistent/weft-test"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("cannot read /nonexistent/weft-test"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn deeply_nested_and_broken_yaml_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    write(dir.path(), "deep.yaml", &deep);
    write(dir.path(), "broken.yaml", "a: [1, 2\nb: {\n");
    write(dir.path(), "good.yaml", GOOD);
    let o = weft(&["analyze", "-o", "json", &dir.path().display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| d["file"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(files.iter().any(|f| f.ends_with("deep.yaml")), "{v}");
    assert!(files.iter().any(|f| f.ends_with("broken.yaml")), "{v}");
    assert!(!files.iter().any(|f| f.ends_with("good.yaml")), "{v}");
}

#[test]
fn unknown_kinds_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "x.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: b}\n",
    );
    let o = weft(&["analyze", &f]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert_eq!(out.matches("WEFT0003").count(), 1, "{out}");
    assert!(out.contains("skipped 2 objects of kind Widget"), "{out}");
}

//! The command-line tools refuse what they cannot use with a clear message and a failing exit
//! status, without a panic: a missing argument, a malformed one, and a server that is not
//! there. (Their real
//! work is tested against a running server: `veche-server`'s load tests and
//! `e2e/e2ee-tap.test.mjs`, which also needs these binaries built.)

use std::net::TcpListener;
use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin).args(args).output().expect("tool starts");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "{bin} {args:?} panicked: {stderr}"
    );
    (out.status.success(), stderr)
}

/// An address nothing listens on: a port the OS just gave us and took back.
fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("ws://127.0.0.1:{port}/ws")
}

#[test]
fn veche_tap_says_what_is_missing_and_that_nobody_answered() {
    let tap = env!("CARGO_BIN_EXE_veche-tap");
    let (ok, err) = run(tap, &[]);
    assert!(!ok && err.contains("--url"), "no arguments: {err}");
    let (ok, err) = run(tap, &["--url", &dead_url(), "--room", "r"]);
    assert!(!ok && err.contains("join"), "no server: {err}");
}

#[test]
fn veche_load_says_that_nobody_answered() {
    let load = env!("CARGO_BIN_EXE_veche-load");
    let (ok, err) = run(load, &["--help"]);
    assert!(ok, "--help: {err}");
    let (ok, err) = run(
        load,
        &["--url", &dead_url(), "--duration", "1", "--settle", "0"],
    );
    assert!(!ok && !err.is_empty(), "no server: {err}");
}

#[test]
fn veche_load_refuses_bad_simulcast_flags() {
    let load = env!("CARGO_BIN_EXE_veche-load");
    let url = dead_url();
    for (args, expect) in [
        (&["--tile", "1280"][..], "WxH"),
        (&["--tile", "0x720"][..], "1..=16384"),
        (&["--clip-dir", "/nonexistent"][..], "--simulcast"),
        (&["--downlink-queue-ms", "50"][..], "--downlink-kbps"),
        (
            &["--simulcast", "--clip-dir", "/nonexistent"][..],
            "/nonexistent",
        ),
    ] {
        let mut all = vec!["--url", url.as_str(), "--duration", "1", "--settle", "0"];
        all.extend_from_slice(args);
        let (ok, err) = run(load, &all);
        assert!(!ok && err.contains(expect), "{args:?}: {err}");
    }
}

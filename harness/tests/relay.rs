//! `harness relay <port>` against a running emulated IMDS: the built binary
//! is fed a raw HTTP request on stdin, as QEMU's guestfwd `cmd:` would.

use std::io::Write;
use std::process::{Command, Stdio};

use harness::machine::imds::{ImdsConfig, ImdsServer};

fn relay(port: u16, request: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["relay", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap(); // stdin dropped here: EOF → relay half-closes the socket
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_token_put_and_get() {
    let mut cfg = ImdsConfig::example("i-0relay");
    cfg.require_v2 = true;
    let h = ImdsServer::start(cfg, None).unwrap();
    let port = h.port();
    let (code, out) = tokio::task::spawn_blocking(move || {
        relay(
            port,
            "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
             X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let token = out.rsplit("\r\n\r\n").next().unwrap().trim().to_string();
    assert!(!token.is_empty());
    let (code, out) = tokio::task::spawn_blocking(move || {
        relay(
            port,
            &format!(
                "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\
                 X-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("i-0relay"), "{out}");
    let paths: Vec<(String, u16)> = h
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/latest/api/token".to_string(), 200),
            ("/latest/meta-data/instance-id".to_string(), 200)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_without_connection_close_header() {
    // HTTP/1.0-style: the server answers and closes; the relay must exit.
    let mut cfg = ImdsConfig::example("i-0half");
    cfg.require_v2 = false;
    let h = ImdsServer::start(cfg, None).unwrap();
    let port = h.port();
    let (code, out) = tokio::task::spawn_blocking(move || {
        relay(port, "GET /1.0/meta-data/instance-id HTTP/1.0\r\n\r\n")
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("i-0half"), "{out}");
}

#[test]
fn closed_port_fails_loudly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = relay(port, "");
    assert_ne!(code, 0);
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
}

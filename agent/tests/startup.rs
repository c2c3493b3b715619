//! Start-up behaviour of the real `symphony-agent` binary: what it prints and refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AGENT, free_port};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn agent(dir: &Path, raft_port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(AGENT);
    command
        .arg("--config-dir")
        .arg(dir)
        .arg("--listen-raft-addr")
        .arg(format!("127.0.0.1:{raft_port}"))
        .arg("--listen-remote-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(extra)
        .env_remove("RUST_LOG");
    command
}

/// Waits for the process to exit, killing it if it runs past `timeout`.
fn exit_within(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the agent did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = i32::try_from(child.id()).unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    exit_within(child, Duration::from_secs(10))
}

#[test]
fn json_logs_are_one_object_per_line_with_the_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = agent(dir.path(), free_port(), &["--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("key.json")).unwrap()).unwrap();
    assert_eq!(line["node_id"], key["node_id"]);
    assert!(line["level"].is_string());
    assert!(line["fields"]["message"].is_string(), "{first}");
    assert!(terminate(&mut child).success());
}

#[test]
fn a_second_agent_on_the_same_config_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = agent(dir.path(), free_port(), &[])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the first agent never opened its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = agent(dir.path(), free_port(), &[]).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    // redb locks its file, and the control socket is checked for a live agent: either way the
    // second agent explains itself instead of taking over.
    assert!(
        stderr.contains("already") || stderr.contains("lock"),
        "unexpected stderr: {stderr}"
    );
    assert!(terminate(&mut first).success());
}

/// Waits until the agent in `dir` answers on its control socket, and returns a client.
async fn control(dir: &Path) -> symphony_ctl::Client {
    let socket = dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match symphony_ctl::Client::connect(&socket).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(Instant::now() < deadline, "no control socket: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A fresh node whose Raft port is taken still starts (it can join as a worker), but cannot
/// become a manager; a manager whose Raft port is taken refuses to start.
#[test]
fn a_busy_raft_port_is_a_clear_error_for_managers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut fresh = agent(dir.path(), port, &[])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let refused = runtime.block_on(async {
        let client = control(dir.path()).await;
        client.init().await.unwrap_err()
    });
    assert!(
        refused.to_string().contains("--listen-raft-addr"),
        "unexpected error: {refused}"
    );
    assert!(terminate(&mut fresh).success());

    // Now a manager: initialised on a free port, restarted while that port is taken.
    let dir = tempfile::tempdir().unwrap();
    let raft_port = free_port();
    let mut manager = agent(dir.path(), raft_port, &[])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    runtime.block_on(async {
        let client = control(dir.path()).await;
        client.init().await.unwrap();
    });
    assert!(terminate(&mut manager).success());
    let _busy = std::net::TcpListener::bind(("127.0.0.1", raft_port)).unwrap();
    let output = agent(dir.path(), raft_port, &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen-raft-addr"),
        "unexpected stderr: {stderr}"
    );
}

#[test]
fn a_bad_log_filter_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), free_port(), &["--log-level", "=[=bad"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--log-level"),
        "unexpected stderr: {stderr}"
    );
}

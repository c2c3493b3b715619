//! `--metrics-addr`: a real agent serves Prometheus metrics on `GET /metrics`, its counters
//! move when work is done, the output passes `promtool check metrics` (where promtool is
//! installed; Debian's `prometheus` package), and a metrics address that cannot be bound stops
//! the start with a sentence naming it.
//!
//! Needs the agent binary: `cargo build -p symphony-agent` (or set SYMPHONY_AGENT_BIN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use symphony_ctl::proto::ErrorCode;
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, FAST_GOSSIP_ARGS, fast_gossip_args,
    free_addr, poll_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the leader watcher and the gossip keeper may take to show up in a scrape.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP/1.1 exchange: the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .expect("the metrics endpoint did not answer in time");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (a name with its labels as the text format writes them),
/// if the scrape has it.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("a sample value"))
    })
}

const PUTS_OK: &str = r#"symphony_requests_total{api="control",kind="kv put",outcome="ok"}"#;
const PUTS_REFUSED: &str =
    r#"symphony_requests_total{api="control",kind="kv put",outcome="compare_failed"}"#;
const PUT_LATENCIES: &str =
    r#"symphony_request_duration_seconds_count{api="control",kind="kv put"}"#;

#[tokio::test]
async fn a_scrape_shows_the_work_done_and_passes_promtool() {
    let metrics_addr = free_addr().unwrap();
    let agent = AgentProcess::start_with(AgentOptions {
        extra_args: vec!["--metrics-addr".to_string(), metrics_addr.to_string()],
        ..AgentOptions::default()
    })
    .await
    .unwrap();
    assert!(
        agent.log().contains(&metrics_addr.to_string()),
        "the start-up line names the metrics address:\n{}",
        agent.log_tail()
    );
    let client = agent.client().await.unwrap();
    client.init().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();

    // Leadership is counted by a watcher and gossip starts within a second of the init: wait
    // for both to show, then take the baseline.
    let before = poll_until(
        SETTLE_TIMEOUT,
        "the leader and gossip in a scrape",
        async || {
            let text = scrape(metrics_addr).await;
            let leader_changes = sample(&text, "symphony_raft_leader_changes_total").unwrap_or(0.0);
            let gossiping = sample(&text, "symphony_gossip_packets_received_total").is_some();
            if leader_changes >= 1.0 && gossiping {
                Ok(text)
            } else {
                Err(format!(
                    "leader changes {leader_changes}, gossip metrics present: {gossiping}"
                ))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(sample(&before, "symphony_raft_is_leader"), Some(1.0));
    assert!(sample(&before, "symphony_raft_term").unwrap() >= 1.0);
    assert_eq!(sample(&before, "symphony_kv_keys"), Some(0.0));
    assert_eq!(
        sample(&before, r#"symphony_gossip_members{state="down"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, r#"symphony_tasks{state="running"}"#),
        None,
        "no task, no series"
    );
    assert_eq!(sample(&before, "symphony_services"), Some(0.0));
    assert_eq!(
        sample(&before, r#"symphony_nodes{role="manager",status="ready"}"#),
        Some(1.0)
    );
    // The revision is the agent binary's (the versions test checks it against this build's).
    let build = format!(
        r#"symphony_build_info{{version="{}",revision=""#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        before
            .lines()
            .any(|line| line.starts_with(&build) && line.ends_with("\"} 1")),
        "{before}"
    );
    assert!(
        sample(&before, r#"symphony_connections_open{api="control"}"#).unwrap() >= 1.0,
        "this test's client is connected"
    );

    // Work: five puts, and one refused by its compare.
    for n in 0..5 {
        client
            .kv_put(&format!("key-{n}"), b"v".to_vec(), None)
            .await
            .unwrap();
    }
    let refused = client.kv_put("key-0", b"w".to_vec(), Some(0)).await;
    assert_eq!(
        refused.unwrap_err().remote().map(|error| error.code),
        Some(ErrorCode::CompareFailed)
    );

    // A request is counted before its answer is sent, so the scrape after the answers has them.
    let after = scrape(metrics_addr).await;
    let moved = |series: &str| {
        sample(&after, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0)
    };
    assert_eq!(moved(PUTS_OK), 5.0, "{after}");
    assert_eq!(moved(PUTS_REFUSED), 1.0, "{after}");
    assert_eq!(moved(PUT_LATENCIES), 6.0, "{after}");
    assert!(moved("symphony_raft_applied_index") >= 5.0);
    // Each put waited for at least one store commit (several may share one).
    assert!(
        moved("symphony_raft_store_commit_duration_seconds_count") >= 1.0,
        "{after}"
    );
    assert!(moved("symphony_raft_commit_index") >= 5.0);
    assert_eq!(sample(&after, "symphony_kv_keys"), Some(5.0));
    assert_eq!(moved("symphony_kv_revision"), 5.0);

    // An open watch is counted while it runs.
    assert_eq!(sample(&after, "symphony_kv_watchers"), Some(0.0));
    let watch = client.kv_watch("key-", None).await.unwrap();
    poll_until(
        Duration::from_secs(10),
        "the watch counted",
        async || match sample(&scrape(metrics_addr).await, "symphony_kv_watchers") {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await
    .unwrap();
    drop(watch);

    // Only /metrics, only GET (and HEAD).
    assert_eq!(http(metrics_addr, "GET", "/").await.0, 404);
    assert_eq!(http(metrics_addr, "POST", "/metrics").await.0, 405);
    assert_eq!(http(metrics_addr, "HEAD", "/metrics").await.0, 200);

    promtool_check(&after);
}

/// `promtool check metrics` on a scrape, or a printed skip where promtool is not installed.
fn promtool_check(scrape: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "skipped promtool check metrics: promtool is not installed (Debian: apt-get install prometheus)"
            );
            return;
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{scrape}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The address an agent started with `--metrics-addr ...:0` got from the OS, from its
/// `agent started` line (`metrics_addr="127.0.0.1:PORT"`).
fn bound_metrics_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|line| line.contains("agent started"))?;
    let (_, rest) = line.split_once("metrics_addr=\"")?;
    let (addr, _) = rest.split_once('"')?;
    addr.parse().ok()
}

/// How long a killed worker may take to be marked down.
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A manager (on an OS-given metrics port) and a worker: the node-to-node API's counters and
/// open connections move with the join and the session, both nodes count gossip traffic and
/// see each other alive, and the worker, which has no Raft node, reports no Raft metrics; once
/// the worker is killed, the manager counts its status change to down.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_join_moves_the_remote_and_gossip_metrics() {
    let mut manager_args = vec!["--metrics-addr", "127.0.0.1:0"];
    manager_args.extend(FAST_GOSSIP_ARGS);
    let cluster = Cluster::formed(1, ClusterOptions::with_agent_args(&manager_args))
        .await
        .unwrap();
    let log = cluster.run_log(0);
    let manager = bound_metrics_addr(&log)
        .unwrap_or_else(|| panic!("no bound metrics address in the start-up line:\n{log}"));
    let worker_addr = free_addr().unwrap();
    let mut worker_args = vec!["--metrics-addr".to_string(), worker_addr.to_string()];
    worker_args.extend(fast_gossip_args());
    let (mut worker, _) = cluster
        .join_worker(AgentOptions {
            extra_args: worker_args,
            ..AgentOptions::default()
        })
        .await
        .unwrap();

    let alive = r#"symphony_gossip_members{state="alive"}"#;
    poll_until(SETTLE_TIMEOUT, "the manager to count the join and see the worker", async || {
        let text = scrape(manager).await;
        let joins = sample(&text, r#"symphony_requests_total{api="remote",kind="join",outcome="ok"}"#);
        let sessions = sample(&text, r#"symphony_requests_total{api="remote",kind="session",outcome="ok"}"#);
        let open = sample(&text, r#"symphony_connections_open{api="remote"}"#);
        let members = sample(&text, alive);
        let received = sample(&text, "symphony_gossip_packets_received_total");
        let workers = sample(&text, r#"symphony_nodes{role="worker",status="ready"}"#);
        match (joins, sessions, open, members, received, workers) {
            (Some(1.0), Some(s), Some(o), Some(m), Some(r), Some(1.0)) if s >= 1.0 && o >= 1.0 && m >= 1.0 && r >= 1.0 => Ok(()),
            seen => Err(format!("(joins, sessions, open remote connections, alive members, gossip received, ready workers) = {seen:?}")),
        }
    })
    .await
    .unwrap();
    // The worker's session is an open assignment stream on the manager; a service's task
    // placed on it is a placement.
    cluster
        .client(0)
        .await
        .unwrap()
        .service_create(
            "placed",
            symphony_ctl::proto::ServiceSpecView {
                driver: "process".into(),
                command: vec!["sleep".into(), "1000".into()],
                mode: "replicated".into(),
                replicas: Some(2),
                restart_condition: "any".into(),
                on_isolation: "keep".into(),
                stop_grace_ms: 1_000,
                ..symphony_ctl::proto::ServiceSpecView::default()
            },
        )
        .await
        .unwrap();
    poll_until(
        SETTLE_TIMEOUT,
        "the session and the placements counted",
        async || {
            let text = scrape(manager).await;
            match (
                sample(&text, "symphony_sessions"),
                sample(&text, "symphony_placements_total"),
            ) {
                (Some(1.0), Some(2.0)) => Ok(()),
                seen => Err(format!("(sessions, placements) = {seen:?}")),
            }
        },
    )
    .await
    .unwrap();
    poll_until(
        SETTLE_TIMEOUT,
        "the worker to see the manager",
        async || {
            let text = scrape(worker_addr).await;
            assert_eq!(
                sample(&text, "symphony_raft_term"),
                None,
                "a worker has no Raft node"
            );
            assert_eq!(
                sample(&text, "symphony_kv_keys"),
                None,
                "a worker has no replica"
            );
            match (
                sample(&text, alive),
                sample(&text, "symphony_gossip_packets_sent_total"),
            ) {
                (Some(m), Some(s)) if m >= 1.0 && s >= 1.0 => Ok(text),
                seen => Err(format!("(alive members, gossip sent) = {seen:?}")),
            }
        },
    )
    .await
    .map(|text| promtool_check(&text))
    .unwrap();

    let down = r#"symphony_node_status_changes_total{status="down"}"#;
    assert_eq!(
        sample(&scrape(manager).await, down),
        None,
        "nobody went down yet"
    );
    worker.kill9().unwrap();
    poll_until(
        DOWN_TIMEOUT,
        "the manager to count the worker going down",
        async || match sample(&scrape(manager).await, down) {
            Some(1.0) => Ok(()),
            seen => Err(format!("status changes to down: {seen:?}")),
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_metrics_address_in_use_stops_the_start_with_its_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut agent = AgentProcess::spawn(AgentOptions {
        extra_args: vec!["--metrics-addr".to_string(), addr.to_string()],
        ..AgentOptions::default()
    })
    .unwrap();
    let status = agent.wait_exit(EXIT_TIMEOUT).await.unwrap();
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains(&format!("cannot serve metrics on {addr}")) && log.contains("--metrics-addr"),
        "{log}"
    );
    drop(taken);
}

//! `events` end to end, on three real managers: a stream shows a service's creation, its tasks'
//! transitions, an update and a leader change as they happen; a stream resumed on another
//! manager from a revision sees exactly what the first saw after it (no gap, no repeat); a
//! filter keeps one service; history a manager no longer has is refused with the revision to
//! resume from.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use symphony_ctl::proto::{
    ErrorCode, EventFilter, EventView, Response, ServicePatchView, ServiceSpecView,
};
use symphony_ctl::{Client, ClientError, ReplyStream};
use symphony_testnet::harness::{Cluster, ClusterOptions, poll_until};

const TIMEOUT: Duration = Duration::from_secs(60);

fn sleeper(replicas: u32) -> ServiceSpecView {
    ServiceSpecView {
        driver: "process".into(),
        command: vec!["sleep".into(), "1000".into()],
        mode: "replicated".into(),
        replicas: Some(replicas),
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        on_isolation: "keep".into(),
        stop_grace_ms: 1_000,
        ..ServiceSpecView::default()
    }
}

/// Reads `stream` into `seen` until `done` holds for what was seen.
async fn read_until(
    stream: &mut ReplyStream,
    seen: &mut Vec<EventView>,
    what: &str,
    done: impl Fn(&[EventView]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done(seen) {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {TIMEOUT:?}; saw {seen:#?}"));
        match item.expect("the stream ended").unwrap() {
            Response::Events(events) => seen.extend(events),
            other => panic!("{other:?}"),
        }
    }
}

fn key(event: &EventView) -> (u64, String, String, Option<u64>) {
    (
        event.revision,
        event.kind.clone(),
        event.action.clone(),
        event.task_id,
    )
}

fn running_tasks(seen: &[EventView], service: &str) -> usize {
    let mut running: Vec<u64> = seen
        .iter()
        .filter(|e| e.kind == "task" && e.action == "running")
        .filter(|e| e.service.as_deref() == Some(service))
        .filter_map(|e| e.task_id)
        .collect();
    running.sort_unstable();
    running.dedup();
    running.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_as_they_happen_resume_on_another_manager_and_refuse_lost_history() {
    // Few events kept, so that a restarted manager's history runs out early.
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions::with_agent_args(&["--events-kept", "100"]),
    )
    .await
    .unwrap();
    cluster.bootstrap_static().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let watcher = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let client: Client = cluster.client(watcher).await.unwrap();
    // Both streams from the same revision, before anything is created: a stream "from now"
    // starts where the serving replica is when it reads the request, which a write sent
    // right after it may already have passed.
    let start = cluster
        .status(watcher)
        .await
        .unwrap()
        .cluster
        .and_then(|cluster| cluster.applied_index)
        .unwrap_or(0);
    let mut stream = client
        .events(Some(start), EventFilter::default())
        .await
        .unwrap();
    let mut web_only = client
        .events(
            Some(start),
            EventFilter {
                service: Some("web".into()),
                ..EventFilter::default()
            },
        )
        .await
        .unwrap();

    let admin = cluster.client(leader).await.unwrap();
    admin.service_create("web", sleeper(2)).await.unwrap();
    admin.service_create("db", sleeper(1)).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "running tasks", |seen| {
        running_tasks(seen, "web") == 2 && running_tasks(seen, "db") == 1
    })
    .await;
    let created = seen
        .iter()
        .find(|e| e.kind == "service" && e.service.as_deref() == Some("web"))
        .cloned()
        .expect("web's creation");
    assert_eq!(created.action, "created");
    // Every task went through its states in order, each at a later revision.
    let web_task = seen
        .iter()
        .find(|e| e.kind == "task" && e.service.as_deref() == Some("web"))
        .and_then(|e| e.task_id)
        .unwrap();
    let states: Vec<&str> = seen
        .iter()
        .filter(|e| e.task_id == Some(web_task))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(states.first(), Some(&"new"), "{states:?}");
    assert_eq!(states.last(), Some(&"running"), "{states:?}");
    assert!(seen.windows(2).all(|w| w[0].revision <= w[1].revision));

    // An update shows as the service's and its tasks' events.
    admin
        .service_update(
            "web",
            ServicePatchView {
                env_set: [("V".to_string(), "2".to_string())].into(),
                ..ServicePatchView::default()
            },
        )
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, "the update", |seen| {
        seen.iter()
            .any(|e| e.kind == "service" && e.text.contains("update completed"))
    })
    .await;

    // The filtered stream carries web's events and nothing else.
    let mut only = Vec::new();
    read_until(&mut web_only, &mut only, "web's update", |seen| {
        seen.iter()
            .any(|e| e.kind == "service" && e.text.contains("update completed"))
    })
    .await;
    assert!(
        only.iter().all(|e| e.service.as_deref() == Some("web")),
        "{only:#?}"
    );
    let web_seen: Vec<_> = seen
        .iter()
        .filter(|e| e.service.as_deref() == Some("web"))
        .map(key)
        .collect();
    let only_keys: Vec<_> = only.iter().map(key).collect();
    assert_eq!(&web_seen[..only_keys.len()], &only_keys[..]);

    // Resumed on another manager from the revision of web's creation: exactly what the first
    // stream saw after it.
    let from = created.revision;
    let last = seen.last().unwrap().revision;
    let mut resumed_stream = cluster
        .client(other)
        .await
        .unwrap()
        .events(Some(from), EventFilter::default())
        .await
        .unwrap();
    let mut resumed = Vec::new();
    read_until(
        &mut resumed_stream,
        &mut resumed,
        "the resumed events",
        |got| got.last().is_some_and(|e| e.revision >= last),
    )
    .await;
    let expected: Vec<_> = seen.iter().filter(|e| e.revision > from).map(key).collect();
    let got: Vec<_> = resumed
        .iter()
        .filter(|e| e.revision <= last)
        .map(key)
        .collect();
    assert_eq!(got, expected, "no gap and no repeat");

    // A leader change is an event.
    cluster.kill9(leader).unwrap();
    read_until(&mut stream, &mut seen, "a new leader", |seen| {
        seen.iter().any(|e| e.kind == "leader" && e.revision > last)
    })
    .await;

    // A manager keeps only so many events (100 here): asked for older ones, it says from where
    // it can resume. Forty more tasks make more than it keeps.
    cluster.restart(leader).await.unwrap();
    admin_write_somewhere(&cluster).await;
    let restarted = cluster.client(leader).await.unwrap();
    let refused = poll_until(
        TIMEOUT,
        "a refusal naming the oldest revision",
        async || {
            let mut stream = restarted
                .events(Some(1), EventFilter::default())
                .await
                .map_err(|e| e.to_string())?;
            // A refusal is the stream's first (and last) item.
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(Some(Err(error))) => match ClientError::from(error) {
                    ClientError::Remote(error) if error.code == ErrorCode::Compacted => Ok(error),
                    other => Err(format!("{other}")),
                },
                Ok(Some(Ok(_))) => Err("accepted, and events came".to_string()),
                Ok(None) => Err("the stream ended".to_string()),
                Err(_) => Err("accepted".to_string()),
            }
        },
    )
    .await
    .unwrap();
    let compacted = refused.compacted.unwrap();
    assert_eq!(compacted.requested_revision, 1);
    assert!(compacted.oldest_revision > 1, "{compacted:?}");
    assert!(refused.message.contains("--since"), "{}", refused.message);
    // ... and from there it streams.
    let mut from_oldest = restarted
        .events(Some(compacted.oldest_revision), EventFilter::default())
        .await
        .unwrap();
    admin_write_somewhere(&cluster).await;
    let mut after = Vec::new();
    read_until(
        &mut from_oldest,
        &mut after,
        "events after a restart",
        |got| !got.is_empty(),
    )
    .await;
    assert!(after.iter().all(|e| e.revision > compacted.oldest_revision));
}

/// Makes events: scales `db` to 40 through whichever manager leads.
async fn admin_write_somewhere(cluster: &Cluster) {
    poll_until(TIMEOUT, "a scale through the leader", async || {
        let leader = cluster.leader().await.map_err(|e| e.to_string())?;
        let client = cluster.client(leader).await.map_err(|e| e.to_string())?;
        client
            .service_scale("db", 40)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
}

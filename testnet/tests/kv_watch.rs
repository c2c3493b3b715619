//! `kv watch` end to end, on three real managers: a watch sees every change of a concurrent
//! writer exactly once and in order, across the kill of the manager serving it (resumed on
//! another from the last revision seen plus one); `kv get --revision` reads the past; a
//! revision the history no longer keeps is refused with the oldest one kept; a watcher that
//! stops reading is cut off with where to resume, and the manager goes on serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use symphony_ctl::frame::{self, FramedStream, MAX_FRAME_LEN};
use symphony_ctl::proto::{
    Ctl, CtlError, ErrorCode, KvEvent, ReadConsistency, Request, RequestFrame, Response,
    ResponseBody, ResponseFrame,
};
use symphony_ctl::{Client, ClientError, ReplyStream};
use symphony_testnet::harness::{Cluster, ClusterOptions, poll_until};
use symphony_wire::{Hello, LocalHello, Protocol};
use tokio::net::UnixStream;

const TIMEOUT: Duration = Duration::from_secs(60);

/// What the writer saw acknowledged: revision → key and value (`None`: deleted).
type Acks = Arc<Mutex<BTreeMap<u64, (String, Option<Vec<u8>>)>>>;

enum Read {
    Events(Vec<KvEvent>),
    Failed(ClientError),
    Ended,
}

async fn next(stream: &mut ReplyStream) -> Read {
    let item = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("nothing from the watch within the timeout");
    match item {
        None => Read::Ended,
        Some(Err(error)) => Read::Failed(error.into()),
        Some(Ok(Response::KvEvents(events))) => Read::Events(events),
        Some(Ok(other)) => panic!("{other:?} in a kv watch"),
    }
}

fn compacted(error: &ClientError) -> &CtlError {
    let remote = error.remote().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(remote.code, ErrorCode::Compacted, "{remote:?}");
    remote
}

/// Puts (and every fifth time deletes) keys under `w/` until `stop` has `count` acks.
async fn write(client: Client, acks: Acks, count: usize) {
    let mut i = 0u64;
    while acks.lock().unwrap().len() < count {
        i += 1;
        let key = format!("w/{}", i % 13);
        if i.is_multiple_of(5) {
            if let Ok(result) = client.kv_delete(key.clone(), None).await
                && result.deleted
            {
                acks.lock().unwrap().insert(result.revision, (key, None));
            }
        } else {
            let value = format!("v{i}").into_bytes();
            if let Ok(result) = client.kv_put(key.clone(), value.clone(), None).await {
                acks.lock()
                    .unwrap()
                    .insert(result.revision, (key, Some(value)));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sees_every_change_once_in_order_across_a_kill_and_knows_what_was_compacted() {
    let mut cluster = Cluster::formed(3, ClusterOptions::default()).await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let writer_node = (leader + 1) % 3;
    let resume_node = (leader + 2) % 3;
    let start = cluster
        .client(leader)
        .await
        .unwrap()
        .kv_list("", ReadConsistency::Linearizable)
        .await
        .unwrap()
        .revision;

    // The watch is served by the leader, which is killed while the writer writes.
    let mut stream = cluster
        .client(leader)
        .await
        .unwrap()
        .kv_watch("w/", Some(start + 1))
        .await
        .unwrap();
    let acks: Acks = Arc::default();
    let writer = tokio::spawn(write(
        cluster.client(writer_node).await.unwrap(),
        acks.clone(),
        400,
    ));
    let mut seen: Vec<KvEvent> = Vec::new();
    while seen.len() < 100 {
        match next(&mut stream).await {
            Read::Events(events) => seen.extend(events),
            Read::Failed(error) => panic!("{error}"),
            Read::Ended => panic!("the watch ended"),
        }
    }
    cluster.kill9(leader).unwrap();
    // What the dead manager sent before its connection broke is kept; the rest comes from
    // another manager, from the next revision on.
    while let Read::Events(events) = next(&mut stream).await {
        seen.extend(events);
    }
    let resume_from = seen.last().unwrap().revision + 1;
    let mut stream = poll_until(TIMEOUT, "a watch on another manager", async || {
        let client = cluster
            .client(resume_node)
            .await
            .map_err(|e| e.to_string())?;
        client
            .kv_watch("w/", Some(resume_from))
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    writer.await.unwrap();
    let end = cluster
        .client(writer_node)
        .await
        .unwrap()
        .kv_list("w/", ReadConsistency::Linearizable)
        .await
        .unwrap();
    while seen.last().unwrap().revision < end.revision {
        match next(&mut stream).await {
            Read::Events(events) => seen.extend(events),
            Read::Failed(error) => panic!("{error}"),
            Read::Ended => panic!("the watch ended"),
        }
    }

    // Only the writer writes under w/: every revision from the start is one of its changes,
    // seen exactly once, in order.
    let revisions: Vec<u64> = seen.iter().map(|event| event.revision).collect();
    let expected: Vec<u64> = (start + 1..=end.revision).collect();
    assert_eq!(revisions, expected, "no gap, no repeat, in order");
    let by_revision: BTreeMap<u64, &KvEvent> = seen.iter().map(|e| (e.revision, e)).collect();
    let acks = acks.lock().unwrap().clone();
    for (revision, (key, value)) in &acks {
        let event = by_revision[revision];
        assert_eq!(&event.key, key);
        assert_eq!(
            event.entry.as_ref().map(|entry| entry.value.clone()),
            *value
        );
    }
    // Replayed, the watch gives the final values.
    let mut replayed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for event in &seen {
        match &event.entry {
            Some(entry) => replayed.insert(event.key.clone(), entry.value.clone()),
            None => replayed.remove(&event.key),
        };
    }
    let finals: BTreeMap<String, Vec<u8>> = end
        .entries
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect();
    assert_eq!(replayed, finals);

    // The past, read as of a revision: each acknowledged write is what its key held then.
    let client = cluster.client(resume_node).await.unwrap();
    for (revision, (key, value)) in acks.iter().step_by(37) {
        let then = client
            .kv_get_at(key.clone(), *revision, ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(then.map(|entry| entry.value), *value, "{key} at {revision}");
    }
    let future = client
        .kv_get_at("w/1", end.revision + 1_000, ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert_eq!(future.remote().unwrap().code, ErrorCode::BadRequest);

    // Keep 100 revisions, write 150 more: the start is gone, for watches and reads alike.
    let history = client.kv_history(Some(100)).await.unwrap();
    assert_eq!(history.keep, 100);
    for i in 0..150 {
        client.kv_put("c/key", format!("{i}"), None).await.unwrap();
    }
    let history = client.kv_history(None).await.unwrap();
    assert_eq!(history.kept, 100);
    let mut old = client.kv_watch("w/", Some(start + 1)).await.unwrap();
    let Read::Failed(refused) = next(&mut old).await else {
        panic!("a watch from a compacted revision")
    };
    let error = compacted(&refused);
    let fields = error.compacted.unwrap();
    assert_eq!(fields.oldest_revision, history.oldest);
    assert!(
        error.message.contains(&history.oldest.to_string()),
        "{error:?}"
    );
    let refused = client
        .kv_get_at("w/1", start + 1, ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert_eq!(
        compacted(&refused).compacted.unwrap().oldest_revision,
        history.oldest
    );
    // From the oldest kept revision on, the watch works.
    let mut kept = client.kv_watch("c/", Some(history.oldest)).await.unwrap();
    match next(&mut kept).await {
        Read::Events(events) => assert_eq!(events[0].revision, history.oldest),
        _ => panic!("the kept history"),
    }

    // A watcher that stops reading (a raw connection, read from only at the end): the
    // manager streams into a bounded queue and stops there; once the history moves past what
    // it sent, the watcher is cut off with where to resume, and the manager serves everyone
    // else all along.
    let mut slow = greeted(&cluster.socket_path(resume_node).unwrap()).await;
    let from = history.revision + 1;
    let watch = RequestFrame::new(
        1,
        Request::KvWatch {
            prefix: "s/".into(),
            from_revision: Some(from),
        },
    );
    slow.send(frame::encode(&watch).unwrap()).await.unwrap();
    let value = vec![b'x'; 16 * 1024];
    for i in 0..600 {
        client
            .kv_put(format!("s/{}", i % 10), value.clone(), None)
            .await
            .unwrap();
    }
    let status = client.status().await.unwrap();
    assert!(status.cluster.is_some());
    let mut last = from - 1;
    let cut = loop {
        let body = tokio::time::timeout(TIMEOUT, slow.next())
            .await
            .expect("nothing on the slow watch")
            .expect("the slow watch's connection closed")
            .unwrap();
        let reply: ResponseFrame = frame::decode(&body).unwrap();
        assert_eq!(reply.id, 1);
        match reply.body {
            ResponseBody::Item(Response::KvEvents(events)) => {
                for event in events {
                    assert_eq!(event.revision, last + 1, "in order, no gap before the cut");
                    last = event.revision;
                }
            }
            ResponseBody::Error(error) => break error,
            other => panic!("{other:?} on the slow watch"),
        }
    };
    assert_eq!(cut.code, ErrorCode::Compacted, "{cut:?}");
    let fields = cut.compacted.unwrap();
    assert_eq!(
        fields.requested_revision,
        last + 1,
        "resume where it stopped"
    );
    assert!(fields.oldest_revision > last + 1);
    assert!(last < from + 600 - 1, "it was cut off before the end");
    assert!(cut.message.contains("--from-revision"), "{}", cut.message);
}

/// A control connection that has exchanged a valid hello, to be driven frame by frame.
async fn greeted(socket: &std::path::Path) -> FramedStream<UnixStream> {
    let mut stream = frame::framed(UnixStream::connect(socket).await.unwrap(), MAX_FRAME_LEN);
    stream
        .send(frame::encode(&Hello::new(Ctl::ID, &LocalHello::default())).unwrap())
        .await
        .unwrap();
    let reply = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: Hello = frame::decode(&reply).unwrap();
    assert!(reply.refused.is_none(), "{:?}", reply.refused);
    stream
}

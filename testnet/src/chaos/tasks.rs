//! Small helpers the run's tasks share: the stop signal, pauses that end early when the run
//! stops, and running the lab's blocking calls without stalling the clients.
//!
//! The lab's backends are synchronous (a signal, a `docker` command, an `nft` script) and some
//! take a while (`docker kill` waits until the container is gone). Run inline on a runtime
//! thread, such a call would hold up the clients scheduled on that thread and turn into client
//! timeouts that have nothing to do with the cluster; on a multi-threaded runtime it is
//! therefore run with `block_in_place`, which hands the thread's other tasks to another thread
//! first.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;

/// Completes once the run is told to stop (a `true` on the channel). A channel whose sender
/// is gone never stops the run.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Waits `duration`, or less if the run stops meanwhile; returns whether it stopped.
pub async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        () = stopped(stop) => true,
        () = tokio::time::sleep(duration) => *stop.borrow(),
    }
}

/// Runs `call` (which blocks) without holding up other tasks (see the module docs).
pub fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Awaits `future`, whose polls may block (a lab call that mixes backend commands with
/// waiting), without holding up other tasks.
pub async fn off_runtime<F: Future>(future: F) -> F::Output {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => future.await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_pause_ends_when_the_run_stops() {
        let (tell, mut stop) = watch::channel(false);
        let waiter = tokio::spawn(async move { pause(&mut stop, Duration::from_secs(60)).await });
        tell.send(true).unwrap();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_pause_without_stop_runs_out() {
        let (_tell, mut stop) = watch::channel(false);
        assert!(!pause(&mut stop, Duration::from_millis(1)).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_calls_run_on_either_runtime() {
        assert_eq!(blocking(|| 7), 7);
        assert_eq!(off_runtime(async { 8 }).await, 8);
    }
}

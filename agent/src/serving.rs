//! The one way the agent serves a request protocol to clients: the control socket
//! ([`crate::control`]) and the node-to-node API ([`crate::remote::server`]) both accept, shake
//! hands and serve pipelined requests through the wire crate here, under the node's connection
//! cap and one hello deadline, and count each request (by kind, outcome and latency) and each
//! open connection in the agent's metrics. What a request is answered with is the caller's.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use symphony_ctl::proto::CtlError;
use symphony_wire::listen::Listener;
use symphony_wire::{Caller, Limits, Protocol, Reply, Transport};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::{Api, Requests};

/// A client must say hello this soon after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What differs between the agent's request servers.
pub struct Served<P: Protocol> {
    /// The API its requests and connections are counted under.
    pub api: Api,
    /// How its streams are wrapped before the hello.
    pub transport: Transport,
    /// Requests of one connection being handled at once; past that the connection is not read.
    pub max_in_flight: usize,
    /// The kind a request is counted as.
    pub kind: fn(&P::Request) -> &'static str,
}

/// Serves protocol `P` on `listener` until `shutdown`, answering each request with `answer`
/// and counting each request and connection in `requests`.
pub async fn serve<P, L, H, Fut>(
    listener: L,
    ctx: Context,
    requests: Requests,
    shutdown: CancellationToken,
    served: Served<P>,
    answer: H,
) where
    P: Protocol<Error = CtlError>,
    L: Listener,
    H: Fn(Context, Arc<Caller>, P::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply<P>> + Send + 'static,
{
    let cap = ctx.node.config().connection_cap;
    let limits = Limits {
        max_connections: cap,
        max_per_peer: cap,
        handshake_timeout: HELLO_TIMEOUT,
    };
    let config = ctx
        .node
        .server_config(P::ID, served.transport, limits, |identity| identity.node_id);
    let Served {
        api,
        max_in_flight,
        kind,
        ..
    } = served;
    symphony_wire::listen::serve(listener, config, shutdown, move |connection| {
        let ctx = ctx.clone();
        let requests = requests.clone();
        let answer = answer.clone();
        let open = requests.connection(api);
        let served = symphony_wire::serve::serve::<P, _, _>(
            connection,
            max_in_flight,
            move |caller: Arc<Caller>, request| {
                let ctx = ctx.clone();
                let requests = requests.clone();
                let answer = answer.clone();
                async move {
                    let started = Instant::now();
                    let kind = kind(&request);
                    let reply = answer(ctx, caller, request).await;
                    let error = match &reply {
                        Reply::One(Err(error)) => Some(error.code),
                        _ => None,
                    };
                    requests.observe(api, kind, error, started.elapsed());
                    reply
                }
            },
        );
        async move {
            let _open = open;
            served.await;
        }
    })
    .await;
}

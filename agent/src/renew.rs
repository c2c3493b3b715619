//! Every enrolled node — manager or worker — renews its own certificate before it ends.
//!
//! A certificate lives for the cluster's lifetime at its issue (default 90 days). At a random
//! point between half and four fifths of that life ([`due`], so that a fleet issued its
//! certificates at once does not renew at once) the node sends a `RenewCertificate` with a
//! request for its own key over its mutual TLS to a manager — a manager asks itself, a
//! worker its session's manager and then the others — which issues for the node its
//! certificate names. The node checks the answer (this cluster's CA, this node, this key)
//! and keeps it through its [`TlsStore`](crate::tls::TlsStore), whose transports take it on
//! the next connection. A failed try is retried with a growing delay up to a minute, and
//! logged; a certificate that expired (the node was off past its end) cannot be renewed over
//! TLS any more, and the node says how to re-enrol (`join --token`).
//!
//! When the cluster's root changes (`ca rotate`: the node's bundle then starts with a root
//! that did not issue its certificate), the node renews at once, onto the new root.
//!
//! This loop is the only renewer of the node's certificate; a join (which also stores one)
//! wakes it through the store's channel, and it starts again from the new certificate.

use std::time::{Duration, SystemTime};

use rand::Rng;
use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_pki::Validity;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::remote::proto::{RemoteReply, RemoteRequest};

/// The earliest and latest point of a certificate's life at which it is renewed.
pub const RENEW_FROM: f64 = 0.5;
pub const RENEW_UNTIL: f64 = 0.8;
/// Within how long after it learns of a new root a node renews onto it, at random.
const ROOT_SPREAD_MS: u64 = 1_000;
/// How long one renewal call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest delay between failed tries.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// When a certificate valid as `validity` is due for renewal, `fraction` of the way through
/// its life (clamped to [`RENEW_FROM`]..=[`RENEW_UNTIL`]). Its life counts from its issue,
/// not from its backdated start ([`Validity::issued_at`]).
pub fn due(validity: &Validity, fraction: f64) -> SystemTime {
    let fraction = if fraction.is_finite() {
        fraction.clamp(RENEW_FROM, RENEW_UNTIL)
    } else {
        RENEW_FROM
    };
    let issued = validity.issued_at();
    let life = validity
        .not_after
        .duration_since(issued)
        .unwrap_or(Duration::ZERO);
    issued + life.mul_f64(fraction)
}

/// The delay before try `attempt` (0 is the first retry): doubling, capped.
pub fn retry_delay(attempt: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_RETRY)
}

/// Renews the node's certificate in its time, until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let mut changes = ctx.tls.remote_changes();
    loop {
        changes.borrow_and_update();
        let validity = ctx
            .tls
            .certificate()
            .filter(|_| ctx.tls.enrolled())
            .map(|cert| symphony_pki::verify::validity_of(&cert));
        let validity = match validity {
            // No certificate (a fresh node), or one that does not read (the store logged
            // why): nothing to renew until the node is issued another.
            None => None,
            Some(Err(error)) => {
                tracing::warn!(%error, "this node's certificate does not read; it is not renewed");
                None
            }
            Some(Ok(validity)) => Some(validity),
        };
        let Some(validity) = validity else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return } else { continue },
            }
        };
        let at = if !ctx.tls.holds_superseded_root() {
            due(
                &validity,
                rand::rng().random_range(RENEW_FROM..=RENEW_UNTIL),
            )
        } else {
            // A root rotation started: the node moves to the new root now, within a second
            // (spread, so that a fleet told at once does not ask at once).
            tracing::info!(
                "the cluster's root changed; renewing this node's certificate from the new root"
            );
            SystemTime::now() + Duration::from_millis(rand::rng().random_range(0..=ROOT_SPREAD_MS))
        };
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tracing::debug!(
            in_s = wait.as_secs(),
            not_after_ms = crate::millis_since_epoch(validity.not_after),
            "this node's certificate will be renewed"
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return } else { continue },
            () = tokio::time::sleep(wait) => {}
        }
        let mut attempt = 0;
        loop {
            if SystemTime::now() > validity.not_after {
                tracing::error!(
                    not_after_ms = crate::millis_since_epoch(validity.not_after),
                    "this node's certificate has expired, and the cluster refuses it: it cannot be renewed. Join again with a token (`symphony-ctl join --token ...`): the node keeps its id, role and state"
                );
                break;
            }
            match renew_once(&ctx).await {
                Ok(renewed) => {
                    tracing::info!(
                        not_after_ms = crate::millis_since_epoch(renewed.not_after),
                        "renewed this node's certificate"
                    );
                    break;
                }
                Err(error) => {
                    let delay = retry_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(%error, retry_in_ms = delay.as_millis(), "cannot renew this node's certificate; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // A renewal woke `changes`; an expired certificate waits for a join to change it.
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// The managers to ask, best first: this node itself if it is a manager, then the managers
/// its replica knows; for a worker, the managers its session would try, in that order.
async fn managers(ctx: &Context) -> Vec<String> {
    let mut addrs = Vec::new();
    if let Some(consensus) = ctx.node.consensus()
        && !ctx.node.is_worker()
    {
        addrs.push(ctx.node.config().advertised.remote_addr.clone());
        addrs.extend(
            crate::manager::admission::manager_contacts(&consensus)
                .into_iter()
                .map(|manager| manager.remote_addr),
        );
    } else {
        let managers = crate::worker::session::managers_to_try(ctx).await;
        addrs.extend(managers.into_iter().map(|manager| manager.remote_addr));
    }
    let mut seen = std::collections::BTreeSet::new();
    addrs.retain(|addr| seen.insert(addr.clone()));
    addrs
}

/// Asks the managers, in turn, for a new certificate; keeps the first that checks out.
async fn renew_once(ctx: &Context) -> Result<Validity, CtlError> {
    let node_id = ctx.node.state().identity.node_id;
    let csr = ctx.tls.request(node_id).map_err(|error| {
        crate::errors::internal(format!("cannot make a certificate request: {error}"))
    })?;
    let addrs = managers(ctx).await;
    let mut last = CtlError::new(
        ErrorCode::Unavailable,
        "this node knows no manager to renew its certificate with yet",
    );
    for addr in addrs {
        let request = RemoteRequest::RenewCertificate { csr: csr.clone() };
        match ctx.remote.call(&addr, request, CALL_TIMEOUT).await {
            Ok(RemoteReply::Renewed { certificate, .. }) => {
                return keep(ctx, node_id, &certificate);
            }
            Ok(_) => {
                last = crate::errors::internal(format!(
                    "the manager at {addr} answered a renewal with something else"
                ));
            }
            // A removed node will never be renewed: no other manager will either.
            Err(error) if error.code == ErrorCode::NodeRemoved => return Err(error),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Keeps `certificate` if it is this cluster's (issued by the CA this node trusts, for its
/// cluster), names this node, and is for this node's key.
fn keep(ctx: &Context, node_id: u64, certificate: &str) -> Result<Validity, CtlError> {
    let refused = |why: String| {
        crate::errors::internal(format!("the renewed certificate was not kept: {why}"))
    };
    let bundle = ctx
        .tls
        .ca_bundle()
        .ok_or_else(|| refused("this node holds no CA bundle".into()))?;
    let own = ctx
        .tls
        .certificate()
        .and_then(|cert| symphony_pki::verify::first_der(&cert).ok())
        .and_then(|der| symphony_pki::verify::identity_of_der(&der).ok())
        .ok_or_else(|| refused("this node's own certificate does not read".into()))?;
    let identity = symphony_pki::verify::verify_pem(
        certificate,
        &bundle,
        Some(&own.cluster_id),
        SystemTime::now(),
    )
    .map_err(|error| refused(error.to_string()))?;
    if identity.node_id != node_id {
        return Err(refused(format!("it names {identity}")));
    }
    let key = symphony_pki::verify::public_key_digest(certificate)
        .map_err(|error| refused(error.to_string()))?;
    if key != ctx.tls.key_digest() {
        return Err(refused("it is for another key".into()));
    }
    let validity = symphony_pki::verify::validity_of(certificate)
        .map_err(|error| refused(error.to_string()))?;
    ctx.tls
        .store_certificate(certificate)
        .map_err(|error| refused(error.to_string()))?;
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity(issued_s: u64, life_s: u64) -> Validity {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(issued_s);
        Validity {
            not_before: issued - symphony_pki::BACKDATE,
            not_after: issued + Duration::from_secs(life_s),
        }
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_life_from_its_issue() {
        let at = |fraction| {
            due(&validity(1_000_000, 100), fraction)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        };
        // The backdated hour is not part of the life.
        assert_eq!(at(0.5), 1_000_050);
        assert_eq!(at(0.8), 1_000_080);
        // Out of range, or no number: clamped into it.
        assert_eq!(at(0.0), 1_000_050);
        assert_eq!(at(1.0), 1_000_080);
        assert_eq!(at(f64::NAN), 1_000_050);
        // A 90-day certificate: between 45 and 72 days after its issue.
        let ninety = validity(10_000_000, 90 * 86_400);
        let first = due(&ninety, RENEW_FROM)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        assert_eq!(first, Duration::from_secs(10_000_000 + 45 * 86_400));
    }

    #[test]
    fn a_certificate_shorter_than_the_backdate_is_due_at_its_end_and_never_before_its_start() {
        // Every certificate the cluster issues is backdated an hour; one that is not (and
        // lives less than that) reads as issued at its end, so it is renewed then, not in a
        // loop before.
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(500);
        let short = Validity {
            not_before: start,
            not_after: start + Duration::from_secs(40),
        };
        assert_eq!(short.issued_at(), start + Duration::from_secs(40));
        assert_eq!(due(&short, 0.5), start + Duration::from_secs(40));
        let backwards = Validity {
            not_before: start,
            not_after: start - Duration::from_secs(1),
        };
        assert_eq!(due(&backwards, 0.5), backwards.not_after);
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let delays: Vec<u64> = (0..10).map(|n| retry_delay(n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }
}

//! Who may make which node-to-node call: decided from the certificate the caller showed, per
//! call, before any handler sees it.
//!
//! The transport has already refused a caller with a certificate of another CA or cluster;
//! what is left is its role and the node it names. Any certificate of the cluster CA is not
//! enough (Nomad's and Consul's CVE-2021-37218/37219 let any of them make server-only calls):
//! - a manager's certificate may make every call;
//! - a worker's may act only for the node it names (its session, its assignments, its task
//!   reports, its leave notice, its resources) and may never make a manager's calls (forward
//!   an operator's request, take a manager out, ask a node for its logs or diagnostics);
//! - a caller without one (a node that joins and has no certificate yet) may only ask for the
//!   CA bundle, join with a token, or — on a fresh node — take part in the bootstrap
//!   enrolment;
//! - a certificate of a node `node rm` removed may make no call at all, even on a connection
//!   opened before the removal (new ones fail in the handshake);
//! - a certificate renewal is made by any node with a certificate, for the node it names
//!   (the handler takes the id from the certificate, never from the request).
//!
//! A node that holds no certificate itself serves in plain, so nobody's identity is known: it
//! is fresh, holds nothing, and its handlers refuse what needs a cluster. The secrets the calls
//! carry are still checked by the handlers, as a second line.
//!
//! Pure: tested without sockets.

use std::collections::BTreeSet;

use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_pki::{CertIdentity, CertRole};

use super::proto::RemoteRequest;

/// Whether `caller` (who its certificate proves, `None` without one) may make `request` of
/// this node; `enrolled` says whether this node serves TLS (holds a certificate), `removed`
/// holds the nodes removed from the cluster.
pub fn authorize(
    request: &RemoteRequest,
    caller: Option<&CertIdentity>,
    enrolled: bool,
    removed: &BTreeSet<u64>,
) -> Result<(), CtlError> {
    if !enrolled {
        return Ok(());
    }
    let name = request.spec().0;
    if let Some(caller) = caller
        && removed.contains(&caller.node_id)
    {
        tracing::warn!(%caller, call = name, "a removed node's certificate made a call; refused");
        return Err(CtlError::new(
            ErrorCode::NodeRemoved,
            format!(
                "the caller's certificate names {caller}, which was removed from the cluster; a {name} call is refused"
            ),
        )
        .not_applied());
    }
    let Some(caller) = caller else {
        return match request {
            RemoteRequest::CaBundle
            | RemoteRequest::Join(super::proto::JoinRequest { token: Some(_), .. })
            | RemoteRequest::CertificateRequest
            | RemoteRequest::Enrol { .. } => Ok(()),
            // Nothing to renew, and nobody to name.
            _ => Err(forbidden(format!(
                "a {name} call needs a certificate of this cluster; a node without one may only join with a token"
            ))),
        };
    };
    if caller.role == CertRole::Manager {
        return Ok(());
    }
    let acts_for = match request {
        RemoteRequest::CaBundle
        | RemoteRequest::CertificateRequest
        | RemoteRequest::Enrol { .. }
        | RemoteRequest::Join(super::proto::JoinRequest { token: Some(_), .. })
        // For the node the certificate names, whatever the request says.
        | RemoteRequest::RenewCertificate { .. } => return Ok(()),
        RemoteRequest::Join(join) => join.node_id,
        RemoteRequest::Session { node_id, .. }
        | RemoteRequest::WorkerLeaving { node_id, .. }
        | RemoteRequest::Assignments { node_id, .. }
        | RemoteRequest::TaskReports { node_id, .. }
        | RemoteRequest::NodeResources { node_id, .. } => *node_id,
        RemoteRequest::Forward { .. }
        | RemoteRequest::Leaving { .. }
        | RemoteRequest::WhoLeads
        | RemoteRequest::GossipKeysHeld
        | RemoteRequest::TaskLogs { .. }
        | RemoteRequest::CertificateIssued { .. }
        | RemoteRequest::Diagnostics { .. } => {
            return Err(forbidden(format!(
                "a {name} call is for managers, and the caller's certificate names {caller}"
            )));
        }
    };
    if acts_for != caller.node_id {
        tracing::warn!(%caller, acts_for, call = name, "a node tried to act for another node; refused");
        return Err(forbidden(format!(
            "the caller's certificate names {caller}, and a {name} call for node {acts_for:x} may come only from that node"
        )));
    }
    Ok(())
}

fn forbidden(message: String) -> CtlError {
    CtlError::new(ErrorCode::Forbidden, message).not_applied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::remote::proto::JoinRequest;

    fn worker(node_id: u64) -> CertIdentity {
        CertIdentity {
            cluster_id: "c".into(),
            role: CertRole::Worker,
            node_id,
        }
    }

    fn manager(node_id: u64) -> CertIdentity {
        CertIdentity {
            role: CertRole::Manager,
            ..worker(node_id)
        }
    }

    fn reports(node_id: u64) -> RemoteRequest {
        RemoteRequest::TaskReports {
            node_id,
            secret: "s".into(),
            reports: Vec::new(),
        }
    }

    fn join(token: Option<&str>, node_id: u64) -> RemoteRequest {
        RemoteRequest::Join(JoinRequest {
            token: token.map(str::to_string),
            node_id,
            raft_node_id: 9,
            hostname: "h".into(),
            raft_addr: "a".into(),
            remote_addr: "r".into(),
            agent_version: "v".into(),
            cpus: 1,
            memory_bytes: 1,
            docker: None,
            cluster_id: None,
            gossip_addr: None,
            labels: Default::default(),
            csr: None,
        })
    }

    fn none() -> BTreeSet<u64> {
        BTreeSet::new()
    }

    fn code(result: Result<(), CtlError>) -> Option<ErrorCode> {
        result.err().map(|error| error.code)
    }

    #[test]
    fn a_worker_acts_only_for_itself() {
        assert_eq!(
            code(authorize(&reports(7), Some(&worker(7)), true, &none())),
            None
        );
        assert_eq!(
            code(authorize(&reports(8), Some(&worker(7)), true, &none())),
            Some(ErrorCode::Forbidden),
            "a worker reporting another node's tasks"
        );
        let session = RemoteRequest::Session {
            node_id: 8,
            secret: "s".into(),
            members_seen: None,
            keyring_version: None,
        };
        assert_eq!(
            code(authorize(&session, Some(&worker(7)), true, &none())),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize(&join(None, 8), Some(&worker(7)), true, &none())),
            Some(ErrorCode::Forbidden),
            "a join without a token for another node"
        );
        assert_eq!(
            code(authorize(&join(None, 7), Some(&worker(7)), true, &none())),
            None
        );
    }

    #[test]
    fn a_worker_makes_no_managers_call_and_a_manager_makes_every_call() {
        let managers_calls = [
            RemoteRequest::Forward {
                secret: "s".into(),
                request: symphony_ctl::proto::Request::Status,
            },
            RemoteRequest::Leaving {
                secret: "s".into(),
                node_id: 7,
            },
            RemoteRequest::WhoLeads,
            RemoteRequest::GossipKeysHeld,
            RemoteRequest::Diagnostics { secret: "s".into() },
        ];
        for call in &managers_calls {
            assert_eq!(
                code(authorize(call, Some(&worker(7)), true, &none())),
                Some(ErrorCode::Forbidden),
                "{call:?}"
            );
            assert_eq!(
                code(authorize(call, Some(&manager(1)), true, &none())),
                None
            );
        }
        assert_eq!(
            code(authorize(&reports(8), Some(&manager(1)), true, &none())),
            None
        );
    }

    #[test]
    fn a_caller_without_a_certificate_may_only_ask_for_the_bundle_and_join_with_a_token() {
        assert_eq!(
            code(authorize(&RemoteRequest::CaBundle, None, true, &none())),
            None
        );
        assert_eq!(
            code(authorize(&join(Some("t"), 7), None, true, &none())),
            None
        );
        assert_eq!(
            code(authorize(&join(None, 7), None, true, &none())),
            Some(ErrorCode::Forbidden),
            "a join without a token proves nothing without a certificate"
        );
        assert_eq!(
            code(authorize(&reports(7), None, true, &none())),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize(&RemoteRequest::WhoLeads, None, true, &none())),
            Some(ErrorCode::Forbidden)
        );
    }

    #[test]
    fn a_removed_nodes_certificate_makes_no_call_and_others_are_unaffected() {
        let removed = BTreeSet::from([7]);
        let renew = RemoteRequest::RenewCertificate { csr: "r".into() };
        for call in [reports(7), renew.clone(), RemoteRequest::CaBundle] {
            assert_eq!(
                code(authorize(&call, Some(&worker(7)), true, &removed)),
                Some(ErrorCode::NodeRemoved),
                "{call:?}"
            );
        }
        assert_eq!(
            code(authorize(
                &RemoteRequest::WhoLeads,
                Some(&manager(7)),
                true,
                &removed
            )),
            Some(ErrorCode::NodeRemoved),
            "a removed manager too"
        );
        assert_eq!(
            code(authorize(&reports(8), Some(&worker(8)), true, &removed)),
            None
        );
        assert_eq!(
            code(authorize(&renew, Some(&worker(8)), true, &removed)),
            None
        );
    }

    #[test]
    fn any_certificate_renews_for_itself_and_none_renews_nothing() {
        let renew = RemoteRequest::RenewCertificate { csr: "r".into() };
        assert_eq!(
            code(authorize(&renew, Some(&worker(3)), true, &none())),
            None
        );
        assert_eq!(
            code(authorize(&renew, Some(&manager(1)), true, &none())),
            None
        );
        assert_eq!(
            code(authorize(&renew, None, true, &none())),
            Some(ErrorCode::Forbidden)
        );
        // Recording an issued certificate is between managers.
        let issued = RemoteRequest::CertificateIssued {
            secret: "s".into(),
            node_id: 3,
            certificate: symphony_consensus::NodeCertificate {
                key_digest: "k".into(),
                not_after_ms: 1,
                root_digest: "r".into(),
            },
        };
        assert_eq!(
            code(authorize(&issued, Some(&worker(3)), true, &none())),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize(&issued, Some(&manager(1)), true, &none())),
            None
        );
    }

    #[test]
    fn a_node_without_a_certificate_leaves_it_to_its_handlers() {
        assert_eq!(code(authorize(&reports(7), None, false, &none())), None);
    }
}

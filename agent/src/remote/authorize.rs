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
//!   enrolment.
//!
//! A node that holds no certificate itself serves in plain, so nobody's identity is known: it
//! is fresh, holds nothing, and its handlers refuse what needs a cluster. The secrets the calls
//! carry are still checked by the handlers, as a second line.
//!
//! Pure: tested without sockets.

use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_pki::{CertIdentity, CertRole};

use super::proto::RemoteRequest;

/// Whether `caller` (who its certificate proves, `None` without one) may make `request` of
/// this node; `enrolled` says whether this node serves TLS (holds a certificate).
pub fn authorize(
    request: &RemoteRequest,
    caller: Option<&CertIdentity>,
    enrolled: bool,
) -> Result<(), CtlError> {
    if !enrolled {
        return Ok(());
    }
    let name = request.spec().0;
    let Some(caller) = caller else {
        return match request {
            RemoteRequest::CaBundle
            | RemoteRequest::Join(super::proto::JoinRequest { token: Some(_), .. })
            | RemoteRequest::CertificateRequest
            | RemoteRequest::Enrol { .. } => Ok(()),
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
        | RemoteRequest::Join(super::proto::JoinRequest { token: Some(_), .. }) => return Ok(()),
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

    fn code(result: Result<(), CtlError>) -> Option<ErrorCode> {
        result.err().map(|error| error.code)
    }

    #[test]
    fn a_worker_acts_only_for_itself() {
        assert_eq!(code(authorize(&reports(7), Some(&worker(7)), true)), None);
        assert_eq!(
            code(authorize(&reports(8), Some(&worker(7)), true)),
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
            code(authorize(&session, Some(&worker(7)), true)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize(&join(None, 8), Some(&worker(7)), true)),
            Some(ErrorCode::Forbidden),
            "a join without a token for another node"
        );
        assert_eq!(
            code(authorize(&join(None, 7), Some(&worker(7)), true)),
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
                code(authorize(call, Some(&worker(7)), true)),
                Some(ErrorCode::Forbidden),
                "{call:?}"
            );
            assert_eq!(code(authorize(call, Some(&manager(1)), true)), None);
        }
        assert_eq!(code(authorize(&reports(8), Some(&manager(1)), true)), None);
    }

    #[test]
    fn a_caller_without_a_certificate_may_only_ask_for_the_bundle_and_join_with_a_token() {
        assert_eq!(code(authorize(&RemoteRequest::CaBundle, None, true)), None);
        assert_eq!(code(authorize(&join(Some("t"), 7), None, true)), None);
        assert_eq!(
            code(authorize(&join(None, 7), None, true)),
            Some(ErrorCode::Forbidden),
            "a join without a token proves nothing without a certificate"
        );
        assert_eq!(
            code(authorize(&reports(7), None, true)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize(&RemoteRequest::WhoLeads, None, true)),
            Some(ErrorCode::Forbidden)
        );
    }

    #[test]
    fn a_node_without_a_certificate_leaves_it_to_its_handlers() {
        assert_eq!(code(authorize(&reports(7), None, false)), None);
    }
}

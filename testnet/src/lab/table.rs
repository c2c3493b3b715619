//! The readable form of a [`LabStatus`]: one aligned line per node, the leader marked with `*`,
//! then the leader, the partition, and (after `up`) how to reach each node. The table is
//! `symphony-ctl`'s, so the lab's output looks like the rest of Symphony's.

use std::fmt::Write;

use symphony_ctl::cli::{Table, fields};

use super::partition::describe;
use super::status::LabStatus;

/// The status table with its summary lines.
pub fn render(status: &LabStatus) -> String {
    let dash = || "-".to_string();
    let mut table = Table::new([
        "", "NAME", "ROLE", "PROCESS", "PID", "ADDRESS", "RAFT", "TERM", "STATUS", "NOTE",
    ]);
    for node in &status.nodes {
        table.row([
            if node.leader { "*" } else { "" }.to_string(),
            node.name.clone(),
            node.role.to_string(),
            node.process.clone(),
            // The last pid of a node that is gone is in the JSON, not in the table.
            if matches!(node.process.as_str(), "running" | "paused") {
                node.pid
                    .map(|pid| pid.to_string())
                    .or_else(|| node.container.clone())
                    .unwrap_or_else(dash)
            } else {
                dash()
            },
            node.remote_addr.to_string(),
            node.raft_state.clone().unwrap_or_else(dash),
            node.term.map(|term| term.to_string()).unwrap_or_else(dash),
            node.status.clone().unwrap_or_else(dash),
            node.note.clone().unwrap_or_default(),
        ]);
    }
    let mut out = table.render();
    match (&status.leader, status.term) {
        (Some(leader), Some(term)) => {
            let _ = writeln!(out, "* leader: {leader} (term {term})");
        }
        _ => out.push_str("no leader: no answering node says it leads\n"),
    }
    match &status.listed_by {
        Some(by) if !status.listed_by_leader => {
            let _ = writeln!(
                out,
                "STATUS is from {by}'s local replica (no leader answered): it may be stale"
            );
        }
        None => out.push_str("STATUS unknown: no manager answered `node ls`\n"),
        Some(_) => {}
    }
    if let Some(sides) = &status.partition {
        let _ = writeln!(out, "partition: {}", describe(sides));
    }
    out
}

/// How to talk to each node and where its log is, for the end of `testnet up`.
pub fn reach(status: &LabStatus) -> String {
    let mut out = String::from("reach a node with symphony-ctl (any command, e.g. status):\n");
    let commands = fields(status.nodes.iter().map(|node| {
        (
            node.name.as_str(),
            format!("symphony-ctl --socket {} status", node.socket.display()),
        )
    }));
    for line in commands.lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "logs: {}/nodes/<name>/agent.log; faults: testnet kill|pause|resume|restart <name>, testnet partition <names>, testnet heal; stop: testnet down",
        status.dir.display()
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use symphony_ctl::proto::Role;

    use super::*;
    use crate::lab::{BackendKind, NodeRow};

    fn row(name: &str, leader: bool, pid: Option<u32>, note: Option<&str>) -> NodeRow {
        NodeRow {
            name: name.to_string(),
            role: Role::Manager,
            process: if pid.is_some() { "running" } else { "killed" }.to_string(),
            pid,
            container: None,
            remote_addr: "127.77.0.1:27242".parse().unwrap(),
            raft_addr: "127.77.0.1:15760".parse().unwrap(),
            raft_state: pid.map(|_| if leader { "leader" } else { "follower" }.to_string()),
            leader,
            term: pid.map(|_| 2),
            status: Some("ready".to_string()),
            node_id: Some(1),
            socket: PathBuf::from(format!("/t/nodes/{name}/config/control.sock")),
            log: PathBuf::from(format!("/t/nodes/{name}/agent.log")),
            note: note.map(str::to_string),
        }
    }

    #[test]
    fn one_aligned_line_per_node_then_the_leader() {
        let status = LabStatus {
            dir: PathBuf::from("/t"),
            backend: BackendKind::Local,
            subnet: "127.77.0".to_string(),
            cluster_id: None,
            leader: Some("manager-1".to_string()),
            term: Some(2),
            partition: None,
            listed_by: Some("manager-1".to_string()),
            listed_by_leader: true,
            nodes: vec![
                row("manager-1", true, Some(4242), None),
                row("manager-2", false, None, Some("not running")),
            ],
        };
        assert_eq!(
            render(&status),
            "   NAME       ROLE     PROCESS  PID   ADDRESS           RAFT    TERM  STATUS  NOTE\n\
             *  manager-1  manager  running  4242  127.77.0.1:27242  leader  2     ready\n   \
             manager-2  manager  killed   -     127.77.0.1:27242  -       -     ready   not running\n\
             * leader: manager-1 (term 2)\n"
        );
        assert!(reach(&status).contains(
            "\n  manager-2  symphony-ctl --socket /t/nodes/manager-2/config/control.sock status\n"
        ));
    }
}

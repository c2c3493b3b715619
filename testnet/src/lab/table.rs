//! The readable form of a [`LabStatus`]: one aligned line per node, the leader marked with `*`,
//! then the leader, the partition, and (after `up`) how to reach each node.

use std::fmt::Write;

use super::partition::describe;
use super::status::LabStatus;

/// The status table with its summary lines.
pub fn render(status: &LabStatus) -> String {
    let header = [
        "", "NAME", "ROLE", "PROCESS", "PID", "ADDRESS", "RAFT", "TERM", "STATUS", "NOTE",
    ];
    let dash = || "-".to_string();
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_string()).collect()];
    for node in &status.nodes {
        rows.push(vec![
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
    let mut out = align(&rows);
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
    let width = status.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for node in &status.nodes {
        let _ = writeln!(
            out,
            "  {:width$}  symphony-ctl --socket {} status",
            node.name,
            node.socket.display()
        );
    }
    let _ = writeln!(
        out,
        "logs: {}/nodes/<name>/agent.log; faults: testnet kill|pause|resume|restart <name>, testnet partition <names>, testnet heal; stop: testnet down",
        status.dir.display()
    );
    out
}

/// Left-aligned columns two spaces apart, without trailing spaces.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let width = widths.get(column).copied().unwrap_or(0);
            let _ = write!(line, "{cell:width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["A".to_string(), "long cell".to_string(), "x".to_string()],
            vec!["longer".to_string(), "b".to_string(), String::new()],
        ];
        assert_eq!(align(&rows), "A       long cell  x\nlonger  b\n");
    }
}

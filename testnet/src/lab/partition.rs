//! Partitions as users write them, and the links they cut.
//!
//! `testnet partition manager-1` cuts one node off from all others; `testnet partition
//! manager-1,worker-1 / manager-2,manager-3,worker-2` splits the testnet into sides (any
//! number, separated by `/`). With one side, the other side is every other node. With several,
//! a node named on no side keeps all its links (a bridge between the sides). Every link between
//! two nodes on different sides is cut in both directions: a [`Cut`] per direction.

use std::collections::BTreeSet;

use super::LabError;
use super::state::LabState;

/// One direction of traffic to drop: everything node `from` sends to node `to` (indexes into
/// the state's nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cut {
    pub from: usize,
    pub to: usize,
}

/// A partition resolved against a testnet's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The sides by node name, the complement filled in when one side was given.
    pub sides: Vec<Vec<String>>,
    pub cuts: Vec<Cut>,
}

/// Reads the command-line words of a partition (`a,b / c` arrives as `["a,b", "/", "c"]`, but
/// `a,b/c` and `"a,b / c"` mean the same) and resolves the names against `state`.
pub fn resolve(state: &LabState, words: &[String]) -> Result<Partition, LabError> {
    let text = words.join(" ");
    let mut sides: Vec<Vec<usize>> = Vec::new();
    let mut seen = BTreeSet::new();
    for side in text.split('/') {
        let mut members = Vec::new();
        for name in side
            .split([',', ' '])
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let index = state.index_of(name)?;
            if !seen.insert(index) {
                return Err(LabError::InvalidArgument(format!(
                    "{name} is named twice in the partition; each node is on at most one side"
                )));
            }
            members.push(index);
        }
        if members.is_empty() {
            return Err(LabError::InvalidArgument(format!(
                "a side of the partition {text:?} names no node; write e.g. `manager-1` or `manager-1,worker-1 / manager-2,manager-3`"
            )));
        }
        sides.push(members);
    }
    if sides.len() == 1 {
        let rest: Vec<usize> = (0..state.nodes.len())
            .filter(|index| !seen.contains(index))
            .collect();
        if rest.is_empty() {
            return Err(LabError::InvalidArgument(
                "the partition names every node on one side, so it cuts nothing".to_string(),
            ));
        }
        sides.push(rest);
    }
    let mut cuts = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        for (j, other) in sides.iter().enumerate() {
            if i == j {
                continue;
            }
            for &from in side {
                for &to in other {
                    cuts.push(Cut { from, to });
                }
            }
        }
    }
    cuts.sort();
    let sides = sides
        .into_iter()
        .map(|side| {
            side.into_iter()
                .map(|index| state.nodes[index].name.clone())
                .collect()
        })
        .collect();
    Ok(Partition { sides, cuts })
}

/// `manager-1 | manager-2, manager-3` for messages and the status table.
pub fn describe(sides: &[Vec<String>]) -> String {
    sides
        .iter()
        .map(|side| side.join(", "))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;
    use crate::lab::backend::BackendKind;
    use crate::lab::plan::plan;
    use crate::lab::state::STATE_VERSION;
    use crate::lab::{Addressing, Lifetime, Subnet};

    fn lab(managers: usize, workers: usize) -> LabState {
        let dir = PathBuf::from("/x");
        LabState {
            version: STATE_VERSION,
            backend: BackendKind::Local,
            nodes: plan(&dir, Addressing::Subnet, Subnet::DEFAULT, managers, workers).unwrap(),
            dir,
            subnet: Subnet::DEFAULT,
            addressing: Addressing::Subnet,
            lifetime: Lifetime::Detached,
            agent_bin: PathBuf::from("/bin/true"),
            log_level: "info".to_string(),
            agent_args: Vec::new(),
            start_timeout_ms: 1,
            cluster_id: None,
            partition: None,
            disk_mb: None,
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn one_node_is_cut_from_all_others_both_ways() {
        let state = lab(3, 0);
        let partition = resolve(&state, &words("manager-1")).unwrap();
        assert_eq!(
            partition.sides,
            vec![
                vec!["manager-1".to_string()],
                vec!["manager-2".into(), "manager-3".into()]
            ]
        );
        let cuts: Vec<(usize, usize)> = partition.cuts.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(cuts, [(0, 1), (0, 2), (1, 0), (2, 0)]);
    }

    #[test]
    fn two_sides_leave_unnamed_nodes_connected() {
        let state = lab(3, 2);
        let partition = resolve(&state, &words("manager-1,worker-1 / manager-2")).unwrap();
        assert_eq!(
            describe(&partition.sides),
            "manager-1, worker-1 | manager-2"
        );
        assert_eq!(partition.cuts.len(), 4);
        assert!(
            partition
                .cuts
                .iter()
                .all(|cut| cut.from != 2 && cut.to != 2)
        );
        let same = resolve(&state, &words("manager-1,worker-1/manager-2")).unwrap();
        assert_eq!(same, partition);
    }

    #[test]
    fn refuses_unknown_repeated_and_empty() {
        let state = lab(3, 0);
        assert!(resolve(&state, &words("manager-9")).is_err());
        assert!(resolve(&state, &words("manager-1 / manager-1")).is_err());
        assert!(resolve(&state, &words("manager-1 /")).is_err());
        assert!(resolve(&state, &words("manager-1,manager-2,manager-3")).is_err());
    }
}

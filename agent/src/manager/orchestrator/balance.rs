//! Rebalancing: which of a replicated service's tasks move so that its tasks spread evenly
//! again over the nodes that may run them (after nodes joined or came back, the old nodes hold
//! everything: the scheduler only places new tasks). Pure, like the rest of the decision.
//!
//! The moves are found by simulation: while the node holding the most of the service's tasks
//! has at least two more than the node with the fewest that can take one more (ready, active,
//! meeting the constraints, with room for the reservation), one task moves from the first to
//! the second. So a rebalance ends with no node two tasks above a node that could take one,
//! and moves no task that need not move. Each slot moves at most once per rebalance (a task
//! made since it started stays), so a rebalance ends even where the scheduler cannot place as
//! the simulation assumed.

use std::collections::{BTreeMap, BTreeSet};

use symphony_consensus::{Availability, ClusterState, NodeStatus, ServiceRecord};

use super::rollout::Slot;
use crate::manager::scheduler::decide::Load;
use crate::manager::scheduler::filters::{fits, meets};

/// A node that may run the service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub node_id: u64,
    /// Whether it can take one more of the service's tasks now.
    pub receives: bool,
}

/// A slot whose current task runs on one of those nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The slot's index among the service's slots.
    pub index: usize,
    pub node_id: u64,
    /// Whether the task may move (it was not itself made by this rebalance).
    pub movable: bool,
}

/// The slots (by index) whose tasks move now; empty when the service is as even as it gets.
pub fn movers(nodes: &[Node], placed: &[Placed]) -> BTreeSet<usize> {
    let mut counts: BTreeMap<u64, usize> = nodes.iter().map(|node| (node.node_id, 0)).collect();
    let mut movable: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for slot in placed {
        let Some(count) = counts.get_mut(&slot.node_id) else {
            // On a node that may no longer run it: the orchestrator moves it anyway.
            continue;
        };
        *count += 1;
        if slot.movable {
            movable.entry(slot.node_id).or_default().push(slot.index);
        }
    }
    // The highest slots move first (as scaling down removes them), so what moves is stable.
    for indices in movable.values_mut() {
        indices.sort_unstable();
    }
    let receivers: BTreeSet<u64> = nodes
        .iter()
        .filter(|node| node.receives)
        .map(|node| node.node_id)
        .collect();
    let mut moves = BTreeSet::new();
    loop {
        // The fullest node that still has a task to give, and the emptiest that takes one.
        let from = counts
            .iter()
            .filter(|(node, _)| movable.get(node).is_some_and(|indices| !indices.is_empty()))
            .max_by_key(|(node, count)| (**count, std::cmp::Reverse(**node)))
            .map(|(node, count)| (*node, *count));
        let to = counts
            .iter()
            .filter(|(node, _)| receivers.contains(node))
            .min_by_key(|(node, count)| (**count, **node))
            .map(|(node, count)| (*node, *count));
        let (Some((from, high)), Some((to, low))) = (from, to) else {
            break;
        };
        if high < low + 2 {
            break;
        }
        let Some(index) = movable.get_mut(&from).and_then(Vec::pop) else {
            break;
        };
        moves.insert(index);
        *counts.entry(from).or_default() -= 1;
        *counts.entry(to).or_default() += 1;
    }
    moves
}

/// What [`movers`] says of `service` in `state`: over the nodes that may run its tasks, with
/// the slots (`views`, as the orchestrator sees them) whose current task runs there; tasks made
/// since `since_ms` (this rebalance's start) do not move again.
pub fn of_service(
    state: &ClusterState,
    service: &ServiceRecord,
    views: &[Slot<'_>],
    since_ms: Option<u64>,
) -> BTreeSet<usize> {
    // What is reserved where, as the scheduler counts it.
    let load = Load::of(state);
    let needs = service.spec.task.reservations;
    let nodes: Vec<Node> = state
        .nodes
        .values()
        .filter(|node| {
            node.status == NodeStatus::Ready
                && node.availability == Availability::Active
                && meets(node, &service.spec.constraints, service.spec.task.driver)
        })
        .map(|node| Node {
            node_id: node.node_id,
            receives: fits(node, load.reserved(node.node_id), needs),
        })
        .collect();
    let placed: Vec<Placed> = views
        .iter()
        .enumerate()
        .filter_map(|(index, view)| {
            let task = view.current.filter(|_| view.settled)?;
            Some(Placed {
                index,
                node_id: task.node_id?,
                movable: since_ms.is_none_or(|since| task.created_at_ms < since),
            })
        })
        .collect();
    movers(&nodes, &placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[(u64, bool)]) -> Vec<Node> {
        ids.iter()
            .map(|&(node_id, receives)| Node { node_id, receives })
            .collect()
    }

    /// `on[i]` is the node of slot `i`; every task may move.
    fn placed(on: &[u64]) -> Vec<Placed> {
        on.iter()
            .enumerate()
            .map(|(index, &node_id)| Placed {
                index,
                node_id,
                movable: true,
            })
            .collect()
    }

    #[test]
    fn a_new_node_takes_half_of_what_one_node_holds() {
        let moves = movers(&nodes(&[(1, true), (2, true)]), &placed(&[1, 1, 1, 1]));
        assert_eq!(moves, BTreeSet::from([2, 3]), "the highest slots move");
    }

    #[test]
    fn an_even_spread_moves_nothing() {
        let even = movers(
            &nodes(&[(1, true), (2, true), (3, true)]),
            &placed(&[1, 2, 3, 1]),
        );
        assert!(
            even.is_empty(),
            "one node above another is as even as 4 on 3 gets"
        );
        assert!(movers(&nodes(&[(1, true)]), &placed(&[1, 1, 1])).is_empty());
    }

    #[test]
    fn tasks_spread_over_every_empty_node() {
        // Six on one node, three nodes: two each.
        let moves = movers(
            &nodes(&[(1, true), (2, true), (3, true)]),
            &placed(&[1, 1, 1, 1, 1, 1]),
        );
        assert_eq!(moves.len(), 4);
        // Two full nodes and an empty one: each gives one.
        let moves = movers(
            &nodes(&[(1, true), (2, true), (3, true)]),
            &placed(&[1, 1, 1, 2, 2, 2]),
        );
        assert_eq!(moves.len(), 2);
        assert!(moves.contains(&2) && moves.contains(&5), "{moves:?}");
    }

    #[test]
    fn a_node_without_room_receives_nothing() {
        let full = movers(&nodes(&[(1, true), (2, false)]), &placed(&[1, 1, 1, 1]));
        assert!(full.is_empty());
    }

    #[test]
    fn a_task_this_rebalance_made_does_not_move_again() {
        let mut slots = placed(&[1, 1, 1, 1]);
        for slot in &mut slots {
            slot.movable = false;
        }
        assert!(movers(&nodes(&[(1, true), (2, true)]), &slots).is_empty());
        slots[0].movable = true;
        assert_eq!(
            movers(&nodes(&[(1, true), (2, true)]), &slots),
            BTreeSet::from([0])
        );
    }

    #[test]
    fn tasks_on_nodes_that_may_not_run_them_are_not_counted() {
        // Node 9 (drained, down or failing a constraint) is the orchestrator's to empty.
        let moves = movers(&nodes(&[(1, true), (2, true)]), &placed(&[9, 9, 1, 2]));
        assert!(moves.is_empty());
    }
}

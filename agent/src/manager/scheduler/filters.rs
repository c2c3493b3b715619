//! The filters a node must pass to take a task, each failure said with its shortfall, so that
//! `service explain` can tell an operator exactly what would unblock a pending task.

use symphony_consensus::{
    Availability, Constraint, ConstraintField, ConstraintOp, Driver, NodeRecord, NodeRole,
    NodeStatus, Reservations,
};

/// One filter a node fails, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `status`, `availability`, `driver`, `constraint`, `cpu` or `memory`.
    pub filter: &'static str,
    pub detail: String,
}

fn failure(filter: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        filter,
        detail: detail.into(),
    }
}

/// Whether `node` may take new tasks at all, can run tasks of `driver` and meets
/// `constraints`: every failure.
pub fn placement_failures(
    node: &NodeRecord,
    constraints: &[Constraint],
    driver: Driver,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    match node.status {
        NodeStatus::Ready => {}
        NodeStatus::Down => failures.push(failure("status", "the node is down")),
        NodeStatus::Left => failures.push(failure("status", "the node has left the cluster")),
    }
    match node.availability {
        Availability::Active => {}
        Availability::Pause => {
            failures.push(failure("availability", "the node is paused (no new tasks)"))
        }
        Availability::Drain => failures.push(failure("availability", "the node is draining")),
    }
    if !runs(node, driver) {
        failures.push(failure("driver", "no Docker engine on this node"));
    }
    failures.extend(
        constraints
            .iter()
            .filter(|constraint| !holds(node, constraint))
            .map(|constraint| failure("constraint", unmet(node, constraint))),
    );
    failures
}

/// Whether `node` meets `constraint`.
pub fn holds(node: &NodeRecord, constraint: &Constraint) -> bool {
    let actual = attribute(node, &constraint.field);
    let equal = actual.as_deref() == Some(constraint.value.as_str());
    match constraint.op {
        ConstraintOp::Equal => equal,
        ConstraintOp::NotEqual => !equal,
    }
}

/// Whether every constraint holds on `node` and it can run tasks of `driver`.
pub fn meets(node: &NodeRecord, constraints: &[Constraint], driver: Driver) -> bool {
    runs(node, driver) && constraints.iter().all(|constraint| holds(node, constraint))
}

/// Whether `node` can run tasks of `driver`: every node runs processes; docker tasks need the
/// Docker engine the node reported when it joined.
pub fn runs(node: &NodeRecord, driver: Driver) -> bool {
    match driver {
        Driver::Process => true,
        Driver::Docker => node.resources.docker.is_some(),
    }
}

fn attribute(node: &NodeRecord, field: &ConstraintField) -> Option<String> {
    match field {
        ConstraintField::NodeId => Some(node.node_id.to_string()),
        ConstraintField::Hostname => Some(node.hostname.clone()),
        ConstraintField::Role => Some(
            match node.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }
            .to_string(),
        ),
        ConstraintField::Label(key) => node.labels.get(key).cloned(),
    }
}

fn unmet(node: &NodeRecord, constraint: &Constraint) -> String {
    let has = match (&constraint.field, attribute(node, &constraint.field)) {
        (ConstraintField::Label(key), None) => format!("the node has no {key} label"),
        (ConstraintField::Label(key), Some(value)) => format!("the node has {key}={value}"),
        (_, Some(value)) => format!("the node's is {value}"),
        (_, None) => "the node has none".to_string(),
    };
    format!("{constraint}: {has}")
}

/// What a node has left after `reserved` is taken, against what a task `needs`: every
/// shortfall.
pub fn resource_failures(
    node: &NodeRecord,
    reserved: Reservations,
    needs: Reservations,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    let cpus_milli = u64::from(node.resources.cpus) * 1000;
    let free_cpus = cpus_milli.saturating_sub(reserved.cpus_milli);
    if needs.cpus_milli > free_cpus {
        failures.push(failure(
            "cpu",
            format!(
                "needs {} CPUs, {} unreserved of {}",
                cpus(needs.cpus_milli),
                cpus(free_cpus),
                cpus(cpus_milli)
            ),
        ));
    }
    let free_memory = node
        .resources
        .memory_bytes
        .saturating_sub(reserved.memory_bytes);
    if needs.memory_bytes > free_memory {
        failures.push(failure(
            "memory",
            format!(
                "needs {} memory, {} unreserved of {}",
                bytes(needs.memory_bytes),
                bytes(free_memory),
                bytes(node.resources.memory_bytes)
            ),
        ));
    }
    failures
}

/// Whether a node with `reserved` taken can take a task that `needs`.
pub fn fits(node: &NodeRecord, reserved: Reservations, needs: Reservations) -> bool {
    let free_cpus = (u64::from(node.resources.cpus) * 1000).saturating_sub(reserved.cpus_milli);
    let free_memory = node
        .resources
        .memory_bytes
        .saturating_sub(reserved.memory_bytes);
    needs.cpus_milli <= free_cpus && needs.memory_bytes <= free_memory
}

/// `1500` thousandths as `1.5`.
pub fn cpus(milli: u64) -> String {
    let whole = milli / 1000;
    match milli % 1000 {
        0 => whole.to_string(),
        rest => format!("{whole}.{}", format!("{rest:03}").trim_end_matches('0')),
    }
}

/// Bytes as people read them: `64 GiB`, `23.5 GiB`, `512 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use symphony_consensus::Resources;

    use super::*;

    pub(crate) fn worker(id: u64) -> NodeRecord {
        NodeRecord {
            node_id: id,
            raft_node_id: None,
            role: NodeRole::Worker,
            hostname: format!("w{id}"),
            remote_addr: String::new(),
            raft_addr: None,
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            availability: Availability::Active,
            status: NodeStatus::Ready,
            resources: Resources {
                cpus: 4,
                memory_bytes: 8 << 30,
                docker: None,
            },
            agent_version: String::new(),
            joined_at_ms: 0,
            status_changed_at_ms: 0,
            demoted: false,
            gossip_addr: None,
            node_secret: None,
            certificate: None,
        }
    }

    #[test]
    fn every_failing_filter_is_named_with_its_shortfall() {
        let mut node = worker(1);
        node.availability = Availability::Drain;
        let constraints = vec![
            Constraint::parse("node.labels.zone==b").unwrap(),
            Constraint::parse("node.labels.disk==ssd").unwrap(),
            Constraint::parse("node.role==worker").unwrap(),
        ];
        let failures = placement_failures(&node, &constraints, Driver::Process);
        let filters: Vec<&str> = failures.iter().map(|f| f.filter).collect();
        assert_eq!(filters, ["availability", "constraint", "constraint"]);
        assert_eq!(
            failures[1].detail,
            "node.labels.zone==b: the node has zone=a"
        );
        assert_eq!(
            failures[2].detail,
            "node.labels.disk==ssd: the node has no disk label"
        );

        let needs = Reservations {
            cpus_milli: 500,
            memory_bytes: 64 << 30,
        };
        let reserved = Reservations {
            cpus_milli: 3_800,
            memory_bytes: 512 << 20,
        };
        let short = resource_failures(&node, reserved, needs);
        assert_eq!(short.len(), 2);
        assert_eq!(short[0].detail, "needs 0.5 CPUs, 0.2 unreserved of 4");
        assert_eq!(
            short[1].detail,
            "needs 64 GiB memory, 7.5 GiB unreserved of 8 GiB"
        );
        assert!(!fits(&node, reserved, needs));
        assert!(fits(
            &node,
            Reservations::default(),
            Reservations::default()
        ));
    }

    #[test]
    fn docker_tasks_go_only_to_nodes_with_an_engine() {
        let mut node = worker(1);
        let failures = placement_failures(&node, &[], Driver::Docker);
        assert_eq!(
            failures,
            [Failure {
                filter: "driver",
                detail: "no Docker engine on this node".into()
            }]
        );
        assert!(!meets(&node, &[], Driver::Docker));
        assert!(meets(&node, &[], Driver::Process));
        node.resources.docker = Some("20.10.24".into());
        assert!(placement_failures(&node, &[], Driver::Docker).is_empty());
        assert!(meets(&node, &[], Driver::Docker));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(64 << 30), "64 GiB");
        assert_eq!(bytes((23 << 30) + (512 << 20)), "23.5 GiB");
        assert_eq!(cpus(2000), "2");
        assert_eq!(cpus(1250), "1.25");
    }
}

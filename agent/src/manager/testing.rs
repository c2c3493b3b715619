//! Building cluster states for the decisions' tests, through the same commands the log
//! applies.

use std::collections::BTreeMap;

use symphony_consensus::state::Changes;
use symphony_consensus::{
    Availability, ClusterInfo, ClusterState, Command, CommandResult, Driver, NewTask, NodeCommand,
    NodeJoin, NodeRecord, NodeRole, NodeStatus, OnIsolation, Reservations, Resources,
    RestartPolicy, ServiceCommand, ServiceMode, ServiceSpec, TaskCommand, TaskOutcome, TaskReport,
    TaskSpec, TaskState,
};

pub const MANAGER: u64 = 1;

/// A cluster whose first node is manager 1, plus `workers` workers numbered from 10.
pub fn cluster(workers: u64) -> ClusterState {
    let mut state = ClusterState::default();
    let manager = NodeRecord {
        node_id: MANAGER,
        raft_node_id: Some(100),
        role: NodeRole::Manager,
        hostname: "m1".into(),
        remote_addr: String::new(),
        raft_addr: None,
        labels: BTreeMap::new(),
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
    };
    let bootstrap = Command::Bootstrap {
        cluster: Box::new(ClusterInfo {
            cluster_id: "c".into(),
            created_at_ms: 0,
            manager_token: "m".into(),
            worker_token: "w".into(),
            manager_secret: "s".into(),
            gossip_keys: Default::default(),
            ca: None,
            cert_lifetime_s: None,
            removed_nodes: Default::default(),
            ca_rotation: None,
        }),
        node: Box::new(manager),
    };
    apply(&mut state, bootstrap);
    for id in 10..10 + workers {
        add_worker(&mut state, id);
    }
    state
}

pub fn add_worker(state: &mut ClusterState, id: u64) {
    apply(
        state,
        Command::Node(Box::new(NodeCommand::Join {
            node: NodeJoin {
                node_id: id,
                raft_node_id: None,
                role: NodeRole::Worker,
                hostname: format!("w{id}"),
                remote_addr: String::new(),
                raft_addr: None,
                gossip_addr: None,
                resources: Resources {
                    cpus: 4,
                    memory_bytes: 8 << 30,
                    docker: None,
                },
                agent_version: String::new(),
                labels: BTreeMap::new(),
                node_secret: Some("s".into()),
                certificate: None,
            },
            at_ms: 0,
        })),
    );
}

pub fn set_availability(state: &mut ClusterState, id: u64, availability: Availability) {
    apply(
        state,
        Command::Node(Box::new(NodeCommand::Update {
            node_id: id,
            availability: Some(availability),
            label_add: BTreeMap::new(),
            label_rm: Vec::new(),
        })),
    );
}

pub fn set_status(state: &mut ClusterState, id: u64, status: NodeStatus) {
    apply(
        state,
        Command::Node(Box::new(NodeCommand::SetStatus {
            node_id: id,
            status,
            at_ms: 1,
        })),
    );
}

pub fn spec(mode: ServiceMode) -> ServiceSpec {
    ServiceSpec {
        task: TaskSpec {
            driver: Driver::Process,
            command: vec!["sleep".into(), "infinity".into()],
            env: BTreeMap::new(),
            workdir: None,
            reservations: Reservations::default(),
            on_isolation: OnIsolation::Keep,
            stop_grace_ms: 1_000,
            health: None,
            image: None,
        },
        mode,
        constraints: Vec::new(),
        restart: RestartPolicy {
            delay_ms: 0,
            ..RestartPolicy::default()
        },
        update: symphony_consensus::UpdateConfig::default(),
        rollback: None,
        rebalance: symphony_consensus::RebalanceMode::Manual,
    }
}

pub fn create_service(state: &mut ClusterState, name: &str, spec: ServiceSpec) {
    apply(
        state,
        Command::Service(Box::new(ServiceCommand::Create {
            name: name.into(),
            spec,
            at_ms: 0,
        })),
    );
}

pub fn create_tasks(state: &mut ClusterState, tasks: Vec<NewTask>) -> Vec<u64> {
    tasks_result(state, TaskCommand::Create { tasks, at_ms: 5 }).changed
}

pub fn place(state: &mut ClusterState, placements: Vec<(u64, u64)>) {
    tasks_result(
        state,
        TaskCommand::Schedule {
            placements,
            pending: Vec::new(),
            at_ms: 6,
        },
    );
}

/// The worker a task is placed on reports `state` (with `exit_code`).
pub fn report(state: &mut ClusterState, task_id: u64, observed: TaskState, exit_code: Option<i32>) {
    let node_id = state.tasks[&task_id]
        .node_id
        .unwrap_or_else(|| panic!("task {task_id} is not placed"));
    tasks_result(
        state,
        TaskCommand::Report {
            node_id,
            reports: vec![TaskReport {
                task_id,
                state: observed,
                exit_code,
                error: None,
                health: None,
            }],
            at_ms: 7,
        },
    );
}

pub fn tasks_result(state: &mut ClusterState, command: TaskCommand) -> TaskOutcome {
    match apply(state, Command::Task(command)) {
        CommandResult::Tasks(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

pub fn apply(state: &mut ClusterState, command: Command) -> CommandResult {
    let result = state.apply(&command, &mut Changes::default());
    if let CommandResult::Rejected { reason } = &result {
        panic!("{command} was rejected: {reason}");
    }
    result
}

//! Properties of [`ClusterState::apply`] over arbitrary sequences of commands, checked with
//! proptest: every replica applies the same log, so apply must be a function of the state and
//! the command alone, must never panic, and whatever the store keeps of the state (a snapshot,
//! or the rows each apply touched) must bring a replica back to exactly that state, from which
//! the rest of the log then applies as it does on the replica that never stopped.
//!
//! The commands are generated over small spaces of ids, keys and names, so that they meet: a
//! put after a put of the same key, a compare-and-set on a revision that exists, a report on a
//! task that was scheduled on the reporting node, an update of a service that exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::store::SnapshotPayload;

const NODES: &[u64] = &[1, 2, 3, 4];
const KEYS: &[&str] = &["a", "ab", "b", "c/d"];
/// Two valid names, and one a service may not have.
const SERVICES: &[&str] = &["web", "db"];
const BAD_SERVICE: &str = "-bad";
const TASKS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];
const LABELS: &[&str] = &["zone", "disk"];

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..4)
}

fn small_text() -> impl Strategy<Value = String> {
    select(&["", "x", "node-a", "/srv", "sleep"][..]).prop_map(str::to_string)
}

fn at_ms() -> impl Strategy<Value = u64> {
    0u64..1_000
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(select(LABELS).prop_map(str::to_string), small_text(), 0..2)
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        0u32..4,
        select(&[0u64, 1 << 30][..]),
        prop::option::of(Just("27.0".to_string())),
    )
        .prop_map(|(cpus, memory_bytes, docker)| Resources {
            cpus,
            memory_bytes,
            docker,
        })
}

fn role() -> impl Strategy<Value = NodeRole> {
    prop_oneof![Just(NodeRole::Manager), Just(NodeRole::Worker)]
}

fn node_record() -> impl Strategy<Value = NodeRecord> {
    (select(NODES), role(), labels()).prop_map(|(node_id, role, labels)| NodeRecord {
        node_id,
        raft_node_id: (role == NodeRole::Manager).then_some(node_id + 100),
        role,
        hostname: format!("host-{node_id}"),
        remote_addr: "127.0.0.1:27242".into(),
        raft_addr: Some("127.0.0.1:15760".into()),
        labels,
        availability: Availability::Active,
        status: NodeStatus::Ready,
        resources: Resources::default(),
        agent_version: "0.1.0".into(),
        joined_at_ms: 1,
        status_changed_at_ms: 1,
        demoted: false,
        gossip_addr: None,
        node_secret: None,
        certificate: None,
    })
}

fn cluster_info() -> impl Strategy<Value = ClusterInfo> {
    select(&["c1", "c2"][..]).prop_map(|id| ClusterInfo {
        cluster_id: id.into(),
        created_at_ms: 1,
        manager_token: "m".into(),
        worker_token: "w".into(),
        manager_secret: "s".into(),
        gossip_keys: GossipKeyring::first(KeySecret([7; 32]), 1),
        ca: None,
        cert_lifetime_s: None,
        removed_nodes: Default::default(),
        ca_rotation: None,
    })
}

fn bootstrap() -> impl Strategy<Value = Command> {
    (cluster_info(), node_record()).prop_map(|(cluster, node)| Command::Bootstrap {
        cluster: Box::new(cluster),
        node: Box::new(node),
    })
}

fn cluster_command() -> impl Strategy<Value = ClusterCommand> {
    prop_oneof![
        (role(), small_text())
            .prop_map(|(role, token)| ClusterCommand::RotateToken { role, token }),
        (any::<u8>(), at_ms()).prop_map(|(byte, at_ms)| ClusterCommand::GossipKey(
            GossipKeyCommand::Install {
                secret: KeySecret([byte; 32]),
                at_ms
            }
        )),
        (0u32..5).prop_map(|id| ClusterCommand::GossipKey(GossipKeyCommand::Use { id })),
        (0u32..5).prop_map(|id| ClusterCommand::GossipKey(GossipKeyCommand::Remove { id })),
        // Below, inside and above the allowed range.
        select(&[1u64, 30, 3600, u64::MAX][..])
            .prop_map(|seconds| ClusterCommand::SetCertLifetime { seconds }),
    ]
}

fn node_certificate() -> impl Strategy<Value = NodeCertificate> {
    (select(&["k1", "k2"][..]), at_ms()).prop_map(|(key, not_after_ms)| NodeCertificate {
        key_digest: key.into(),
        not_after_ms,
        root_digest: "r".into(),
    })
}

fn node_join() -> impl Strategy<Value = NodeJoin> {
    (
        select(NODES),
        role(),
        prop::option::of(select(&[101u64, 102, 200][..])),
        resources(),
        labels(),
        prop::option::of(small_text()),
        prop::option::of(node_certificate().prop_map(Box::new)),
    )
        .prop_map(
            |(node_id, role, raft_node_id, resources, labels, node_secret, certificate)| NodeJoin {
                node_id,
                raft_node_id,
                role,
                hostname: format!("host-{node_id}"),
                remote_addr: "127.0.0.1:1".into(),
                raft_addr: raft_node_id.map(|_| "127.0.0.1:2".to_string()),
                gossip_addr: Some("127.0.0.1:1".into()),
                resources,
                agent_version: "0.1.0".into(),
                labels,
                node_secret,
                certificate,
            },
        )
}

fn node_command() -> impl Strategy<Value = NodeCommand> {
    let status = prop_oneof![
        Just(NodeStatus::Ready),
        Just(NodeStatus::Down),
        Just(NodeStatus::Left)
    ];
    let availability = prop_oneof![
        Just(Availability::Active),
        Just(Availability::Pause),
        Just(Availability::Drain)
    ];
    prop_oneof![
        3 => (node_join(), at_ms()).prop_map(|(node, at_ms)| NodeCommand::Join { node, at_ms }),
        2 => (select(NODES), status, at_ms()).prop_map(|(node_id, status, at_ms)| {
            NodeCommand::SetStatus {
                node_id,
                status,
                at_ms,
            }
        }),
        2 => (
            select(NODES),
            prop::option::of(availability),
            labels(),
            prop::collection::vec(select(LABELS).prop_map(str::to_string), 0..2),
        )
            .prop_map(|(node_id, availability, label_add, label_rm)| {
                NodeCommand::Update {
                    node_id,
                    availability,
                    label_add,
                    label_rm,
                }
            }),
        1 => (select(NODES), any::<bool>())
            .prop_map(|(node_id, demoted)| NodeCommand::SetDemoted { node_id, demoted }),
        1 => (select(NODES), resources(), small_text()).prop_map(
            |(node_id, resources, agent_version)| NodeCommand::SetResources {
                node_id,
                resources,
                agent_version,
            }
        ),
        1 => select(NODES).prop_map(|node_id| NodeCommand::Remove { node_id }),
        1 => (select(NODES), node_certificate()).prop_map(|(node_id, certificate)| {
            NodeCommand::SetCertificate { node_id, certificate }
        }),
    ]
}

fn kv_command() -> impl Strategy<Value = KvCommand> {
    let key = || select(KEYS).prop_map(str::to_string);
    let if_revision = || prop::option::of(0u64..8);
    prop_oneof![
        4 => (key(), small_bytes(), if_revision()).prop_map(|(key, value, if_revision)| {
            KvCommand::Put {
                key,
                value,
                if_revision,
            }
        }),
        2 => (key(), if_revision()).prop_map(|(key, if_revision)| KvCommand::Delete { key, if_revision }),
        // At the minimum kept, long sequences of writes compact the history.
        1 => select(&[0u64, 100, 10_000][..]).prop_map(|revisions| KvCommand::KeepHistory { revisions }),
    ]
}

/// Mostly a program that exists, sometimes an empty or odd one.
fn command_line() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => Just(vec!["sleep".to_string(), "1".to_string()]),
        1 => prop::collection::vec(small_text(), 0..3),
    ]
}

fn health() -> impl Strategy<Value = HealthCheck> {
    (command_line(), 0u64..3, 1u64..3).prop_map(|(command, interval_ms, timeout_ms)| HealthCheck {
        command,
        interval_ms,
        timeout_ms,
        retries: 3,
        start_period_ms: 0,
    })
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        prop_oneof![Just(Driver::Process), Just(Driver::Docker)],
        command_line(),
        prop::collection::btree_map(
            select(&["A", "", "B=C"][..]).prop_map(str::to_string),
            small_text(),
            0..2,
        ),
        prop::option::of(small_text()),
        prop::option::of(health()),
        prop::option::of(small_text()),
        0u64..3,
    )
        .prop_map(
            |(driver, command, env, workdir, health, image, cpus)| TaskSpec {
                driver,
                command,
                env,
                workdir,
                reservations: Reservations {
                    cpus_milli: cpus * 500,
                    memory_bytes: 0,
                },
                on_isolation: OnIsolation::Keep,
                stop_grace_ms: 1_000,
                health,
                image,
            },
        )
}

/// Mostly valid specs (a process running `sleep`), sometimes whatever the fields make.
fn service_spec() -> impl Strategy<Value = ServiceSpec> {
    let valid_task = Just(TaskSpec {
        driver: Driver::Process,
        command: vec!["sleep".into()],
        env: BTreeMap::new(),
        workdir: None,
        reservations: Reservations::default(),
        on_isolation: OnIsolation::Keep,
        stop_grace_ms: 1_000,
        health: None,
        image: None,
    });
    (
        prop_oneof![5 => valid_task, 1 => task_spec()],
        prop_oneof![
            3 => (0u32..4).prop_map(|replicas| ServiceMode::Replicated { replicas }),
            1 => Just(ServiceMode::Global)
        ],
        prop::option::weighted(0.2, 0u32..3),
        prop::option::of(Just(UpdateConfig {
            parallelism: 2,
            ..UpdateConfig::default()
        })),
        prop_oneof![Just(RebalanceMode::Manual), Just(RebalanceMode::Auto)],
        constraints(),
    )
        .prop_map(
            |(task, mode, max_attempts, rollback, rebalance, constraints)| ServiceSpec {
                task,
                mode,
                constraints,
                restart: RestartPolicy {
                    max_attempts,
                    ..RestartPolicy::default()
                },
                update: UpdateConfig::default(),
                rollback,
                rebalance,
            },
        )
}

fn constraints() -> impl Strategy<Value = Vec<Constraint>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just(ConstraintField::Role),
                Just(ConstraintField::Label("zone".into()))
            ],
            prop_oneof![Just(ConstraintOp::Equal), Just(ConstraintOp::NotEqual)],
            small_text(),
        )
            .prop_map(|(field, op, value)| Constraint { field, op, value }),
        0..2,
    )
}

fn update_patch() -> impl Strategy<Value = UpdatePatch> {
    (
        prop::option::of(0u32..3),
        prop::option::of(select(&[0u32, 500, 2000][..])),
    )
        .prop_map(|(parallelism, max_failure_permille)| UpdatePatch {
            parallelism,
            max_failure_permille,
            ..UpdatePatch::default()
        })
}

fn service_patch() -> impl Strategy<Value = ServicePatch> {
    (
        (
            prop::option::weighted(0.2, command_line()),
            prop::collection::btree_map(
                select(&["A", "B"][..]).prop_map(str::to_string),
                small_text(),
                0..2,
            ),
            prop::collection::vec(select(&["A", "B"][..]).prop_map(str::to_string), 0..2),
            prop::option::weighted(
                0.2,
                prop::option::of(select(&["/srv", "srv"][..]).prop_map(str::to_string)),
            ),
            prop::option::weighted(0.05, small_text()),
            prop::option::weighted(0.3, 0u32..4),
            constraints(),
            constraints(),
        ),
        (
            prop::option::weighted(0.2, prop::option::of(0u32..2)),
            prop::option::weighted(0.2, prop::option::of(0u64..2)),
            prop::option::weighted(0.3, prop::option::of(health())),
            prop::option::of(prop_oneof![
                Just(RebalanceMode::Manual),
                Just(RebalanceMode::Auto)
            ]),
            update_patch(),
            update_patch(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (
                    command,
                    env_set,
                    env_unset,
                    workdir,
                    image,
                    replicas,
                    constraints_add,
                    constraints_remove,
                ),
                (
                    restart_max_attempts,
                    restart_window_ms,
                    health,
                    rebalance,
                    update,
                    rollback,
                    force,
                ),
            )| ServicePatch {
                command,
                env_set,
                env_unset,
                workdir,
                image,
                replicas,
                constraints_add,
                constraints_remove,
                reserve_cpus_milli: None,
                reserve_memory_bytes: None,
                restart_condition: None,
                restart_delay_ms: None,
                restart_max_attempts,
                restart_window_ms,
                on_isolation: None,
                stop_grace_ms: None,
                health,
                rebalance,
                update,
                rollback,
                force,
            },
        )
}

fn service_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(SERVICES).prop_map(str::to_string),
        1 => Just(BAD_SERVICE.to_string()),
    ]
}

fn service_command() -> impl Strategy<Value = ServiceCommand> {
    let name = service_name;
    let update_state = prop_oneof![
        Just(UpdateState::Updating),
        Just(UpdateState::Paused),
        Just(UpdateState::Completed)
    ];
    prop_oneof![
        3 => (name(), service_spec(), at_ms())
            .prop_map(|(name, spec, at_ms)| ServiceCommand::Create { name, spec, at_ms }),
        1 => (name(), select(&[0u32, 1, 3, 2_000_000][..]), at_ms()).prop_map(
            |(name, replicas, at_ms)| ServiceCommand::Scale {
                name,
                replicas,
                at_ms
            }
        ),
        2 => (name(), service_patch(), at_ms())
            .prop_map(|(name, patch, at_ms)| ServiceCommand::Update { name, patch, at_ms }),
        1 => (name(), prop::option::of(small_text()), at_ms()).prop_map(|(name, reason, at_ms)| {
            ServiceCommand::Rollback {
                name,
                reason,
                at_ms,
            }
        }),
        1 => (name(), 0u64..4, update_state, prop::option::of(small_text()), at_ms()).prop_map(
            |(name, template_version, state, message, at_ms)| ServiceCommand::SetUpdateState {
                name,
                template_version,
                state,
                message,
                at_ms,
            }
        ),
        1 => (name(), at_ms()).prop_map(|(name, at_ms)| ServiceCommand::Rebalance { name, at_ms }),
        1 => name().prop_map(|name| ServiceCommand::Remove { name }),
    ]
}

fn task_state() -> impl Strategy<Value = TaskState> {
    select(
        &[
            TaskState::New,
            TaskState::Pending,
            TaskState::Assigned,
            TaskState::Accepted,
            TaskState::Starting,
            TaskState::Running,
            TaskState::Complete,
            TaskState::Shutdown,
            TaskState::Failed,
            TaskState::Rejected,
        ][..],
    )
}

fn new_task() -> impl Strategy<Value = NewTask> {
    (
        service_name(),
        prop::option::of(0u32..3),
        prop::option::of(select(NODES)),
        0u64..3,
        task_spec(),
        0u32..2,
    )
        .prop_map(
            |(service, slot, node_id, template_version, spec, attempt)| NewTask {
                service,
                slot,
                node_id,
                template_version,
                spec,
                attempt,
            },
        )
}

fn task_command() -> impl Strategy<Value = TaskCommand> {
    let health = prop::option::of(prop_oneof![
        Just(Health::Starting),
        Just(Health::Healthy),
        Just(Health::Unhealthy)
    ]);
    let report = (
        select(TASKS),
        task_state(),
        prop::option::of(-1i32..2),
        prop::option::of(small_text()),
        health,
    )
        .prop_map(|(task_id, state, exit_code, error, health)| TaskReport {
            task_id,
            state,
            exit_code,
            error,
            health,
        });
    let desired = prop_oneof![Just(DesiredState::Running), Just(DesiredState::Shutdown)];
    prop_oneof![
        2 => (prop::collection::vec(new_task(), 0..3), at_ms())
            .prop_map(|(tasks, at_ms)| TaskCommand::Create { tasks, at_ms }),
        1 => prop::collection::vec((select(TASKS), desired), 0..3)
            .prop_map(|changes| TaskCommand::SetDesired { changes }),
        2 => (
            prop::collection::vec((select(TASKS), select(NODES)), 0..3),
            prop::collection::vec((select(TASKS), small_text()), 0..2),
            at_ms(),
        )
            .prop_map(|(placements, pending, at_ms)| TaskCommand::Schedule {
                placements,
                pending,
                at_ms
            }),
        3 => (select(NODES), prop::collection::vec(report, 0..3), at_ms()).prop_map(
            |(node_id, reports, at_ms)| TaskCommand::Report {
                node_id,
                reports,
                at_ms
            }
        ),
        1 => prop::collection::vec(select(TASKS), 0..3).prop_map(|ids| TaskCommand::Delete { ids }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => bootstrap(),
        1 => cluster_command().prop_map(Command::from),
        3 => node_command().prop_map(Command::from),
        5 => kv_command().prop_map(Command::Kv),
        3 => service_command().prop_map(Command::from),
        4 => task_command().prop_map(Command::Task),
    ]
}

/// More puts than the history keeps at its smallest, so that it compacts.
fn kv_burst() -> impl Strategy<Value = Vec<Command>> {
    (
        prop::collection::vec(select(KEYS), 100..140),
        prop::option::weighted(0.5, Just(kv_history::MIN_KEEP)),
    )
        .prop_map(|(keys, keep)| {
            let keep = keep.map(|revisions| Command::Kv(KvCommand::KeepHistory { revisions }));
            let puts = keys.into_iter().map(|key| {
                Command::Kv(KvCommand::Put {
                    key: key.to_string(),
                    value: key.as_bytes().to_vec(),
                    if_revision: None,
                })
            });
            keep.into_iter().chain(puts).collect()
        })
}

/// A task's life as the scheduler and its worker tell it: placed on a node, then reported by
/// that node (or, sometimes, by another) as it moves on.
fn task_flow() -> impl Strategy<Value = Vec<Command>> {
    (
        select(TASKS),
        select(NODES),
        prop::option::weighted(0.2, select(NODES)),
        prop::collection::vec(task_state(), 1..4),
        at_ms(),
    )
        .prop_map(|(task_id, node, reporter, mut states, at_ms)| {
            // In order, as a worker reports them (a repeated state is a late report).
            states.sort_unstable();
            let schedule = Command::Task(TaskCommand::Schedule {
                placements: vec![(task_id, node)],
                pending: Vec::new(),
                at_ms,
            });
            let reports = states.into_iter().map(move |state| {
                Command::Task(TaskCommand::Report {
                    node_id: reporter.unwrap_or(node),
                    reports: vec![TaskReport {
                        task_id,
                        state,
                        exit_code: None,
                        error: None,
                        health: None,
                    }],
                    at_ms,
                })
            });
            std::iter::once(schedule).chain(reports).collect()
        })
}

/// What most clusters hold early: the nodes joined and the services created.
fn setup() -> impl Strategy<Value = Vec<Command>> {
    (
        prop::collection::vec(node_join(), 0..4),
        prop::collection::vec((service_spec(), 1u32..4), 2),
    )
        .prop_map(|(joins, services)| {
            let joins = joins
                .into_iter()
                .map(|node| Command::Node(Box::new(NodeCommand::Join { node, at_ms: 1 })));
            let services = SERVICES
                .iter()
                .zip(services)
                .flat_map(|(name, (spec, tasks))| {
                    let create = Command::Service(Box::new(ServiceCommand::Create {
                        name: name.to_string(),
                        spec: spec.clone(),
                        at_ms: 1,
                    }));
                    let tasks = Command::Task(TaskCommand::Create {
                        tasks: (0..tasks)
                            .map(|slot| NewTask {
                                service: name.to_string(),
                                slot: Some(slot),
                                node_id: None,
                                template_version: 1,
                                spec: spec.task.clone(),
                                attempt: 0,
                            })
                            .collect(),
                        at_ms: 1,
                    });
                    [create, tasks]
                });
            joins.chain(services).collect()
        })
}

/// A log: most start with the bootstrap, as every real one does, and a setup; some do not,
/// and their commands must be refused without harm.
fn log() -> impl Strategy<Value = Vec<Command>> {
    let step = prop_oneof![
        40 => command().prop_map(|command| vec![command]),
        6 => task_flow(),
        1 => kv_burst(),
    ];
    (
        prop::option::weighted(0.9, bootstrap()),
        prop::option::weighted(0.8, setup()),
        prop::collection::vec(step, 0..60),
    )
        .prop_map(|(first, setup, steps)| {
            first
                .into_iter()
                .chain(setup.into_iter().flatten())
                .chain(steps.into_iter().flatten())
                .collect()
        })
}

/// What the store holds of a state: its rows by table, kept as each apply's [`Changes`] say.
#[derive(Debug, Default)]
struct Rows(BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>);

impl Rows {
    /// Writes the rows `changes` names as `state` has them now (a row it no longer has goes).
    fn write(&mut self, state: &ClusterState, changes: &Changes) {
        for table in state.tables() {
            let rows = self.0.entry(table.name()).or_default();
            for key in changes.of(table.name()) {
                match table.encode_row(key).expect("a row encodes") {
                    Some(row) => rows.insert(key.clone(), row),
                    None => rows.remove(key),
                };
            }
        }
    }

    /// Every row of `state` (what installing a snapshot writes).
    fn everything(state: &ClusterState) -> Rows {
        let mut rows = Rows::default();
        for table in state.tables() {
            let kept = rows.0.entry(table.name()).or_default();
            for key in table.row_keys() {
                if let Some(row) = table.encode_row(&key).expect("a row encodes") {
                    kept.insert(key, row);
                }
            }
        }
        rows
    }

    /// The state a replica loads from these rows at start-up.
    fn load(&self) -> ClusterState {
        let mut state = ClusterState::default();
        for table in state.tables_mut() {
            for (key, row) in self.0.get(table.name()).into_iter().flatten() {
                table.load_row(key, row).expect("a kept row loads");
            }
        }
        state
    }
}

/// How often (in commands) the slower checks run besides at the generated cut point.
const CHECK_EVERY: usize = 16;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    })]

    /// Two replicas applying the same log agree on every result and on the state, and every
    /// command reads back from the log's encoding as the command that was proposed.
    #[test]
    fn apply_is_deterministic(log in log()) {
        let mut one = ClusterState::default();
        let mut two = ClusterState::default();
        for command in &log {
            let logged: Command = crate::codec::decode(&crate::codec::encode(command).unwrap()).unwrap();
            prop_assert_eq!(&logged, command, "the command changed in the log's encoding");
            let mut changes_one = Changes::default();
            let mut changes_two = Changes::default();
            let first = one.apply(command, &mut changes_one);
            let second = two.apply(&logged, &mut changes_two);
            prop_assert_eq!(first, second);
            prop_assert_eq!(changes_one, changes_two);
        }
        prop_assert_eq!(one, two);
    }

    /// At any point of the log, a snapshot of the state decodes to an equal state, and a
    /// replica that installs it and applies the rest of the log agrees with the one that
    /// applied all of it, result by result.
    #[test]
    fn snapshots_round_trip_at_any_point(log in log(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(log.len() + 1);
        let mut state = ClusterState::default();
        let mut installed = None;
        for (at, command) in log.iter().enumerate() {
            if at % CHECK_EVERY == 0 || at == cut {
                let decoded = SnapshotPayload::decode(&SnapshotPayload::encode(&state).unwrap()).unwrap();
                prop_assert_eq!(&decoded, &state, "at command {}", at);
                if at == cut {
                    installed = Some(decoded);
                }
            }
            let result = state.apply(command, &mut Changes::default());
            if let Some(installed) = installed.as_mut() {
                prop_assert_eq!(installed.apply(command, &mut Changes::default()), result);
            }
        }
        let decoded = SnapshotPayload::decode(&SnapshotPayload::encode(&state).unwrap()).unwrap();
        prop_assert_eq!(&decoded, &state);
        prop_assert_eq!(installed.unwrap_or(decoded), state);
    }

    /// The rows each apply marks as changed are all the store writes; a replica restarted from
    /// them (or from every row, as after a snapshot install) holds the state it had, and goes
    /// on from it as the replica that never stopped.
    #[test]
    fn stored_rows_bring_the_state_back(log in log(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(log.len() + 1);
        let mut state = ClusterState::default();
        let mut rows = Rows::default();
        let mut restarted = None;
        for (at, command) in log.iter().enumerate() {
            if at % CHECK_EVERY == 0 || at == cut {
                let loaded = rows.load();
                prop_assert_eq!(&loaded, &state, "before command {}: {}", at, command);
                prop_assert_eq!(&Rows::everything(&state).load(), &state);
                if at == cut {
                    restarted = Some(loaded);
                }
            }
            let mut changes = Changes::default();
            let result = state.apply(command, &mut changes);
            rows.write(&state, &changes);
            if let Some(restarted) = restarted.as_mut() {
                prop_assert_eq!(restarted.apply(command, &mut Changes::default()), result);
            }
        }
        let loaded = rows.load();
        prop_assert_eq!(&loaded, &state);
        prop_assert_eq!(&Rows::everything(&state).load(), &state);
        prop_assert_eq!(restarted.unwrap_or(loaded), state);
    }
}

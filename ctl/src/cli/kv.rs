//! `symphony-ctl kv`: put, get (now or as of a revision), ls, rm, watch and the history kept.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{CliError, ReadArgs, Table, emit};
use crate::proto::{KvEntry, KvEvent, Response};
use crate::{Client, ClientError};

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Set KEY to VALUE; prints the new cluster revision.
    Put {
        key: String,
        value: String,
        /// Only write if the key's revision is N (0: only if the key does not exist).
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// Print the value of KEY.
    Get {
        key: String,
        /// The value as of revision N (one still kept: see `kv history`), not now.
        #[arg(long, value_name = "N")]
        revision: Option<u64>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List the keys that start with PREFIX (all keys without one).
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Delete KEY.
    Rm {
        key: String,
        /// Only delete if the key's revision is N.
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// Print every put and delete of the keys starting with PREFIX (or of one KEY), in
    /// revision order, as they happen, until interrupted. Served by the manager whose socket
    /// this is, from its replica.
    Watch {
        /// A key, or the start of keys ("" for every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Start with the changes of revision N (resume with the last revision seen + 1);
        /// default: the changes from now on.
        #[arg(long, value_name = "N")]
        from_revision: Option<u64>,
    },
    /// How much history is kept for `kv watch` and `kv get --revision`; with --keep, keep the
    /// last N revisions from now on.
    History {
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
    },
}

pub async fn run(client: &Client, json: bool, command: KvCommand) -> Result<(), CliError> {
    match command {
        KvCommand::Put {
            key,
            value,
            if_revision,
        } => {
            let result = client
                .kv_put(key.clone(), value.into_bytes(), if_revision)
                .await
                .map_err(explain_compare)?;
            emit(
                json,
                json!({"key": key, "revision": result.revision}),
                || format!("OK revision {}\n", result.revision),
            );
        }
        KvCommand::Get {
            key,
            revision,
            read,
        } => {
            let entry = match revision {
                None => client.kv_get(key.clone(), read.consistency()).await?,
                Some(revision) => {
                    client
                        .kv_get_at(key.clone(), revision, read.consistency())
                        .await?
                }
            };
            match entry {
                Some(entry) => emit(json, entry_json(&entry), || {
                    format!("{}\n", String::from_utf8_lossy(&entry.value))
                }),
                None => {
                    let when = revision.map_or(String::new(), |r| format!(" at revision {r}"));
                    return Err(CliError::Failed(format!(
                        "key '{key}' does not exist{when}"
                    )));
                }
            }
        }
        KvCommand::Ls { prefix, read } => {
            let listing = client.kv_list(prefix, read.consistency()).await?;
            emit(
                json,
                json!({
                    "revision": listing.revision,
                    "entries": listing.entries.iter().map(entry_json).collect::<Vec<_>>(),
                }),
                || {
                    let mut table = Table::new(["KEY", "REVISION", "VERSION", "VALUE"]);
                    for entry in &listing.entries {
                        table.row([
                            entry.key.clone(),
                            entry.mod_revision.to_string(),
                            entry.version.to_string(),
                            String::from_utf8_lossy(&entry.value).into_owned(),
                        ]);
                    }
                    table.render()
                },
            );
        }
        KvCommand::Rm { key, if_revision } => {
            let result = client
                .kv_delete(key.clone(), if_revision)
                .await
                .map_err(explain_compare)?;
            if !result.deleted && !json {
                return Err(CliError::Failed(format!("key '{key}' does not exist")));
            }
            emit(
                json,
                json!({"key": key, "deleted": result.deleted, "revision": result.revision}),
                || format!("OK revision {}\n", result.revision),
            );
        }
        KvCommand::Watch {
            prefix,
            from_revision,
        } => watch(client, json, prefix, from_revision).await?,
        KvCommand::History { keep } => {
            let info = client.kv_history(keep).await?;
            emit(
                json,
                json!({
                    "keep": info.keep,
                    "max_bytes": info.max_bytes,
                    "oldest": info.oldest,
                    "revision": info.revision,
                    "kept": info.kept,
                }),
                || {
                    format!(
                        "keeps the last {} revisions (and at most {} MiB of keys and values); {} changes kept, revisions {} to {}\n",
                        info.keep,
                        info.max_bytes / (1024 * 1024),
                        info.kept,
                        info.oldest,
                        info.revision
                    )
                },
            );
        }
    }
    Ok(())
}

async fn watch(
    client: &Client,
    json: bool,
    prefix: String,
    from_revision: Option<u64>,
) -> Result<(), CliError> {
    let mut stream = client.kv_watch(prefix, from_revision).await?;
    while let Some(item) = stream.next().await {
        match item.map_err(ClientError::from)? {
            Response::KvEvents(events) => {
                for event in &events {
                    if json {
                        println!("{}", event_json(event));
                    } else {
                        println!("{}", event_line(event));
                    }
                }
            }
            other => {
                return Err(CliError::Failed(format!(
                    "the agent sent a {} answer in a kv watch",
                    other.kind()
                )));
            }
        }
    }
    Ok(())
}

/// `REVISION  PUT|DELETE  KEY  VALUE`.
fn event_line(event: &KvEvent) -> String {
    match &event.entry {
        Some(entry) => format!(
            "{:>8}  PUT     {}  {}",
            event.revision,
            event.key,
            String::from_utf8_lossy(&entry.value)
        ),
        None => format!("{:>8}  DELETE  {}", event.revision, event.key),
    }
}

fn event_json(event: &KvEvent) -> Value {
    match &event.entry {
        Some(entry) => json!({
            "revision": event.revision,
            "type": "put",
            "key": event.key,
            "value": String::from_utf8_lossy(&entry.value),
            "create_revision": entry.create_revision,
            "mod_revision": entry.mod_revision,
            "version": entry.version,
        }),
        None => json!({"revision": event.revision, "type": "delete", "key": event.key}),
    }
}

fn explain_compare(error: ClientError) -> CliError {
    match error.remote() {
        // The agent's sentence names the key and both revisions.
        Some(remote) if remote.compare.is_some() => CliError::Failed(remote.message.clone()),
        _ => CliError::Client(error),
    }
}

fn entry_json(entry: &KvEntry) -> Value {
    json!({
        "key": entry.key,
        "value": String::from_utf8_lossy(&entry.value),
        "create_revision": entry.create_revision,
        "mod_revision": entry.mod_revision,
        "version": entry.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_prints_puts_and_deletes_one_per_line() {
        let put = KvEvent {
            revision: 12,
            key: "config/a".into(),
            entry: Some(KvEntry {
                key: "config/a".into(),
                value: b"on".to_vec(),
                create_revision: 3,
                mod_revision: 12,
                version: 4,
            }),
        };
        assert_eq!(event_line(&put), "      12  PUT     config/a  on");
        assert_eq!(event_json(&put)["type"], "put");
        assert_eq!(event_json(&put)["version"], 4);
        let delete = KvEvent {
            revision: 13,
            key: "config/a".into(),
            entry: None,
        };
        assert_eq!(event_line(&delete), "      13  DELETE  config/a");
        assert_eq!(event_json(&delete)["type"], "delete");
    }
}

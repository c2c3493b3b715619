//! `symphony-ctl gossip key ...`: the cluster's gossip keys, by id. No command prints a key.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CliError, Table, ago, emit, now_ms};
use crate::Client;
use crate::proto::GossipKeysInfo;

#[derive(Debug, Subcommand)]
pub enum GossipCommand {
    /// Rotate the keys gossip packets are sealed with: install a new one, use it, then remove
    /// the old one.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a new random key: every node accepts it at once, none seals with it yet.
    Install {
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Seal with key ID from now on; refused unless every ready node holds it.
    Use {
        id: u32,
        #[command(flatten)]
        wait: WaitArgs,
        /// Skip the check: nodes that do not hold the key cannot read the others' gossip
        /// until they learn it.
        #[arg(long)]
        force: bool,
    },
    /// Uninstall key ID (not the primary); refused unless every ready node seals with the
    /// primary.
    Remove {
        id: u32,
        #[command(flatten)]
        wait: WaitArgs,
        /// Skip the check: nodes still sealing with ID are not heard until they catch up.
        #[arg(long)]
        force: bool,
    },
    /// List the installed key ids, the primary, and how many nodes hold and seal with each.
    List,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// How long to wait for every ready node to catch up (the leader waits 20 s at most).
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    wait: u64,
}

impl WaitArgs {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.wait)
    }
}

pub async fn run(client: &Client, json: bool, command: GossipCommand) -> Result<(), CliError> {
    let GossipCommand::Key(command) = command;
    let (keys, said) = match command {
        KeyCommand::Install { wait } => {
            let keys = client.gossip_key_install(wait.duration()).await?;
            let said = match keys.changed {
                Some(id) => format!(
                    "Installed gossip key {id}; {} of {} ready nodes hold it. Next: `gossip key use {id}`.\n",
                    holding(&keys, id),
                    keys.nodes
                ),
                None => String::new(),
            };
            (keys, said)
        }
        KeyCommand::Use { id, wait, force } => {
            let keys = client.gossip_key_use(id, wait.duration(), force).await?;
            let said = format!(
                "Gossip is sealed with key {id} from now on; {} of {} ready nodes seal with it. Remove the old key once all do.\n",
                sealing(&keys, id),
                keys.nodes
            );
            (keys, said)
        }
        KeyCommand::Remove { id, wait, force } => {
            let keys = client.gossip_key_remove(id, wait.duration(), force).await?;
            (keys, format!("Removed gossip key {id}.\n"))
        }
        KeyCommand::List => (client.gossip_key_list().await?, String::new()),
    };
    emit(json, json!(keys), || said + &keys_text(&keys));
    Ok(())
}

fn holding(keys: &GossipKeysInfo, id: u32) -> u64 {
    keys.keys
        .iter()
        .find(|key| key.id == id)
        .map_or(0, |key| key.installed_on)
}

fn sealing(keys: &GossipKeysInfo, id: u32) -> u64 {
    keys.keys
        .iter()
        .find(|key| key.id == id)
        .map_or(0, |key| key.sealing_on)
}

fn keys_text(keys: &GossipKeysInfo) -> String {
    if keys.primary.is_none() {
        return "This cluster gossips in the clear: it was created before gossip was sealed.\n"
            .to_string();
    }
    let now = now_ms();
    let mut table = Table::new(["ID", "PRIMARY", "INSTALLED ON", "SEALING ON", "INSTALLED"]);
    for key in &keys.keys {
        table.row([
            key.id.to_string(),
            if key.primary { "yes" } else { "" }.to_string(),
            format!("{}/{}", key.installed_on, keys.nodes),
            format!("{}/{}", key.sealing_on, keys.nodes),
            ago(now, key.installed_at_ms),
        ]);
    }
    let mut text = table.render();
    if !keys.unreachable.is_empty() {
        let ids: Vec<String> = keys.unreachable.iter().map(u64::to_string).collect();
        text += &format!(
            "Ready nodes that did not say which keys they hold (unreachable, or not gossiping yet): {}.\n",
            ids.join(", ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;
    use crate::proto::GossipKeyInfo;

    #[test]
    fn parses_the_rotation_commands() {
        let parse = |words: &[&str]| {
            let mut line = vec!["symphony-ctl", "gossip", "key"];
            line.extend_from_slice(words);
            match Cli::try_parse_from(line).unwrap().command {
                Command::Gossip(GossipCommand::Key(command)) => command,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(parse(&["install"]), KeyCommand::Install { wait } if wait.wait == 20));
        assert!(matches!(
            parse(&["use", "2", "--wait", "5"]),
            KeyCommand::Use { id: 2, force: false, wait } if wait.wait == 5
        ));
        assert!(matches!(
            parse(&["remove", "1", "--force"]),
            KeyCommand::Remove {
                id: 1,
                force: true,
                ..
            }
        ));
        assert!(matches!(parse(&["list"]), KeyCommand::List));
    }

    #[test]
    fn the_list_shows_ids_and_counts() {
        let keys = GossipKeysInfo {
            version: 3,
            primary: Some(2),
            keys: vec![
                GossipKeyInfo {
                    id: 1,
                    primary: false,
                    installed_at_ms: 0,
                    installed_on: 8,
                    sealing_on: 1,
                },
                GossipKeyInfo {
                    id: 2,
                    primary: true,
                    installed_at_ms: 0,
                    installed_on: 8,
                    sealing_on: 7,
                },
            ],
            nodes: 9,
            unreachable: vec![42],
            changed: None,
        };
        let text = keys_text(&keys);
        assert!(text.contains("8/9") && text.contains("7/9"), "{text}");
        assert!(text.contains("yet): 42"), "{text}");
        assert_eq!(holding(&keys, 2), 8);
    }
}

//! `symphony-ctl events`: the cluster's events as they happen, one line each (or one JSON
//! object per line with `--json`), from `--since` a revision or from now, until interrupted.

use clap::Args;
use serde_json::json;

use super::CliError;
use crate::Client;
use crate::proto::{EVENT_KINDS, EventFilter, EventView, Response};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start after this revision (each event shows its own; resume with the last one seen).
    /// Default: from now.
    #[arg(long, value_name = "REVISION")]
    since: Option<u64>,
    /// Only some events: `type=node|service|task|leader`, `service=NAME`, `node=ID`, comma
    /// separated or repeated; several types are any of them, the rest must all hold.
    #[arg(long, value_name = "FILTER", value_delimiter = ',')]
    filter: Vec<String>,
}

impl EventsArgs {
    fn filter(&self) -> Result<EventFilter, CliError> {
        let mut filter = EventFilter::default();
        for part in self
            .filter
            .iter()
            .map(|part| part.trim())
            .filter(|part| !part.is_empty())
        {
            let Some((key, value)) = part.split_once('=') else {
                return Err(CliError::Failed(format!(
                    "--filter {part:?}: write type=..., service=NAME or node=ID"
                )));
            };
            match key.trim() {
                "type" => {
                    let kind = value.trim();
                    if !EVENT_KINDS.contains(&kind) {
                        return Err(CliError::Failed(format!(
                            "--filter type={kind}: the types are {}",
                            EVENT_KINDS.join(", ")
                        )));
                    }
                    filter.kinds.push(kind.to_string());
                }
                "service" => filter.service = Some(value.trim().to_string()),
                "node" => {
                    let id = value.trim().parse().map_err(|_| {
                        CliError::Failed(format!("--filter node={value}: a node id is a number"))
                    })?;
                    filter.node_id = Some(id);
                }
                other => {
                    return Err(CliError::Failed(format!(
                        "--filter {other}=...: filter on type, service or node"
                    )));
                }
            }
        }
        Ok(filter)
    }
}

pub async fn run(client: &Client, json: bool, args: EventsArgs) -> Result<(), CliError> {
    let filter = args.filter()?;
    let mut stream = client.events(args.since, filter).await?;
    while let Some(item) = stream.next().await {
        match item.map_err(crate::ClientError::from)? {
            Response::Events(events) => {
                for event in &events {
                    if json {
                        println!("{}", json!(event));
                    } else {
                        println!("{}", event_line(event));
                    }
                }
            }
            other => {
                return Err(CliError::Failed(format!(
                    "the agent sent a {} answer in an event stream",
                    other.kind()
                )));
            }
        }
    }
    Ok(())
}

/// `REVISION  TIME  TYPE  text`.
fn event_line(event: &EventView) -> String {
    format!(
        "{:>8}  {}  {:<7}  {}",
        event.revision,
        clock(event.at_ms),
        event.kind,
        event.text
    )
}

/// `HH:MM:SS.mmm` UTC.
fn clock(at_ms: u64) -> String {
    let ms = at_ms % 1000;
    let seconds = at_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        (seconds / 3600) % 24,
        (seconds / 60) % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(filters: &[&str]) -> EventsArgs {
        EventsArgs {
            since: None,
            filter: filters.iter().map(|f| (*f).to_string()).collect(),
        }
    }

    #[test]
    fn filters_parse_and_bad_ones_say_why() {
        let filter = args(&["type=task", "type=service", "service=web", "node=7"])
            .filter()
            .unwrap();
        assert_eq!(filter.kinds, ["task", "service"]);
        assert_eq!(filter.service.as_deref(), Some("web"));
        assert_eq!(filter.node_id, Some(7));
        for bad in ["type=pod", "node=x", "zone=a", "web"] {
            assert!(
                matches!(args(&[bad]).filter(), Err(CliError::Failed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_line_shows_revision_time_type_and_text() {
        let event = EventView {
            revision: 42,
            at_ms: 3_723_004,
            kind: "task".into(),
            action: "running".into(),
            node_id: None,
            service: None,
            task_id: None,
            slot: None,
            text: "task 1 (web.0): running".into(),
        };
        assert_eq!(
            event_line(&event),
            "      42  01:02:03.004  task     task 1 (web.0): running"
        );
    }
}

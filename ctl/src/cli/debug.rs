//! `symphony-ctl debug bundle`: one archive to hand to whoever helps — this node's status, the
//! cluster's nodes, and each node's command line, recent log lines, Raft state and metrics,
//! with every secret removed by the agents that gave them.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use super::CliError;
use crate::Client;
use crate::proto::{DiagnosticsInfo, ReadConsistency};

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Write a support bundle (a .tar.gz): status, node ls, and this node's (with --all, every
    /// node's) flags, recent log lines, Raft state and a metrics scrape. No secret is in it.
    Bundle {
        /// Where to write the archive.
        #[arg(long, value_name = "FILE", default_value = "symphony-bundle.tar.gz")]
        out: PathBuf,
        /// Every node's diagnostics, fetched by this manager over the node-to-node API.
        #[arg(long)]
        all: bool,
    },
}

/// The archive, built in memory: a few files of text.
#[derive(Default)]
struct Bundle {
    files: Vec<(String, Vec<u8>)>,
    problems: Vec<String>,
}

impl Bundle {
    fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.push((path.into(), bytes.into()));
    }

    fn json(&mut self, path: &str, value: &impl Serialize) {
        match serde_json::to_vec_pretty(value) {
            Ok(bytes) => self.add(path, bytes),
            Err(error) => self.problems.push(format!("{path}: {error}")),
        }
    }

    fn node(&mut self, info: &DiagnosticsInfo) {
        let dir = format!("nodes/{}", info.node_id);
        let mut flags = info.argv.join(" ");
        flags.push('\n');
        self.add(format!("{dir}/flags.txt"), flags);
        self.add(
            format!("{dir}/version.txt"),
            format!("{}\n", info.agent_version),
        );
        let mut log = info.recent_log.join("\n");
        log.push('\n');
        self.add(format!("{dir}/agent.log"), log);
        if let Some(raft) = &info.raft {
            self.add(format!("{dir}/raft.txt"), raft.clone());
        }
        if let Some(metrics) = &info.metrics {
            self.add(format!("{dir}/metrics.txt"), metrics.clone());
        }
    }

    fn write(mut self, out: &Path) -> Result<usize, std::io::Error> {
        if !self.problems.is_empty() {
            let mut text = self.problems.join("\n");
            text.push('\n');
            self.add("problems.txt", text);
        }
        let file = std::fs::File::create(out)?;
        let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut archive = tar::Builder::new(gzip);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        for (path, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
            header.set_mode(0o600);
            header.set_mtime(now);
            header.set_cksum();
            archive.append_data(
                &mut header,
                format!("symphony-bundle/{path}"),
                bytes.as_slice(),
            )?;
        }
        archive.into_inner()?.finish()?.sync_all()?;
        Ok(self.files.len())
    }
}

pub async fn run(client: &Client, json: bool, command: DebugCommand) -> Result<(), CliError> {
    let DebugCommand::Bundle { out, all } = command;
    let mut bundle = Bundle::default();
    let status = client.status().await?;
    bundle.json("status.json", &status);
    let nodes = match client.node_list(ReadConsistency::Stale).await {
        Ok(nodes) => {
            bundle.json("nodes.json", &nodes);
            nodes
        }
        Err(error) => {
            bundle.problems.push(format!("node ls: {error}"));
            Vec::new()
        }
    };
    match client.diagnostics(None).await {
        Ok(info) => bundle.node(&info),
        Err(error) => bundle
            .problems
            .push(format!("this node's diagnostics: {error}")),
    }
    if all {
        for node in nodes.iter().filter(|node| node.node_id != status.node_id) {
            match client.diagnostics(Some(node.node_id)).await {
                Ok(info) => bundle.node(&info),
                Err(error) => bundle.problems.push(format!(
                    "node {} ({}): {error}",
                    node.node_id, node.hostname
                )),
            }
        }
    }
    let problems = bundle.problems.len();
    let files = bundle.write(&out).map_err(|error| {
        CliError::Failed(format!(
            "cannot write the bundle to {}: {error}",
            out.display()
        ))
    })?;
    super::emit(
        json,
        serde_json::json!({"path": out, "files": files, "problems": problems}),
        || {
            let mut line = format!("wrote {} ({files} files)", out.display());
            if problems > 0 {
                line.push_str(&format!(
                    "; {problems} part(s) could not be gathered: see problems.txt in it"
                ));
            }
            line.push('\n');
            line
        },
    );
    Ok(())
}

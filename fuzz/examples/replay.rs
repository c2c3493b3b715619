//! Runs inputs through the targets' harnesses without libFuzzer, on any toolchain:
//! `cargo run --example replay` replays every committed corpus; `cargo run --example replay --
//! <target> <file>...` replays those files (a crash artifact, say) through one target.

use std::path::{Path, PathBuf};

fn harness(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "frame" => symphony_fuzz::frame::run,
        "control" => symphony_fuzz::control::run,
        "remote" => symphony_fuzz::remote::run,
        "raft" => symphony_fuzz::raft::run,
        "gossip" => symphony_fuzz::gossip::run,
        "token" => symphony_fuzz::token::run,
        "csr" => symphony_fuzz::csr::run,
        "cert" => symphony_fuzz::cert::run,
        "wal" => symphony_fuzz::wal::run,
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let runs: Vec<(String, Vec<PathBuf>)> = match args.split_first() {
        Some((target, files)) if !files.is_empty() => {
            vec![(target.clone(), files.iter().map(PathBuf::from).collect())]
        }
        _ => {
            let mut runs = Vec::new();
            for entry in std::fs::read_dir(&corpus)? {
                let dir = entry?.path();
                let target = dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default()
                    .to_string();
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                    .map(|entry| entry.map(|entry| entry.path()))
                    .collect::<Result<_, _>>()?;
                files.sort();
                runs.push((target, files));
            }
            runs.sort();
            runs
        }
    };
    for (target, files) in runs {
        let run = harness(&target).ok_or(format!("no target named {target}"))?;
        for file in &files {
            run(&std::fs::read(file)?);
        }
        println!("{target}: {} inputs replayed", files.len());
    }
    Ok(())
}

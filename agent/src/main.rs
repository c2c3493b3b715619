//! `symphony-agent`: see the crate documentation of `symphony_agent`.

use clap::Parser;
use symphony_agent::config::{AgentArgs, AgentCommand};

// The agent allocates many small short-lived buffers per request (frames, entries, rows);
// mimalloc handles that pattern markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = AgentArgs::parse();
    // A task's shim is a small process of plain threads: no runtime.
    if let Some(AgentCommand::TaskShim {
        dir,
        log_max_bytes,
        stop_grace_ms,
        command,
    }) = &args.command
    {
        let grace = std::time::Duration::from_millis(*stop_grace_ms);
        let code = symphony_agent::exec::shim::run(dir, *log_max_bytes, grace, command);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // A container's lease guard is as small: one thread and a few requests to the engine.
    if let Some(AgentCommand::ContainerGuard {
        dir,
        docker_socket,
        container,
        stop_grace_ms,
    }) = &args.command
    {
        let grace = std::time::Duration::from_millis(*stop_grace_ms);
        let code = symphony_agent::exec::docker::guard::run(dir, docker_socket, container, grace);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(symphony_agent::run::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

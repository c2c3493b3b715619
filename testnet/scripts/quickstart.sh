#!/usr/bin/env bash
# Builds Symphony and brings up a cluster of one manager (.raft/manager-01) and one worker
# (.raft/worker-01, joined with the worker token), then shows it working: status on both, a KV
# round trip and the node list. The agents keep running in the background; the last line says
# how to stop them.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --bins
agent=target/release/symphony-agent
ctl=target/release/symphony-ctl
dir=.raft/manager-01
socket=$dir/control.sock

# Starts an agent in the background unless one already answers on its socket; polls until its
# control socket answers (30 s at most). Prints "started" when it started one.
start_agent() {
    local name=$1
    shift
    local socket=.raft/$name/control.sock log=.raft/$name.log
    if [ -S "$socket" ] && "$ctl" --socket "$socket" status >/dev/null 2>&1; then
        echo "$name is already running; using it" >&2
        return
    fi
    rm -rf ".raft/$name"
    mkdir -p .raft
    "$agent" --config-dir ".raft/$name" "$@" >"$log" 2>&1 &
    echo $! >".raft/$name.pid"
    for _ in $(seq 300); do
        "$ctl" --socket "$socket" status >/dev/null 2>&1 && break
        if ! kill -0 "$(cat ".raft/$name.pid")" 2>/dev/null; then
            echo "the agent $name exited; its log ($log) says:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo started
}

if [ "$(start_agent manager-01)" = started ]; then
    "$ctl" --socket "$socket" init
fi
worker_socket=.raft/worker-01/control.sock
if [ "$(start_agent worker-01 --listen-remote-addr 127.0.0.1:28001)" = started ]; then
    "$ctl" --socket "$worker_socket" join --token "$("$ctl" --socket "$socket" token show worker)" 127.0.0.1:27242
fi

set -x
"$ctl" --socket "$socket" status
"$ctl" --socket "$socket" kv put greeting hello
"$ctl" --socket "$socket" kv get greeting
"$ctl" --socket "$worker_socket" status
"$ctl" --socket "$socket" node ls
set +x
echo
echo "manager-01 and worker-01 are running (logs: .raft/*.log)."
echo "Stop them with: kill \$(cat .raft/manager-01.pid .raft/worker-01.pid)"

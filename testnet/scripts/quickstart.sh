#!/usr/bin/env bash
# Builds Symphony and brings up a one-manager cluster in .raft/manager-01, then shows it working:
# status, a KV round trip, the worker join token and the node list. The agent keeps running in
# the background; the last line says how to stop it.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --bins
agent=target/release/symphony-agent
ctl=target/release/symphony-ctl
dir=.raft/manager-01
socket=$dir/control.sock
log=.raft/manager-01.log

if [ -S "$socket" ] && "$ctl" --socket "$socket" status >/dev/null 2>&1; then
    echo "manager-01 is already running; using it"
else
    rm -rf "$dir"
    mkdir -p .raft
    "$agent" --config-dir "$dir" >"$log" 2>&1 &
    echo $! >.raft/manager-01.pid
    # Poll until the control socket answers (30 s at most).
    for _ in $(seq 300); do
        "$ctl" --socket "$socket" status >/dev/null 2>&1 && break
        if ! kill -0 "$(cat .raft/manager-01.pid)" 2>/dev/null; then
            echo "the agent exited; its log ($log) says:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    "$ctl" --socket "$socket" init
fi

set -x
"$ctl" --socket "$socket" status
"$ctl" --socket "$socket" kv put greeting hello
"$ctl" --socket "$socket" kv get greeting
"$ctl" --socket "$socket" token show worker
"$ctl" --socket "$socket" node ls
set +x
echo
echo "manager-01 is running (log: $log). Stop it with: kill \$(cat .raft/manager-01.pid)"

#!/usr/bin/env bash
# Builds the release server and load generator, starts a throwaway server (fresh SQLite
# database in a temporary directory), registers an account that owns the rooms of the run,
# runs a small sanity scenario and then the target scenario, and stops the server with
# SIGTERM. Needs curl and jq.
#
# Usage: benches/run-load.sh
# The target scenario can be changed through ROOMS, CLIENTS, RATE, WARMUP and DURATION;
# TANDEM_* variables reach the server (for example TANDEM_DURABILITY=relaxed).
# Exit status: that of the first scenario that fails, or of the server's shutdown.
set -euo pipefail

cd "$(dirname "$0")/.."

ROOMS=${ROOMS:-200}
CLIENTS=${CLIENTS:-10}
RATE=${RATE:-20}
WARMUP=${WARMUP:-5s}
DURATION=${DURATION:-20s}

cargo build --release -p server -p benches

# Each side of the test holds one socket per connection, plus files and the database.
wanted_files=$(( ROOMS * CLIENTS + 1024 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$wanted_files" ]; then
    ulimit -n "$wanted_files" || {
        echo "cannot raise the open-file limit to $wanted_files (hard limit $(ulimit -Hn))" >&2
        exit 1
    }
fi

work_dir=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        # The server waits up to its shutdown timeout (10 s) for connections to close.
        for _ in $(seq 150); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "server did not stop within 15 s of SIGTERM; killing it" >&2
            kill -KILL "$server_pid"
        fi
    fi
    server_status=0
    if [ -n "$server_pid" ]; then
        wait "$server_pid" || server_status=$?
        server_pid=
    fi
}
cleanup() {
    stop_server
    rm -rf "$work_dir"
}
trap cleanup EXIT

# Every loadgen socket comes from 127.0.0.1, so the per-address limits meant for one real
# client (WebSockets open and upgrades per address) are raised for the run, unless set.
export TANDEM_WS_CONNECTIONS_PER_IP=${TANDEM_WS_CONNECTIONS_PER_IP:-1000000}
export TANDEM_WS_UPGRADES_PER_MINUTE=${TANDEM_WS_UPGRADES_PER_MINUTE:-1000000}
export TANDEM_WS_UPGRADE_BURST=${TANDEM_WS_UPGRADE_BURST:-1000000}

target/release/tandem serve --listen 127.0.0.1:0 --data-dir "$work_dir/data" \
    >"$work_dir/server.out" 2>"$work_dir/server.err" &
server_pid=$!

port=
for _ in $(seq 300); do
    port=$(sed -n 's|^tandem listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$work_dir/server.out")
    [ -n "$port" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "server exited before listening:" >&2
        cat "$work_dir/server.err" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "server did not print its address within 30 s" >&2
    exit 1
fi
echo "server pid $server_pid listening on port $port"

http_url="http://127.0.0.1:$port"

# The server only lets members into rooms that exist: register one account, which owns
# every room of the run, and hand its access token to loadgen through the environment (not
# the command line, where other users could read it).
register_status=$(curl -sS -o "$work_dir/register.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    -d "{\"email\":\"loadgen-$$@example.com\",\"password\":\"loadgen-$$-$RANDOM$RANDOM\",\"display_name\":\"loadgen\"}" \
    "$http_url/api/auth/register")
case "$register_status" in
    201) LOADGEN_TOKEN=$(jq -er .access_token "$work_dir/register.json")
         export LOADGEN_TOKEN ;;
    404) echo "server has no accounts API; connecting without a token" ;;
    *)   echo "registering the load account failed with HTTP $register_status:" >&2
         cat "$work_dir/register.json" >&2
         exit 1 ;;
esac

# Creates rooms PREFIX-0 .. PREFIX-(COUNT-1) when the server has accounts.
create_rooms() {
    local prefix=$1 count=$2 i
    [ -n "${LOADGEN_TOKEN:-}" ] || return 0
    for (( i = 0; i < count; i++ )); do
        curl -sSf -o /dev/null -H "Authorization: Bearer $LOADGEN_TOKEN" \
            -H 'Content-Type: application/json' \
            -d "{\"id\":\"$prefix-$i\",\"name\":\"$prefix-$i\"}" \
            "$http_url/api/rooms"
    done
}

# Runs loadgen with a fresh set of rooms: run-scenario NAME ROOMS [loadgen flags...]
run_scenario() {
    local prefix="load-$1" rooms=$2
    shift 2
    create_rooms "$prefix" "$rooms"
    target/release/loadgen --url "ws://127.0.0.1:$port" --server-pid "$server_pid" \
        --room-prefix "$prefix" --rooms "$rooms" "$@"
}

status=0
echo
echo "== sanity: 5 rooms x 3 clients, 20 edits/s per room"
run_scenario sanity 5 --clients 3 --rate 20 --warmup 1s --duration 3s || status=$?

if [ "$status" -eq 0 ]; then
    echo
    echo "== target: $ROOMS rooms x $CLIENTS clients, $RATE edits/s per room"
    run_scenario target "$ROOMS" --clients "$CLIENTS" --rate "$RATE" \
        --warmup "$WARMUP" --duration "$DURATION" --json || status=$?
fi

stop_server
if [ "$status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
    echo
    echo "loadgen status $status, server status $server_status; server log tail:" >&2
    tail -n 30 "$work_dir/server.err" >&2
fi
if [ "$status" -eq 0 ]; then
    status=$server_status
fi
exit "$status"

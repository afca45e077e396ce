#!/usr/bin/env bash
# Cross-node fan-out: builds the release server and load generator, starts a throwaway
# Redis and two server nodes clustered through it (one SQLite database in a temporary
# directory, shared by both), registers an account and creates the rooms through node A's
# REST API, and runs loadgen with every room's writer on node A and its observers on node B,
# so each measured latency is writer → node A → Redis → node B → observer. Stops both nodes
# with SIGTERM and Redis with `redis-cli shutdown nosave`. Needs curl, jq, redis-server and
# redis-cli.
#
# Usage: benches/run-cluster-load.sh
# The target scenario can be changed through ROOMS, CLIENTS, RATE, WARMUP and DURATION;
# REDIS_PORT picks Redis's port (default: a random free one); TANDEM_* variables reach both
# nodes.
# Exit status: that of the first scenario that fails, or of a node's shutdown.
set -euo pipefail

cd "$(dirname "$0")/.."

ROOMS=${ROOMS:-20}
CLIENTS=${CLIENTS:-5}
RATE=${RATE:-20}
WARMUP=${WARMUP:-5s}
DURATION=${DURATION:-15s}

for tool in curl jq redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

# Every loadgen socket comes from 127.0.0.1, so the per-address limits meant for one real
# client (WebSockets open and upgrades per address) are raised for the run, unless set.
export TANDEM_WS_CONNECTIONS_PER_IP=${TANDEM_WS_CONNECTIONS_PER_IP:-1000000}
export TANDEM_WS_UPGRADES_PER_MINUTE=${TANDEM_WS_UPGRADES_PER_MINUTE:-1000000}
export TANDEM_WS_UPGRADE_BURST=${TANDEM_WS_UPGRADE_BURST:-1000000}

cargo build --release -p server -p benches

work_dir=$(mktemp -d)
data_dir="$work_dir/data"
mkdir -p "$data_dir"
redis_port=
redis_pid=
node_pids=()
node_status=0

stop_node() {
    local pid=$1 status=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        # A node waits up to its shutdown timeout (10 s) for connections to close.
        for _ in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "node $pid did not stop within 15 s of SIGTERM; killing it" >&2
            kill -KILL "$pid"
        fi
    fi
    wait "$pid" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "node $pid exited with status $status" >&2
        node_status=$status
    fi
}

stop_redis() {
    [ -n "$redis_pid" ] || return 0
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$redis_pid" 2>/dev/null; then
        echo "redis $redis_pid did not shut down; sending SIGTERM" >&2
        kill -TERM "$redis_pid" 2>/dev/null || true
    fi
    redis_pid=
}

stop_all() {
    local pid
    for pid in "${node_pids[@]}"; do
        stop_node "$pid"
    done
    node_pids=()
    stop_redis
}

cleanup() {
    stop_all
    rm -rf "$work_dir"
}
trap cleanup EXIT

# Starts Redis on PORT as a daemon; succeeds only when the Redis answering on PORT is the
# process this call started (not one that already held the port).
start_redis() {
    local port=$1 pid=
    rm -f "$work_dir/redis.pid"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$work_dir/redis.pid" --logfile "$work_dir/redis.log" \
        --dir "$work_dir" || return 1
    for _ in $(seq 50); do
        pid=$(cat "$work_dir/redis.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
            [ "$(redis-cli -p "$port" info server 2>/dev/null |
                sed -n 's/^process_id:\([0-9]*\).*/\1/p')" = "$pid" ]; then
            redis_port=$port
            redis_pid=$pid
            return 0
        fi
        sleep 0.1
    done
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    return 1
}

if [ -n "${REDIS_PORT:-}" ]; then
    start_redis "$REDIS_PORT" || {
        echo "could not start redis on port $REDIS_PORT:" >&2
        cat "$work_dir/redis.log" >&2 2>/dev/null || true
        exit 1
    }
else
    for _ in 1 2 3 4 5; do
        start_redis $(( 20000 + RANDOM % 20000 )) && break
    done
    [ -n "$redis_pid" ] || {
        echo "could not start redis on a free port:" >&2
        cat "$work_dir/redis.log" >&2 2>/dev/null || true
        exit 1
    }
fi
echo "redis pid $redis_pid listening on port $redis_port"

# start_node NAME: starts a node and waits for its address; sets node_port.
node_port=
start_node() {
    local name=$1 pid port=
    target/release/tandem serve --listen 127.0.0.1:0 --data-dir "$data_dir" \
        --redis-url "redis://127.0.0.1:$redis_port/" --node-id "$name" \
        >"$work_dir/$name.out" 2>"$work_dir/$name.err" &
    pid=$!
    node_pids+=("$pid")
    for _ in $(seq 300); do
        port=$(sed -n 's|^tandem listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' \
            "$work_dir/$name.out")
        [ -n "$port" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before listening:" >&2
            cat "$work_dir/$name.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "$name did not print its address within 30 s" >&2
        exit 1
    fi
    echo "$name pid $pid listening on port $port"
    node_port=$port
}

# Node A first, so it alone creates (migrates) the shared database.
start_node node-a
port_a=$node_port
start_node node-b
port_b=$node_port

http_a="http://127.0.0.1:$port_a"

# One account owns every room; both nodes accept its token (they share the database). The
# token reaches loadgen through the environment, not the command line.
register_status=$(curl -sS -o "$work_dir/register.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    -d "{\"email\":\"loadgen-$$@example.com\",\"password\":\"loadgen-$$-$RANDOM$RANDOM\",\"display_name\":\"loadgen\"}" \
    "$http_a/api/auth/register")
if [ "$register_status" != 201 ]; then
    echo "registering the load account failed with HTTP $register_status:" >&2
    cat "$work_dir/register.json" >&2
    exit 1
fi
LOADGEN_TOKEN=$(jq -er .access_token "$work_dir/register.json")
export LOADGEN_TOKEN

# Creates rooms PREFIX-0 .. PREFIX-(COUNT-1) through node A.
create_rooms() {
    local prefix=$1 count=$2 i
    for (( i = 0; i < count; i++ )); do
        curl -sSf -o /dev/null -H "Authorization: Bearer $LOADGEN_TOKEN" \
            -H 'Content-Type: application/json' \
            -d "{\"id\":\"$prefix-$i\",\"name\":\"$prefix-$i\"}" \
            "$http_a/api/rooms"
    done
}

# run_scenario NAME ROOMS [loadgen flags...]: writers on node A, observers on node B.
run_scenario() {
    local prefix="cluster-$1" rooms=$2
    shift 2
    create_rooms "$prefix" "$rooms"
    target/release/loadgen --url "ws://127.0.0.1:$port_a" \
        --observer-url "ws://127.0.0.1:$port_b" \
        --room-prefix "$prefix" --rooms "$rooms" "$@"
}

status=0
echo
echo "== sanity: 3 rooms x 3 clients, 20 edits/s per room, node A -> node B"
run_scenario sanity 3 --clients 3 --rate 20 --warmup 1s --duration 3s || status=$?

if [ "$status" -eq 0 ]; then
    echo
    echo "== target: $ROOMS rooms x $CLIENTS clients, $RATE edits/s per room, node A -> node B"
    run_scenario target "$ROOMS" --clients "$CLIENTS" --rate "$RATE" \
        --warmup "$WARMUP" --duration "$DURATION" --json | tee "$work_dir/target.out" ||
        status=$?
    if [ "$status" -eq 0 ]; then
        tail -n 1 "$work_dir/target.out" | jq -r '
            "cross-node fan-out latency (ms): p50 \(.latency_ms.p50)  p99 \(.latency_ms.p99)  max \(.latency_ms.max)  (\(.deliveries) deliveries, \(.missing_deliveries) missing)"'
    fi
fi

stop_all
if [ "$status" -ne 0 ] || [ "$node_status" -ne 0 ]; then
    echo
    echo "loadgen status $status, node status $node_status; node log tails:" >&2
    for name in node-a node-b; do
        echo "-- $name" >&2
        tail -n 20 "$work_dir/$name.err" >&2
    done
fi
if [ "$status" -eq 0 ]; then
    status=$node_status
fi
exit "$status"

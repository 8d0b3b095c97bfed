# Sourced (not run) by scripts/test-clients, scripts/test-console and scripts/test-api-schema:
# the release binary they test, and a `tenant-vault dev` server for scripts that need one
# started here (the client and console suites start their own from their test runners).

# Sets and exports TENANT_VAULT_BIN: as given, else ${CARGO_TARGET_DIR:-target}/release/
# tenant-vault, built when missing (`devserver_bin always`: built every time, for suites
# testing files compiled into the binary; cargo does nothing when it is up to date).
devserver_bin() {
  if [ -z "${TENANT_VAULT_BIN:-}" ]; then
    local target="${CARGO_TARGET_DIR:-target}"
    case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
    TENANT_VAULT_BIN="$target/release/tenant-vault"
    if [ "${1:-}" = always ] || [ ! -x "$TENANT_VAULT_BIN" ]; then
      cargo build --release --bin tenant-vault
    fi
  fi
  export TENANT_VAULT_BIN
}

# Starts `tenant-vault dev` on a free port with a temporary data dir (extra environment as
# NAME=VALUE arguments) and waits until /readyz answers 200. Sets DEVSERVER_ADDR,
# DEVSERVER_ADMIN_TOKEN, DEVSERVER_DIR and DEVSERVER_PID; stops it on exit.
devserver_start() {
  devserver_bin
  DEVSERVER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tv-devserver-XXXXXX")"
  chmod 755 "$DEVSERVER_DIR" # the postgres user (when run as root) must reach it
  # The server's settings come from the arguments only, not from the caller's environment.
  env -u DATABASE_URL $(env | sed -n 's/^\(TENANT_VAULT_[A-Z_]*\|INFISICAL_[A-Z_]*\)=.*/-u \1/p') \
    TENANT_VAULT_LOG=warn "$@" \
    "$TENANT_VAULT_BIN" dev --data-dir "$DEVSERVER_DIR" --listen 127.0.0.1:0 \
    >"$DEVSERVER_DIR/server.log" 2>&1 </dev/null &
  DEVSERVER_PID=$!
  trap devserver_stop EXIT
  local waited=0
  while :; do
    if ! kill -0 "$DEVSERVER_PID" 2>/dev/null; then
      echo "tenant-vault dev exited early:" >&2
      tail -n 40 "$DEVSERVER_DIR/server.log" >&2
      return 1
    fi
    if [ -f "$DEVSERVER_DIR/dev.env" ]; then
      DEVSERVER_ADDR="$(sed -n 's/^TENANT_VAULT_ADDR=//p' "$DEVSERVER_DIR/dev.env")"
      DEVSERVER_ADMIN_TOKEN="$(sed -n 's/^TENANT_VAULT_ADMIN_TOKEN=//p' "$DEVSERVER_DIR/dev.env")"
      if [ -n "$DEVSERVER_ADDR" ] &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$DEVSERVER_ADDR/readyz")" = 200 ]; then
        return 0
      fi
    fi
    if [ "$waited" -ge 1200 ]; then
      echo "tenant-vault dev did not become ready within 120 s:" >&2
      tail -n 40 "$DEVSERVER_DIR/server.log" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Stops the server devserver_start started (SIGTERM, then SIGKILL after 20 s) and removes
# its data dir.
devserver_stop() {
  if [ -n "${DEVSERVER_PID:-}" ] && kill -0 "$DEVSERVER_PID" 2>/dev/null; then
    kill -TERM "$DEVSERVER_PID"
    local i
    for i in $(seq 200); do
      kill -0 "$DEVSERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DEVSERVER_PID" 2>/dev/null || true
    wait "$DEVSERVER_PID" 2>/dev/null || true
  fi
  DEVSERVER_PID=
  [ -n "${DEVSERVER_DIR:-}" ] && rm -rf "$DEVSERVER_DIR"
  DEVSERVER_DIR=
}

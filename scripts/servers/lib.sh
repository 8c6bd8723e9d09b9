# Shared helpers for scripts/servers/*.sh (sourced by scripts/test.sh).
# A server script: installs what it needs (cached outside the repository), calls
# `server_start NAME CMD...` (output to target/test-servers/NAME.log), waits with `wait_port`,
# and exports the variables its tests read.
SERVERS_DIR="${SERVERS_DIR:-$PWD/target/test-servers}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/walstream"
mkdir -p "$SERVERS_DIR" "$CACHE_DIR"
SERVER_PIDS=()

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The shared Python virtualenv for test servers (moto, GCS emulator).
py_venv() {
  local v="$CACHE_DIR/test-venv"
  if [ ! -x "$v/bin/python" ]; then
    python3 -m venv "$v" >&2
  fi
  echo "$v"
}

# server_start NAME CMD...: starts CMD in the background, logs to $SERVERS_DIR/NAME.log.
server_start() {
  local name="$1"; shift
  "$@" >"$SERVERS_DIR/$name.log" 2>&1 &
  SERVER_PIDS+=("$!")
  echo "scripts/test.sh: started $name (pid $!)" >&2
}

# wait_port PORT [SECONDS]: waits until 127.0.0.1:PORT accepts connections.
wait_port() {
  local port="$1" secs="${2:-60}" i
  for ((i = 0; i < secs * 10; i++)); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "scripts/test.sh: nothing listening on 127.0.0.1:$port after ${secs}s" >&2
  return 1
}

servers_stop_all() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}

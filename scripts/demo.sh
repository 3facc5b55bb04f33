#!/usr/bin/env bash
# Demo: a private mosquitto on a free 127.0.0.1 port, the device simulators, and the daemon
# printing what it sees. Run through `make demo` (which builds .venv and checks for mosquitto).
# Never uses the machine's own broker on 1883. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
FLOORCTL=.venv/bin/floorctl
DEVICES=${DEVICES:-devices.toml}

die() { echo "demo: $*" >&2; exit 1; }
[ -x "$PY" ] || die "$PY is missing: run 'make venv' (or just 'make demo')"
[ -x "$FLOORCTL" ] || die "$FLOORCTL is missing: run 'make venv'"
[ -f "$DEVICES" ] || die "$DEVICES not found"
MOSQUITTO=$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mosquitto) \
  || die "mosquitto is not installed: run 'make mosquitto'"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/floorctl-demo.XXXXXX")
broker_pid=""
sim_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "$sim_pid" "$broker_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      # give it up to 5 s, then SIGKILL
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_port PORT PID: wait up to 10 s until 127.0.0.1:PORT accepts connections; fail at once
# if PID exits first.
wait_port() {
  "$PY" - "$1" "$2" <<'PYEOF'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PYEOF
}

# Four distinct free ports (the sockets are held open together, so they differ): the broker,
# the two Modbus gateways and the MT-SICS balance of devices.toml.
read -r MQTT_PORT MODBUS_PORT MODBUS_PORT_2 SICS_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

{
  echo "listener $MQTT_PORT 127.0.0.1"
  echo "allow_anonymous true"
  echo "max_queued_messages 0"
  echo "persistence false"
  echo "log_dest file $tmp/mosquitto.log"
  # As root mosquitto drops to user "mosquitto", which cannot write the log in $tmp.
  if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
} > "$tmp/mosquitto.conf"

# The broker and the simulators run in their own sessions so that Ctrl-C reaches only the
# daemon; the trap then stops the simulators and the broker after it, in that order (a broker
# dying under a daemon that is still stopping would only add noise to the log).
setsid "$MOSQUITTO" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.stderr" 2>&1 &
broker_pid=$!

if ! wait_port "$MQTT_PORT" "$broker_pid"; then
  echo "demo: mosquitto did not come up on 127.0.0.1:$MQTT_PORT" >&2
  tail -n 20 "$tmp/mosquitto.log" "$tmp/mosquitto.stderr" >&2 2>/dev/null || true
  exit 1
fi

export FLOORCTL_MQTT_HOST=127.0.0.1
export FLOORCTL_MQTT_PORT=$MQTT_PORT
export FLOORCTL_MODBUS_PORT=$MODBUS_PORT
export FLOORCTL_MODBUS_PORT_2=$MODBUS_PORT_2
export FLOORCTL_SICS_PORT=$SICS_PORT
export FLOORCTL_STORE=$tmp/floorctl.db   # the demo's records; `floorctl audit verify --db` it
# Demo users, so alarms can be acknowledged with a signature (docs/alarms.md). Real floors add
# theirs with `floorctl user add`; PINs this short are for the demo only.
"$PY" - "$FLOORCTL_STORE" <<'PYEOF'
import sys
from floorctl.store.db import Store
from floorctl.store.users import Users
with Store(sys.argv[1]) as store:
    users = Users(store)
    admin = users.add("admin", "Demo Admin", "admin", "9999", by=None, reason="demo set-up")
    for uid, name, role, pin in [("tech", "Terry Tech", "technician", "1111"),
                                 ("sup", "Sam Supervisor", "supervisor", "2222"),
                                 ("qa", "Quinn QA", "qa", "3333")]:
        users.add(uid, name, role, "0000", by=admin, reason="demo set-up")
        users.set_secret(uid, pin, by=users.authenticate(uid, "0000"), reason="demo set-up")
PYEOF
SCENARIO=${SCENARIO:-demo}
echo "demo: mosquitto on 127.0.0.1:$MQTT_PORT (watch: mosquitto_sub -p $MQTT_PORT -t 'floorctl/#' -v)"
echo "demo: simulated devices on ports $MODBUS_PORT, $MODBUS_PORT_2 (Modbus) and $SICS_PORT (MT-SICS);"
echo "      scenario '$SCENARIO' (simulators/scenarios/$SCENARIO.toml); logs in $tmp"
echo "demo: users tech/1111 (technician), sup/2222 (supervisor), qa/3333 (qa); in another terminal:"
echo "      FLOORCTL_MQTT_PORT=$MQTT_PORT .venv/bin/floorctl alarms list"
echo "      FLOORCTL_MQTT_PORT=$MQTT_PORT .venv/bin/floorctl alarms ack DEVICE/POINT --user tech --comment '...'"
echo "      .venv/bin/floorctl audit verify --db $FLOORCTL_STORE"

setsid "$FLOORCTL" simulate "$DEVICES" --scenario "$SCENARIO" >"$tmp/simulate.log" 2>&1 &
sim_pid=$!
if ! wait_port "$MODBUS_PORT" "$sim_pid"; then
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "demo: 'floorctl simulate $DEVICES' exited early:" >&2
    tail -n 30 "$tmp/simulate.log" >&2
    exit 1
  fi
  echo "demo: warning: the simulator is not listening on $MODBUS_PORT yet; starting anyway" >&2
fi

# Foreground; Ctrl-C reaches it and the trap cleans up after it.
"$FLOORCTL" run "$DEVICES" --print || true

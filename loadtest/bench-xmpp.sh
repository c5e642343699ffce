#!/usr/bin/env bash
# Side-by-side XMPP benchmark: Switchboard, Prosody and ejabberd under the same load, in the
# same run, on the same machine. A benchmark, not a test: it needs root (apt-get, system users)
# and a few minutes.
#
# Each server gets a generated minimal config in a temp dir (STARTTLS required, SASL PLAIN over
# TLS, one shared self-signed P-256 certificate, hashed password storage), listens on free
# 127.0.0.1 ports, is pinned to one core (SERVER_CPU) while the load tool runs on another
# (TOOL_CPU), and gets the same N users. For every rate of the sweep the tool logs all N users
# in, sends 1:1 chat at that aggregate rate and reports JSON; a server's sweep stops at its
# first rate with loss > 1 % or p99 > 50 ms (saturation).
#
# Usage: loadtest/bench-xmpp.sh [--users N] [--rates "R1 R2 …"] [--duration S] [--warmup S]
#                               [--servers "switchboard prosody ejabberd"] [--keep]
#                               [--save-history] [--rooms K]
#   --rooms K: group chat instead of 1:1: users in rooms of K (Switchboard: group dialogs made
#   over REST; ejabberd: mod_muc rooms made by their first joiner); each message is sent to the
#   sender's room and counted per delivered copy (rates are messages sent, K copies each).
#   --save-history: every message asks for server-side history (QuickBlox save_to_history;
#   Switchboard stores it before routing it), and ejabberd runs mod_mam (default: always) on
#   its SQLite store, so both archive every message of the same load. Each user then writes to
#   CONTACTS (5) fixed contacts, so the private dialogs are made during the warm-up.
#   Server "baseline" is another Switchboard binary, named by SB_BASELINE (e.g. a build of the
#   previous commit), run exactly like "switchboard": compare two builds in one run with
#   --servers "switchboard baseline switchboard baseline".
# Environment: SERVER_CPU (1), TOOL_CPU (0), CARGO_TARGET_DIR (default
#   $HOME/.cache/switchboard/target), SKIP_BUILD=1 to use binaries already built there,
#   RUST_LOG for Switchboard (info).
# Output: a table on stdout; the raw JSON lines and server logs stay in the work dir printed
# at the end (removed unless --keep).
set -euo pipefail

USERS=200
RATES="1000 2000 4000 8000 12000 16000 24000 32000"
DURATION=10
WARMUP=2
SERVERS="switchboard prosody ejabberd"
KEEP=0
SAVE_HISTORY=0
ROOM_SIZE=0
MAX_LOSS_PCT=1
MAX_P99_MS=50
SERVER_CPU=${SERVER_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
DOMAIN=localhost

while [ $# -gt 0 ]; do
    case $1 in
        --users) USERS=$2; shift 2 ;;
        --rates|--rate) RATES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --save-history) SAVE_HISTORY=1; shift ;;
        --rooms) ROOM_SIZE=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}
SB=$CARGO_TARGET_DIR/release/switchboard
LT=$CARGO_TARGET_DIR/release/switchboard-loadtest

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, runs servers as their system users)"
command -v taskset >/dev/null || die "taskset (util-linux) is required"

# --- Packages -----------------------------------------------------------------------------
need_packages=()
command -v openssl >/dev/null || need_packages+=(openssl)
command -v jq >/dev/null || need_packages+=(jq)
command -v curl >/dev/null || need_packages+=(curl)
case " $SERVERS " in *" prosody "*) command -v prosodyctl >/dev/null || need_packages+=(prosody) ;; esac
case " $SERVERS " in *" ejabberd "*) command -v ejabberdctl >/dev/null || need_packages+=(ejabberd) ;; esac
if [ "$SAVE_HISTORY" = 1 ]; then
    case " $SERVERS " in *" ejabberd "*)
        dpkg -s erlang-p1-sqlite3 >/dev/null 2>&1 || need_packages+=(erlang-p1-sqlite3)
        command -v sqlite3 >/dev/null || need_packages+=(sqlite3) ;;
    esac
fi
if [ ${#need_packages[@]} -gt 0 ]; then
    log "installing ${need_packages[*]}"
    apt-get update -qq
    # The packages' own services are not wanted: every server here runs from a temp config.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# --- Work dir, ports, certificate -----------------------------------------------------------
WORK=$(mktemp -d /tmp/bench-xmpp.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port, what
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 did not open port $1"
}

log "work dir $WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/combined.pem"
chmod 644 "$WORK"/*.pem

# --- Build ----------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building switchboard and switchboard-loadtest (release, $CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --quiet --bin switchboard \
        && cargo build --release --quiet -p switchboard-loadtest)
fi
[ -x "$SB" ] && [ -x "$LT" ] || die "binaries missing in $CARGO_TARGET_DIR/release"

RESULTS=$WORK/results.jsonl
: > "$RESULTS"

# Runs the sweep against one server: name, port, pid, users file.
sweep() {
    local name=$1 port=$2 pid=$3 users=$4 rate out loss p99 extra=()
    if [ "$ROOM_SIZE" -gt 0 ]; then
        extra+=(--rooms-file "$(dirname "$users")/rooms.txt" --room-size "$ROOM_SIZE")
        [ "$SAVE_HISTORY" = 1 ] && extra+=(--save-history)
    elif [ "$SAVE_HISTORY" = 1 ]; then
        extra+=(--save-history --contacts "${CONTACTS:-5}")
    fi
    for rate in $RATES; do
        log "$name: $USERS users, $rate msg/s for ${DURATION}s"
        if ! out=$(taskset -c "$TOOL_CPU" "$LT" xmpp --host 127.0.0.1 --port "$port" \
                --users-file "$users" --users "$USERS" --rate "$rate" --duration "$DURATION" \
                --warmup "$WARMUP" --server-pid "$pid" --domain "$DOMAIN" --tls-insecure --json "${extra[@]}" \
                2>"$WORK/$name-tool-$rate.err"); then
            log "$name: the load tool failed at $rate msg/s: $(tail -n 3 "$WORK/$name-tool-$rate.err")"
            return 0
        fi
        echo "$out" | jq -c --arg server "$name" '. + {server: $server}' >> "$RESULTS"
        loss=$(echo "$out" | jq '.loss_pct')
        p99=$(echo "$out" | jq '.latency_ms.p99 // 1e9')
        log "$name: delivered $(echo "$out" | jq '.rate_per_s') msg/s, loss $loss %, p99 $p99 ms, $(echo "$out" | jq '.server_cpu_us_per_unit') us/msg"
        if jq -en --argjson loss "$loss" --argjson p99 "$p99" \
                "\$loss > $MAX_LOSS_PCT or \$p99 > $MAX_P99_MS" >/dev/null; then
            log "$name: saturated at $rate msg/s"
            return 0
        fi
    done
}

# --- Switchboard ----------------------------------------------------------------------------
# Name (switchboard or baseline) and binary.
bench_switchboard() {
    local name=$1 bin=$2 dir port api pid
    dir=$WORK/$name-$(date +%s%N)
    mkdir -p "$dir"
    port=$(free_port); api=$(free_port)
    # Every listener on a free loopback port; limits that would throttle one source address
    # running N clients lifted, as the peers have none.
    export SWITCHBOARD_SERVER__DATA_DIR=$dir/data
    export SWITCHBOARD_TLS__CERT=$WORK/cert.pem SWITCHBOARD_TLS__KEY=$WORK/key.pem
    export SWITCHBOARD_API__LISTEN=127.0.0.1:$api
    export SWITCHBOARD_XMPP__DOMAIN=$DOMAIN
    export SWITCHBOARD_XMPP__LISTEN=127.0.0.1:$port
    export SWITCHBOARD_XMPP__WS_LISTEN=127.0.0.1:$(free_port)
    export SWITCHBOARD_TURN__LISTEN=127.0.0.1:$(free_port)
    export SWITCHBOARD_SFU__SIGNALLING_LISTEN=127.0.0.1:$(free_port)
    export SWITCHBOARD_SFU__MEDIA_LISTEN=127.0.0.1:$(free_port)
    export SWITCHBOARD_METRICS__LISTEN=127.0.0.1:$(free_port)
    export SWITCHBOARD_API__LOGIN_ATTEMPTS_PER_SOURCE=100000000
    export SWITCHBOARD_XMPP__MAX_CONNECTIONS_PER_IP=100000
    export SWITCHBOARD_XMPP__STANZA_RATE_PER_S=100000
    export SWITCHBOARD_XMPP__STANZA_BURST=100000
    "$bin" app create --name bench --json > "$dir/app.json"
    RUST_LOG=${RUST_LOG:-info} taskset -c "$SERVER_CPU" "$bin" serve > "$dir/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$name"
    wait_port "$api" "$name API"
    log "$name: pid $pid, c2s 127.0.0.1:$port; creating $USERS users over REST"
    local room_args=()
    [ "$ROOM_SIZE" -gt 0 ] && room_args=(--create-rooms --room-size "$ROOM_SIZE" --rooms-file "$dir/rooms.txt")
    taskset -c "$TOOL_CPU" "$LT" xmpp --users-file "$dir/users.txt" --create "$USERS" \
        --api "https://127.0.0.1:$api" --app-json "$dir/app.json" --domain "$DOMAIN" \
        --tls-insecure --create-only "${room_args[@]}" 2>>"$WORK/$name-create.err" \
        || die "creating users on $name: $(tail -n 3 "$WORK/$name-create.err")"
    sweep "$name" "$port" "$pid" "$dir/users.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    PIDS=()
    summarise_log "$name" "$dir/server.log" 'WARN|ERROR'
}

# --- Prosody --------------------------------------------------------------------------------
bench_prosody() {
    local dir=$WORK/prosody port pid i
    mkdir -p "$dir/data" "$dir/certs"
    port=$(free_port)
    cat > "$dir/prosody.cfg.lua" <<EOF
-- Generated by bench-xmpp.sh: c2s only, STARTTLS required, PLAIN only over TLS.
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { info = "$dir/server.log" }
daemonize = false
modules_enabled = { "roster"; "saslauth"; "tls"; "ping" }
modules_disabled = { "s2s"; "offline" }
c2s_ports = { $port }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
-- Nagle off, as Switchboard and ejabberd have it on c2s sockets; otherwise delayed ACKs,
-- not the server, dominate latency.
network_settings = { nagle = false }
certificates = "$dir/certs"
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
VirtualHost "$DOMAIN"
EOF
    chown -R prosody:prosody "$dir"
    log "prosody: registering $USERS users"
    : > "$dir/users.txt"
    for i in $(seq 0 $((USERS - 1))); do
        echo "lt$i@$DOMAIN pw$i-$(openssl rand -hex 8)" >> "$dir/users.txt"
    done
    # prosodyctl drops to the prosody user itself; four at a time to keep this short.
    awk '{split($1, a, "@"); print a[1], a[2], $2}' "$dir/users.txt" \
        | xargs -P 4 -n 3 prosodyctl --config "$dir/prosody.cfg.lua" register \
        > "$dir/register.log" 2>&1 || die "prosodyctl register failed: $(tail -n 3 "$dir/register.log")"
    setpriv --reuid=prosody --regid=prosody --init-groups \
        taskset -c "$SERVER_CPU" prosody --config "$dir/prosody.cfg.lua" -F \
        > "$dir/stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" prosody
    log "prosody: pid $pid, c2s 127.0.0.1:$port"
    sweep prosody "$port" "$pid" "$dir/users.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    PIDS=()
    summarise_log prosody "$dir/server.log" '\b(warn|error)\b'
}

# --- ejabberd -------------------------------------------------------------------------------
bench_ejabberd() {
    local dir=$WORK/ejabberd-$(date +%s%N) port api node pid sh_pid i epmd_before
    mkdir -p "$dir/db" "$dir/logs"
    port=$(free_port); api=$(free_port)
    node=bench$$@localhost
    cat > "$dir/ejabberd.yml" <<EOF
# Generated by bench-xmpp.sh: c2s with STARTTLS required, HTTP API on loopback for sign-ups.
hosts: ["$DOMAIN"]
loglevel: info
log_rotate_count: 0
certfiles: ["$WORK/combined.pem"]
auth_method: internal
auth_password_format: scram
listen:
  - port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    shaper: none
  - port: $api
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
acl:
  loopback:
    ip: ["127.0.0.0/8"]
api_permissions:
  "console commands":
    from: [ejabberd_ctl]
    who: all
    what: "*"
  "loopback api":
    from: [mod_http_api]
    who:
      acl: loopback
    what: "*"
modules:
  mod_roster: {}
  mod_ping: {}
EOF
    if [ "$ROOM_SIZE" -gt 0 ]; then
        cat >> "$dir/ejabberd.yml" <<EOF
  mod_muc:
    host: "conference.$DOMAIN"
    access_create: all
    max_users: 1000
    default_room_options:
      mam: $([ "$SAVE_HISTORY" = 1 ] && echo true || echo false)
EOF
        : > "$dir/rooms.txt"
        for i in $(seq 0 $((USERS / ROOM_SIZE - 1))); do
            echo "room$i@conference.$DOMAIN" >> "$dir/rooms.txt"
        done
    fi
    if [ "$SAVE_HISTORY" = 1 ]; then
        # The archive on SQLite (ejabberd's schema for it), every chat message stored.
        local schema
        schema=$(dpkg -L ejabberd | grep -m1 '/lite.sql$') || die "ejabberd's lite.sql not found"
        rm -f "$dir/db/ejabberd.db"
        sqlite3 "$dir/db/ejabberd.db" < "$schema"
        cat >> "$dir/ejabberd.yml" <<EOF
  mod_mam:
    db_type: sql
    default: always
sql_type: sqlite
sql_database: "$dir/db/ejabberd.db"
EOF
    fi
    cat > "$dir/ejabberdctl.cfg" <<EOF
# Schedulers sleep instead of spinning when idle, so CPU per message counts work, not waiting.
ERL_OPTIONS="+sbwt none +sbwtdcpu none +sbwtdio none"
POLL=true
ERL_MAX_PORTS=65536
ERL_PROCESSES=250000
ERL_MAX_ETS_TABLES=2000
ERLANG_NODE=$node
EJABBERD_BYPASS_WARNINGS=true
EOF
    chown -R ejabberd:ejabberd "$dir"
    epmd_before=$(pgrep -x epmd || true)
    local ctl=(ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml"
               --ctl-config "$dir/ejabberdctl.cfg" --logs "$dir/logs" --spool "$dir/db")
    # Erlang reads its distribution cookie from $HOME, which setpriv leaves as root's.
    local as_ejabberd=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups
                       env "HOME=$(getent passwd ejabberd | cut -d: -f6)")
    (cd "$dir" && "${as_ejabberd[@]}" taskset -c "$SERVER_CPU" "${ctl[@]}" foreground \
        > "$dir/stdout.log" 2>&1) &
    sh_pid=$!
    PIDS+=("$sh_pid")
    wait_port "$port" ejabberd
    wait_port "$api" "ejabberd API"
    pid=$(pgrep -u ejabberd -f "beam.smp.*$node" | head -n 1)
    [ -n "$pid" ] || die "cannot find ejabberd's beam.smp"
    PIDS+=("$pid")
    log "ejabberd: pid $pid (beam.smp), c2s 127.0.0.1:$port; registering $USERS users"
    : > "$dir/users.txt"
    for i in $(seq 0 $((USERS - 1))); do
        echo "lt$i@$DOMAIN pw$i-$(openssl rand -hex 8)" >> "$dir/users.txt"
    done
    python3 - "$api" "$dir/users.txt" <<'EOF' || die "registering users on ejabberd failed"
import http.client, json, sys
api, path = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
for line in open(path):
    jid, password = line.split()
    user, host = jid.split("@")
    body = json.dumps({"user": user, "host": host, "password": password})
    conn.request("POST", "/api/register", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read().decode()
    if response.status != 200:
        sys.exit(f"register {jid}: {response.status} {text}")
EOF
    sweep ejabberd "$port" "$pid" "$dir/users.txt"
    "${as_ejabberd[@]}" "${ctl[@]}" stop >/dev/null 2>&1 \
        || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill "$pid" 2>/dev/null || true
    wait "$sh_pid" 2>/dev/null || true
    PIDS=()
    # epmd is started by the first Erlang node; stop it only if this run started it.
    if [ -z "$epmd_before" ]; then
        local epmd_pid
        epmd_pid=$(pgrep -x epmd || true)
        [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null || true
    fi
    summarise_log ejabberd "$dir/logs/ejabberd.log" '\[(warning|error)\]'
}

# Counts a server log's warnings and errors for the report: name, file, pattern.
summarise_log() {
    local name=$1 file=$2 pattern=$3 count
    [ -f "$file" ] || return 0
    count=$(grep -Eic "$pattern" "$file" || true)
    log "$name: $count warning/error lines in its log"
    if [ "$count" != 0 ]; then
        grep -Ei "$pattern" "$file" | sed -E 's/[0-9]+-[0-9]+\.[0-9]+|lt[0-9]+/N/g' \
            | cut -c 1-200 | sort | uniq -c | sort -rn | head -n 5 >&2 || true
    fi
}

for server in $SERVERS; do
    case $server in
        switchboard) bench_switchboard switchboard "$SB" ;;
        baseline)
            [ -x "${SB_BASELINE:-}" ] || die "server baseline needs SB_BASELINE=/path/to/switchboard"
            bench_switchboard baseline "$SB_BASELINE" ;;
        prosody) bench_prosody ;;
        ejabberd) bench_ejabberd ;;
        *) die "unknown server $server" ;;
    esac
done

# --- Report ---------------------------------------------------------------------------------
python3 - "$RESULTS" "$MAX_LOSS_PCT" "$MAX_P99_MS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
max_loss, max_p99 = float(sys.argv[2]), float(sys.argv[3])
servers = list(dict.fromkeys(r["server"] for r in rows))
def ok(r):
    p99 = r["latency_ms"]["p99"]
    return r["loss_pct"] <= max_loss and p99 is not None and p99 <= max_p99
def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:,.{digits}f}"

print("Sweep (one row per run; a server stops at its first failing rate):")
print(f"| server | target msg/s | delivered msg/s | loss % | p50 ms | p99 ms | CPU us/msg | tool CPU s | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    errors = {k: v for k, v in r["errors"].items() if k != "samples" and v}
    print(f"| {r['server']} | {r['target_rate_per_s']:,.0f} | {fmt(r['rate_per_s'], 0)} | {r['loss_pct']:.2f} "
          f"| {fmt(r['latency_ms']['p50'], 2)} | {fmt(r['latency_ms']['p99'], 2)} "
          f"| {fmt(r['server_cpu_us_per_unit'])} | {fmt(r['client_cpu_s'], 2)} | {errors or '-'} |")

def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None

summary = {}
for s in servers:
    mine = [r for r in rows if r["server"] == s]
    good = [r for r in mine if ok(r)]
    best = max(good, key=lambda r: r["target_rate_per_s"]) if good else None
    summary[s] = {
        "max_rate": best["rate_per_s"] if best else None,
        "best": best,
        # Every run logs the same users in again. The first run's logins are cold; later ones
        # may hit caches (Switchboard remembers verified passwords), so both are shown.
        "login_p50": mine[0]["login_ms"]["p50"],
        "login_p99": mine[0]["login_ms"]["p99"],
        "cpu_ms_login": (mine[0]["server_cpu_us_per_login"] or 0) / 1000,
        "cpu_ms_relogin": median((r["server_cpu_us_per_login"] or 0) / 1000 for r in mine[1:]),
        "kb_session": mine[0]["server_rss_kb_per_session"],
        "kb_session_again": median(r["server_rss_kb_per_session"] for r in mine[1:]),
        "rss_mb": max(r["server_rss_mb"] for r in mine),
    }
common = None
sustained = [{r["target_rate_per_s"] for r in rows if r["server"] == s and ok(r)} for s in servers]
if sustained and all(sustained):
    shared = set.intersection(*sustained)
    common = max(shared) if shared else None
def at(s, rate):
    for r in rows:
        if r["server"] == s and r["target_rate_per_s"] == rate:
            return r
    return None

print()
print(f"Summary (saturation: loss > {max_loss:g} % or p99 > {max_p99:g} ms; CPU and latency at the highest rate every server sustained: {fmt(common, 0)} msg/s):")
print("(login and KB/session: first run = cold logins; 'again' = median of the later runs, same users logging in again)")
print("| server | max sustained msg/s | CPU us/msg | p50 ms | p99 ms | RSS KB/idle session (again) | CPU ms/login (again) | login p50 / p99 ms | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in servers:
    m = summary[s]
    r = at(s, common) if common else None
    print(f"| {s} | {fmt(m['max_rate'], 0)} | {fmt(r and r['server_cpu_us_per_unit'])} "
          f"| {fmt(r and r['latency_ms']['p50'], 2)} | {fmt(r and r['latency_ms']['p99'], 2)} "
          f"| {fmt(m['kb_session'])} ({fmt(m['kb_session_again'])}) "
          f"| {fmt(m['cpu_ms_login'])} ({fmt(m['cpu_ms_relogin'])}) "
          f"| {fmt(m['login_p50'])} / {fmt(m['login_p99'])} | {fmt(m['rss_mb'])} |")

if "switchboard" in summary and len(servers) > 1:
    print()
    print("Ratios Switchboard / peer (msgs/s: higher is better for Switchboard; the rest: lower is):")
    print("| peer | max msg/s | CPU us/msg | p50 | p99 | KB/session | CPU ms/login |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sb = summary["switchboard"]
    sb_row = at("switchboard", common) if common else None
    def ratio(a, b):
        return "n/a" if a is None or b in (None, 0) else f"{a / b:.2f}"
    for s in servers:
        if s == "switchboard":
            continue
        p = summary[s]
        p_row = at(s, common) if common else None
        g = lambda row, *keys: None if row is None else (row[keys[0]] if len(keys) == 1 else row[keys[0]][keys[1]])
        print(f"| {s} | {ratio(sb['max_rate'], p['max_rate'])} "
              f"| {ratio(g(sb_row, 'server_cpu_us_per_unit'), g(p_row, 'server_cpu_us_per_unit'))} "
              f"| {ratio(g(sb_row, 'latency_ms', 'p50'), g(p_row, 'latency_ms', 'p50'))} "
              f"| {ratio(g(sb_row, 'latency_ms', 'p99'), g(p_row, 'latency_ms', 'p99'))} "
              f"| {ratio(sb['kb_session'], p['kb_session'])} | {ratio(sb['cpu_ms_login'], p['cpu_ms_login'])} |")
EOF
log "raw results: $RESULTS"

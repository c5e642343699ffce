#!/usr/bin/env bash
# Side-by-side SFU benchmark: Switchboard and Janus 1.1.2 (Debian's package, VideoRoom plugin)
# under the same load from switchboard-loadtest sfu, in the same run, interleaved. A benchmark,
# not a test: it needs root (apt-get, network namespaces) and a few minutes.
#
# Janus never gathers ICE candidates on a loopback interface, so both servers run on a private
# test host: a network namespace with a veth pair this script creates (10.77.0.2 inside, the
# load tool on 10.77.0.1 outside) and removes afterwards. Nothing is sent anywhere else.
# Each server is pinned to one core (SERVER_CPU), the tool to the other (TOOL_CPU). Rooms are
# numeric, made by the tool with `create` (mode janus), so both servers see identical requests:
# every participant publishes VP8 + Opus and subscribes to every other feed with a
# PeerConnection of its own, as the QuickBlox client does.
#
# Usage: loadtest/bench-sfu.sh [--rooms "1 2 4"] [--participants 12] [--video-kbps 500]
#                              [--duration S] [--warmup S] [--runs N] [--servers "switchboard janus"]
#                              [--simulcast]   (three rid layers per publisher, top one forwarded)
# Environment: SERVER_CPU (1), TOOL_CPU (0), CARGO_TARGET_DIR (default
#   $HOME/.cache/switchboard/target-bench), SKIP_BUILD=1 to use binaries already built there.
# Output: one table row per run; the raw JSON lines stay in the work dir printed at the end.
set -euo pipefail

ROOMS="1 2"
PARTICIPANTS=12
VIDEO_KBPS=500
DURATION=10
WARMUP=3
RUNS=2
SERVERS="switchboard janus"
SIMULCAST=""
SERVER_CPU=${SERVER_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
NS=sbbench
HOST_IP=10.77.0.1
TEST_IP=10.77.0.2

while [ $# -gt 0 ]; do
    case $1 in
        --rooms) ROOMS=$2; shift 2 ;;
        --participants) PARTICIPANTS=$2; shift 2 ;;
        --video-kbps) VIDEO_KBPS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --simulcast) SIMULCAST=--simulcast; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "[bench-sfu $(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, apt-get)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target-bench}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building release binaries into $TARGET"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --workspace)
fi
SB=$TARGET/release/switchboard
LT=$TARGET/release/switchboard-loadtest
[ -x "$SB" ] && [ -x "$LT" ] || die "binaries missing in $TARGET/release"
if ! command -v janus >/dev/null; then
    log "installing janus from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y janus >/dev/null
fi
# The package's own service is not wanted: Janus runs here from a temp config.
systemctl stop janus 2>/dev/null || true

WORK=$(mktemp -d /tmp/bench-sfu.XXXXXX)
RESULTS=$WORK/results.jsonl
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip link del sbv0 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

# The test host.
cleanup
ip netns add "$NS"
ip link add sbv0 type veth peer name sbv1
ip link set sbv1 netns "$NS"
ip addr add "$HOST_IP/24" dev sbv0
ip link set sbv0 up
ip netns exec "$NS" ip addr add "$TEST_IP/24" dev sbv1
ip netns exec "$NS" ip link set sbv1 up
ip netns exec "$NS" ip link set lo up
# Large socket buffers on both sides, as a production SFU host would have.
sysctl -qw net.core.rmem_max=16777216 net.core.wmem_max=16777216 || true

janus_config() {
    local dir=$1
    mkdir -p "$dir"
    cat > "$dir/janus.jcfg" <<EOF
general: {
    configs_folder = "$dir"
    plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
    events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
    loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
    debug_level = 2
    session_timeout = 60
    event_loops = 2
}
media: {
    rtp_port_range = "20000-40000"
}
nat: {
    nice_debug = false
    ice_enforce_list = "sbv1"
}
plugins: {
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
    disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
events: {
    broadcast = false
}
EOF
    cat > "$dir/janus.transport.websockets.jcfg" <<EOF
general: {
    json = "compact"
    ws = true
    ws_port = 8188
    ws_ip = "$TEST_IP"
    wss = false
}
admin: {
    admin_ws = false
    admin_wss = false
}
EOF
    cat > "$dir/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
}

wait_port() {
    for _ in $(seq 100); do
        if ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$TEST_IP/8188" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$1 did not open $TEST_IP:8188"
}

start_server() {
    local name=$1 dir
    dir=$WORK/$name-$(date +%s%N)
    mkdir -p "$dir"
    case $name in
        switchboard)
            ip netns exec "$NS" env \
                SWITCHBOARD_SERVER__DATA_DIR="$dir/data" \
                SWITCHBOARD_API__LISTEN="$TEST_IP:8443" \
                SWITCHBOARD_XMPP__LISTEN="$TEST_IP:5222" \
                SWITCHBOARD_XMPP__WS_LISTEN="$TEST_IP:5291" \
                SWITCHBOARD_METRICS__LISTEN="$TEST_IP:9464" \
                SWITCHBOARD_SFU__SIGNALLING_LISTEN="$TEST_IP:8188" \
                SWITCHBOARD_SFU__MEDIA_LISTEN="$TEST_IP:10000" \
                SWITCHBOARD_SFU__PUBLIC_IP="$TEST_IP" \
                SWITCHBOARD_SFU__MAX_PUBLISHERS=64 \
                RUST_LOG=warn taskset -c "$SERVER_CPU" "$SB" serve > "$dir/server.log" 2>&1 &
            ;;
        janus)
            janus_config "$dir/conf"
            ip netns exec "$NS" taskset -c "$SERVER_CPU" janus -F "$dir/conf" -C "$dir/conf/janus.jcfg" \
                > "$dir/server.log" 2>&1 &
            ;;
    esac
    # `ip netns exec` and taskset exec the server: this pid is the server's.
    PID=$!
    wait_port "$name"
}

stop_server() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

log "work dir $WORK; servers on $TEST_IP (netns $NS, core $SERVER_CPU), tool on $HOST_IP (core $TOOL_CPU)"
for run in $(seq "$RUNS"); do
    for rooms in $ROOMS; do
        for server in $SERVERS; do
            start_server "$server"
            pid=$PID
            log "$server: run $run, $rooms rooms x $PARTICIPANTS participants, ${VIDEO_KBPS} kbit/s video"
            if out=$(taskset -c "$TOOL_CPU" "$LT" sfu --janus "ws://$TEST_IP:8188/" --mode janus \
                    --rooms "$rooms" --participants "$PARTICIPANTS" --video-kbps "$VIDEO_KBPS" \
                    --duration "$DURATION" --warmup "$WARMUP" --bind "$HOST_IP" $SIMULCAST \
                    --server-pid "$pid" --json 2> "$WORK/$server-$run-$rooms.err"); then
                echo "$out" | jq -c --arg server "$server" --argjson run "$run" '. + {server: $server, run: $run}' >> "$RESULTS"
                echo "$out" | jq -r --arg s "$server" '"\($s): \(.rate_per_s|floor) egress pkt/s, loss \(.loss_pct*100|floor/100) %, p99 \(.latency_ms.p99) ms, \(.server_cpu_us_per_unit*10|floor/10) us/pkt"' >&2
            else
                log "$server failed: $(tail -n 3 "$WORK/$server-$run-$rooms.err")"
            fi
            stop_server
        done
    done
done

echo "| server | run | rooms x participants | egress pkt/s | loss % | latency p50 / p99 ms | server CPU us/pkt | server CPU s | RSS MB |"
echo "|---|---:|---|---:|---:|---|---:|---:|---:|"
jq -r '"| \(.server) | \(.run) | \(.rooms) x \(.participants) | \(.rate_per_s|floor) | \(.loss_pct*100|floor/100) | \(.latency_ms.p50) / \(.latency_ms.p99) | \(.server_cpu_us_per_unit*10|floor/10) | \(.server_cpu_s) | \(.server_rss_mb|floor) |"' "$RESULTS"
log "raw results: $RESULTS"

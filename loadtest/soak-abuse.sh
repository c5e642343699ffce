#!/usr/bin/env bash
# Soak under abuse (not part of CI): a release Switchboard with its default configuration takes,
# for --duration seconds, stalled receivers, 50 KB floods into them, pre-auth trickles and
# password brute force against the well-behaved users from 127.0.0.2-250 (loadtest/abuse.py),
# while switchboard-loadtest exchanges chat between those users at a steady rate. Prints the
# well-behaved client's JSON result (p99, loss) and the server's RSS every 30 s.
#
# Usage: loadtest/soak-abuse.sh [--duration S] [--rate MSGS_PER_S] [--users N]
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/switchboard/target), SKIP_BUILD=1.
set -euo pipefail

DURATION=1800
RATE=200
USERS=40
while [ $# -gt 0 ]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}
SB=$CARGO_TARGET_DIR/release/switchboard
LT=$CARGO_TARGET_DIR/release/switchboard-loadtest
log() { echo "[soak $(date +%H:%M:%S)] $*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$REPO" && cargo build --release --quiet --bin switchboard \
        && cargo build --release --quiet -p switchboard-loadtest)
fi
WORK=$(mktemp -d /tmp/soak-abuse.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); API=$(free_port)
export SWITCHBOARD_SERVER__DATA_DIR=$WORK/data
export SWITCHBOARD_API__LISTEN=127.0.0.1:$API
export SWITCHBOARD_XMPP__LISTEN=127.0.0.1:$PORT
export SWITCHBOARD_XMPP__WS_LISTEN=127.0.0.1:$(free_port)
export SWITCHBOARD_METRICS__LISTEN=127.0.0.1:$(free_port)
export SWITCHBOARD_TURN__LISTEN=127.0.0.1:$(free_port)
export SWITCHBOARD_SFU__SIGNALLING_LISTEN=127.0.0.1:$(free_port)
export SWITCHBOARD_SFU__MEDIA_LISTEN=127.0.0.1:$(free_port)
"$SB" app create --name soak --json > "$WORK/app.json"
"$SB" serve > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; kill $ABUSE 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
TOTAL=$((USERS + 10))
"$LT" xmpp --users-file "$WORK/users.txt" --create "$TOTAL" --api "https://127.0.0.1:$API" \
    --app-json "$WORK/app.json" --tls-insecure --create-only 2> "$WORK/create.err"
log "server pid $PID, c2s 127.0.0.1:$PORT, $USERS well-behaved users at $RATE msg/s for ${DURATION}s"

python3 "$REPO/loadtest/abuse.py" --port "$PORT" --users-file "$WORK/users.txt" \
    --victims "$USERS" --duration "$DURATION" > "$WORK/abuse.jsonl" 2> "$WORK/abuse.err" &
ABUSE=$!
(
    start=$(date +%s)
    while kill -0 $PID 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status 2>/dev/null || echo 0)
        echo "$(( $(date +%s) - start )) $rss"
        sleep 30
    done
) > "$WORK/rss.txt" &
"$LT" xmpp --host 127.0.0.1 --port "$PORT" --users-file "$WORK/users.txt" --users "$USERS" \
    --rate "$RATE" --duration "$DURATION" --warmup 5 --server-pid "$PID" --tls-insecure --json \
    > "$WORK/client.json" 2> "$WORK/client.err" || log "the load tool failed: $(tail -n 3 "$WORK/client.err")"
wait $ABUSE || true
echo "well-behaved client:"; cat "$WORK/client.json"; echo
echo "abuse (last):"; tail -n 1 "$WORK/abuse.jsonl"
echo "server RSS (s, kB):"; awk '{printf "%s:%s ", $1, $2} END {print ""}' "$WORK/rss.txt"
echo "server log warnings/errors: $(grep -Eic 'WARN|ERROR' "$WORK/server.log" || true)"
log "work dir: $WORK"

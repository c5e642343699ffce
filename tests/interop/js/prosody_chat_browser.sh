#!/usr/bin/env bash
# Validates chat_browser.js against Debian's Prosody (not against Switchboard):
# starts a throw-away Prosody (temp dir, 127.0.0.1 only, mod_websocket),
# registers users {id}-{appId}@localhost, makes them mutual roster contacts
# (Prosody answers jabber:iq:last only to subscribed contacts), then runs
# chat_browser.js with SB_SKIP_REST=1 (password instead of session token).
#
# Needs: prosody, chromium (apt), node_modules (npm ci). Run as root (Prosody
# itself runs as user prosody) or as a normal user.
# Env passed through: SB_TRACE_WS, SB_QB_DEBUG, SWITCHBOARD_CHROMIUM.
# PROSODY_KEEP=1 keeps the temp dir (prosody.log has every stanza).
# PROSODY_NO_ROSTER=1 skips the roster seeding (last_activity then fails:
# Prosody answers <forbidden/>, the SDK reports seconds=undefined).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
APP_ID=42
DOMAIN=localhost
UID_A=7
UID_B=8
PASS_A=alicepass1
PASS_B=bobpass12

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

TMP="$(mktemp -d -t sb-chatbrowser-prosody.XXXXXX)"
PROSODY_PID=""
run_as() { if [ "$(id -u)" -eq 0 ]; then runuser -u prosody -- "$@"; else "$@"; fi; }
cleanup() {
    local rc=$?
    if [ -n "$PROSODY_PID" ]; then kill "$PROSODY_PID" 2>/dev/null || true; wait "$PROSODY_PID" 2>/dev/null || true; fi
    if [ -n "${PROSODY_KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT

HTTP_PORT="$(free_port)"
C2S_PORT="$(free_port)"
mkdir -p "$TMP/data"
cat >"$TMP/prosody.cfg.lua" <<EOF
pidfile = "$TMP/prosody.pid"
data_path = "$TMP/data"
log = { debug = "$TMP/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { $HTTP_PORT }
http_interfaces = { "127.0.0.1" }
https_ports = { }
modules_enabled = {
    "roster"; "saslauth"; "disco"; "carbons"; "ping"; "lastactivity";
    "smacks"; "websocket"; "http";
}
modules_disabled = { "s2s"; "tls"; "offline" }
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
cross_domain_websocket = true
VirtualHost "$DOMAIN"
EOF
if [ "$(id -u)" -eq 0 ]; then chown -R prosody: "$TMP"; fi

for u in "$UID_A:$PASS_A" "$UID_B:$PASS_B"; do
    (cd "$TMP" && run_as prosodyctl --config "$TMP/prosody.cfg.lua" register "${u%%:*}-$APP_ID" "$DOMAIN" "${u#*:}") >/dev/null
done
# Mutual subscription (data/<host>/roster/<user>.dat; '-' is stored as %2d).
seed_roster() { # owner contact
    cat >"$TMP/data/$DOMAIN/roster/$1%2d$APP_ID.dat" <<EOF
return {
	[false] = { version = 1; pending = {} };
	["$2-$APP_ID@$DOMAIN"] = { subscription = "both"; groups = {} };
};
EOF
}
if [ -z "${PROSODY_NO_ROSTER:-}" ]; then
    run_as mkdir -p "$TMP/data/$DOMAIN/roster"
    seed_roster "$UID_A" "$UID_B"
    seed_roster "$UID_B" "$UID_A"
fi
if [ "$(id -u)" -eq 0 ]; then chown -R prosody: "$TMP"; fi

(cd "$TMP" && exec runuser -u prosody -- prosody -F --config "$TMP/prosody.cfg.lua") >"$TMP/stdout.log" 2>&1 &
PROSODY_PID=$!
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null; then break; fi
    sleep 0.1
done

export SB_SKIP_REST=1
export SB_DOMAIN="$DOMAIN"
export SB_WS_URL="ws://127.0.0.1:$HTTP_PORT/xmpp-websocket"
export SB_APP_ID="$APP_ID"
export SB_USERS="[{\"id\":$UID_A,\"login\":\"a\",\"password\":\"$PASS_A\"},{\"id\":$UID_B,\"login\":\"b\",\"password\":\"$PASS_B\"}]"
rc=0
node "$HERE/chat_browser.js" || rc=$?
echo "prosody log: $TMP/prosody.log ($(wc -l <"$TMP/prosody.log") lines)" >&2
exit "$rc"

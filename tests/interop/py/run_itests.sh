#!/usr/bin/env bash
# Runs slixmpp's own live integration tests ("itests", shipped in its PyPI
# sdist, not in the wheel) against an XMPP server on 127.0.0.1.
#
# Usage:
#   run_itests.sh [--baseline FILE] [TEST_MODULE ...]
#   run_itests.sh --fetch-only        download + extract the itests, run nothing
#   run_itests.sh --list              list the itest modules
#
# Environment:
#   SB_XMPP_HOST, SB_XMPP_PORT   the server (host default 127.0.0.1; STARTTLS,
#                                certificate not verified)
#   SB_USERS                     JSON list as for xmpp_client.py; the first two
#                                accounts become CI_ACCOUNT1 and CI_ACCOUNT2
#   CI_ACCOUNT1, CI_ACCOUNT1_PASSWORD, CI_ACCOUNT2, CI_ACCOUNT2_PASSWORD
#                                (the itests' own variables) instead of SB_USERS
#   CI_MUC_SERVER                a MUC service JID (e.g. conference.localhost):
#                                only when set are the MUC itests (test_muc,
#                                test_selfping, test_moderate) run by default;
#                                unset, it is conference.<domain> (never the
#                                public default of the itests)
#   SWITCHBOARD_PYTHON           python with slixmpp (default: the venv of
#                                scripts/test, else python3); the itests are
#                                those of the installed slixmpp version
#   SWITCHBOARD_CACHE            cache dir (default ~/.cache/switchboard); the
#                                itests go to $SWITCHBOARD_CACHE/slixmpp-itests-<ver>
#   SB_ITESTS_TIMEOUT            seconds per test module (default 60)
#   SB_DEBUG=1                   slixmpp debug log on stderr
#
# TEST_MODULE: test_ping or test_ping.py; none: every module except those that
# cannot work against a server on a random local port: test_tls_check
# (hard-codes ports 5222/5223 and the upstream CA), test_component (XEP-0114
# component port and secret), and the MUC ones unless CI_MUC_SERVER is set.
# test_httpupload and test_sos skip themselves without aiohttp (not installed).
#
# Output: `PASS|FAIL|SKIP <module>.<Class>.<test>` per test, then
#   itests: N passed, M failed, K skipped
# Exit 0 when every test that ran passed; with --baseline FILE (one test id a
# line, # comments allowed) only the modules named in FILE run, and the exit
# code is 0 when every test listed there passed (others are only reported).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}"
BASELINE=""
MODE=run
MODULES=()

die() { printf 'run_itests.sh: %s\n' "$*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) BASELINE="$2"; shift ;;
        --fetch-only) MODE=fetch ;;
        --list) MODE=list ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) m="${1%.py}"; MODULES+=("${m#itests/}") ;;
    esac
    shift
done

PY="${SWITCHBOARD_PYTHON:-}"
if [ -z "$PY" ]; then
    venv="${SWITCHBOARD_VENV:-$HOME/.cache/switchboard/venv}"
    if [ -x "$venv/bin/python" ]; then PY="$venv/bin/python"; else PY=python3; fi
fi
VER="$("$PY" -c 'import slixmpp; print(slixmpp.__version__)' 2>/dev/null)" \
    || die "$PY has no slixmpp (run scripts/test or pip install -r $HERE/requirements.txt)"

# --- fetch: pip download of the sdist, cached per version -------------------
ITESTS_ROOT="$CACHE/slixmpp-itests-$VER"
if [ ! -f "$ITESTS_ROOT/.complete" ]; then
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/.itests-dl.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    printf 'run_itests.sh: fetching the slixmpp %s sdist for its itests\n' "$VER" >&2
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: "slixmpp==$VER" -d "$tmp" >&2 \
        || die "pip download of the slixmpp $VER sdist failed"
    sdist="$(ls "$tmp"/slixmpp-*.tar.gz | head -n 1)"
    [ -n "$sdist" ] || die "no sdist in $tmp"
    mkdir -p "$tmp/x"
    tar -xzf "$sdist" -C "$tmp/x" --wildcards '*/itests/*' '*/run_integration_tests.py'
    src="$(ls -d "$tmp"/x/slixmpp-*)"
    rm -rf "$ITESTS_ROOT"
    mkdir -p "$ITESTS_ROOT"
    cp -r "$src/itests" "$src/run_integration_tests.py" "$ITESTS_ROOT/"
    touch "$ITESTS_ROOT/.complete"
    rm -rf "$tmp"
    trap - EXIT
fi
ALL_MODULES=()
for f in "$ITESTS_ROOT"/itests/test_*.py; do
    b="$(basename "$f" .py)"
    ALL_MODULES+=("$b")
done

case "$MODE" in
    fetch) echo "itests of slixmpp $VER in $ITESTS_ROOT"; exit 0 ;;
    list) printf '%s\n' "${ALL_MODULES[@]}"; exit 0 ;;
esac

# --- accounts ----------------------------------------------------------------
[ -n "${SB_XMPP_PORT:-}" ] || die "SB_XMPP_PORT not set"
export SB_XMPP_HOST="${SB_XMPP_HOST:-127.0.0.1}" SB_XMPP_PORT
if [ -z "${CI_ACCOUNT1:-}" ]; then
    [ -n "${SB_USERS:-}" ] || die "set SB_USERS or CI_ACCOUNT1/2 and their passwords"
    eval "$("$PY" - <<'PY'
import json, os, shlex
u = json.loads(os.environ["SB_USERS"])
assert len(u) >= 2, "SB_USERS needs 2 accounts"
for i in (0, 1):
    print("export CI_ACCOUNT%d=%s CI_ACCOUNT%d_PASSWORD=%s" % (
        i + 1, shlex.quote(u[i]["jid"]), i + 1, shlex.quote(u[i]["password"])))
PY
)"
fi
[ -n "${CI_ACCOUNT2:-}" ] || die "CI_ACCOUNT2 not set"
# Without CI_MUC_SERVER test_muc/test_selfping default to a public MUC
# (chat.jabberfr.org): point them at a local name instead, always.
MUC_SET="${CI_MUC_SERVER:-}"
export CI_MUC_SERVER="${CI_MUC_SERVER:-conference.${CI_ACCOUNT1#*@}}"

# --- which modules -----------------------------------------------------------
if [ -n "$BASELINE" ]; then
    [ -f "$BASELINE" ] || die "no baseline file $BASELINE"
    mapfile -t MODULES < <(grep -v '^\s*#' "$BASELINE" | grep . | cut -d. -f1 | sort -u)
elif [ ${#MODULES[@]} -eq 0 ]; then
    for m in "${ALL_MODULES[@]}"; do
        case "$m" in
            test_tls_check|test_component) continue ;;
            test_muc|test_selfping|test_moderate) [ -n "$MUC_SET" ] || continue ;;
        esac
        MODULES+=("$m")
    done
fi
for m in "${MODULES[@]}"; do
    [ -f "$ITESTS_ROOT/itests/$m.py" ] || die "no itest module $m (see --list)"
done

# --- run ---------------------------------------------------------------------
results="$(mktemp -t sb-itests.XXXXXX)"
trap 'rm -f "$results"' EXIT
# CI is set to `true` by our CI; the itests treat CI=woodpecker specially.
SB_ITESTS_RESULTS="$results" CI= "$PY" "$HERE/itests_shim.py" "$ITESTS_ROOT" "${MODULES[@]}"

passed="$(grep -c '^PASS ' "$results" || true)"
failed="$(grep -c '^FAIL ' "$results" || true)"
skipped="$(grep -c '^SKIP ' "$results" || true)"
if [ "$failed" -gt 0 ]; then
    echo "failed: $(grep '^FAIL ' "$results" | cut -d' ' -f2 | tr '\n' ' ')"
fi
rc=0
if [ -n "$BASELINE" ]; then
    missing="$(grep -v '^\s*#' "$BASELINE" | grep . | while read -r t; do
        grep -qx "PASS $t" "$results" || echo "$t"; done)"
    if [ -n "$missing" ]; then
        echo "baseline tests not passing: $(echo "$missing" | tr '\n' ' ')"
        rc=1
    else
        echo "baseline: all $(grep -v '^\s*#' "$BASELINE" | grep -c .) tests of $(basename "$BASELINE") pass"
    fi
    echo "itests: $passed passed, $failed failed, $skipped skipped"
else
    echo "itests: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ] || rc=1
fi
exit "$rc"

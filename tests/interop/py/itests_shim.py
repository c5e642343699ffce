#!/usr/bin/env python3
"""Runs slixmpp's own integration tests (the sdist's itests/) against the
server in SB_XMPP_HOST / SB_XMPP_PORT. Called by run_itests.sh, which fetches
the itests and sets the environment; not meant to be run by hand.

  itests_shim.py ITESTS_ROOT MODULE...   runs the modules (test_ping, ...) each in
                                         a child process (timeout
                                         SB_ITESTS_TIMEOUT s, default 60) and
                                         prints `PASS|FAIL|SKIP <test id>` lines
  itests_shim.py --child ITESTS_ROOT MODULE   (internal) runs one module in-process

Patches applied to slixmpp before the tests import it (what the upstream CI
does with DNS and a CA bundle): connect() without host/port goes to
SB_XMPP_HOST:SB_XMPP_PORT instead of DNS SRV/A lookups of the JID's domain,
and the server certificate is not verified. Everything else is slixmpp's
default: SASL mechanism choice (SCRAM-SHA-256 > SCRAM-SHA-1 > PLAIN ...) and
a direct-TLS attempt on the port before falling back to STARTTLS.
"""

import os
import ssl
import subprocess
import sys
import unittest


def patch_slixmpp(sb_host, sb_port):
    from slixmpp.clientxmpp import ClientXMPP
    from slixmpp.xmlstream.xmlstream import XMLStream

    orig_init = XMLStream.__init__

    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE

    XMLStream.__init__ = init

    orig_connect = ClientXMPP.connect

    def connect(self, host=None, port=None):
        if not (host and port):
            host, port = sb_host, sb_port
        return orig_connect(self, host=host, port=port)

    ClientXMPP.connect = connect


class LineResult(unittest.TextTestResult):
    def _line(self, status, test, detail=""):
        tid = test.id()
        if tid.startswith("itests."):
            tid = tid[len("itests."):]
        msg = "%s %s" % (status, tid)
        if detail:
            first = detail.strip().splitlines()[-1] if detail.strip() else ""
            msg += "  # " + first[:300]
        print(msg, flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line("PASS", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line("FAIL", test, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._line("FAIL", test, self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line("SKIP", test, reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._line("PASS", test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._line("FAIL", test, "unexpected success")


def child(root, module):
    import logging
    if os.environ.get("SB_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        logging.basicConfig(level=100)
        logging.disable(100)
    patch_slixmpp(os.environ.get("SB_XMPP_HOST", "127.0.0.1"), int(os.environ["SB_XMPP_PORT"]))
    sys.path.insert(0, root)
    os.chdir(root)  # some itests open files relative to the sdist root
    import importlib
    mod = importlib.import_module("itests." + module)
    # Announce the tests first, so the parent can mark unfinished ones on timeout.
    for t in _flatten(mod.suite):
        tid = t.id()
        print("TEST %s" % (tid[len("itests."):] if tid.startswith("itests.") else tid), flush=True)
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=LineResult, verbosity=0)
    runner.run(mod.suite)
    return 0


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def parent(root, modules):
    timeout = float(os.environ.get("SB_ITESTS_TIMEOUT", "60"))
    results = {}  # test id -> (status, detail)
    for module in modules:
        announced = []
        try:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", root, module],
                                 stdout=subprocess.PIPE, stderr=None if os.environ.get("SB_DEBUG") else subprocess.DEVNULL,
                                 text=True, timeout=timeout).stdout
            timed_out = False
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            timed_out = True
        for line in out.splitlines():
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[0] == "TEST":
                announced.append(parts[1])
            elif len(parts) >= 2 and parts[0] in ("PASS", "FAIL", "SKIP"):
                results[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
                print(line, flush=True)
        why = "module timed out after %ss" % timeout if timed_out else "child crashed before reporting"
        if not announced:  # import error or crash before listing its tests
            announced = [module]
        for tid in announced:
            if tid not in results:
                results[tid] = ("FAIL", "# " + why)
                print("FAIL %s  # %s" % (tid, why), flush=True)
    return results


def main():
    args = sys.argv[1:]
    if args and args[0] == "--child":
        return child(args[1], args[2])
    root, modules = args[0], args[1:]
    results = parent(root, modules)
    out = os.environ.get("SB_ITESTS_RESULTS")
    if out:
        with open(out, "w") as f:
            for tid, (status, _) in sorted(results.items()):
                f.write("%s %s\n" % (status, tid))
    return 0


if __name__ == "__main__":
    sys.exit(main())

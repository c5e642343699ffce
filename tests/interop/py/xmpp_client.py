#!/usr/bin/env python3
"""slixmpp-driven XMPP interop scenarios for Switchboard (or any XMPP server).

Usage: xmpp_client.py [STEP ...]        (no STEP: all of them, in order)

Environment:
  SB_XMPP_HOST   host to connect to (default 127.0.0.1); no DNS SRV lookups
  SB_XMPP_PORT   c2s port (STARTTLS; the certificate is not verified)
  SB_DOMAIN      XMPP domain (default: the domain of the first user's JID)
  SB_USERS       JSON list of at least 3 accounts, used as a, b, c:
                 [{"jid": "1-42@localhost", "password": "..."}, ...]
  SB_TIMEOUT     global timeout in seconds (default 90)
  SB_DEBUG       1: slixmpp debug log (every stanza) on stderr

Steps (a, b, c = the first three SB_USERS; a server-assigned resource each):
  login           a and b: STARTTLS, SASL PLAIN, bind, session; bound bare JID checked
  roster_get      removes leftovers (b from a's roster, a from b's), roster get,
                  a adds b (name + group): push to a, then roster get shows it, none
  subscribe       a<->b subscription handshake; both rosters `both`; presences seen
  message_full    a -> b/full: from = a/full, same id, unicode + <&> body intact
  message_bare    a -> b bare: b receives
  iq_ping         XEP-0199 to the domain (< 1 s) and to b/full
  disco           disco#info of the domain: identity server/im, urn:xmpp:ping
  carbons         b2 = second resource of b; XEP-0280 received + sent carbons
  offline         a sends 3 messages to offline c; c logs in: all 3, in order, <delay/>
  spoofed_from    a sends with from=c: b gets it from a's real full JID
  sm_resume       XEP-0198 enable+resume, TCP reset, b sends 2, resume: each exactly once
  default_connect slixmpp defaults (direct TLS tried first on the port, then
                  STARTTLS, best SASL mechanism): session within 5 s

Output: one line per step on stdout, `STEP <name> ok`, or `FAIL <name>: <detail>`
and exit 1 at the first failure; `ALL OK` and exit 0 at the end. Exit 2 on a
usage error. Steps connect whatever clients they need, so any subset runs on
its own (steps after a selected one may rely on its state: run them in the
listed order, which is what happens when they are given in any order).
"""

import asyncio
import json
import logging
import os
import socket
import ssl
import struct
import sys
import time
import uuid
import xml.etree.ElementTree as ET

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

STEPS = [
    "login",
    "roster_get",
    "subscribe",
    "message_full",
    "message_bare",
    "iq_ping",
    "disco",
    "carbons",
    "offline",
    "spoofed_from",
    "sm_resume",
    "default_connect",
]

NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PING = "urn:xmpp:ping"
NS_SM = "urn:xmpp:sm:3"

STEP_TIMEOUT = 20.0  # seconds for one wait inside a step
UNICODE_BODY = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f389 <&> \"q\" 'a' ]]> &amp;"


class Fail(Exception):
    pass


def check(cond, detail):
    if not cond:
        raise Fail(detail)


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


class Client(ClientXMPP):
    """One connection (one resource) with a log of every stanza received."""

    def __init__(self, name, jid, password, sm=False, defaults=False):
        super().__init__(jid, password, sasl_mech=None if defaults else "PLAIN")
        self.name = name
        # Connect exactly where told: STARTTLS on the given port; no direct
        # TLS attempt first (slixmpp's default tries direct TLS on the same
        # port before STARTTLS), no plaintext fallback, no cert verification.
        self.enable_direct_tls = defaults
        self.enable_starttls = True
        self.enable_plaintext = False
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # Subscriptions are handled by the scenario, not automatically.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")  # answers pings
        if sm:
            self.register_plugin("xep_0198", pconfig={"allow_resume": True, "window": 1})
        self.log = []  # every top-level element received, in order
        self.events = []  # (name, data) of selected events
        self.changed = asyncio.Event()
        self.add_filter("in", self._capture)
        for ev in ("session_start", "session_resumed", "sm_enabled", "sm_failed",
                   "failed_auth", "disconnected", "connection_failed", "stream_error",
                   "session_end", "killed"):
            self.add_event_handler(ev, self._make_recorder(ev))

    def _capture(self, stanza):
        self.log.append(stanza)
        self.changed.set()
        return stanza

    def _make_recorder(self, name):
        def rec(data=None):
            self.events.append((name, data))
            self.changed.set()
        return rec

    def mark(self):
        return len(self.log)

    async def wait_for(self, pred, what, timeout=STEP_TIMEOUT, since=0, events=False):
        """First log entry (or event, with events=True) from index `since` on
        for which pred is true; Fail after timeout."""
        deadline = time.monotonic() + timeout
        idx = since
        while True:
            seq = self.events if events else self.log
            while idx < len(seq):
                item = seq[idx]
                idx += 1
                try:
                    if pred(item):
                        return item
                except (KeyError, AttributeError, TypeError, ValueError):
                    pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Fail("%s: timed out after %.1fs waiting for %s" % (self.name, timeout, what))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def collect(self, pred, since=0):
        out = []
        for item in self.log[since:]:
            try:
                if pred(item):
                    out.append(item)
            except (KeyError, AttributeError, TypeError, ValueError):
                pass
        return out

    async def iq(self, typ, to, payload_xml, timeout=10):
        """Send an IQ with a raw payload; return the result's XML element.
        Raises Fail on error or timeout."""
        iq = self.make_iq(ito=to, itype=typ)
        if payload_xml is not None:
            iq.append(ET.fromstring(payload_xml))
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            raise Fail("%s: iq %s to %s returned error: %s" % (self.name, typ, to or "(own account)", e.iq))
        except IqTimeout:
            raise Fail("%s: iq %s to %s timed out after %ss" % (self.name, typ, to or "(own account)", timeout))
        return res.xml


def is_msg(st):
    return st.xml.tag == q(NS_CLIENT, "message")


def is_pres(st):
    return st.xml.tag == q(NS_CLIENT, "presence")


def body_of(xml):
    b = xml.find(q(NS_CLIENT, "body"))
    return None if b is None else (b.text or "")


def roster_items(query_xml):
    """{bare jid: {'subscription', 'ask', 'name', 'groups'}} from a roster <query/>."""
    items = {}
    if query_xml is None:
        return items
    for it in query_xml.findall(q(NS_ROSTER, "item")):
        items[JID(it.get("jid")).bare] = {
            "subscription": it.get("subscription", "none"),
            "ask": it.get("ask"),
            "name": it.get("name"),
            "groups": [g.text or "" for g in it.findall(q(NS_ROSTER, "group"))],
        }
    return items


def is_roster_push(st):
    return (st.xml.tag == q(NS_CLIENT, "iq") and st.xml.get("type") == "set"
            and st.xml.find(q(NS_ROSTER, "query")) is not None)


def push_items(st):
    return roster_items(st.xml.find(q(NS_ROSTER, "query")))


class Scenario:
    def __init__(self, host, port, domain, users):
        self.host = host
        self.port = port
        self.domain = domain
        self.users = users  # [(jid, password)] for a, b, c
        self.clients = {}
        self.token = uuid.uuid4().hex[:8]
        self.roster_reset = False

    def jid(self, who):
        return JID({"a": self.users[0][0], "b": self.users[1][0], "c": self.users[2][0]}[who])

    def pw(self, who):
        return {"a": self.users[0][1], "b": self.users[1][1], "c": self.users[2][1]}[who]

    def uid(self, label):
        return "%s-%s-%s" % (label, self.token, uuid.uuid4().hex[:6])

    async def connect(self, name, who, sm=False, presence=True, defaults=False):
        """Connect, authenticate, bind; check the bound JID; send initial presence."""
        if name in self.clients:
            return self.clients[name]
        cl = Client(name, self.jid(who), self.pw(who), sm=sm, defaults=defaults)
        self.clients[name] = cl
        cl.connect(self.host, self.port)
        # With defaults (direct TLS tried first) the first connection_failed
        # is expected: slixmpp falls back to STARTTLS by itself.
        terminal = ("session_start", "failed_auth", "stream_error") + (() if defaults else ("connection_failed",))
        try:
            ev = await cl.wait_for(
                lambda e: e[0] in terminal or (e[0] == "disconnected" and not cl.sessionstarted and not defaults),
                "session_start", events=True, timeout=5.0 if defaults else STEP_TIMEOUT)
        except Fail as e:
            cl.cancel_connection_attempt()
            fails = ["%s" % (d,) for (n, d) in cl.events if n == "connection_failed"]
            raise Fail("%s (connection attempts failed with: %s)" % (e, "; ".join(fails) or "none"))
        if ev[0] == "failed_auth":
            raise Fail("%s: SASL PLAIN authentication failed for %s" % (name, self.jid(who)))
        if ev[0] != "session_start":
            cl.cancel_connection_attempt()  # no reconnection loop
            raise Fail("%s: no session to %s:%s (%s: %s)" % (name, self.host, self.port, ev[0], ev[1]))
        bound = cl.boundjid
        check(bound.bare == self.jid(who).bare,
              "%s: bound JID %s, expected bare %s" % (name, bound, self.jid(who).bare))
        check(bound.resource, "%s: bound JID %s has no resource" % (name, bound))
        if presence:
            cl.send_presence()
        return cl

    async def close_all(self):
        futs = []
        for cl in self.clients.values():
            if cl.transport:
                futs.append(cl.disconnect(wait=1.0))
        if futs:
            await asyncio.wait([asyncio.ensure_future(f) for f in futs], timeout=3)

    # --- steps ---------------------------------------------------------------

    async def step_login(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        check(a.boundjid.resource != b.boundjid.resource or a.boundjid.bare != b.boundjid.bare,
              "a and b bound the same JID")

    async def roster_get(self, cl):
        res = await cl.iq("get", None, "<query xmlns='%s'/>" % NS_ROSTER)
        qx = res.find(q(NS_ROSTER, "query"))
        check(qx is not None, "%s: roster result without <query/>: %s" % (cl.name, ET.tostring(res, encoding="unicode")))
        return roster_items(qx)

    async def roster_remove_if_present(self, cl, other):
        items = await self.roster_get(cl)
        if other.bare in items:
            m = cl.mark()
            await cl.iq("set", None, "<query xmlns='%s'><item jid='%s' subscription='remove'/></query>"
                        % (NS_ROSTER, other.bare))
            await cl.wait_for(lambda st: is_roster_push(st) and
                              push_items(st).get(other.bare, {}).get("subscription") == "remove",
                              "roster push removing %s" % other.bare, since=m)

    async def step_roster_get(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        bj, aj = self.jid("b"), self.jid("a")
        # Leftovers of an earlier run against the same server: start clean.
        await self.roster_remove_if_present(a, bj)
        await self.roster_remove_if_present(b, aj)
        self.roster_reset = True
        items = await self.roster_get(a)
        check(bj.bare not in items, "a: roster still has %s after removal: %s" % (bj.bare, items))
        m = a.mark()
        await a.iq("set", None,
                   "<query xmlns='%s'><item jid='%s' name='Bob &amp; Co'><group>Friends</group></item></query>"
                   % (NS_ROSTER, bj.bare))
        push = await a.wait_for(lambda st: is_roster_push(st) and bj.bare in push_items(st),
                                "roster push with %s" % bj.bare, since=m)
        pfrom = push.xml.get("from")
        check(pfrom in (None, "", aj.bare, str(a.boundjid)),
              "a: roster push from %r (must be absent or own bare JID)" % pfrom)
        item = push_items(push)[bj.bare]
        check(item["name"] == "Bob & Co", "a: pushed item name %r" % item["name"])
        check(item["groups"] == ["Friends"], "a: pushed item groups %r" % item["groups"])
        check(item["subscription"] == "none", "a: pushed item subscription %r" % item["subscription"])
        items = await self.roster_get(a)
        check(bj.bare in items, "a: roster get lacks %s: %s" % (bj.bare, items))
        it = items[bj.bare]
        check(it["subscription"] == "none" and it["name"] == "Bob & Co" and it["groups"] == ["Friends"],
              "a: roster item %s" % it)

    async def step_subscribe(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        aj, bj = self.jid("a"), self.jid("b")
        if not self.roster_reset:
            await self.roster_remove_if_present(a, bj)
            await self.roster_remove_if_present(b, aj)
        ma, mb = a.mark(), b.mark()

        def pres(typ, frm_bare):
            return lambda st: (is_pres(st) and st.xml.get("type") == typ
                               and JID(st.xml.get("from")).bare == frm_bare)

        a.send_presence(pto=bj.bare, ptype="subscribe")
        sub = await b.wait_for(pres("subscribe", aj.bare), "subscribe from a", since=mb)
        check(JID(sub.xml.get("from")).resource == "",
              "b: subscribe from %s (must be a's bare JID)" % sub.xml.get("from"))
        b.send_presence(pto=aj.bare, ptype="subscribed")
        b.send_presence(pto=aj.bare, ptype="subscribe")
        await a.wait_for(pres("subscribed", bj.bare), "subscribed from b", since=ma)
        await a.wait_for(pres("subscribe", bj.bare), "subscribe from b", since=ma)
        a.send_presence(pto=bj.bare, ptype="subscribed")
        await b.wait_for(pres("subscribed", aj.bare), "subscribed from a", since=mb)
        # Both now get each other's available presence, from the full JID.
        await a.wait_for(lambda st: is_pres(st) and st.xml.get("type") in (None, "")
                              and st.xml.get("from") == str(b.boundjid),
                              "available presence from %s" % b.boundjid, since=ma)
        await b.wait_for(lambda st: is_pres(st) and st.xml.get("type") in (None, "")
                              and st.xml.get("from") == str(a.boundjid),
                              "available presence from %s" % a.boundjid, since=mb)
        await a.wait_for(lambda st: is_roster_push(st) and
                         push_items(st).get(bj.bare, {}).get("subscription") == "both",
                         "roster push b=both", since=ma)
        await b.wait_for(lambda st: is_roster_push(st) and
                         push_items(st).get(aj.bare, {}).get("subscription") == "both",
                         "roster push a=both", since=mb)
        ra = (await self.roster_get(a)).get(bj.bare)
        rb = (await self.roster_get(b)).get(aj.bare)
        check(ra and ra["subscription"] == "both" and not ra["ask"], "a: roster item for b is %s" % ra)
        check(rb and rb["subscription"] == "both" and not rb["ask"], "b: roster item for a is %s" % rb)

    async def send_and_receive(self, snd, rcv, to, body, expect_from, mtype="chat"):
        mid = self.uid("msg")
        m = rcv.mark()
        msg = snd.make_message(mto=to, mbody=body, mtype=mtype)
        msg["id"] = mid
        msg.send()
        got = await rcv.wait_for(lambda st: is_msg(st) and st.xml.get("id") == mid,
                                 "message id %s" % mid, since=m)
        check(got.xml.get("from") == str(expect_from),
              "%s: message from %r, expected %s" % (rcv.name, got.xml.get("from"), expect_from))
        check(body_of(got.xml) == body,
              "%s: body %r, expected %r" % (rcv.name, body_of(got.xml), body))
        check(got.xml.get("type", "normal") == mtype,
              "%s: type %r, expected %s" % (rcv.name, got.xml.get("type"), mtype))
        return got

    async def step_message_full(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        got = await self.send_and_receive(a, b, b.boundjid, UNICODE_BODY + " " + self.token, a.boundjid)
        check(got.xml.get("to") in (str(b.boundjid), None), "b: to=%r" % got.xml.get("to"))

    async def step_message_bare(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        await self.send_and_receive(a, b, self.jid("b").bare, "to bare " + self.token, a.boundjid)

    async def step_iq_ping(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        ping = "<ping xmlns='%s'/>" % NS_PING
        t0 = time.monotonic()
        res = await a.iq("get", self.domain, ping, timeout=1)
        rtt = time.monotonic() - t0
        check(res.get("type") == "result", "ping domain: %s" % ET.tostring(res, encoding="unicode"))
        check(rtt < 1.0, "ping domain took %.3fs" % rtt)
        check(res.get("from") in (self.domain, None),
              "ping domain: result from %r" % res.get("from"))
        res = await a.iq("get", b.boundjid, ping, timeout=5)
        check(res.get("type") == "result" and res.get("from") == str(b.boundjid),
              "ping b: %s" % ET.tostring(res, encoding="unicode"))

    async def step_disco(self):
        a = await self.connect("a", "a")
        res = await a.iq("get", self.domain, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        qx = res.find(q(NS_DISCO_INFO, "query"))
        check(qx is not None, "disco#info result without query: %s" % ET.tostring(res, encoding="unicode"))
        idents = [(i.get("category"), i.get("type")) for i in qx.findall(q(NS_DISCO_INFO, "identity"))]
        feats = {f.get("var") for f in qx.findall(q(NS_DISCO_INFO, "feature"))}
        check(("server", "im") in idents, "disco identities %s lack server/im" % idents)
        check(NS_PING in feats, "disco features lack urn:xmpp:ping: %s" % sorted(feats))
        check(NS_DISCO_INFO in feats, "disco features lack disco#info: %s" % sorted(feats))

    async def step_carbons(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        b2 = await self.connect("b2", "b")
        check(b2.boundjid.resource != b.boundjid.resource,
              "b and b2 got the same resource %s" % b.boundjid.resource)
        for cl in (b, b2):
            res = await cl.iq("set", None, "<enable xmlns='%s'/>" % NS_CARBONS)
            check(res.get("type") == "result", "%s: carbons enable: %s" % (cl.name, ET.tostring(res, encoding="unicode")))

        def carbon(kind, mid):
            def pred(st):
                if not is_msg(st):
                    return False
                w = st.xml.find(q(NS_CARBONS, kind))
                if w is None:
                    return False
                inner = w.find(q(NS_FORWARD, "forwarded") + "/" + q(NS_CLIENT, "message"))
                return inner is not None and inner.get("id") == mid
            return pred

        # received carbon
        mb2 = b2.mark()
        body = "carbon in " + self.token
        got = await self.send_and_receive(a, b, b.boundjid, body, a.boundjid)
        mid = got.xml.get("id")
        c = await b2.wait_for(carbon("received", mid), "received carbon of %s" % mid, since=mb2)
        check(c.xml.get("from") == self.jid("b").bare,
              "b2: carbon from %r, must be b's bare JID" % c.xml.get("from"))
        inner = c.xml.find("%s/%s/%s" % (q(NS_CARBONS, "received"), q(NS_FORWARD, "forwarded"), q(NS_CLIENT, "message")))
        check(inner.get("from") == str(a.boundjid) and JID(inner.get("to")) == b.boundjid
              and body_of(inner) == body,
              "b2: received carbon content %s" % ET.tostring(inner, encoding="unicode"))
        check(not b2.collect(lambda st: is_msg(st) and st.xml.get("id") == mid, since=mb2),
              "b2 got the message to b's full JID itself, not only a carbon")
        # sent carbon
        mb, mb2 = b.mark(), b2.mark()
        body = "carbon out " + self.token
        got = await self.send_and_receive(b, a, a.boundjid, body, b.boundjid)
        mid = got.xml.get("id")
        c = await b2.wait_for(carbon("sent", mid), "sent carbon of %s" % mid, since=mb2)
        check(c.xml.get("from") == self.jid("b").bare,
              "b2: sent carbon from %r, must be b's bare JID" % c.xml.get("from"))
        inner = c.xml.find("%s/%s/%s" % (q(NS_CARBONS, "sent"), q(NS_FORWARD, "forwarded"), q(NS_CLIENT, "message")))
        check(JID(inner.get("to")) == a.boundjid and body_of(inner) == body,
              "b2: sent carbon content %s" % ET.tostring(inner, encoding="unicode"))
        await asyncio.sleep(0.3)
        check(not b.collect(carbon("sent", mid), since=mb), "b got a carbon of its own message")

    async def step_offline(self):
        a = await self.connect("a", "a")
        check("c" not in self.clients, "c is already connected")
        cj = self.jid("c")
        ids = []
        for i in range(3):
            mid = self.uid("off%d" % i)
            ids.append(mid)
            msg = a.make_message(mto=cj.bare, mbody="offline %d %s <&>" % (i, self.token), mtype="chat")
            msg["id"] = mid
            msg.send()
        # Round trip to the server so the 3 messages have been processed.
        await a.iq("get", self.domain, "<ping xmlns='%s'/>" % NS_PING)
        await asyncio.sleep(0.3)
        c = await self.connect("c", "c", presence=False)
        m = c.mark()
        c.send_presence()
        mine = lambda st: is_msg(st) and st.xml.get("id") in ids
        await c.wait_for(lambda st: len(c.collect(mine, since=m)) >= 3, "3 offline messages", since=m)
        await asyncio.sleep(0.3)
        got = c.collect(mine, since=m)
        check([st.xml.get("id") for st in got] == ids,
              "c: offline message ids %s, expected %s in order" % ([st.xml.get("id") for st in got], ids))
        for i, st in enumerate(got):
            check(body_of(st.xml) == "offline %d %s <&>" % (i, self.token), "c: body %r" % body_of(st.xml))
            check(JID(st.xml.get("from")).bare == self.jid("a").bare,
                  "c: offline message from %r" % st.xml.get("from"))
            d = st.xml.find(q(NS_DELAY, "delay"))
            check(d is not None and d.get("stamp"),
                  "c: offline message without <delay stamp=.../>: %s" % ET.tostring(st.xml, encoding="unicode"))

    async def step_spoofed_from(self):
        a = await self.connect("a", "a")
        b = await self.connect("b", "b")
        mid = self.uid("spoof")
        mb = b.mark()
        a.send_raw("<message from='%s' to='%s' type='chat' id='%s'><body>spoof %s</body></message>"
                   % (xml_escape(str(self.jid("c").bare)), xml_escape(str(b.boundjid)), mid, self.token))
        got = await b.wait_for(lambda st: is_msg(st) and st.xml.get("id") == mid,
                               "message %s" % mid, since=mb)
        check(got.xml.get("from") == str(a.boundjid),
              "b: spoofed message arrived from %r, expected the real sender %s" % (got.xml.get("from"), a.boundjid))
        # a's stream must still work.
        await a.iq("get", self.domain, "<ping xmlns='%s'/>" % NS_PING)

    async def step_sm_resume(self):
        b = await self.connect("b", "b")
        s = await self.connect("a_sm", "a", sm=True)
        offered = s.collect(lambda st: st.xml.find(q(NS_SM, "sm")) is not None
                            and st.xml.tag == "{http://etherx.jabber.org/streams}features")
        check(offered, "a_sm: server did not offer <sm xmlns='%s'/> in the stream features after bind" % NS_SM)
        ev = await s.wait_for(lambda e: e[0] in ("sm_enabled", "sm_failed"), "sm_enabled", events=True, timeout=5)
        check(ev[0] == "sm_enabled", "a_sm: <enable resume='true'/> failed: %s" % ev[1])
        en = ev[1].xml
        check(en.get("resume") in ("true", "1"), "a_sm: <enabled/> without resume: %s" % ET.tostring(en, encoding="unicode"))
        check(en.get("id"), "a_sm: <enabled/> without id")
        full = s.boundjid
        # Traffic before the cut, so the counters are not zero.
        await self.send_and_receive(b, s, full, "before cut " + self.token, b.boundjid)
        # Cut the TCP connection: no </stream>, no TLS close_notify, RST.
        sock = s.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        n_events = len(s.events)
        s.transport.abort()
        await s.wait_for(lambda e: e[0] == "disconnected", "disconnected", events=True, since=n_events, timeout=5)
        await asyncio.sleep(0.5)
        ids = [self.uid("sm1"), self.uid("sm2")]
        mb = b.mark()
        for i, mid in enumerate(ids):
            msg = b.make_message(mto=full, mbody="while away %d %s" % (i, self.token), mtype="chat")
            msg["id"] = mid
            msg.send()
        await b.iq("get", self.domain, "<ping xmlns='%s'/>" % NS_PING)
        m = s.mark()
        n_events = len(s.events)
        s.connect(self.host, self.port)
        ev = await s.wait_for(lambda e: e[0] in ("session_resumed", "session_start", "sm_failed", "failed_auth"),
                              "session_resumed", events=True, since=n_events)
        check(ev[0] == "session_resumed", "a_sm: reconnect gave %s instead of session_resumed" % ev[0])
        check(s.boundjid == full, "a_sm: JID after resume %s != %s" % (s.boundjid, full))
        mine = lambda st: is_msg(st) and st.xml.get("id") in ids
        await s.wait_for(lambda st: len(s.collect(mine, since=m)) >= 2, "2 messages after resume", since=m)
        await asyncio.sleep(1.0)
        got = s.collect(mine, since=m)
        check([st.xml.get("id") for st in got] == ids,
              "a_sm: after resume got ids %s, expected %s exactly once" % ([st.xml.get("id") for st in got], ids))
        for i, st in enumerate(got):
            check(st.xml.get("from") == str(b.boundjid) and body_of(st.xml) == "while away %d %s" % (i, self.token),
                  "a_sm: message %s" % ET.tostring(st.xml, encoding="unicode"))
        bounced = b.collect(lambda st: is_msg(st) and st.xml.get("type") == "error" and st.xml.get("id") in ids, since=mb)
        check(not bounced, "b got error bounces: %s" % [ET.tostring(x.xml, encoding="unicode") for x in bounced])
        # the resumed stream works both ways
        await s.iq("get", self.domain, "<ping xmlns='%s'/>" % NS_PING)

    async def step_default_connect(self):
        # What slixmpp does when told only host and port (and what it does on
        # port 5222 when a domain has no SRV records): first a direct-TLS
        # handshake on that port, then, once that fails, plain TCP + STARTTLS;
        # SASL picks the best mechanism offered. The server must answer the
        # TLS ClientHello at once (stream error or close), or the client
        # hangs for its 60 s TLS handshake timeout.
        t0 = time.monotonic()
        cl = await self.connect("a_default", "a", presence=False, defaults=True)
        took = time.monotonic() - t0
        check(took < 5.0, "default slixmpp connect took %.1fs (direct-TLS attempt not refused fast?)" % took)
        await cl.iq("get", self.domain, "<ping xmlns='%s'/>" % NS_PING)
        await cl.disconnect(wait=1.0)
        del self.clients["a_default"]


async def run(scenario, steps, state):
    for name in steps:
        state["step"] = name
        try:
            await getattr(scenario, "step_" + name)()
        except Fail as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            return False
        except Exception as e:  # a bug or an unexpected server answer
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            return False
        print("STEP %s ok" % name, flush=True)
    state["step"] = None
    return True


async def amain(steps):
    try:
        users = json.loads(os.environ["SB_USERS"])
        users = [(u["jid"], u["password"]) for u in users]
        port = int(os.environ["SB_XMPP_PORT"])
    except (KeyError, ValueError, TypeError) as e:
        print("FAIL setup: bad or missing SB_USERS / SB_XMPP_PORT: %s" % e, flush=True)
        return 2
    if len(users) < 3:
        print("FAIL setup: SB_USERS needs at least 3 accounts", flush=True)
        return 2
    host = os.environ.get("SB_XMPP_HOST", "127.0.0.1")
    domain = os.environ.get("SB_DOMAIN") or JID(users[0][0]).domain
    timeout = float(os.environ.get("SB_TIMEOUT", "90"))
    scenario = Scenario(host, port, domain, users)
    state = {"step": None}
    try:
        ok = await asyncio.wait_for(run(scenario, steps, state), timeout)
    except asyncio.TimeoutError:
        print("FAIL %s: global timeout of %ss" % (state["step"] or "timeout", timeout), flush=True)
        ok = False
    try:
        await asyncio.wait_for(scenario.close_all(), 5)
    except Exception:
        pass
    if ok:
        print("ALL OK", flush=True)
        return 0
    return 1


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("Steps: " + " ".join(STEPS))
        return 0
    unknown = [s for s in args if s not in STEPS]
    if unknown:
        print("FAIL setup: unknown step(s) %s; known: %s" % (" ".join(unknown), " ".join(STEPS)), flush=True)
        return 2
    steps = [s for s in STEPS if s in args] if args else list(STEPS)
    if os.environ.get("SB_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:
        logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    return asyncio.run(amain(steps))


if __name__ == "__main__":
    sys.exit(main())

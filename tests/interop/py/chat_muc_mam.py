#!/usr/bin/env python3
"""slixmpp-driven group chat (XEP-0045) and archive (XEP-0313 + XEP-0059) checks
for Switchboard, with QuickBlox's conventions for rooms and chat history.

Usage: chat_muc_mam.py [STEP ...]       (no STEP: all of them, in order)

Environment (as xmpp_client.py, plus SB_ROOMS):
  SB_XMPP_HOST   host to connect to (default 127.0.0.1); no DNS SRV lookups
  SB_XMPP_PORT   c2s port (STARTTLS; the certificate is not verified)
  SB_DOMAIN      XMPP domain (default: the domain of the first user's JID)
  SB_USERS       JSON list of at least 3 accounts, used as a, b, c:
                 [{"jid": "7-42@localhost", "password": "..."}, ...]
                 Fresh accounts: the archive checks expect exactly the
                 messages this script sends.
  SB_ROOMS       JSON {"group": "<room JID of a type-2 dialog with occupants
                 a and b, not c>", "public": "<room JID of a type-1 dialog>"};
                 room JID = {appId}_{dialogId}@muc.{domain}, both created (over
                 REST) before the script starts, no messages in them yet
  SB_TIMEOUT     global timeout in seconds (default 90)
  SB_DEBUG       1: slixmpp debug log (every stanza) on stderr

QuickBlox rules (quickblox-xmpp.md section 9): the nickname in a room is the
user id (the JID node before '-'); the dialog id is the room node after '_';
messages with <extraParams><save_to_history>1</save_to_history></extraParams>
are stored in the dialog history and delivered with <dialog_id> and <date_sent>
added to extraParams. Message ids are 24-hex ObjectIds, as the SDK sends.

Steps (a, b, c = the first three SB_USERS; group/public = the SB_ROOMS):
  login           a, b, c: STARTTLS, SASL PLAIN, bind, session, presence
  muc_join        a joins group (slixmpp join_muc_wait, history maxstanzas=0:
                  self-presence with first status 110 echoing the join id,
                  then the room subject); b joins by hand, QuickBlox-style:
                  b gets a's occupant presence (no <status>, not the join id)
                  before its self-presence; a gets b's occupant presence
  disco_items     disco#items of group lists exactly group/<a id>, group/<b id>
  groupchat       a sends a stored groupchat message: a (reflection) and b get
                  it from group/<a id>, same id and body, extraParams with
                  save_to_history, dialog_id, date_sent; b sends 2 more (3 stored)
  members_only    c's join of group: presence error registration-required or
                  forbidden (reported), echoing the join id; c's groupchat to
                  group: message error (reported); a and b get neither
  public_room     c joins public (join_muc_wait) and gets its groupchat reflected
  leave           b leaves group: b gets self-presence unavailable (first status
                  110), a gets b's unavailable presence (no <status>);
                  disco#items then lists only a
  mam_1to1        a sends b 5 stored chat messages (b gets them with dialog_id,
                  date_sent); a's archive (urn:xmpp:mam:2, with = b's bare JID,
                  RSM max 2, <after> paging): pages of 2, 2, 1 with first/last,
                  count 5, index (if given), complete='true' only on the last;
                  each result: queryid, id, <forwarded> with <delay stamp> and the
                  original message (from a, to b, type chat, same id, body);
                  then slixmpp's xep_0313 iterate() yields the same 5 bodies
  mam_muc         group's archive (iq to the room JID), no RSM: the 3 stored
                  messages in order, from group/<sender id>, complete='true';
                  slixmpp's iterate() on the room (max 2) yields the same;
                  c's query of group's archive: iq error (reported)
  mam_before_last a's archive with b, RSM max 2 and an empty <before/>: the last
                  2 of the 5, same archive ids as in mam_1to1, not complete

Output: one line per step on stdout, `STEP <name> ok` (a few steps append a
note in parentheses, e.g. which error condition the server chose), or
`FAIL <name>: <detail>` and exit 1 at the first failure; `ALL OK` and exit 0
at the end. Exit 2 on a usage error. Steps run in the listed order and build
on the state of the earlier ones (a step whose prerequisite did not run
fails saying so).
"""

import asyncio
import json
import logging
import os
import re
import ssl
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from types import SimpleNamespace

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.xmlstream import ElementBase
from slixmpp.xmlstream.tostring import tostring

STEPS = [
    "login",
    "muc_join",
    "disco_items",
    "groupchat",
    "members_only",
    "public_room",
    "leave",
    "mam_1to1",
    "mam_muc",
    "mam_before_last",
]

NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

STEP_TIMEOUT = 20.0  # seconds for one wait inside a step
SETTLE = 0.7  # seconds a negative check waits for a stanza that must not come
CLOCK_SLACK = 3600  # date_sent / delay stamps must be within this of local time


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


def sx(x, limit=2000):
    """A stanza object or an ElementTree element as XML text, for details."""
    if x is None:
        return "(none)"
    if isinstance(x, ElementBase):
        x = x.xml
    s = tostring(x)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def object_id():
    """A 24-hex BSON-ObjectId-like id (seconds + random), as the QuickBlox SDK
    uses for message ids; the server stores history under the client's id."""
    return "%08x%s" % (int(time.time()) & 0xFFFFFFFF, os.urandom(8).hex())


class ExtraParams(ElementBase):
    """QuickBlox <extraParams xmlns='jabber:client'>, for building messages."""
    name = "extraParams"
    namespace = NS_CLIENT
    plugin_attrib = "qb_extra_params"
    interfaces = {"save_to_history", "dialog_id", "date_sent"}
    sub_interfaces = interfaces


class Client(ClientXMPP):
    """One connection with a log of every stanza received (and sent)."""

    def __init__(self, name, jid, password):
        super().__init__(jid, password, sasl_mech="PLAIN")
        self.name = name
        # STARTTLS on the given port only, no certificate verification.
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        for plugin in ("xep_0030", "xep_0045", "xep_0059", "xep_0297", "xep_0313", "xep_0199"):
            self.register_plugin(plugin)
        self.log = []  # every top-level element received, in order
        self.sent = []  # (tag, id, to) of every stanza object sent, in order
        self.events = []
        self.changed = asyncio.Event()
        self.add_filter("in", self._capture)
        self.add_filter("out", self._capture_out)
        for ev in ("session_start", "failed_auth", "disconnected", "connection_failed",
                   "stream_error", "session_end", "killed"):
            self.add_event_handler(ev, self._make_recorder(ev))

    def _capture(self, stanza):
        self.log.append(stanza)
        self.changed.set()
        return stanza

    def _capture_out(self, stanza):
        try:
            self.sent.append((stanza.xml.tag, stanza.xml.get("id"), stanza.xml.get("to")))
        except AttributeError:
            pass
        return stanza

    def _make_recorder(self, name):
        def rec(data=None):
            self.events.append((name, data))
            self.changed.set()
        return rec

    def mark(self):
        return len(self.log)

    def recent(self, since, related=None, n=8):
        """The last n received stanzas from `since` on (optionally filtered), as XML."""
        items = self.collect(related or (lambda st: is_msg(st) or is_pres(st)), since)
        if not items:
            return "nothing"
        return "%d stanza(s), last %d: %s" % (len(items), min(n, len(items)),
                                            " | ".join(sx(st, 800) for st in items[-n:]))

    async def wait_for(self, pred, what, timeout=STEP_TIMEOUT, since=0, events=False, related=None):
        """First log entry (or event, with events=True) from index `since` on
        for which pred is true; Fail after timeout, listing what did arrive."""
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
                extra = "" if events else "; received meanwhile: %s" % self.recent(since, related)
                raise Fail("%s: timed out after %.1fs waiting for %s%s" % (self.name, timeout, what, extra))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def expect_none(self, pred, what, since, settle=SETTLE):
        """Fail if a stanza matching pred arrives (from `since` on) within `settle` s."""
        try:
            got = await self.wait_for(pred, what, timeout=settle, since=since)
        except Fail:
            return
        raise Fail("%s: got %s, which must not be delivered: %s" % (self.name, what, sx(got)))

    def collect(self, pred, since=0):
        out = []
        for item in self.log[since:]:
            try:
                if pred(item):
                    out.append(item)
            except (KeyError, AttributeError, TypeError, ValueError):
                pass
        return out

    def index_of(self, stanza, since=0):
        for i in range(since, len(self.log)):
            if self.log[i] is stanza:
                return i
        return -1

    async def iq(self, typ, to, payload_xml, timeout=10):
        """Send an IQ with a raw payload; return the result's XML element.
        Raises Fail on error or timeout."""
        iq = self.make_iq(ito=to, itype=typ)
        if payload_xml is not None:
            iq.append(ET.fromstring(payload_xml))
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            raise Fail("%s: iq %s to %s returned an error: %s (sent %s)"
                       % (self.name, typ, to or "(own account)", sx(e.iq), sx(iq)))
        except IqTimeout:
            raise Fail("%s: iq %s to %s timed out after %ss (sent %s)"
                       % (self.name, typ, to or "(own account)", timeout, sx(iq)))
        return res.xml

    def last_sent_id(self, tag, to):
        for (t, sid, sto) in reversed(self.sent):
            if t == q(NS_CLIENT, tag) and sto == str(to):
                return sid
        return None


def is_msg(st):
    return st.xml.tag == q(NS_CLIENT, "message")


def is_pres(st):
    return st.xml.tag == q(NS_CLIENT, "presence")


def body_of(xml):
    b = xml.find(q(NS_CLIENT, "body"))
    return None if b is None else (b.text or "")


def muc_user_x(xml):
    return xml.find(q(NS_MUC_USER, "x"))


def status_codes(xml):
    """The muc#user <status code> values, in document order (strings)."""
    x = muc_user_x(xml)
    if x is None:
        return []
    return [s.get("code") for s in x.findall(q(NS_MUC_USER, "status"))]


def first_x(xml):
    for child in xml:
        if child.tag.endswith("}x") or child.tag == "x":
            return child
    return None


def error_condition(xml):
    """(type, condition) of a stanza's <error/>, or (None, None)."""
    err = xml.find(q(NS_CLIENT, "error"))
    if err is None:
        return (None, None)
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and child.tag != q(NS_STANZAS, "text"):
            return (err.get("type"), child.tag.split("}", 1)[1])
    return (err.get("type"), None)


def extra_params(xml):
    return xml.find(q(NS_CLIENT, "extraParams"))


def extra_field(xml, name):
    ep = extra_params(xml)
    if ep is None:
        return None
    e = ep.find(q(NS_CLIENT, name))
    return None if e is None else (e.text or "")


def parse_stamp(s):
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s or "")
    if not m:
        return None
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    frac = float(m.group(2)) if m.group(2) else 0.0
    tz = m.group(3)
    offset = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return base.replace(tzinfo=timezone.utc).timestamp() + frac - offset


class Scenario:
    def __init__(self, host, port, domain, users, rooms):
        self.host = host
        self.port = port
        self.domain = domain
        self.users = users  # [(jid, password)] for a, b, c
        self.group = JID(rooms["group"]).bare
        self.public = JID(rooms["public"]).bare
        self.clients = {}
        self.token = uuid.uuid4().hex[:8]
        self.joined = set()  # (who, room) currently joined
        self.group_msgs = None  # [(id, body, sender nick)] stored in the group room
        self.chat_msgs = None  # [(id, body)] a -> b, stored
        self.chat_archive_ids = None  # archive UIDs of chat_msgs in a's archive

    def jid(self, who):
        return JID(self.users["abc".index(who)][0])

    def pw(self, who):
        return self.users["abc".index(who)][1]

    def nick(self, who):
        """QuickBlox: the nickname in a room is the user id, the node before '-'."""
        return self.jid(who).user.split("-", 1)[0]

    @staticmethod
    def dialog_id(room):
        return JID(room).user.split("_", 1)[1]

    def need(self, cond, what):
        if not cond:
            raise Fail("needs %s (run the earlier steps first)" % what)

    async def connect(self, who):
        """Connect, authenticate, bind; check the bound JID; send initial presence."""
        if who in self.clients:
            return self.clients[who]
        cl = Client(who, self.jid(who), self.pw(who))
        self.clients[who] = cl
        cl.connect(self.host, self.port)
        try:
            ev = await cl.wait_for(
                lambda e: e[0] in ("session_start", "failed_auth", "stream_error", "connection_failed")
                or (e[0] == "disconnected" and not cl.sessionstarted),
                "session_start", events=True)
        except Fail as e:
            cl.cancel_connection_attempt()
            fails = ["%s" % (d,) for (n, d) in cl.events if n == "connection_failed"]
            raise Fail("%s (connection attempts failed with: %s)" % (e, "; ".join(fails) or "none"))
        if ev[0] == "failed_auth":
            raise Fail("%s: SASL PLAIN authentication failed for %s" % (who, self.jid(who)))
        if ev[0] != "session_start":
            cl.cancel_connection_attempt()
            raise Fail("%s: no session to %s:%s (%s: %s)" % (who, self.host, self.port, ev[0], ev[1]))
        check(cl.boundjid.bare == self.jid(who).bare,
              "%s: bound JID %s, expected bare %s" % (who, cl.boundjid, self.jid(who).bare))
        check(cl.boundjid.resource, "%s: bound JID %s has no resource" % (who, cl.boundjid))
        cl.send_presence()
        return cl

    async def close_all(self):
        futs = []
        for cl in self.clients.values():
            if cl.transport:
                futs.append(cl.disconnect(wait=1.0))
        if futs:
            await asyncio.wait([asyncio.ensure_future(f) for f in futs], timeout=3)

    def client(self, who):
        self.need(who in self.clients, "%s logged in (step login)" % who)
        return self.clients[who]

    # --- MUC helpers ------------------------------------------------------------

    def check_self_presence(self, cl, xml, room, nick, join_id, typ=None):
        occ = "%s/%s" % (room, nick)
        what = "%s: self-presence %s" % (cl.name, sx(xml))
        check(xml.get("from") == occ, "%s: from %r, expected %s" % (what, xml.get("from"), occ))
        check(xml.get("type") == typ, "%s: type %r, expected %s" % (what, xml.get("type"), typ or "available (no type)"))
        ux = muc_user_x(xml)
        check(ux is not None, "%s: no <x xmlns='%s'/>" % (what, NS_MUC_USER))
        check(first_x(xml) is ux,
              "%s: the muc#user <x/> must be the first <x/> child (QuickBlox section 9.2: querySelector('x'))" % what)
        codes = status_codes(xml)
        check(codes and codes[0] == "110",
              "%s: status codes %s; the first <status/> must be code='110' (XEP-0045 7.2.3; "
              "QuickBlox section 9.2: the SDK reads only the first)" % (what, codes))
        check(ux.find(q(NS_MUC_USER, "item")) is not None, "%s: muc#user <x/> without <item/>" % what)
        if join_id is not None:
            check(xml.get("id") == join_id,
                  "%s: id %r, expected the join presence's id %r echoed (QuickBlox section 9.2)"
                  % (what, xml.get("id"), join_id))

    def check_occupant_presence(self, cl, xml, room, nick, typ=None, join_id=None):
        occ = "%s/%s" % (room, nick)
        what = "%s: occupant presence %s" % (cl.name, sx(xml))
        check(xml.get("from") == occ, "%s: from %r, expected %s" % (what, xml.get("from"), occ))
        check(xml.get("type") == typ, "%s: type %r, expected %s" % (what, xml.get("type"), typ or "available (no type)"))
        ux = muc_user_x(xml)
        check(ux is not None, "%s: no <x xmlns='%s'/>" % (what, NS_MUC_USER))
        check(first_x(xml) is ux, "%s: the muc#user <x/> must be the first <x/> child" % what)
        check(ux.find(q(NS_MUC_USER, "item")) is not None, "%s: muc#user <x/> without <item/>" % what)
        check(not status_codes(xml),
              "%s: has <status/> codes %s; another occupant's join/leave presence must carry none "
              "(QuickBlox section 9.3: onJoinOccupant/onLeaveOccupant fire only without)" % (what, status_codes(xml)))
        if join_id is not None:
            check(xml.get("id") != join_id,
                  "%s: carries the joiner's join id %r (QuickBlox section 9.2: only the self-presence echoes it)"
                  % (what, join_id))

    def occupant_pres(self, room, nick, typ=None):
        occ = "%s/%s" % (room, nick)
        return lambda st: is_pres(st) and st.xml.get("from") == occ and st.xml.get("type") == typ

    def from_room(self, room):
        return lambda st: (is_msg(st) or is_pres(st)) and JID(st.xml.get("from") or "").bare == room

    async def join_with_plugin(self, cl, room, nick):
        """slixmpp's join_muc_wait (history maxstanzas=0); returns the self-presence XML."""
        m = cl.mark()
        occ = "%s/%s" % (room, nick)
        try:
            pres, subject, _occupants, _history = await cl.plugin["xep_0045"].join_muc_wait(
                JID(room), nick, maxstanzas=0, timeout=STEP_TIMEOUT)
        except PresenceError as e:
            raise Fail("%s: join of %s refused with %s/%s: %s"
                       % (cl.name, occ, e.etype, e.condition, sx(e.presence)))
        except asyncio.TimeoutError:
            errp = cl.collect(lambda st: is_pres(st) and JID(st.xml.get("from")).bare == room
                              and st.xml.get("type") == "error", since=m)
            if errp:
                raise Fail("%s: join of %s refused with %s (slixmpp's join_muc_wait only recognises a join "
                           "error that carries <x xmlns='%s'/>, as in XEP-0045 examples)"
                           % (cl.name, occ, sx(errp[0]), NS_MUC))
            selfp = cl.collect(lambda st: is_pres(st) and st.xml.get("from") == occ
                               and "110" in status_codes(st.xml), since=m)
            if selfp:
                raise Fail("%s: joining %s: self-presence came (%s) but no room subject message within %ss; "
                           "XEP-0045 7.2.15: after the self-presence (and history) the room MUST send "
                           "<message type='groupchat' from='%s'><subject/></message> (an empty <subject/> if "
                           "none is set), and slixmpp's join_muc_wait waits for it; received: %s"
                           % (cl.name, occ, sx(selfp[0]), STEP_TIMEOUT, room, cl.recent(m, self.from_room(room))))
            raise Fail("%s: joining %s: no self-presence (muc#user status 110) and no presence error within %ss; "
                       "received from the room: %s" % (cl.name, occ, STEP_TIMEOUT, cl.recent(m, self.from_room(room))))
        check(subject["type"] == "groupchat" and subject["from"].bare == room,
              "%s: subject message %s (expected type groupchat from %s)" % (cl.name, sx(subject), room))
        join_id = cl.last_sent_id("presence", occ)
        check(join_id, "%s: cannot find the join presence to %s among the sent stanzas" % (cl.name, occ))
        self.check_self_presence(cl, pres.xml, room, nick, join_id)
        return pres.xml

    def send_group(self, cl, room, body, store=True, mid=None):
        mid = mid or object_id()
        msg = cl.make_message(mto=room, mbody=body, mtype="groupchat")
        msg["id"] = mid
        if store:
            ep = ExtraParams()
            ep["save_to_history"] = "1"
            msg.append(ep)
        msg.send()
        return mid

    def check_stored_copy(self, cl, xml, dialog_id=None):
        """extraParams of a delivered stored message: save_to_history kept,
        dialog_id (== dialog_id if given) and date_sent (Unix seconds) added."""
        what = "%s: delivered stored message %s" % (cl.name, sx(xml))
        check(extra_params(xml) is not None, "%s: no <extraParams xmlns='jabber:client'/>" % what)
        check(extra_field(xml, "save_to_history") == "1",
              "%s: extraParams/save_to_history is %r, expected '1' kept verbatim (QuickBlox section 8.1)"
              % (what, extra_field(xml, "save_to_history")))
        did = extra_field(xml, "dialog_id")
        if dialog_id is not None:
            check(did == dialog_id, "%s: extraParams/dialog_id %r, expected %r (QuickBlox section 8.2)"
                  % (what, did, dialog_id))
        else:
            check(did, "%s: no extraParams/dialog_id (QuickBlox section 8.2)" % what)
        ds = extra_field(xml, "date_sent")
        try:
            dsv = float(ds)
        except (TypeError, ValueError):
            raise Fail("%s: extraParams/date_sent is %r, expected Unix seconds (QuickBlox section 8.2)" % (what, ds))
        check(abs(dsv - time.time()) <= CLOCK_SLACK,
              "%s: extraParams/date_sent %s is not within %ss of now (%d): not Unix seconds?"
              % (what, ds, CLOCK_SLACK, time.time()))
        return did

    async def group_message(self, snd, receivers, room, body):
        """snd sends a stored groupchat message; every receiver (snd included)
        gets it from room/<snd nick> with the same id and body and the stored
        extraParams. Returns the id."""
        marks = {cl.name: cl.mark() for cl in receivers}
        mid = self.send_group(snd, room, body)
        occ = "%s/%s" % (room, self.nick(snd.name))
        for cl in receivers:
            got = await cl.wait_for(lambda st: is_msg(st) and st.xml.get("id") == mid,
                                    "groupchat message id %s from %s" % (mid, occ),
                                    since=marks[cl.name], related=self.from_room(room))
            what = "%s: groupchat copy %s" % (cl.name, sx(got))
            check(got.xml.get("type") == "groupchat", "%s: type %r, expected groupchat" % (what, got.xml.get("type")))
            check(got.xml.get("from") == occ, "%s: from %r, expected %s" % (what, got.xml.get("from"), occ))
            check(body_of(got.xml) == body, "%s: body %r, expected %r" % (what, body_of(got.xml), body))
            self.check_stored_copy(cl, got.xml, self.dialog_id(room))
        return mid

    # --- MAM helpers ------------------------------------------------------------

    async def mam_query(self, cl, to, with_jid=None, rsm=None, expect_error=False):
        """A hand-built urn:xmpp:mam:2 query; returns a page (results received
        before the iq result, <fin/>, RSM values), or the error iq's XML."""
        qid = "q" + uuid.uuid4().hex[:12]
        form = ""
        if with_jid is not None:
            form = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value></field>"
                    "<field var='with'><value>%s</value></field></x>" % (NS_DATA, NS_MAM, xml_escape(str(with_jid))))
        rsm_xml = "" if rsm is None else "<set xmlns='%s'>%s</set>" % (NS_RSM, rsm)
        iq = cl.make_iq(ito=to, itype="set")
        iq.append(ET.fromstring("<query xmlns='%s' queryid='%s'>%s%s</query>" % (NS_MAM, qid, form, rsm_xml)))
        iq_id = iq["id"]
        query_txt = sx(iq)
        m = cl.mark()
        try:
            res = await iq.send(timeout=10)
        except IqError as e:
            if expect_error:
                return SimpleNamespace(error=e.iq.xml, query=query_txt,
                                       results=cl.collect(lambda st: self.is_mam_result(st, qid), since=m))
            raise Fail("%s: MAM query returned an error: %s (query %s)" % (cl.name, sx(e.iq), query_txt))
        except IqTimeout:
            raise Fail("%s: MAM query timed out after 10s (query %s); received: %s"
                       % (cl.name, query_txt, cl.recent(m, lambda st: is_msg(st))))
        if expect_error:
            n = len(cl.collect(lambda st: self.is_mam_result(st, qid), since=m))
            raise Fail("%s: MAM query %s succeeded (%d results) but must be refused: %s"
                       % (cl.name, query_txt, n, sx(res)))
        end = next((i for i in range(m, len(cl.log))
                    if cl.log[i].xml.tag == q(NS_CLIENT, "iq") and cl.log[i].xml.get("id") == iq_id), len(cl.log))
        raw = [st for st in cl.log[m:end] if is_msg(st) and st.xml.find(q(NS_MAM, "result")) is not None]
        wrong = [st for st in raw if st.xml.find(q(NS_MAM, "result")).get("queryid") != qid]
        check(not wrong, "%s: MAM result(s) without queryid='%s' (XEP-0313 4.2: the server MUST echo it): %s "
              "(query %s)" % (cl.name, qid, sx(wrong[0]) if wrong else "", query_txt))
        fin = res.xml.find(q(NS_MAM, "fin"))
        check(fin is not None, "%s: MAM iq result without <fin xmlns='%s'/>: %s (query %s)"
              % (cl.name, NS_MAM, sx(res), query_txt))
        rset = fin.find(q(NS_RSM, "set"))
        check(rset is not None, "%s: <fin/> without an RSM <set xmlns='%s'/> (XEP-0313 4.1 MUST): %s"
              % (cl.name, NS_RSM, sx(res)))
        first = rset.find(q(NS_RSM, "first"))
        last = rset.find(q(NS_RSM, "last"))
        count = rset.find(q(NS_RSM, "count"))
        page = SimpleNamespace(
            query=query_txt, iq=res.xml, fin=fin, complete=fin.get("complete"),
            first=None if first is None else (first.text or ""),
            first_index=None if first is None else first.get("index"),
            last=None if last is None else (last.text or ""),
            count=None if count is None else (count.text or "").strip(),
            results=[self.parse_mam_result(cl, st, query_txt) for st in raw])
        return page

    @staticmethod
    def is_mam_result(st, qid):
        if not is_msg(st):
            return False
        r = st.xml.find(q(NS_MAM, "result"))
        return r is not None and r.get("queryid") == qid

    def parse_mam_result(self, cl, st, query_txt):
        what = "%s: MAM result %s (query %s)" % (cl.name, sx(st), query_txt)
        r = st.xml.find(q(NS_MAM, "result"))
        check(r.get("id"), "%s: <result/> without an archive id" % what)
        fwd = r.find(q(NS_FORWARD, "forwarded"))
        check(fwd is not None, "%s: <result/> without <forwarded xmlns='%s'/>" % (what, NS_FORWARD))
        delay = fwd.find(q(NS_DELAY, "delay"))
        check(delay is not None and delay.get("stamp"),
              "%s: <forwarded/> without <delay xmlns='%s' stamp='...'/>" % (what, NS_DELAY))
        stamp = parse_stamp(delay.get("stamp"))
        check(stamp is not None, "%s: delay stamp %r is not a XEP-0082 DateTime" % (what, delay.get("stamp")))
        check(abs(stamp - time.time()) <= CLOCK_SLACK,
              "%s: delay stamp %s is not within %ss of now" % (what, delay.get("stamp"), CLOCK_SLACK))
        inner = fwd.find(q(NS_CLIENT, "message"))
        check(inner is not None, "%s: <forwarded/> without a jabber:client <message/>" % what)
        return SimpleNamespace(id=r.get("id"), stamp=stamp, inner=inner, wrapper=st.xml, what=what)

    def check_page(self, cl, page, expected, label, count=None, index=None, complete=False,
                   archive_jid=None, inner_check=None, need_count=False):
        """expected: [(id, body, ...)] in chronological order."""
        ctx = "%s: %s: fin %s, query %s" % (cl.name, label, sx(page.iq), page.query)
        got = [body_of(r.inner) for r in page.results]
        want = [e[1] for e in expected]
        hint = ""
        if count is not None and page.count and page.count.isdigit() and int(page.count) > count:
            hint = " (the archive holds %s matching messages, not %d: leftovers of an earlier run? " \
                   "this script needs fresh accounts and rooms)" % (page.count, count)
        check(got == want, "%s: got %d result(s) (before the iq result) with bodies %s, expected %s in this order%s"
              % (ctx, len(got), got, want, hint))
        prev = None
        for r, e in zip(page.results, expected):
            wfrom = r.wrapper.get("from")
            if archive_jid is None:
                check(wfrom in (None, "", cl.boundjid.bare),
                      "%s: result message from %r: a user archive's results come from the account "
                      "(own bare JID or no from)" % (r.what, wfrom))
            else:
                check(wfrom == archive_jid,
                      "%s: result message from %r, expected the archive's JID %s (XEP-0313; slixmpp "
                      "matches MUC results by it)" % (r.what, wfrom, archive_jid))
            check(r.inner.get("id") == e[0],
                  "%s: forwarded message id %r, expected the sender's stanza id %r (QuickBlox section 8.2: "
                  "history is stored under the client's id)" % (r.what, r.inner.get("id"), e[0]))
            if inner_check:
                inner_check(r, e)
            check(prev is None or r.stamp >= prev,
                  "%s: delay stamps go backwards within the page" % r.what)
            prev = r.stamp
        ids = [r.id for r in page.results]
        check(len(set(ids)) == len(ids), "%s: duplicate archive ids %s" % (ctx, ids))
        if page.results:
            check(page.first == ids[0] and page.last == ids[-1],
                  "%s: RSM first/last %r/%r, expected the page's first/last result ids %r/%r"
                  % (ctx, page.first, page.last, ids[0], ids[-1]))
        if count is not None and (need_count or page.count is not None):
            check(page.count == str(count), "%s: RSM <count> %r, expected %d" % (ctx, page.count, count))
        if index is not None and page.first_index is not None:
            check(page.first_index == str(index),
                  "%s: RSM <first index=%r>, expected %d" % (ctx, page.first_index, index))
        if complete:
            check(page.complete == "true",
                  "%s: <fin complete=%r>: this page holds the last result, expected complete='true' "
                  "(XEP-0313 4.3.2)" % (ctx, page.complete))
        else:
            check(page.complete != "true",
                  "%s: <fin complete='true'> on a page that does not end the result set "
                  "(XEP-0313 4.3.2: omit it or 'false')" % ctx)
        return ids

    async def plugin_iterate(self, cl, label, **kwargs):
        """slixmpp's own xep_0313 iterate(): the forwarded bodies, in order."""
        async def run():
            out = []
            async for msg in cl.plugin["xep_0313"].iterate(total=20, **kwargs):
                inner = msg.xml.find("%s/%s/%s" % (q(NS_MAM, "result"), q(NS_FORWARD, "forwarded"),
                                                    q(NS_CLIENT, "message")))
                out.append(None if inner is None else body_of(inner))
            return out
        try:
            return await asyncio.wait_for(run(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Fail("%s: slixmpp xep_0313 iterate(%s) did not finish within %ss"
                       % (cl.name, label, STEP_TIMEOUT))
        except (IqError, IqTimeout) as e:
            raise Fail("%s: slixmpp xep_0313 iterate(%s) failed: %s" % (cl.name, label, e))

    # --- steps ---------------------------------------------------------------

    async def step_login(self):
        for who in "abc":
            await self.connect(who)
        nicks = [self.nick(w) for w in "abc"]
        check(len(set(nicks)) == 3, "users a, b, c have user ids %s; need three different ones" % nicks)

    async def step_muc_join(self):
        a, b = self.client("a"), self.client("b")
        room, an, bn = self.group, self.nick("a"), self.nick("b")
        await self.join_with_plugin(a, room, an)
        self.joined.add(("a", room))

        ma, mb = a.mark(), b.mark()
        join_id = "%s:join" % uuid.uuid4()  # the SDK's id shape
        st = b.plugin["xep_0045"].make_join_stanza(JID(room), bn, maxstanzas=0)
        st["id"] = join_id
        st.send()
        occ_b = "%s/%s" % (room, bn)
        selfp = await b.wait_for(
            lambda s: is_pres(s) and s.xml.get("from") == occ_b
            and (s.xml.get("type") == "error" or "110" in status_codes(s.xml)),
            "self-presence (status 110) from %s" % occ_b, since=mb, related=self.from_room(room))
        check(selfp.xml.get("type") != "error", "b: join of %s refused: %s" % (occ_b, sx(selfp)))
        self.check_self_presence(b, selfp.xml, room, bn, join_id)
        self.joined.add(("b", room))
        idx_self = b.index_of(selfp, mb)
        before = [s for s in b.log[mb:idx_self] if self.occupant_pres(room, an)(s)]
        check(before, "b: a's occupant presence from %s/%s did not arrive before b's self-presence "
              "(XEP-0045 7.2.3, QuickBlox section 9.2: existing occupants first); b received: %s"
              % (room, an, b.recent(mb, self.from_room(room))))
        self.check_occupant_presence(b, before[0].xml, room, an, join_id=join_id)
        got = await a.wait_for(self.occupant_pres(room, bn), "b's occupant presence from %s" % occ_b,
                               since=ma, related=self.from_room(room))
        self.check_occupant_presence(a, got.xml, room, bn)

    async def disco_occupants(self, cl, room):
        res = await cl.iq("get", room, "<query xmlns='%s'/>" % NS_DISCO_ITEMS)
        qx = res.find(q(NS_DISCO_ITEMS, "query"))
        check(qx is not None, "%s: disco#items result without <query/>: %s" % (cl.name, sx(res)))
        check(res.get("from") == room, "%s: disco#items result from %r, expected %s" % (cl.name, res.get("from"), room))
        return [it.get("jid") for it in qx.findall(q(NS_DISCO_ITEMS, "item"))], res

    async def step_disco_items(self):
        a = self.client("a")
        room = self.group
        self.need(("a", room) in self.joined and ("b", room) in self.joined, "a and b in the group room (muc_join)")
        items, res = await self.disco_occupants(a, room)
        want = sorted("%s/%s" % (room, self.nick(w)) for w in "ab")
        check(sorted(items) == want,
              "a: disco#items of %s lists %s, expected exactly %s (QuickBlox section 5.9): %s"
              % (room, sorted(items), want, sx(res)))

    async def step_groupchat(self):
        a, b = self.client("a"), self.client("b")
        room = self.group
        self.need(("a", room) in self.joined and ("b", room) in self.joined, "a and b in the group room (muc_join)")
        msgs = []
        body = "group 1 from a %s \u00e9 <&>" % self.token
        msgs.append((await self.group_message(a, [a, b], room, body), body, self.nick("a")))
        for i in (2, 3):
            body = "group %d from b %s" % (i, self.token)
            msgs.append((await self.group_message(b, [b, a], room, body), body, self.nick("b")))
        self.group_msgs = msgs

    async def step_members_only(self):
        a, b, c = self.client("a"), self.client("b"), self.client("c")
        room, cn = self.group, self.nick("c")
        occ_c = "%s/%s" % (room, cn)
        ma, mb, mc = a.mark(), b.mark(), c.mark()
        join_id = "%s:join" % uuid.uuid4()
        st = c.plugin["xep_0045"].make_join_stanza(JID(room), cn, maxstanzas=0)
        st["id"] = join_id
        st.send()
        resp = await c.wait_for(
            lambda s: is_pres(s) and JID(s.xml.get("from")).bare == room
            and (s.xml.get("type") == "error" or "110" in status_codes(s.xml)),
            "presence error for the join of %s" % occ_c, since=mc, related=self.from_room(room))
        check(resp.xml.get("type") == "error",
              "c: joined %s although not an occupant of the dialog (expected a presence error): %s; received: %s"
              % (room, sx(resp), c.recent(mc, self.from_room(room))))
        etype, cond = error_condition(resp.xml)
        check(cond in ("registration-required", "forbidden"),
              "c: join refused with condition %r (type %r), expected registration-required (XEP-0045 7.2.7) "
              "or forbidden: %s" % (cond, etype, sx(resp)))
        check(resp.xml.get("from") == occ_c,
              "c: join error from %r, expected %s: %s" % (resp.xml.get("from"), occ_c, sx(resp)))
        check(resp.xml.get("id") == join_id,
              "c: join error id %r, expected the join id %r (QuickBlox section 9.2: the SDK matches by id): %s"
              % (resp.xml.get("id"), join_id, sx(resp)))
        leaked = c.collect(lambda s: is_pres(s) and JID(s.xml.get("from")).bare == room
                           and s.xml.get("type") != "error", since=mc)
        check(not leaked, "c: got room presence(s) although refused: %s" % sx(leaked[0]) if leaked else "")
        await asyncio.gather(*(cl.expect_none(lambda s: is_pres(s) and s.xml.get("from") == occ_c,
                                              "presence of refused c from %s" % occ_c, since=m)
                               for cl, m in ((a, ma), (b, mb))))
        join_cond = cond

        ma, mb, mc = a.mark(), b.mark(), c.mark()
        mid = self.send_group(c, room, "intruder %s" % self.token)
        err = await c.wait_for(lambda s: is_msg(s) and s.xml.get("id") == mid,
                               "error reply to c's groupchat %s" % mid, since=mc, related=self.from_room(room))
        check(err.xml.get("type") == "error",
              "c: groupchat to %s from a non-occupant came back as %r, expected type error: %s"
              % (room, err.xml.get("type"), sx(err)))
        check(JID(err.xml.get("from")).bare == room, "c: error from %r, expected %s: %s"
              % (err.xml.get("from"), room, sx(err)))
        etype, msg_cond = error_condition(err.xml)
        check(msg_cond, "c: message error without a defined condition: %s" % sx(err))
        await asyncio.gather(*(cl.expect_none(lambda s: is_msg(s) and s.xml.get("id") == mid,
                                              "c's refused groupchat %s" % mid, since=m)
                               for cl, m in ((a, ma), (b, mb))))
        return "join refused with %s, groupchat refused with %s" % (join_cond, msg_cond)

    async def step_public_room(self):
        c = self.client("c")
        room, cn = self.public, self.nick("c")
        await self.join_with_plugin(c, room, cn)
        self.joined.add(("c", room))
        mc = c.mark()
        body = "public from c %s" % self.token
        mid = self.send_group(c, room, body, store=False)
        occ = "%s/%s" % (room, cn)
        got = await c.wait_for(lambda st: is_msg(st) and st.xml.get("id") == mid,
                               "reflection of groupchat %s" % mid, since=mc, related=self.from_room(room))
        what = "c: reflection %s" % sx(got)
        check(got.xml.get("type") == "groupchat", "%s: type %r" % (what, got.xml.get("type")))
        check(got.xml.get("from") == occ, "%s: from %r, expected %s" % (what, got.xml.get("from"), occ))
        check(body_of(got.xml) == body, "%s: body %r, expected %r" % (what, body_of(got.xml), body))

    async def step_leave(self):
        a, b = self.client("a"), self.client("b")
        room, bn = self.group, self.nick("b")
        self.need(("a", room) in self.joined and ("b", room) in self.joined, "a and b in the group room (muc_join)")
        occ = "%s/%s" % (room, bn)
        ma, mb = a.mark(), b.mark()
        p = b.make_presence(pto=occ, ptype="unavailable")
        del p["id"]  # the SDK's leave carries no id
        p.send()
        selfp = await b.wait_for(self.occupant_pres(room, bn, "unavailable"),
                                 "self-presence unavailable from %s" % occ, since=mb, related=self.from_room(room))
        self.check_self_presence(b, selfp.xml, room, bn, None, typ="unavailable")
        self.joined.discard(("b", room))
        got = await a.wait_for(self.occupant_pres(room, bn, "unavailable"),
                               "b's unavailable presence from %s" % occ, since=ma, related=self.from_room(room))
        self.check_occupant_presence(a, got.xml, room, bn, typ="unavailable")
        items, res = await self.disco_occupants(a, room)
        want = ["%s/%s" % (room, self.nick("a"))]
        check(sorted(items) == want, "a: after b left, disco#items of %s lists %s, expected %s: %s"
              % (room, sorted(items), want, sx(res)))

    async def step_mam_1to1(self):
        a, b = self.client("a"), self.client("b")
        aj, bj = self.jid("a").bare, self.jid("b").bare
        mb = b.mark()
        sent = []
        for i in range(5):
            mid = object_id()
            body = "mam %d %s" % (i, self.token)
            msg = a.make_message(mto=bj, mbody=body, mtype="chat")
            msg["id"] = mid
            ep = ExtraParams()
            ep["save_to_history"] = "1"
            msg.append(ep)
            msg.send()
            sent.append((mid, body))
        got_idx, dialog_ids = [], set()
        for mid, body in sent:
            got = await b.wait_for(lambda st: is_msg(st) and st.xml.get("id") == mid,
                                   "chat message %s from a" % mid, since=mb, related=lambda st: is_msg(st))
            what = "b: chat message %s" % sx(got)
            check(got.xml.get("type") == "chat", "%s: type %r, expected chat" % (what, got.xml.get("type")))
            check(got.xml.get("from") == str(a.boundjid), "%s: from %r, expected %s" % (what, got.xml.get("from"), a.boundjid))
            check(body_of(got.xml) == body, "%s: body %r, expected %r" % (what, body_of(got.xml), body))
            dialog_ids.add(self.check_stored_copy(b, got.xml))
            got_idx.append(b.index_of(got, mb))
        check(got_idx == sorted(got_idx), "b: the 5 chat messages arrived out of order")
        check(len(dialog_ids) == 1, "b: the 5 stored chat messages a->b carry different dialog_ids %s"
              % sorted(dialog_ids))
        self.chat_msgs = sent

        def inner_check(r, e):
            check(JID(r.inner.get("from") or "").bare == aj and JID(r.inner.get("to") or "").bare == bj,
                  "%s: forwarded message from %r to %r, expected from a (%s) to b (%s)"
                  % (r.what, r.inner.get("from"), r.inner.get("to"), aj, bj))
            check(r.inner.get("type") == "chat", "%s: forwarded message type %r, expected chat"
                  % (r.what, r.inner.get("type")))

        ids, after, pages = [], None, []
        for n, (lo, hi) in enumerate(((0, 2), (2, 4), (4, 5))):
            rsm = "<max>2</max>" + ("" if after is None else "<after>%s</after>" % xml_escape(after))
            page = await self.mam_query(a, None, with_jid=bj, rsm=rsm)
            ids += self.check_page(a, page, sent[lo:hi], "archive with %s, page %d (max 2%s)"
                                   % (bj, n + 1, "" if after is None else ", after %s" % after),
                                   count=5, index=lo, complete=(hi == 5), inner_check=inner_check,
                                   need_count=True)
            after = page.last
            pages.append(page)
        check(len(set(ids)) == 5, "a: archive ids across the 3 pages are not 5 distinct ids: %s" % ids)
        self.chat_archive_ids = ids

        bodies = await self.plugin_iterate(a, "with_jid=%s, rsm max 2" % bj, with_jid=JID(bj), rsm={"max": 2})
        check(bodies == [e[1] for e in sent],
              "a: slixmpp xep_0313 iterate(with_jid=%s, rsm={'max': 2}) yielded bodies %s, expected %s "
              "(it pages with <after> = the last <last/> and stops at first index + page size == count, "
              "or at a page without <first/>/<last/>)" % (bj, bodies, [e[1] for e in sent]))

    async def step_mam_muc(self):
        a, c = self.client("a"), self.client("c")
        room = self.group
        self.need(self.group_msgs, "the 3 stored group messages (groupchat)")

        def inner_check(r, e):
            occ = "%s/%s" % (room, e[2])
            check(r.inner.get("from") == occ, "%s: forwarded message from %r, expected %s"
                  % (r.what, r.inner.get("from"), occ))
            check(r.inner.get("type") == "groupchat", "%s: forwarded message type %r, expected groupchat"
                  % (r.what, r.inner.get("type")))

        page = await self.mam_query(a, room)
        self.check_page(a, page, self.group_msgs, "archive of %s (no RSM)" % room, count=3, index=0,
                        complete=True, archive_jid=room, inner_check=inner_check)
        bodies = await self.plugin_iterate(a, "jid=%s, rsm max 2" % room, jid=JID(room), rsm={"max": 2})
        check(bodies == [e[1] for e in self.group_msgs],
              "a: slixmpp xep_0313 iterate(jid=%s, rsm={'max': 2}) yielded bodies %s, expected %s "
              "(its results must come from the room's bare JID)" % (room, bodies, [e[1] for e in self.group_msgs]))

        r = await self.mam_query(c, room, expect_error=True)
        check(not r.results, "c: got %d archive result(s) of %s along with the error: %s"
              % (len(r.results), room, sx(r.results[0]) if r.results else ""))
        etype, cond = error_condition(r.error)
        check(cond, "c: archive query error without a defined condition: %s" % sx(r.error))
        return "non-member archive query refused with %s" % cond

    async def step_mam_before_last(self):
        a = self.client("a")
        bj = self.jid("b").bare
        self.need(self.chat_msgs, "the 5 stored chat messages (mam_1to1)")
        page = await self.mam_query(a, None, with_jid=bj, rsm="<max>2</max><before/>")
        ids = self.check_page(a, page, self.chat_msgs[3:5], "archive with %s, max 2, empty <before/> (last page)" % bj,
                              count=5, index=3, complete=False)
        if self.chat_archive_ids:
            check(ids == self.chat_archive_ids[3:5],
                  "a: last-page archive ids %s differ from those of the forward paging %s"
                  % (ids, self.chat_archive_ids[3:5]))


async def run(scenario, steps, state):
    for name in steps:
        state["step"] = name
        try:
            note = await getattr(scenario, "step_" + name)()
        except Fail as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            return False
        except Exception as e:  # a bug or an unexpected server answer
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            return False
        print("STEP %s ok%s" % (name, " (%s)" % note if note else ""), flush=True)
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
    try:
        rooms = json.loads(os.environ["SB_ROOMS"])
        for k in ("group", "public"):
            r = JID(rooms[k])
            if not r.user or "_" not in r.user or r.resource:
                raise ValueError("%s room %r is not a bare {appId}_{dialogId}@muc.{domain} JID" % (k, rooms[k]))
    except (KeyError, ValueError, TypeError) as e:
        print("FAIL setup: bad or missing SB_ROOMS: %s" % e, flush=True)
        return 2
    host = os.environ.get("SB_XMPP_HOST", "127.0.0.1")
    domain = os.environ.get("SB_DOMAIN") or JID(users[0][0]).domain
    timeout = float(os.environ.get("SB_TIMEOUT", "90"))
    scenario = Scenario(host, port, domain, users, rooms)
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

"""aiortc (a WebRTC stack nobody here wrote) in a QuickBlox conference through the Janus API.

Each user of SB_USERS joins the dialog room SB_ROOM as a publisher the way the QuickBlox
conference client does (join, then configure with a send-only offer), subscribes to every other
publisher with one handle and one PeerConnection per feed (join as subscriber with `feed`, then
start with the answer), and must decode video and audio frames from each of them. SB_OUTSIDER,
who is not an occupant of the dialog, must be refused with 433.

Every ICE candidate is pinned to 127.0.0.1. Prints ALL OK on success.
"""

import asyncio
import json
import os
import random
import string
import sys

import aioice.ice

# Only loopback: the tests never send anywhere else.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

import websockets  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack  # noqa: E402

JANUS = os.environ["SB_JANUS_URL"]
ROOM = os.environ["SB_ROOM"]
USERS = json.loads(os.environ["SB_USERS"])
OUTSIDER = json.loads(os.environ["SB_OUTSIDER"])
FRAMES = 10
TIMEOUT = 60


def transaction():
    return "".join(random.choice(string.ascii_letters) for _ in range(12))


class Janus:
    """A janus.js-like client: replies matched by transaction, events by sender."""

    def __init__(self, token):
        self.url = f"{JANUS}?token={token}"
        self.replies = {}
        self.events = {}
        self.seen = {}
        self.session = None

    async def connect(self):
        self.ws = await websockets.connect(self.url, subprotocols=["janus-protocol"])
        self.reader = asyncio.ensure_future(self.read())
        reply = await self.request({"janus": "create"})
        assert reply["janus"] == "success", reply
        self.session = reply["data"]["id"]

    async def read(self):
        async for text in self.ws:
            message = json.loads(text)
            tx = message.get("transaction")
            if tx in self.replies:
                await self.replies[tx].put(message)
            elif "sender" in message:
                self.queue(message["sender"]).put_nowait(message)

    def queue(self, handle):
        return self.events.setdefault(handle, asyncio.Queue())

    async def request(self, body, handle=None):
        tx = transaction()
        body = dict(body, transaction=tx)
        if self.session is not None:
            body["session_id"] = self.session
        if handle is not None:
            body["handle_id"] = handle
        self.replies[tx] = asyncio.Queue()
        await self.ws.send(json.dumps(body))
        return await asyncio.wait_for(self.replies[tx].get(), TIMEOUT)

    async def attach(self):
        reply = await self.request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        assert reply["janus"] == "success", reply
        handle = reply["data"]["id"]
        self.queue(handle)
        return handle

    async def message(self, handle, body, jsep=None):
        """An asynchronous plugin request: the ack, then the event carrying the same transaction."""
        request = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        tx = transaction()
        request.update(transaction=tx, session_id=self.session, handle_id=handle)
        self.replies[tx] = asyncio.Queue()
        await self.ws.send(json.dumps(request))
        ack = await asyncio.wait_for(self.replies[tx].get(), TIMEOUT)
        assert ack["janus"] == "ack", f"the ack comes first: {ack}"
        event = await asyncio.wait_for(self.replies[tx].get(), TIMEOUT)
        assert event["janus"] == "event", event
        return event["plugindata"]["data"], event.get("jsep")

    async def next_event(self, handle, want):
        """The first event of `handle` satisfying `want`; the others stay for later calls."""
        seen = self.seen.setdefault(handle, [])
        for i, message in enumerate(seen):
            if want(message):
                return seen.pop(i)
        while True:
            message = await asyncio.wait_for(self.queue(handle).get(), TIMEOUT)
            if want(message):
                return message
            seen.append(message)


async def subscribe(janus, user, feed, received):
    handle = await janus.attach()
    data, jsep = await janus.message(
        handle, {"request": "join", "room": ROOM, "ptype": "subscriber", "feed": feed, "display": user["name"]}
    )
    assert data["videoroom"] == "attached", data
    assert data["id"] == feed, data
    assert jsep and jsep["type"] == "offer", jsep
    pc = RTCPeerConnection()
    counts = {"audio": 0, "video": 0}
    sizes = set()
    done = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        async def read():
            while True:
                frame = await track.recv()
                counts[track.kind] += 1
                if track.kind == "video":
                    sizes.add((frame.width, frame.height))
                if counts["audio"] >= FRAMES and counts["video"] >= FRAMES:
                    done.set()

        asyncio.ensure_future(read())

    await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    data, _ = await janus.message(
        handle, {"request": "start", "room": ROOM}, {"type": "answer", "sdp": pc.localDescription.sdp}
    )
    assert data.get("started") == "ok", data
    await janus.next_event(handle, lambda m: m["janus"] == "webrtcup")
    await asyncio.wait_for(done.wait(), TIMEOUT)
    received[feed] = (dict(counts), sorted(sizes))
    return pc


async def participant(user, others):
    janus = Janus(user["token"])
    await janus.connect()
    main = await janus.attach()
    joined, _ = await janus.message(
        main, {"request": "join", "room": ROOM, "ptype": "publisher", "id": user["id"], "display": user["name"]}
    )
    assert joined["videoroom"] == "joined", joined
    assert joined["id"] == user["id"]
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    data, jsep = await janus.message(
        main,
        {"request": "configure", "audio": True, "video": True},
        {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False},
    )
    assert data.get("configured") == "ok", data
    assert jsep and jsep["type"] == "answer", jsep
    await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
    await janus.next_event(main, lambda m: m["janus"] == "webrtcup")

    # Every other publisher: those listed in `joined`, then those announced later.
    feeds = {p["id"] for p in joined["publishers"]}
    while len(feeds) < len(others):
        event = await janus.next_event(
            main, lambda m: m["janus"] == "event" and "publishers" in m["plugindata"]["data"]
        )
        feeds |= {p["id"] for p in event["plugindata"]["data"]["publishers"]}
    assert feeds == set(others), (feeds, others)
    received = {}
    subscribers = await asyncio.gather(*(subscribe(janus, user, feed, received) for feed in sorted(feeds)))
    listed = await janus.request(
        {"janus": "message", "body": {"request": "listparticipants", "room": ROOM}}, main
    )
    ids = {p["id"] for p in listed["plugindata"]["data"]["participants"]}
    assert ids >= set(others) | {user["id"]}, listed
    print(f"user {user['id']} received {received}", flush=True)
    for feed, (counts, sizes) in received.items():
        assert counts["video"] >= FRAMES and counts["audio"] >= FRAMES, (feed, counts)
        assert (640, 480) in sizes, (feed, sizes)
    return janus, pc, subscribers


async def outsider():
    janus = Janus(OUTSIDER["token"])
    await janus.connect()
    handle = await janus.attach()
    data, _ = await janus.message(
        handle, {"request": "join", "room": ROOM, "ptype": "publisher", "id": OUTSIDER["id"]}
    )
    assert data.get("error_code") == 433, data
    print("outsider refused", flush=True)


async def main():
    ids = [u["id"] for u in USERS]
    results = await asyncio.gather(
        *(participant(u, [i for i in ids if i != u["id"]]) for u in USERS)
    )
    await outsider()
    for janus, pc, subscribers in results:
        for sub in subscribers:
            await sub.close()
        await pc.close()
        await janus.ws.close()
    print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 120))
    except Exception as error:  # noqa: BLE001
        print(f"FAILED: {error!r}", flush=True)
        raise
        sys.exit(1)

#!/usr/bin/env python3
"""Mixed abuse against a Switchboard XMPP listener, for the soak in soak-abuse.sh (not a test).

Runs for --duration seconds and prints one JSON line of counts every 30 s and at the end:
- stalled receivers: users that log in, send presence and never read again;
- flooders: users that send 50 KB messages to the stalled receivers as fast as the server
  takes them;
- trickles: connections that send one byte every 5 s and never authenticate (reconnecting
  when closed);
- brute force: wrong passwords for the well-behaved users, from many loopback addresses
  (127.0.0.2 …), as fast as the server answers.
Only loopback addresses are used.
"""
import argparse
import asyncio
import base64
import json
import random
import ssl
import time

STATS = {"stalled_logged_in": 0, "flood_sent": 0, "flood_closed": 0, "trickle_closed": 0,
         "brute_not_authorized": 0, "brute_throttled": 0, "brute_other": 0, "errors": 0}


def tls_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_until(reader, needles, limit=1 << 20):
    data = b""
    while not any(n in data for n in needles):
        chunk = await asyncio.wait_for(reader.read(65536), 30)
        if not chunk:
            raise ConnectionError("closed: " + data[-200:].decode(errors="replace"))
        data += chunk
        if len(data) > limit:
            data = data[-4096:]
    return data


async def login(host, port, domain, node, password, source="127.0.0.1"):
    """STARTTLS + SASL PLAIN + bind; returns (reader, writer) or raises with the SASL answer."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    header = (f"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
              f" to='{domain}' version='1.0'>").encode()
    writer.write(header)
    await read_until(reader, [b"</stream:features>"])
    writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await read_until(reader, [b"<proceed"])
    await writer.start_tls(tls_context())
    writer.write(header)
    await read_until(reader, [b"</stream:features>"])
    plain = base64.b64encode(f"\0{node}\0{password}".encode()).decode()
    writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
    answer = await read_until(reader, [b"<success", b"</failure>"])
    if b"<success" not in answer:
        writer.close()
        raise PermissionError(answer.decode(errors="replace"))
    writer.write(header)
    await read_until(reader, [b"</stream:features>"])
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 b"<resource>soak</resource></bind></iq>")
    await read_until(reader, [b"</bind>"])
    return reader, writer


async def stalled(args, node, password):
    reader, writer = await login(args.host, args.port, args.domain, node, password)
    writer.write(b"<presence/>")
    STATS["stalled_logged_in"] += 1
    await asyncio.sleep(args.duration)  # never reads again
    writer.close()


async def flooder(args, node, password, targets):
    body = "z" * 50_000
    while time.monotonic() < args.deadline:
        try:
            reader, writer = await login(args.host, args.port, args.domain, node, password)
            n = 0
            while time.monotonic() < args.deadline:
                if writer.is_closing() or reader.at_eof():
                    raise ConnectionError("closed by the server")
                to = random.choice(targets)
                writer.write(f"<message to='{to}/soak' type='chat' id='f{n}'><body>{body}</body></message>".encode())
                await writer.drain()
                STATS["flood_sent"] += 1
                n += 1
        except (ConnectionError, OSError, asyncio.TimeoutError):
            STATS["flood_closed"] += 1
            await asyncio.sleep(1)


async def trickle(args):
    while time.monotonic() < args.deadline:
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port)
            header = f"<stream:stream xmlns='jabber:client' to='{args.domain}' version='1.0'>"
            for byte in (header + " " * 10_000).encode():
                if time.monotonic() >= args.deadline:
                    break
                if writer.is_closing() or reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(5)
            writer.close()
        except (ConnectionError, OSError):
            pass
        STATS["trickle_closed"] += 1


async def brute(args, victims):
    while time.monotonic() < args.deadline:
        source = f"127.0.0.{random.randint(2, 250)}"
        node = random.choice(victims)
        try:
            await login(args.host, args.port, args.domain, node, "wrong-" + str(random.random()), source)
            STATS["brute_other"] += 1
        except PermissionError as refused:
            key = "brute_throttled" if "temporary-auth-failure" in str(refused) else "brute_not_authorized"
            STATS[key] += 1
        except (ConnectionError, OSError, asyncio.TimeoutError):
            STATS["errors"] += 1
            await asyncio.sleep(0.5)


async def report(args):
    while time.monotonic() < args.deadline:
        await asyncio.sleep(30)
        print(json.dumps({"t": round(time.monotonic() - args.start), **STATS}), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default="localhost")
    parser.add_argument("--users-file", required=True, help="'jid password' lines")
    parser.add_argument("--victims", type=int, required=True,
                        help="the first N users are the well-behaved ones (brute-forced)")
    parser.add_argument("--duration", type=float, default=1800)
    parser.add_argument("--trickles", type=int, default=50)
    parser.add_argument("--brute-workers", type=int, default=4)
    args = parser.parse_args()
    users = [line.split() for line in open(args.users_file) if line.strip()]
    victims = [jid.split("@")[0] for jid, _ in users[: args.victims]]
    pool = users[args.victims:]
    stall_users, flood_users = pool[:5], pool[5:10]
    args.start = time.monotonic()
    args.deadline = args.start + args.duration
    tasks = [asyncio.create_task(stalled(args, jid.split("@")[0], pw)) for jid, pw in stall_users]
    await asyncio.sleep(2)
    targets = [jid for jid, _ in stall_users]
    tasks += [asyncio.create_task(flooder(args, jid.split("@")[0], pw, targets)) for jid, pw in flood_users]
    tasks += [asyncio.create_task(trickle(args)) for _ in range(args.trickles)]
    tasks += [asyncio.create_task(brute(args, victims)) for _ in range(args.brute_workers)]
    tasks.append(asyncio.create_task(report(args)))
    await asyncio.wait(tasks, timeout=args.duration + 60)
    print(json.dumps({"t": round(time.monotonic() - args.start), "final": True, **STATS}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/env python3
"""proxy.py - a userspace TCP fault proxy between rzkv nodes on 127.0.0.1.

The fault suite's network faults when it cannot use network namespaces
(not root, or no `ip netns`).  Each node gets its own cluster file in which
node j is reached through a proxy port for the pair (i, j); this process
listens on every such port and forwards to j's real address, so it knows
which link each byte crosses and can fault links one by one:

    partition   a blocked link forwards nothing in either direction (data
                waits, as in a real partition with retransmits); new
                connections on it are accepted but not connected onward
                until the link heals.  Optionally existing connections on
                a link are reset when it is cut.
    delay       every chunk is held DELAY ms (plus jitter) before it is
                forwarded, order kept.
    loss        with probability P a new chunk makes the proxy reset the
                connection (TCP cannot lose bytes in the middle of a
                stream; a reset is what a lossy link turns into).

Usage: proxy.py --map PORT:NODE_I:NODE_J:TARGET_PORT ... --control FILE

The control file is JSON, re-read whenever it changes:

    {"blocked": [[i, j], ...],      links cut (i -> j and j -> i)
     "delay_ms": 0, "jitter_ms": 0, "loss": 0.0, "reset_on_cut": false}

Writes "ready" on stdout once every port is listening.
"""

import argparse
import asyncio
import json
import os
import random
import sys

RULES = {"blocked": set(), "delay_ms": 0, "jitter_ms": 0, "loss": 0.0,
         "reset_on_cut": False}
OPEN = {}           # frozenset({i, j}) -> asyncio.Event set when not cut
CONNS = {}          # frozenset({i, j}) -> set of writers to reset on a cut


def link(i, j):
    return frozenset((i, j))


def pair_event(pair):
    ev = OPEN.get(pair)
    if ev is None:
        ev = OPEN[pair] = asyncio.Event()
        ev.set()
    return ev


def link_open(i, j):
    return pair_event(link(i, j))


def apply_rules(data):
    blocked = set(link(a, b) for a, b in data.get("blocked", []))
    for pair in list(OPEN) + list(blocked):
        ev = pair_event(pair)
        if pair in blocked:
            if ev.is_set() and data.get("reset_on_cut"):
                for w in list(CONNS.get(pair, ())):
                    w.transport.abort()
            ev.clear()
        else:
            ev.set()
    RULES.update(data)
    RULES["blocked"] = blocked


async def watch_control(path):
    last = None
    while True:
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != last:
                with open(path, encoding="utf-8") as fp:
                    text = fp.read()
                if text.strip():
                    apply_rules(json.loads(text))
                last = stamp
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.05)


async def pump(reader, writer, i, j, pair_writers):
    """Copy one direction, honouring cuts, delay and loss."""
    ev = link_open(i, j)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if RULES["loss"] and random.random() < RULES["loss"]:
                for w in pair_writers:
                    w.transport.abort()
                return
            delay = RULES["delay_ms"]
            if RULES["jitter_ms"]:
                delay += random.uniform(0, RULES["jitter_ms"])
            if delay:
                await asyncio.sleep(delay / 1000.0)
            await ev.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        for w in pair_writers:
            try:
                w.close()
            except Exception:
                pass


def make_handler(i, j, target):
    async def handle(creader, cwriter):
        pair = link(i, j)
        await link_open(i, j).wait()
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1",
                                                             target)
        except OSError:
            cwriter.close()
            return
        writers = (cwriter, swriter)
        conns = CONNS.setdefault(pair, set())
        conns.update(writers)
        try:
            await asyncio.gather(
                pump(creader, swriter, i, j, writers),
                pump(sreader, cwriter, j, i, writers))
        finally:
            conns.difference_update(writers)
    return handle


async def main_async(args):
    servers = []
    for spec in args.map:
        port, i, j, target = spec.split(":")
        srv = await asyncio.start_server(
            make_handler(i, j, int(target)), "127.0.0.1", int(port),
            reuse_address=True)
        servers.append(srv)
    asyncio.ensure_future(watch_control(args.control))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main():
    ap = argparse.ArgumentParser(description="rzkv fault proxy")
    ap.add_argument("--map", action="append", required=True,
                    help="LISTEN_PORT:FROM_NODE:TO_NODE:TARGET_PORT")
    ap.add_argument("--control", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

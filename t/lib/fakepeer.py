#!/usr/bin/env python3
"""fakepeer.py - a stand-in rzkv node that never stores a write.

Listens on each 127.0.0.1:PORT given, speaks nng's SP handshake as REP
and answers every NodeBatch a coordinator sends it: reads and clock reads
with an empty OK result (the key is absent, the clock zero), every
ReplicaSet with UNAVAILABLE, as a real node answers when its storage
worker is late.  Any other request goes unanswered.  Each connection and
each batch is logged to standard output ("conn PORT", "batch PORT ops
get,set,...").  Used by t/integ/write_outcome.sh.

Usage: fakepeer.py PORT...
"""
import socket
import struct
import sys
import threading

OP_NAMES = {1: "get", 2: "set", 3: "clock_get", 4: "clock_set", 5: "purge"}
STATUS_UNAVAILABLE = 2
lock = threading.Lock()


def log(line):
    with lock:
        print(line, flush=True)


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def put_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def record(field, data):
    return put_varint(field << 3 | 2) + put_varint(len(data)) + data


def fields(buf):
    """(field, bytes) for each length-delimited field of a message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        if key & 7 != 2:
            raise ValueError("unexpected wire type %d" % (key & 7))
        n, i = varint(buf, i)
        yield key >> 3, buf[i:i + n]
        i += n


def answer(envelope, port):
    """The Reply to an Envelope, or None to leave it unanswered."""
    body = [data for field, data in fields(envelope) if field == 2]
    if not body:
        return None                     # not a NodeBatch
    names, results = [], b""
    for _, op in fields(body[0]):
        kind = op[0] >> 3
        names.append(OP_NAMES.get(kind, str(kind)))
        if kind == 2:
            msg = b"storage worker late"
            result = (put_varint(1 << 3) + put_varint(STATUS_UNAVAILABLE) +
                      record(2, msg))
        else:
            result = b""
        results += record(1, result)
    log("batch %d ops %s" % (port, ",".join(names)))
    return record(11, results)          # Reply.node


def recv_all(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def serve(conn, port):
    try:
        recv_all(conn, 8)               # the REQ side's handshake
        conn.sendall(b"\0SP\0\x00\x31\0\0")
        log("conn %d" % port)
        while True:
            (size,) = struct.unpack(">Q", recv_all(conn, 8))
            frame = recv_all(conn, size)
            reply = answer(frame[4:], port)
            if reply is not None:
                conn.sendall(struct.pack(">Q", 4 + len(reply)) + frame[:4] +
                             reply)
    except (EOFError, OSError, ValueError, IndexError):
        conn.close()


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def accept_loop(s, port):
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, port), daemon=True).start()


def main():
    ports = [int(p) for p in sys.argv[1:]]
    socks = [listen(p) for p in ports]
    log("ready")
    threads = [threading.Thread(target=accept_loop, args=(s, p), daemon=True)
               for s, p in zip(socks, ports)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()

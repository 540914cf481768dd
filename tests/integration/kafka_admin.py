#!/usr/bin/env python3
"""Raw Kafka admin requests for 07-kafka-admin.sh: the few the test needs,
encoded by hand from Kafka's message schemas (classic and flexible
versions), one request per run, its decoded answer printed one item a line.

  kafka_admin.py HOST:PORT apiversions
  kafka_admin.py HOST:PORT cp VERSION [--validate] NAME:COUNT[:ASSIGNED_BROKER]...
  kafka_admin.py HOST:PORT dc VERSION [--synonyms] [--docs] TYPE:NAME[:KEY,KEY...]...
  kafka_admin.py HOST:PORT cluster VERSION [--ops] [ENDPOINT_TYPE]
  kafka_admin.py HOST:PORT olep VERSION TOPIC:PARTITION:EPOCH[:CURRENT_EPOCH]...
"""
import socket
import struct
import sys

FLEX_FROM = {18: 3, 23: 4, 32: 4, 37: 2, 60: 0}


class W:
    def __init__(self, flex):
        self.b, self.flex = b"", flex

    def i8(self, v): self.b += struct.pack(">b", v); return self
    def i16(self, v): self.b += struct.pack(">h", v); return self
    def i32(self, v): self.b += struct.pack(">i", v); return self
    def boolean(self, v): return self.i8(1 if v else 0)

    def uvarint(self, v):
        while v >= 0x80:
            self.b += bytes([(v & 0x7F) | 0x80])
            v >>= 7
        self.b += bytes([v])
        return self

    def string(self, s):
        if s is None:
            return self.uvarint(0) if self.flex else self.i16(-1)
        e = s.encode()
        (self.uvarint(len(e) + 1) if self.flex else self.i16(len(e)))
        self.b += e
        return self

    def array(self, n):  # n = None: null
        if n is None:
            return self.uvarint(0) if self.flex else self.i32(-1)
        return self.uvarint(n + 1) if self.flex else self.i32(n)

    def tags(self):
        return self.uvarint(0) if self.flex else self


class R:
    def __init__(self, b, flex):
        self.b, self.at, self.flex = b, 0, flex

    def take(self, n):
        if self.at + n > len(self.b):
            raise SystemExit("response truncated")
        x = self.b[self.at:self.at + n]
        self.at += n
        return x

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]
    def boolean(self): return self.i8() != 0

    def uvarint(self):
        v = shift = 0
        while True:
            c = self.take(1)[0]
            v |= (c & 0x7F) << shift
            if c < 0x80:
                return v
            shift += 7

    def string(self):
        n = self.uvarint() - 1 if self.flex else self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self):
        return self.uvarint() - 1 if self.flex else self.i32()

    def tags(self):
        if self.flex:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


def call(addr, key, ver, body):
    host, port = addr.rsplit(":", 1)
    flex = ver >= FLEX_FROM[key]
    hdr = struct.pack(">hhi", key, ver, 7) + struct.pack(">h", 2) + b"it"
    if flex and key != 18:
        hdr += b"\x00"
    req = hdr + body
    c = socket.create_connection((host, int(port)), timeout=20)
    c.sendall(struct.pack(">i", len(req)) + req)

    def recv(n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise SystemExit("connection closed")
            b += x
        return b
    n = struct.unpack(">i", recv(4))[0]
    r = R(recv(n), flex)
    if r.i32() != 7:
        raise SystemExit("wrong correlation id")
    if flex and key != 18:
        r.tags()
    return r


def done(r):
    if r.at != len(r.b):
        raise SystemExit(f"{len(r.b) - r.at} bytes left over in the response")


def main():
    addr, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if op == "apiversions":
        r = call(addr, 18, 0, b"")
        r.flex = False
        err = r.i16()
        for _ in range(r.i32()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            print(f"{k} {lo}-{hi}")
        done(r)
        return err
    ver = int(args.pop(0))
    flags = [a for a in args if a.startswith("--")]
    args = [a for a in args if not a.startswith("--")]
    if op == "cp":
        w = W(ver >= 2)
        w.array(len(args))
        for a in args:
            f = a.split(":")
            w.string(f[0]).i32(int(f[1]))
            extra = f[2:]
            if extra:
                w.array(len(extra))
                for b in extra:
                    w.array(1).i32(int(b)).tags()
            else:
                w.array(None)
            w.tags()
        w.i32(5000).boolean("--validate" in flags).tags()
        r = call(addr, 37, ver, w.b)
        r.i32()
        for _ in range(r.array()):
            name, err, msg = r.string(), r.i16(), r.string()
            r.tags()
            print(f"{name}={err}" + (f" {msg}" if msg else ""))
        r.tags()
        done(r)
    elif op == "dc":
        w = W(ver >= 4)
        w.array(len(args))
        for a in args:
            f = a.split(":", 2)
            w.i8(int(f[0])).string(f[1])
            if len(f) > 2:
                keys = f[2].split(",")
                w.array(len(keys))
                for k in keys:
                    w.string(k)
            else:
                w.array(None)
            w.tags()
        w.boolean("--synonyms" in flags)
        if ver >= 3:
            w.boolean("--docs" in flags)
        w.tags()
        r = call(addr, 32, ver, w.b)
        r.i32()
        for _ in range(r.array()):
            err, msg, rtype, name = r.i16(), r.string(), r.i8(), r.string()
            print(f"resource {rtype}:{name} error={err}" + (f" {msg}" if msg else ""))
            for _ in range(r.array()):
                cname, value, ro, src, sens = r.string(), r.string(), r.boolean(), r.i8(), r.boolean()
                syn = []
                for _ in range(r.array()):
                    syn.append(f"{r.string()}={r.string()}/{r.i8()}")
                    r.tags()
                ctype, doc = (r.i8(), r.string()) if ver >= 3 else (None, None)
                r.tags()
                line = f"  {cname}={value} source={src} readonly={int(ro)} sensitive={int(sens)}"
                if ctype is not None:
                    line += f" type={ctype}"
                if syn:
                    line += " synonyms=" + ",".join(syn)
                if doc:
                    line += " doc"
                print(line)
            r.tags()
        r.tags()
        done(r)
    elif op == "cluster":
        w = W(True)
        w.boolean("--ops" in flags)
        if ver >= 1:
            w.i8(int(args[0]) if args else 1)
        w.tags()
        r = call(addr, 60, ver, w.b)
        r.i32()
        err, msg = r.i16(), r.string()
        ept = r.i8() if ver >= 1 else None
        print(f"error={err}" + (f" {msg}" if msg else ""))
        if ept is not None:
            print(f"endpoint_type={ept}")
        print(f"cluster_id={r.string()}")
        print(f"controller={r.i32()}")
        for _ in range(r.array()):
            bid, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
            r.tags()
            print(f"broker {bid} {host}:{port} rack={rack}")
        print(f"authorized_operations={r.i32()}")
        r.tags()
        done(r)
    elif op == "olep":
        w = W(ver >= 4)
        if ver >= 3:
            w.i32(-1)
        by_topic = {}
        for a in args:
            f = a.split(":")
            by_topic.setdefault(f[0], []).append(
                (int(f[1]), int(f[3]) if len(f) > 3 else -1, int(f[2])))
        w.array(len(by_topic))
        for t, parts in by_topic.items():
            w.string(t).array(len(parts))
            for p, cur, ep in parts:
                w.i32(p).i32(cur).i32(ep).tags()
            w.tags()
        w.tags()
        r = call(addr, 23, ver, w.b)
        r.i32()
        for _ in range(r.array()):
            t = r.string()
            for _ in range(r.array()):
                err, p, ep, end = r.i16(), r.i32(), r.i32(), r.i64()
                r.tags()
                print(f"{t}/{p} error={err} epoch={ep} end={end}")
            r.tags()
        r.tags()
        done(r)
    else:
        raise SystemExit(f"unknown operation {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

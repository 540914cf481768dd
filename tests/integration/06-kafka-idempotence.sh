#!/bin/sh
# Idempotent Kafka producers against a real confluxd:
#   - librdkafka (kafka_rdkafka.c) with enable.idempotence, acks=all, every
#     compression codec: all delivered, read back exactly once, in order;
#   - raw requests (python3): InitProducerId (v1, and v3 with an epoch
#     bump), a transactional id refused, a duplicate batch answered with the
#     original offset and stored once (also while its append is in flight),
#     a sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER), a fenced epoch
#     (INVALID_PRODUCER_EPOCH), a new epoch starting at 0;
#   - a restart: producer ids are not reused, and a producer the broker no
#     longer knows continues at any sequence.
#
#   06-kafka-idempotence.sh BUILD_DIR KAFKA_RDKAFKA_BINARY
set -u
BUILD=$1
PROG=$2
. "$(dirname "$0")/lib.sh"
it_init kidem
command -v kcat >/dev/null || fail "kcat is required (Debian package kcat; tools/install-deps.sh)"

start() {
	it_start --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
		--mqtt-listen off
	it_addr KAFKA kafka
}
stop() { it_stop; }

start

# librdkafka's idempotent producer, every codec.
timeout 300 "$PROG" "$KAFKA" idem 2000 >"$T/rdkafka.out" 2>"$T/rdkafka.err" ||
	fail "kafka_rdkafka"
cat "$T/rdkafka.out"

# Raw requests: one line per answer, "error offset" or "error id epoch".
cat >"$T/raw.py" <<'PY'
import socket, struct, sys, time
host, port = sys.argv[1].rsplit(":", 1)
c = socket.create_connection((host, int(port)), timeout=20)
corr = 0

def crc32c(b):
    crc = 0xFFFFFFFF
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF

def varint(v):  # zig-zag
    v = (v << 1) ^ (v >> 63)
    out = b""
    while True:
        if v < 0x80:
            return out + bytes([v])
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7

def batch(pid, epoch, seq, values):
    recs = b""
    for i, v in enumerate(values):
        r = b"\0" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(r)) + r
    ts = int(time.time() * 1000)
    tail = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, pid, epoch, seq, len(values)) + recs
    body = struct.pack(">ibI", 0, 2, crc32c(tail)) + tail
    return struct.pack(">qi", 0, len(body)) + body

def s16(b): return struct.pack(">h", len(b)) + b

held = None  # a list while requests are held back to go in one write

def send(key, ver, body, flex=False):
    global corr
    corr += 1
    h = struct.pack(">hhi", key, ver, corr) + s16(b"it") + (b"\0" if flex else b"")
    frame = struct.pack(">i", len(h + body)) + h + body
    if held is None:
        c.sendall(frame)
    else:
        held.append(frame)

def recv(flex=False):
    def n(k):
        b = b""
        while len(b) < k:
            x = c.recv(k - len(b))
            if not x: raise SystemExit("connection closed")
            b += x
        return b
    r = n(struct.unpack(">i", n(4))[0])
    return r[5:] if flex else r[4:]

def init_send(txn=None, pid=None, epoch=None):
    if pid is None:
        send(22, 1, (s16(txn) if txn else struct.pack(">h", -1)) + struct.pack(">i", 60000))
    else:  # v3, flexible: null compact string, timeout, id, epoch, no tags
        send(22, 3, b"\0" + struct.pack(">iqh", 60000, pid, epoch) + b"\0", flex=True)

def init_recv(flex=False):
    _, err, pid, epoch = struct.unpack(">ihqh", recv(flex)[:16])
    return err, pid, epoch

def produce_send(topic, pid, epoch, seq, values):
    b = batch(pid, epoch, seq, values)
    send(0, 3, struct.pack(">hhii", -1, -1, 10000, 1) + s16(topic) +
         struct.pack(">iii", 1, 0, len(b)) + b)

def produce_recv():
    r = recv()
    at = 4 + 2 + struct.unpack(">h", r[4:6])[0] + 4
    _, err, base = struct.unpack(">ihq", r[at:at + 14])
    return err, base

def produce(*a):
    produce_send(*a)
    return produce_recv()

T = b"idem-raw"
if sys.argv[2] == "first":
    err, P, epoch = init_send() or init_recv()
    print("init", err, epoch)
    print("seq0", *produce(T, P, 0, 0, [b"a"]))
    print("dup0", *produce(T, P, 0, 0, [b"a"]))
    print("gap5", *produce(T, P, 0, 5, [b"x"]))
    print("seq1", *produce(T, P, 0, 1, [b"b"]))
    init_send(txn=b"tx")
    print("txn", init_recv()[0])
    init_send(pid=P, epoch=0)
    err, P2, epoch = init_recv(flex=True)
    print("bump", err, P2 == P, epoch)
    print("new-epoch-seq3", *produce(T, P, 1, 3, [b"y"]))
    print("new-epoch-seq0", *produce(T, P, 1, 0, [b"c"]))
    print("old-epoch", *produce(T, P, 0, 2, [b"y"]))
    # Pipelined in one write: two in flight, then a retry of the first,
    # judged while the first append is still out (acks=all: it waits for
    # the flush).
    held = []
    produce_send(T, P, 1, 1, [b"d"])
    produce_send(T, P, 1, 2, [b"e"])
    produce_send(T, P, 1, 1, [b"d"])
    c.sendall(b"".join(held))
    held = None
    print("inflight", *produce_recv(), *produce_recv(), *produce_recv())
    open(sys.argv[3], "w").write(str(P))
else:
    P = int(open(sys.argv[3]).read())
    err, Q, epoch = init_send() or init_recv()
    print("init-after-restart", err, Q > P, epoch)
    print("unknown-seq7", *produce(T, P, 1, 7, [b"f"]))
    print("dup7", *produce(T, P, 1, 7, [b"f"]))
PY
timeout 60 python3 "$T/raw.py" "$KAFKA" first "$T/pid" >"$T/raw1.out" 2>"$T/raw1.err" ||
	fail "raw requests"
cat >"$T/raw1.want" <<'EOF'
init 0 0
seq0 0 0
dup0 0 0
gap5 45 -1
seq1 0 1
txn 35
bump 0 True 1
new-epoch-seq3 45 -1
new-epoch-seq0 0 2
old-epoch 47 -1
inflight 0 3 0 4 0 3
EOF
cmp -s "$T/raw1.want" "$T/raw1.out" || { diff "$T/raw1.want" "$T/raw1.out"; fail "raw answers"; }

# Restart: ids are not reused; the broker forgot the producer's sequence.
stop
start
timeout 60 python3 "$T/raw.py" "$KAFKA" second "$T/pid" >"$T/raw2.out" 2>"$T/raw2.err" ||
	fail "raw requests after restart"
printf 'init-after-restart 0 True 0\nunknown-seq7 0 5\ndup7 0 5\n' >"$T/raw2.want"
cmp -s "$T/raw2.want" "$T/raw2.out" || { diff "$T/raw2.want" "$T/raw2.out"; fail "raw answers after restart"; }

# Stored once each, in order.
timeout 60 kcat -b "$KAFKA" -t idem-raw -p 0 -C -o beginning -e -q -f '%o %s\n' \
	>"$T/stored.out" 2>"$T/stored.err" || fail "kcat consume"
printf '0 a\n1 b\n2 c\n3 d\n4 e\n5 f\n' | cmp -s - "$T/stored.out" ||
	fail "stored records: $(cat "$T/stored.out")"

stop
echo "06-kafka-idempotence: OK"

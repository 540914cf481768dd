#!/usr/bin/env python3
"""MQTT checks with paho-mqtt (Debian python3-paho-mqtt, 1.6 or 2.x) for
09-mqtt-paho.sh, once with MQTT 3.1.1 and once with MQTT 5.0:

- CONNECT / CONNACK (return code 0);
- SUBSCRIBE with `+` and `#` filters, granted QoS 2;
- PUBLISH at QoS 0, 1 and 2 (acknowledged to the publisher), received with
  the same QoS and exactly the bytes sent (all 256 byte values); a topic
  no filter matches is not delivered;
- a retained message is delivered (retain flag set, bytes intact) to a
  later subscriber right after its SUBACK; an empty retained message
  clears it;
- after UNSUBSCRIBE (acknowledged) the filter delivers nothing, while the
  other filter of the same client still does.

    mqtt_paho.py HOST PORT RUN_ID

Prints one line per check; exits 1 with a FAIL line on the first failure.
"""
import sys
import threading
import time

import paho.mqtt
import paho.mqtt.client as mqtt

WAIT_S = 15.0  # for any one condition
SETTLE_S = 0.5  # after the last expected message: time for a stray one to show
BINARY = bytes(range(256))


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def code(x):
    """An int from a paho return / reason code (int, ReasonCodes or ReasonCode)."""
    return int(getattr(x, "value", x))


class Conn:
    """One connected client with its loop thread; records what it receives."""

    def __init__(self, host, port, cid, v5):
        self.name = cid
        self.v5 = v5
        self.cond = threading.Condition()
        self.connack = None
        self.acks = {}  # mid -> reason codes (SUBACK) or True (UNSUBACK)
        self.received = []  # (topic, payload bytes, qos, retain)
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kw = {} if v5 else {"clean_session": True}
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto, **kw)
        else:
            self.c = mqtt.Client(client_id=cid, protocol=proto, **kw)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_message = self._on_message
        ckw = {"clean_start": True} if v5 else {}
        self.c.connect(host, port, keepalive=30, **ckw)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        if self.connack != 0:
            fail(f"{cid}: CONNACK return code {self.connack}")

    # Callbacks: signatures differ between paho 1.x (3.1.1 / 5.0) and 2.x,
    # the values needed are at the same positions.
    def _on_connect(self, *a):
        with self.cond:
            self.connack = code(a[3])
            self.cond.notify_all()

    def _on_subscribe(self, *a):
        with self.cond:
            self.acks[a[2]] = [code(x) for x in a[3]]
            self.cond.notify_all()

    def _on_unsubscribe(self, *a):
        with self.cond:
            self.acks[a[2]] = True
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.received.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self.cond.notify_all()

    def wait(self, pred, what):
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"{self.name}: {what}: not within {WAIT_S} s; received {self.summary()}")
                self.cond.wait(left)

    def summary(self):
        return [(t, len(p), q, r) for t, p, q, r in self.received]

    def subscribe(self, filters):
        rc, mid = self.c.subscribe(filters)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"{self.name}: subscribe {filters}: rc {rc}")
        self.wait(lambda: mid in self.acks, f"SUBACK for {filters}")
        want = [q for _, q in filters]
        if self.acks[mid] != want:
            fail(f"{self.name}: SUBACK for {filters}: {self.acks[mid]}, expected {want}")

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"{self.name}: unsubscribe {topic}: rc {rc}")
        self.wait(lambda: mid in self.acks, f"UNSUBACK for {topic}")

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"{self.name}: publish to {topic}: rc {info.rc}")
        info.wait_for_publish(WAIT_S)
        if not info.is_published():
            fail(f"{self.name}: publish to {topic} (QoS {qos}) not acknowledged within {WAIT_S} s")

    def wait_messages(self, want, what):
        """Waits until every (topic, payload, qos, retain) of `want` has arrived."""
        self.wait(lambda: all(w in self.received for w in want), what)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def check_exact(conn, want, what):
    """After a short settle: `conn` received exactly `want` (as a multiset)."""
    time.sleep(SETTLE_S)
    with conn.cond:
        got = list(conn.received)
    if sorted(got) != sorted(want):
        extra = [x[:1] + (len(x[1]),) + x[2:] for x in got if x not in want or got.count(x) > 1]
        missing = [x[:1] + (len(x[1]),) + x[2:] for x in want if x not in got]
        fail(f"{what}: {conn.name} received {len(got)} messages, expected {len(want)}; "
             f"unexpected or repeated {extra}, missing {missing}")


def run(host, port, run_id, v5):
    v = "5" if v5 else "311"
    base = f"it09/{run_id}/{v}"
    label = f"MQTT {'5.0' if v5 else '3.1.1'}"

    sub = Conn(host, port, f"it09-sub-{v}-{run_id}", v5)
    pub = Conn(host, port, f"it09-pub-{v}-{run_id}", v5)
    print(f"{label}: connected", flush=True)

    sub.subscribe([(f"{base}/+/x", 2), (f"{base}/b/#", 2)])
    sends = [  # topic, qos, delivered?
        (f"{base}/a/x", 0, True),
        (f"{base}/c/x", 1, True),
        (f"{base}/b/deep/er", 2, True),
        (f"{base}/b", 1, True),
        (f"{base}/b/q0", 0, True),
        (f"{base}/d/y", 1, False),
        (f"{base}/a/x/more", 2, False),
    ]
    want = []
    for i, (topic, qos, delivered) in enumerate(sends):
        payload = BINARY + f" {i} q{qos}".encode() + BINARY[::-1]
        pub.publish(topic, payload, qos)
        if delivered:
            want.append((topic, payload, qos, False))
    sub.wait_messages(want, "QoS 0/1/2 through + and # filters")
    check_exact(sub, want, "QoS 0/1/2 through + and # filters")
    print(f"{label}: QoS 0, 1 and 2 through wildcards, payloads byte-exact", flush=True)

    rtopic = f"{base}/r/t"
    pub.publish(rtopic, BINARY, 1, retain=True)
    late = Conn(host, port, f"it09-late-{v}-{run_id}", v5)
    late.subscribe([(f"{base}/r/#", 1)])
    late.wait(lambda: any(r[0] == rtopic for r in late.received), "the retained message after SUBACK")
    check_exact(late, [(rtopic, BINARY, 1, True)],
                "retained message published (and acknowledged) before the SUBSCRIBE: once, with RETAIN 1, "
                "and not also as a live message")
    late.close()
    pub.publish(rtopic, b"", 1, retain=True)
    cleared = Conn(host, port, f"it09-cleared-{v}-{run_id}", v5)
    cleared.subscribe([(f"{base}/r/#", 1)])
    check_exact(cleared, [], "after the retained message was cleared")
    cleared.close()
    print(f"{label}: retained message delivered on subscribe, cleared by an empty one", flush=True)

    with sub.cond:
        sub.received.clear()
    sub.unsubscribe(f"{base}/+/x")
    after = BINARY + b" after unsubscribe"
    pub.publish(f"{base}/a/x", after, 1)
    pub.publish(f"{base}/b/still", after, 1)
    sub.wait_messages([(f"{base}/b/still", after, 1, False)], "the filter still subscribed delivers")
    check_exact(sub, [(f"{base}/b/still", after, 1, False)], "after UNSUBSCRIBE")
    print(f"{label}: unsubscribe stops delivery of that filter only", flush=True)

    sub.close()
    pub.close()


def main():
    if len(sys.argv) != 4:
        print("usage: mqtt_paho.py HOST PORT RUN_ID", file=sys.stderr)
        sys.exit(2)
    host, port, run_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(f"paho-mqtt {paho.mqtt.__version__}", flush=True)
    run(host, port, run_id, v5=False)
    run(host, port, run_id, v5=True)
    print("mqtt_paho: OK", flush=True)


if __name__ == "__main__":
    main()

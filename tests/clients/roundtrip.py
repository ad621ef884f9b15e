"""Produce, consume, commit and resume through kflip with one Python client.

usage: roundtrip.py {confluent|kafka-python} BOOTSTRAP TOPIC GROUP N

1. produce N records "a-i"; 2. a group consumer reads them and commits;
3. produce N records "b-i"; 4. a new consumer in the same group must resume
exactly at "b-0": no "a" record again, every "b" record once.
Prints a JSON summary; exits 1 with a reason on any failure.
"""
import json
import sys
import time

LIB, BOOTSTRAP, TOPIC, GROUP, N = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
DEADLINE_S = 60


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


if LIB == "confluent":
    from confluent_kafka import Consumer, Producer

    def produce(values):
        errors = []
        p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "broker.address.family": "v4"})
        for v in values:
            p.produce(TOPIC, key=v.encode(), value=v.encode(),
                      on_delivery=lambda err, msg: err and errors.append(str(err)))
            p.poll(0)
        if p.flush(30) != 0 or errors:
            fail(f"produce failed: {errors[:3]}")

    def consume(expect):
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "broker.address.family": "v4"})
        c.subscribe([TOPIC])
        got, deadline = [], time.time() + DEADLINE_S
        while len(got) < expect and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                fail(f"consume error: {m.error()}")
            got.append(m.value().decode())
        c.commit(asynchronous=False)
        c.close()
        return got

elif LIB == "kafka-python":
    from kafka import KafkaConsumer, KafkaProducer

    def produce(values):
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        futures = [p.send(TOPIC, key=v.encode(), value=v.encode()) for v in values]
        for f in futures:
            f.get(timeout=30)
        p.flush()
        p.close()

    def consume(expect):
        c = KafkaConsumer(TOPIC, bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                          auto_offset_reset="earliest", enable_auto_commit=False)
        got, deadline = [], time.time() + DEADLINE_S
        while len(got) < expect and time.time() < deadline:
            for records in c.poll(timeout_ms=200).values():
                got.extend(r.value.decode() for r in records)
        c.commit()
        c.close()
        return got
else:
    fail(f"unknown client library {LIB}")

a = [f"a-{i}" for i in range(N)]
b = [f"b-{i}" for i in range(N)]
produce(a)
first = consume(N)
if sorted(first) != sorted(a):
    fail(f"first consumer read {len(first)} records, expected the {N} 'a' records")
produce(b)
second = consume(N)
replayed = [v for v in second if v.startswith("a-")]
if replayed:
    fail(f"resumed consumer replayed {len(replayed)} committed records")
if sorted(second) != sorted(b):
    fail(f"resumed consumer read {len(second)} records, expected the {N} 'b' records")
print(json.dumps({"ok": True, "lib": LIB, "produced": 2 * N, "first": len(first), "second": len(second)}))

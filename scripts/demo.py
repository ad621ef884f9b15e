"""The demo's client side (started by scripts/demo.sh, which runs the brokers
and `kflip run`).

An idempotent producer and a group consumer with manual commits run through
kflip the whole time and are never restarted, while the config's
`active:` line is flipped to dc2 (failover) and back to dc1 (failback). At the
end every acknowledged record is checked: received by the consumer exactly
once, and on both clusters (read directly, not through kflip) exactly once.
Exits 1 if anything was lost, duplicated or failed."""
import argparse
import os
import re
import socket
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ap = argparse.ArgumentParser()
for a in ("dc1", "dc2", "proxy", "config", "log"):
    ap.add_argument("--" + a, required=True)
ap.add_argument("--partitions", type=int, default=3)
ap.add_argument("--rate", type=float, default=200.0, help="records per second")
ap.add_argument("--phase", type=float, default=3.0, help="seconds of traffic around each flip")
args = ap.parse_args()
TOPIC = "demo"
ADDR = {"dc1": args.dc1, "dc2": args.dc2}
START = time.monotonic()


def now():
    return time.monotonic()


def say(msg):
    print(f"{now() - START:6.1f}s  {msg}", flush=True)


def fail(msg):
    print(f"\ndemo FAILED: {msg}\n  so far: {len(produced_at)} sent, {len(acked)} acknowledged, "
          f"{len(prod_errors)} producer errors, {len(received)} received "
          f"(newest demo-{newest[0]}), commits ok/refused {commits['ok']}/{commits['failed']}"
          f"\n  consumer errors: {consumer_notes[-3:]}"
          f"\n  kflip's log: {args.log} "
          "(KFLIP_DEMO_KEEP=1 keeps it after the demo)", flush=True)
    stop_producer.set()
    stop_consumer.set()
    os._exit(1)  # client threads may be blocked inside librdkafka


def wait(what, cond, limit):
    """Polls `cond` until it returns something truthy; fails after `limit` s."""
    deadline = now() + limit
    while True:
        r = cond()
        if r:
            return r
        if now() > deadline:
            fail(f"timed out after {limit:.0f}s waiting for {what}")
        time.sleep(0.05)


def wait_port(addr, what):
    host, port = addr.rsplit(":", 1)

    def up():
        try:
            socket.create_connection((host, int(port)), 0.5).close()
            return True
        except OSError:
            return False
    wait(f"{what} to listen on {addr}", up, 30)


def direct(addr, **extra):
    """Config for a client that talks to one cluster directly."""
    return {"bootstrap.servers": addr, "broker.address.family": "v4", **extra}


def topic_partitions(addr):
    """Partition count of TOPIC on a cluster (0 if absent). Lists all topics,
    so the metadata request can never auto-create it."""
    md = AdminClient(direct(addr)).list_topics(timeout=10)
    t = md.topics.get(TOPIC)
    return 0 if t is None or t.error is not None else len(t.partitions)


def read_cluster(addr):
    """Every record of TOPIC on one cluster, read directly: a list of
    (value, replicated) where `replicated` says the record carries kflip's
    `kflip-origin` header (a copy made by a flow, not a client's write)."""
    c = Consumer(direct(addr, **{"group.id": "demo-reader", "client.id": "demo-reader",
                                 "enable.auto.commit": False}))
    try:
        todo = {}
        for p in range(topic_partitions(addr)):
            _, high = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            if high > 0:
                todo[p] = high
        out = []
        if not todo:
            return out
        c.assign([TopicPartition(TOPIC, p, 0) for p in todo])
        deadline = now() + 30
        while todo and now() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    continue
                headers = dict(m.headers() or [])
                out.append((m.value().decode(), "kflip-origin" in headers))
                if m.offset() + 1 >= todo.get(m.partition(), 1 << 62):
                    del todo[m.partition()]
        if todo:
            fail(f"could not read {TOPIC} from {addr} to its end")
        return out
    finally:
        c.close()


def set_active(dc):
    """Edits the `active:` line the way an editor or a ConfigMap update
    does: a new file in the same directory, renamed over the old one."""
    text = open(args.config).read()
    new = re.sub(r"(?m)^(\s*active:\s*)\S+", r"\g<1>" + dc, text, count=1)
    tmp = os.path.join(os.path.dirname(args.config), ".kflip.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, args.config)


def switch_line(epoch):
    """kflip's `switched active cluster ... epoch=N` log line, or None."""
    try:
        log = open(args.log, errors="replace").read()
    except OSError:
        return None
    for line in log.splitlines():
        if "switched active cluster" in line and f"epoch={epoch} " in line + " ":
            return line
    return None


# ------------------------------------------------------------------ clients

stop_producer, stop_consumer = threading.Event(), threading.Event()
produced_at = []   # seq -> when produce() accepted demo-<seq>
acked = {}         # value -> when its delivery was acknowledged
prod_errors = []   # (value or None, message): failed deliveries, fatal errors
received = []      # (value, when the consumer's poll returned it)
newest = [-1]      # highest seq the consumer received
commits = Counter()  # "ok" / "failed"
consumer_notes = []  # consumer errors (not fatal; the consumer goes on)
lock = threading.Lock()


def on_delivery(err, msg):
    value = msg.value().decode()
    with lock:
        if err is not None:
            prod_errors.append((value, err.str()))
        else:
            acked[value] = now()


def producer_error(err):
    # librdkafka reports transient trouble (a closed connection) here and
    # recovers on its own; only a fatal error loses the producer.
    if err.fatal():
        with lock:
            prod_errors.append((None, f"fatal: {err.str()}"))


def produce():
    p = Producer({
        "bootstrap.servers": args.proxy, "broker.address.family": "v4",
        "client.id": "demo-producer",  # kflip tells clients apart by id + address
        "enable.idempotence": True, "acks": "all", "linger.ms": 5,
        "delivery.timeout.ms": 60000, "error_cb": producer_error,
    })
    seq, t0 = 0, now()
    while not stop_producer.is_set():
        delay = t0 + seq / args.rate - now()
        if delay > 0:
            p.poll(min(delay, 0.05))  # serves delivery reports meanwhile
            continue
        v = f"demo-{seq}"
        try:
            p.produce(TOPIC, key=v, value=v, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.1)
            continue
        produced_at.append(now())
        seq += 1
        p.poll(0)
    left = p.flush(60)
    if left:
        with lock:
            prod_errors.append((None, f"{left} records still undelivered after flush"))


def consume():
    def assigned(c, parts):
        try:
            at = [p.offset for p in c.committed(parts, timeout=5)]
        except KafkaException:
            at = []
        at = ", ".join(str(o) if o >= 0 else "none" for o in at) or "unknown"
        say(f"consumer: assigned {TOPIC} partitions "
            f"{','.join(str(p.partition) for p in parts)}; committed offsets {at}")

    def revoked(_c, parts):
        say(f"consumer: revoked {TOPIC} partitions {','.join(str(p.partition) for p in parts)}")

    c = Consumer({
        "bootstrap.servers": args.proxy, "broker.address.family": "v4",
        "client.id": "demo-consumer", "group.id": "demo-app",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "heartbeat.interval.ms": 500, "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 10,
        "error_cb": lambda e: consumer_notes.append(e.str()),
    })
    c.subscribe([TOPIC], on_assign=assigned, on_revoke=revoked)
    while not stop_consumer.is_set():
        try:
            msgs = c.consume(num_messages=500, timeout=0.05)
        except KafkaException as e:
            consumer_notes.append(str(e))
            continue
        t, got = now(), 0
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    consumer_notes.append(m.error().str())
                continue
            v = m.value().decode()
            received.append((v, t))
            newest[0] = max(newest[0], int(v[5:]))
            got += 1
        if got:  # manual commit of what this poll returned, synchronously
            try:
                res = c.commit(asynchronous=False) or []
                commits["failed" if any(p.error for p in res) else "ok"] += 1
            except KafkaException:
                commits["failed"] += 1
    c.close()


def produced_after(t):
    """Whether the consumer has received a record produced after `t`."""
    first = next((i for i, pt in enumerate(produced_at) if pt > t), None)
    return first is not None and newest[0] >= first


# --------------------------------------------------------------------- run

for dc in ("dc1", "dc2"):
    wait_port(ADDR[dc], dc)
wait_port(args.proxy, "kflip")

admin = AdminClient(direct(args.dc1))
admin.create_topics([NewTopic(TOPIC, args.partitions, 1)])[TOPIC].result(timeout=30)
t = now()
say(f"topic {TOPIC} ({args.partitions} partitions) created on dc1 only")
wait(f"kflip's replication to create {TOPIC} on dc2",
     lambda: topic_partitions(args.dc2) == args.partitions, 30)
say(f"kflip's dc1->dc2 flow created it on dc2 ({now() - t:.1f}s later)")

threads = [threading.Thread(target=produce, daemon=True),
           threading.Thread(target=consume, daemon=True)]
for th in threads:
    th.start()
say(f"producer (idempotent, ~{args.rate:.0f}/s) and consumer (group demo-app, "
    f"manual commits) started through kflip {args.proxy}; active: dc1")

wait("the consumer to receive its first record", lambda: received, 30)
flips = []  # (from, to, when the config was written, took_ms)


def flip(old, new):
    epoch = len(flips) + 1
    t_write = now()
    set_active(new)
    say(f"{'failover' if new == 'dc2' else 'failback'}: config now says active: {new}")
    line = wait(f"kflip to switch to {new}", lambda: switch_line(epoch), 30)
    took = int(re.search(r"took_ms=(\d+)", line).group(1))
    planned = "planned=true" in line
    say(f"kflip: switched {old} -> {new}, epoch={epoch}, "
        f"{'planned' if planned else 'NOT planned'}, took_ms={took}")
    if not planned:
        fail(f"kflip treated the switch to {new} as a disaster (was {old} unreachable?)")
    t_switched = now()
    wait(f"the consumer to receive records produced after the switch to {new}",
         lambda: produced_after(t_switched), 30)
    flips.append((old, new, t_write, took))
    # ~phase seconds of traffic on the new cluster before going on.
    wait("traffic", lambda: now() - t_write >= args.phase, args.phase + 1)


t_start = now()
wait("traffic", lambda: now() - t_start >= args.phase, args.phase + 1)
flip("dc1", "dc2")
flip("dc2", "dc1")

stop_producer.set()
threads[0].join(90)
say(f"producer stopped and flushed: {len(produced_at)} sent, {len(acked)} acknowledged")


def consumer_caught_up():
    got = {v for v, _ in received}
    return all(v in got for v in list(acked))


wait("the consumer to receive every acknowledged record", consumer_caught_up, 30)
stop_consumer.set()
threads[1].join(30)
say("consumer has every acknowledged record; stopped")

holdings = {}


def replication_settled():
    for dc in ("dc1", "dc2"):
        holdings[dc] = read_cluster(ADDR[dc])
    held = [{v for v, _ in holdings[dc]} for dc in ("dc1", "dc2")]
    return all(v in h for h in held for v in acked)


wait("every acknowledged record on both clusters", replication_settled, 30)
say("replication settled: every acknowledged record is on dc1 and dc2")

# ----------------------------------------------------------------- report

# Where a record was first written: the cluster holding it without a
# kflip-origin header (the producer's own write, not a replicated copy).
origin = {}
for dc in ("dc1", "dc2"):
    for v, replicated in holdings[dc]:
        if not replicated:
            origin.setdefault(v, []).append(dc)

print()
print("  switch       kflip took_ms   first ack from new cluster   first new record consumed")
for old, new, t_write, took in flips:
    # Records produced after the config write and written to the new
    # cluster (kflip reloads the file ~150 ms after a change; records
    # produced meanwhile still go to the old cluster and do not count).
    first = next(i for i, pt in enumerate(produced_at) if pt > t_write)

    def on_new(v):
        return int(v[5:]) >= first and new in origin.get(v, [])
    first_ack = min((t for v, t in acked.items() if on_new(v)), default=None)
    first_rx = min((t for v, t in received if on_new(v)), default=None)

    def ms(t):
        return "-" if t is None else f"{(t - t_write) * 1000:.0f} ms"
    print(f"  {old} -> {new}   {took:>10} ms   {ms(first_ack):>26}   {ms(first_rx):>25}")
print("  (from the config write to the first record produced after it that was acknowledged")
print("   by / consumed from the new cluster; took_ms: kflip's own log line for the switch)")

got = Counter(v for v, _ in received)
lost = [v for v in acked if v not in got]
dup_rx = sorted((v for v, n in got.items() if n > 1), key=lambda v: int(v[5:]))
print()
print(f"  records sent                          : {len(produced_at)}")
print(f"  acknowledged to the producer          : {len(acked)}")
print(f"  received by the consumer              : {len(received)} ({len(got)} distinct)")
print(f"  lost (acknowledged, never received)   : {len(lost)}")
print(f"  duplicated (received more than once)  : {len(dup_rx)}")
print(f"  producer errors                       : {len(prod_errors)}")
print(f"  consumer commits ok / refused         : {commits['ok']} / {commits['failed']}")
problems = []
for dc in ("dc1", "dc2"):
    vals = Counter(v for v, _ in holdings[dc])
    mine = sum(1 for v, r in holdings[dc] if not r)
    dups = sum(n - 1 for n in vals.values() if n > 1)
    missing = sum(1 for v in acked if v not in vals)
    other = "dc2" if dc == "dc1" else "dc1"
    print(f"  {dc + ' holds (read directly)':<38}: {len(holdings[dc])} records, {len(vals)} distinct "
          f"({mine} produced there, {len(holdings[dc]) - mine} copied from {other}), "
          f"{missing} missing")
    if dups or missing:
        problems.append(f"{dc}: {missing} acknowledged records missing, {dups} duplicates")
twice = [v for v, dcs in origin.items() if len(dcs) > 1]
if twice:
    problems.append(f"{len(twice)} records written by the producer to both clusters, "
                    f"e.g. {twice[:3]}")
print("  the producer and the consumer were never restarted.")
if lost:
    problems.append(f"{len(lost)} acknowledged records never received, e.g. {lost[:5]}")
if dup_rx:
    problems.append(f"{len(dup_rx)} records received more than once, e.g. {dup_rx[:5]}")
if prod_errors:
    problems.append(f"{len(prod_errors)} producer errors, e.g. {prod_errors[:3]}")
unreplicated = [l for l in open(args.log, errors="replace").read().splitlines()
                if "switching with records not replicated" in l]
if unreplicated:
    problems.append("kflip switched before replication caught up "
                    f"(proxy.switch_lag_timeout expired): {unreplicated[0]}")
if problems:
    fail("\n  " + "\n  ".join(problems))
print("\ndemo OK: nothing lost, nothing duplicated, no errors.", flush=True)

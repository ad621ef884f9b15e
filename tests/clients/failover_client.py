"""A long-running Python Kafka client that runs across a kflip failover.

usage: failover_client.py --lib {confluent,kafka-python} --role {producer,manual,auto}
       --bootstrap HOST:PORT --topic T --client-id ID [--group G]
       --out FILE --stop FILE [--rate N]

Runs until the --stop file exists, then finishes cleanly and exits 0. It never
exits on a transient error: errors are written to --out and the loop goes on,
so one process lives through the whole failover.

--out gets one line per event, flushed at once, so a test can poll it:
  producer  ack <value> <partition> <offset>    a delivery succeeded
            err <value> <message>               a delivery failed
            done sent=<n> acked=<n> failed=<n>  after the final flush
  manual    got <value> <partition> <offset>    a record was consumed
            commit ok | commit err <message>    sync commit after each batch
            done got=<n>                        after close()
  auto      got ... and done ... as manual; offsets auto-committed every second
  consumers cerr <message>                      a consumer error (not fatal)
  all       log <level> <message>               client-library diagnostics

Producer values (and keys) are "<client-id>-<seq>", seq from 0 up, at about
--rate records per second.
"""
import argparse
import logging
import os
import sys
import threading
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--lib", required=True, choices=["confluent", "kafka-python"])
ap.add_argument("--role", required=True, choices=["producer", "manual", "auto"])
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--client-id", required=True)
ap.add_argument("--group")
ap.add_argument("--out", required=True)
ap.add_argument("--stop", required=True)
ap.add_argument("--rate", type=float, default=200.0)
ARGS = ap.parse_args()
if ARGS.role != "producer" and not ARGS.group:
    ap.error(f"--group is required for --role {ARGS.role}")
if ARGS.rate <= 0:
    ap.error("--rate must be positive")

# tansu builds large fetch responses very slowly: fetch in small steps.
MAX_PARTITION_FETCH_BYTES = 65536

_out = open(ARGS.out, "a", buffering=1, encoding="utf-8")
_lock = threading.RLock()  # kafka-python runs callbacks on its I/O thread


def emit(line):
    """Appends one event line (newlines inside it are flattened) and flushes."""
    line = " ".join(str(line).split("\n"))
    with _lock:
        _out.write(line + "\n")
        _out.flush()


class OutHandler(logging.Handler):
    """Client-library log records (warnings and up) as `log <level> <message>`."""

    def emit(self, record):
        try:
            level = {"warning": "warn", "critical": "fatal"}.get(record.levelname.lower(),
                                                                 record.levelname.lower())
            emit(f"log {level} {record.name}: {one_line(record.getMessage())}")
        except Exception:  # noqa: BLE001 - logging must never break the client
            pass


LOG = logging.getLogger("failover_client")
for _name in ("kafka", "failover_client"):
    logging.getLogger(_name).addHandler(OutHandler())
    logging.getLogger(_name).setLevel(logging.WARNING)
    logging.getLogger(_name).propagate = False


def stopping():
    return os.path.exists(ARGS.stop)


def text(b):
    return b.decode("utf-8", "replace") if b is not None else "<null>"


def one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


def describe(e):
    """An exception as "<Type>: <message>" on one line."""
    name, msg = type(e).__name__, one_line(e)
    return msg if name in msg else f"{name}: {msg}"


class Counts:
    def __init__(self):
        self.sent = self.acked = self.failed = self.got = 0


N = Counts()


def on_ack(value, partition, offset):
    with _lock:
        N.acked += 1
        emit(f"ack {value} {partition} {offset}")


def on_err(value, e):
    with _lock:
        N.failed += 1
        emit(f"err {value} {one_line(e)}")


class Pacer:
    """Paces records at --rate. After a stall (a blocked send) it catches up
    at most one second's worth of records, then goes on at --rate."""

    def __init__(self):
        self.start = time.monotonic()

    def due(self, seq):
        """Whether record `seq` is due; if not, sleeps a little (<= 0.1 s)."""
        delay = self.start + seq / ARGS.rate - time.monotonic()
        if delay < -1.0:
            self.start -= delay + 1.0
        if delay > 0:
            time.sleep(min(delay, 0.1))
            return False  # not due yet: check stop again before sending
        return True


def make(factory, what):
    """Builds a client, retrying (until stop) while the cluster is unreachable."""
    while not stopping():
        try:
            return factory()
        except Exception as e:  # noqa: BLE001 - any failure here is retried
            emit(f"log error creating {what}: {describe(e)}")
            time.sleep(1)
    return None


# ---------------------------------------------------------------- confluent

def confluent_error_cb(err):
    level = "fatal" if err.fatal() else "error"
    emit(f"log {level} {err.name()} {one_line(err.str())}")


def confluent_common():
    cfg = {
        "bootstrap.servers": ARGS.bootstrap,
        "client.id": ARGS.client_id,
        "broker.address.family": "v4",
        "error_cb": confluent_error_cb,
        "logger": LOG,  # librdkafka's own log lines go to --out, not stderr
    }
    # KFLIP_CLIENT_DEBUG=cgrp,fetch,... : librdkafka's debug log into --out.
    debug = os.environ.get("KFLIP_CLIENT_DEBUG")
    if debug:
        cfg["debug"] = debug
        LOG.setLevel(logging.DEBUG)
    return cfg


def confluent_producer():
    from confluent_kafka import KafkaException, Producer

    cfg = confluent_common()
    cfg.update({
        "enable.idempotence": True,
        "acks": "all",
        "delivery.timeout.ms": 120000,
        "linger.ms": 5,
    })
    p = Producer(cfg)

    def delivered(err, msg, value):
        if err is not None:
            on_err(value, err.str())
        else:
            on_ack(value, msg.partition(), msg.offset())

    pacer, seq = Pacer(), 0
    while not stopping():
        if not pacer.due(seq):
            p.poll(0)
            continue
        value = f"{ARGS.client_id}-{seq}"
        v = value.encode()
        try:
            p.produce(ARGS.topic, key=v, value=v,
                      on_delivery=lambda err, msg, value=value: delivered(err, msg, value))
        except BufferError:
            p.poll(0.1)  # local queue full: serve callbacks, retry the same value
            continue
        except KafkaException as e:
            with _lock:
                N.sent += 1
            seq += 1
            on_err(value, e.args[0].str() if e.args else e)
            continue
        with _lock:
            N.sent += 1
        seq += 1
        p.poll(0)
    left = p.flush(60)
    if left:
        emit(f"log warn flush timed out with {left} records undelivered")


def confluent_consumer(manual):
    from confluent_kafka import Consumer, KafkaError, KafkaException

    cfg = confluent_common()
    cfg.update({
        "group.id": ARGS.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": not manual,
        "fetch.wait.max.ms": 10,
        "heartbeat.interval.ms": 500,
        "session.timeout.ms": 6000,
        "max.partition.fetch.bytes": MAX_PARTITION_FETCH_BYTES,
    })
    if not manual:
        cfg["auto.commit.interval.ms"] = 1000
    c = Consumer(cfg)

    def tps(parts):
        return ",".join(f"{p.topic}/{p.partition}" for p in parts)

    c.subscribe([ARGS.topic],
                on_assign=lambda _c, parts: emit(f"log info assigned {tps(parts)}"),
                on_revoke=lambda _c, parts: emit(f"log info revoked {tps(parts)}"),
                on_lost=lambda _c, parts: emit(f"log warn lost {tps(parts)}"))
    while not stopping():
        try:
            msgs = c.consume(num_messages=500, timeout=0.2)
        except KafkaException as e:
            emit(f"cerr {one_line(e)}")
            time.sleep(0.1)
            continue
        got = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    emit(f"cerr {err.name()} {one_line(err.str())}")
                continue
            got += 1
            with _lock:
                N.got += 1
            emit(f"got {text(m.value())} {m.partition()} {m.offset()}")
        if manual and got:
            try:
                res = c.commit(asynchronous=False)
                bad = [p for p in (res or []) if p.error is not None]
                if bad:
                    emit("commit err " + "; ".join(
                        f"{p.topic}/{p.partition}: {one_line(p.error.str())}" for p in bad))
                else:
                    emit("commit ok")
            except KafkaException as e:
                emit(f"commit err {one_line(e.args[0].str() if e.args else e)}")
    try:
        c.close()
    except KafkaException as e:
        emit(f"cerr close: {one_line(e)}")


# ------------------------------------------------------------- kafka-python

def kafka_python_common():
    return {
        "bootstrap_servers": ARGS.bootstrap,
        "client_id": ARGS.client_id,
        "request_timeout_ms": 30000,
        # kafka-python 3.x: replaces 2.x's api_version_auto_timeout_ms; the
        # constructor bootstraps eagerly and raises after this long.
        "bootstrap_timeout_ms": 10000,
    }


def kafka_python_producer():
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    p = make(lambda: KafkaProducer(
        enable_idempotence=True,
        acks="all",
        retries=2147483647,
        delivery_timeout_ms=120000,
        linger_ms=5,
        # send() blocks at most this long for metadata or buffer space; the
        # loop then retries the same value, checking the stop file meanwhile.
        max_block_ms=5000,
        **kafka_python_common()), "producer")
    if p is None:
        return
    pacer, seq = Pacer(), 0
    while not stopping():
        if not pacer.due(seq):
            continue
        value = f"{ARGS.client_id}-{seq}"
        v = value.encode()
        try:
            fut = p.send(ARGS.topic, key=v, value=v)
        except KafkaTimeoutError as e:
            emit(f"log warn send blocked, retrying {value}: {one_line(e)}")
            continue
        except Exception as e:  # noqa: BLE001 - record it and go on
            with _lock:
                N.sent += 1
            seq += 1
            on_err(value, describe(e))
            continue
        with _lock:
            N.sent += 1
        seq += 1
        fut.add_callback(lambda md, value=value: on_ack(value, md.partition, md.offset))
        fut.add_errback(lambda e, value=value: on_err(value, describe(e)))
    try:
        p.flush(timeout=60)
    except Exception as e:  # noqa: BLE001
        emit(f"log warn flush: {one_line(e)}")
    try:
        p.close(timeout=10)
    except Exception as e:  # noqa: BLE001
        emit(f"log warn close: {one_line(e)}")


def kafka_python_consumer(manual):
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    cfg = dict(
        group_id=ARGS.group,
        auto_offset_reset="earliest",
        enable_auto_commit=not manual,
        fetch_max_wait_ms=10,
        heartbeat_interval_ms=500,
        session_timeout_ms=6000,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        **kafka_python_common())
    if not manual:
        cfg["auto_commit_interval_ms"] = 1000
    c = make(lambda: KafkaConsumer(**cfg), "consumer")
    if c is None:
        return

    def tps(parts):
        return ",".join(f"{p.topic}/{p.partition}" for p in sorted(parts))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            emit(f"log info assigned {tps(assigned)}")

        def on_partitions_revoked(self, revoked):
            if revoked:  # kafka-python also calls this, empty, before the first join
                emit(f"log info revoked {tps(revoked)}")

        def on_partitions_lost(self, lost):
            emit(f"log warn lost {tps(lost)}")

    c.subscribe([ARGS.topic], listener=Listener())
    while not stopping():
        try:
            batches = c.poll(timeout_ms=200)
        except Exception as e:  # noqa: BLE001 - KafkaError and friends: go on
            emit(f"cerr {describe(e)}")
            time.sleep(0.1)
            continue
        got = 0
        for tp, records in batches.items():
            for r in records:
                got += 1
                with _lock:
                    N.got += 1
                emit(f"got {text(r.value)} {tp.partition} {r.offset}")
        if manual and got:
            try:
                c.commit()
                emit("commit ok")
            except Exception as e:  # noqa: BLE001 - CommitFailedError etc.: go on
                emit(f"commit err {describe(e)}")
    try:
        c.close()
    except Exception as e:  # noqa: BLE001
        emit(f"cerr close: {one_line(e)}")


# --------------------------------------------------------------------- main

def main():
    emit(f"log info start lib={ARGS.lib} role={ARGS.role} client-id={ARGS.client_id} pid={os.getpid()}")
    if ARGS.lib == "confluent":
        if ARGS.role == "producer":
            confluent_producer()
        else:
            confluent_consumer(manual=ARGS.role == "manual")
    else:
        if ARGS.role == "producer":
            kafka_python_producer()
        else:
            kafka_python_consumer(manual=ARGS.role == "manual")
    with _lock:
        if ARGS.role == "producer":
            emit(f"done sent={N.sent} acked={N.acked} failed={N.failed}")
        else:
            emit(f"done got={N.got}")
    _out.close()


if __name__ == "__main__":
    main()
    sys.exit(0)

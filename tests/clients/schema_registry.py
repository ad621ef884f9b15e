"""A small Confluent-compatible Schema Registry that keeps its data in Kafka.

usage: schema_registry.py BOOTSTRAP TOPIC PORT_FILE [standby]

A stand-in for the real registries, none of which can be installed from
the package registries this project reaches (docs/schema-registry.md says
why). It keeps Confluent's storage format, which is what kflip replicates:
one partition of a compacted topic (created here if missing, as the
registry does on startup), keyed by JSON
  {"keytype":"SCHEMA","subject":S,"version":V,"magic":1}
with the value
  {"subject":S,"version":V,"id":ID,"schema":TEXT,"deleted":false}.
Its state is only what it reads back from the topic: a write is produced,
then answered once the reader has seen it (so ids and versions come from
the log, as in the real registry). Records of other key types (NOOP,
CONFIG, ...) are read and ignored; headers (kflip-origin) are ignored.

Serves: POST /subjects/S/versions, GET /subjects, GET /subjects/S/versions,
GET /subjects/S/versions/V|latest, GET /schemas/ids/ID. Binds 127.0.0.1:0
and writes its port to PORT_FILE. With `standby` it does not create the
topic: it waits for the replica kflip's engine creates.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP, TOPIC, PORT_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
STANDBY = sys.argv[4:] == ["standby"]
COMMON = {"bootstrap.servers": BOOTSTRAP, "broker.address.family": "v4"}

state_lock = threading.Condition()
subjects = {}  # subject -> {version: (id, schema)}
by_id = {}  # id -> schema
read_offset = [0]  # next offset the reader will see


def ensure_topic():
    admin = AdminClient(COMMON)
    fut = admin.create_topics(
        [NewTopic(TOPIC, 1, 1, config={"cleanup.policy": "compact"})]
    )[TOPIC]
    try:
        fut.result(30)
    except Exception as e:  # already there (a standby reads the replica)
        if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
            raise


def reader():
    c = Consumer(dict(COMMON, **{"group.id": "unused", "enable.auto.commit": False}))
    c.assign([TopicPartition(TOPIC, 0, 0)])
    while True:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                time.sleep(0.2)
            continue
        with state_lock:
            try:
                key = json.loads(m.key() or b"{}")
            except ValueError:
                key = {}
            if key.get("keytype") == "SCHEMA" and m.value():
                v = json.loads(m.value())
                versions = subjects.setdefault(v["subject"], {})
                if v.get("deleted"):
                    versions.pop(v["version"], None)
                else:
                    versions[v["version"]] = (v["id"], v["schema"])
                    by_id[v["id"]] = v["schema"]
            read_offset[0] = m.offset() + 1
            state_lock.notify_all()


producer = Producer(dict(COMMON, **{"acks": "all"}))
write_lock = threading.Lock()


def register(subject, schema):
    """Confluent's rules: the same schema again in a subject keeps its
    version; the same text in another subject reuses the id; otherwise the
    next id and the next version."""
    with write_lock:
        with state_lock:
            versions = subjects.get(subject, {})
            for _, (sid, text) in versions.items():
                if text == schema:
                    return sid
            sid = next((i for i, t in by_id.items() if t == schema), None)
            if sid is None:
                sid = max(by_id, default=0) + 1
            version = max(versions, default=0) + 1
        key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
        value = {"subject": subject, "version": version, "id": sid, "schema": schema, "deleted": False}
        done = {}
        producer.produce(
            TOPIC,
            key=json.dumps(key, separators=(",", ":")).encode(),
            value=json.dumps(value, separators=(",", ":")).encode(),
            partition=0,
            on_delivery=lambda err, msg: done.update(err=err, offset=msg.offset()),
        )
        producer.flush(30)
        if done.get("err") is not None or "offset" not in done:
            raise RuntimeError(f"write to {TOPIC} failed: {done.get('err')}")
        with state_lock:
            state_lock.wait_for(lambda: read_offset[0] > done["offset"], 30)
        return sid


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, what):
        self.reply(404, {"error_code": 40401, "message": f"{what} not found"})

    def do_GET(self):
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
        with state_lock:
            if parts == ["subjects"]:
                return self.reply(200, sorted(s for s, v in subjects.items() if v))
            if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                v = subjects.get(parts[1])
                return self.reply(200, sorted(v)) if v else self.not_found("Subject")
            if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
                versions = subjects.get(parts[1]) or {}
                if not versions:
                    return self.not_found("Subject")
                ver = max(versions) if parts[3] == "latest" else int(parts[3])
                if ver not in versions:
                    return self.reply(404, {"error_code": 40402, "message": "Version not found"})
                sid, text = versions[ver]
                return self.reply(200, {"subject": parts[1], "version": ver, "id": sid, "schema": text})
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in by_id:
                return self.reply(200, {"schema": by_id[int(parts[2])]})
        self.not_found("Resource")

    def do_POST(self):
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            return self.reply(200, {"id": register(parts[1], body["schema"])})
        self.not_found("Resource")

    def log_message(self, *args):
        pass


if not STANDBY:
    ensure_topic()
threading.Thread(target=reader, daemon=True).start()
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()

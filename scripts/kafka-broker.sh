#!/usr/bin/env bash
# Runs one single-node Apache Kafka 4.4 cluster (KRaft, broker and
# controller in one process) in the foreground, for the demo and for trying
# kflip by hand: client listener on 127.0.0.1:PORT, controller on PORT+1,
# data and logs in DIR (formatted on first use, kept across restarts).
#   usage: scripts/kafka-broker.sh PORT DIR
# Installs Apache Kafka from Maven Central first if needed (cached).
set -euo pipefail
port="${1:?usage: kafka-broker.sh PORT DIR}"
dir="${2:?usage: kafka-broker.sh PORT DIR}"
lib="$("$(dirname "$0")/install-kafka.sh")"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
cat >"$dir/log4j2.properties" <<'LOG'
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
LOG
java_opts=(${KFLIP_BROKER_JVM:--Xms64m -Xmx512m -XX:+UseSerialGC -XX:-UsePerfData})
if [ ! -f "$dir/data/meta.properties" ]; then
  # A base64url cluster id of 16 random bytes that does not start with '-'.
  id="$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break')"
  java -Xmx256m -cp "$lib/*" kafka.tools.StorageTool format -t "$id" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; exit 1; }
fi
exec java "${java_opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
  -cp "$lib/*" kafka.Kafka "$dir/server.properties"

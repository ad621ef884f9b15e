package dev.kflip.test;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A long-running Apache Kafka Java client (kafka-clients 4.4) that runs across
 * a kflip failover: the Java counterpart of tests/clients/failover_client.py,
 * with the same options and event file, plus a transactional producer, the
 * KIP-848 consumer group protocol and read_committed consumers.
 *
 * <pre>
 * usage: java -cp "DIR/kflip-test-clients.jar:DIR/lib/*" dev.kflip.test.FailoverClient
 *          --role {producer,manual,auto,txn-producer} --bootstrap HOST:PORT
 *          --topic T --client-id ID [--group G] --out FILE --stop FILE [--rate N]
 *          [--group-protocol {classic,consumer}] [--isolation {read_uncommitted,read_committed}]
 *          [--txn-size N]
 *        java -cp ... dev.kflip.test.FailoverClient roundtrip BOOTSTRAP TOPIC GROUP N
 *          [--group-protocol {classic,consumer}]
 * </pre>
 * DIR is the folder that scripts/install-java-clients.sh builds and prints.
 *
 * <p>Runs until the --stop file exists, then finishes cleanly and exits 0. It
 * never exits on a transient error: errors are written to --out and the loop
 * goes on, so one process lives through the whole failover.
 *
 * <p>--out gets one line per event, flushed at once, so a test can poll it:
 * <pre>
 *   producer      ack &lt;value&gt; &lt;partition&gt; &lt;offset&gt;    a delivery succeeded
 *                 err &lt;value&gt; &lt;message&gt;               a delivery failed
 *                 done sent=&lt;n&gt; acked=&lt;n&gt; failed=&lt;n&gt;  after the final flush (at most 60 s)
 *   txn-producer  ack ...   only once the record's transaction committed
 *                 err ...   for each record of an aborted (or never committed) transaction
 *                 done sent=&lt;n&gt; acked=&lt;n&gt; failed=&lt;n&gt; commits=&lt;n&gt; aborts=&lt;n&gt;
 *   manual        got &lt;value&gt; &lt;partition&gt; &lt;offset&gt;    a record was consumed
 *                 commit ok | commit err &lt;message&gt;    commitSync after each poll batch
 *                 done got=&lt;n&gt;                        after close()
 *   auto          got ... and done ... as manual; offsets auto-committed every second
 *   consumers     cerr &lt;message&gt;                      a consumer error (not fatal)
 *   all           log &lt;level&gt; &lt;message&gt;               client diagnostics; the Kafka
 *                                                     client's WARN and up (see OutLog)
 * </pre>
 * Producer values (and keys) are "&lt;client-id&gt;-&lt;seq&gt;", seq from 0 up, at
 * about --rate records per second. The transactional producer (transactional.id
 * = client-id) commits every --txn-size records (default 10); on an abortable
 * error it aborts and goes on with a new transaction, on a fatal one (fenced,
 * ...) it closes the producer and makes a new one.
 *
 * <p>roundtrip mode is tests/clients/roundtrip.py for this client: produce N
 * records "a-i", a group consumer reads and commits them, produce N "b-i",
 * a new consumer of the group must resume at "b-0". It prints a JSON summary
 * and exits 1 with a reason on any failure.
 */
public final class FailoverClient {
    private static final String USAGE = "usage: FailoverClient --role {producer,manual,auto,txn-producer}"
            + " --bootstrap HOST:PORT --topic T --client-id ID [--group G] --out FILE --stop FILE"
            + " [--rate N] [--group-protocol {classic,consumer}]"
            + " [--isolation {read_uncommitted,read_committed}] [--txn-size N]\n"
            + "       FailoverClient roundtrip BOOTSTRAP TOPIC GROUP N [--group-protocol {classic,consumer}]";

    /** tansu builds large fetch responses very slowly: fetch in small steps. */
    private static final int MAX_PARTITION_FETCH_BYTES = 65536;
    /** A blocked send() or transaction call gives up after this long, so the stop file is seen. */
    private static final int MAX_BLOCK_MS = 5000;

    // The options (set once by main).
    private static String role;
    private static String bootstrap;
    private static String topic;
    private static String clientId;
    private static String group;
    private static Path stop;
    private static double rate = 200.0;
    private static String groupProtocol = "classic";
    private static String isolation = "read_uncommitted";
    private static int txnSize = 10;

    /** Guards the event file and the counters: callbacks run on the client's I/O thread. */
    private static final Object LOCK = new Object();
    private static Writer out;
    private static long sent, acked, failed, got, commits, aborts;

    private FailoverClient() {
    }

    public static void main(String[] args) throws IOException {
        // Must precede the first Kafka class that asks SLF4J for a logger.
        System.setProperty("slf4j.provider", OutLog.class.getName());
        System.setProperty("slf4j.internal.verbosity", "WARN"); // not SLF4J's note that it did so
        if (args.length > 0 && args[0].equals("roundtrip")) {
            roundtrip(args);
            return;
        }
        Map<String, String> opt = options(args, 0, Set.of("role", "bootstrap", "topic", "client-id",
                "group", "out", "stop", "rate", "group-protocol", "isolation", "txn-size"));
        for (String required : List.of("role", "bootstrap", "topic", "client-id", "out", "stop")) {
            if (!opt.containsKey(required)) {
                usage("the following argument is required: --" + required);
            }
        }
        role = choice(opt, "role", null, "producer", "manual", "auto", "txn-producer");
        bootstrap = opt.get("bootstrap");
        topic = opt.get("topic");
        clientId = opt.get("client-id");
        group = opt.get("group");
        stop = Path.of(opt.get("stop"));
        groupProtocol = choice(opt, "group-protocol", groupProtocol, "classic", "consumer");
        isolation = choice(opt, "isolation", isolation, "read_uncommitted", "read_committed");
        try {
            rate = Double.parseDouble(opt.getOrDefault("rate", String.valueOf(rate)));
            txnSize = Integer.parseInt(opt.getOrDefault("txn-size", String.valueOf(txnSize)));
        } catch (NumberFormatException e) {
            usage("bad number: " + e.getMessage());
        }
        if ((role.equals("manual") || role.equals("auto")) && group == null) {
            usage("--group is required for --role " + role);
        }
        if (!(rate > 0) || txnSize < 1) {
            usage("--rate and --txn-size must be positive");
        }
        Writer w = new BufferedWriter(new OutputStreamWriter(
                new FileOutputStream(opt.get("out"), true), StandardCharsets.UTF_8));
        synchronized (LOCK) {
            out = w;
        }
        emit("log info start lib=java role=" + role + " client-id=" + clientId
                + " group-protocol=" + groupProtocol + " pid=" + ProcessHandle.current().pid());
        try {
            switch (role) {
                case "producer" -> producer();
                case "txn-producer" -> txnProducer();
                default -> consumer(role.equals("manual"));
            }
        } catch (RuntimeException e) {
            // A bug here, not a Kafka error (those are caught where they happen).
            emit("log fatal client crashed: " + describe(e));
            e.printStackTrace();
            System.exit(1);
        }
        synchronized (LOCK) {
            if (role.equals("producer")) {
                emit("done sent=" + sent + " acked=" + acked + " failed=" + failed);
            } else if (role.equals("txn-producer")) {
                emit("done sent=" + sent + " acked=" + acked + " failed=" + failed
                        + " commits=" + commits + " aborts=" + aborts);
            } else {
                emit("done got=" + got);
            }
            out.close();
            out = null;
        }
        // The client's threads are daemons, but make sure nothing lingers.
        System.exit(0);
    }

    // ------------------------------------------------------------ options

    /** Parses "--name value" pairs from args[from..], allowing only `known` names. */
    private static Map<String, String> options(String[] args, int from, Set<String> known) {
        Map<String, String> opt = new HashMap<>();
        for (int i = from; i < args.length; i += 2) {
            String name = args[i].startsWith("--") ? args[i].substring(2) : null;
            if (name == null || !known.contains(name)) {
                usage("unrecognized argument: " + args[i]);
            }
            if (i + 1 >= args.length) {
                usage("argument --" + name + ": expected one argument");
            }
            opt.put(name, args[i + 1]);
        }
        return opt;
    }

    private static String choice(Map<String, String> opt, String name, String dflt, String... allowed) {
        String v = opt.getOrDefault(name, dflt);
        if (!List.of(allowed).contains(v)) {
            usage("argument --" + name + ": invalid choice: " + v + " (choose from " + String.join(", ", allowed) + ")");
        }
        return v;
    }

    private static void usage(String msg) {
        System.err.println(USAGE);
        System.err.println("FailoverClient: error: " + msg);
        System.exit(2);
    }

    // --------------------------------------------------------- event file

    /** Appends one event line (newlines inside it are flattened) and flushes. */
    static void emit(String line) {
        String flat = line.replace("\r", " ").replace("\n", " ");
        synchronized (LOCK) {
            if (out == null) {
                return;
            }
            try {
                out.write(flat);
                out.write('\n');
                out.flush();
            } catch (IOException e) {
                // The event file is gone: there is nowhere left to report to.
            }
        }
    }

    /** A Kafka client log record (from OutLog): to stderr, and as a `log` line. */
    static void clientLog(String level, String logger, String msg) {
        System.err.println(Instant.now() + " " + level.toUpperCase() + " " + logger + " - " + msg);
        emit("log " + level + " " + logger + ": " + oneLine(msg));
    }

    static String oneLine(String s) {
        return s == null ? "" : String.join(" ", s.trim().split("\\s+"));
    }

    /**
     * An exception as "Type: message" on one line, with the messages of its
     * causes: Kafka wraps the interesting error (e.g. why a transaction
     * cannot commit) in a generic KafkaException.
     */
    static String describe(Throwable e) {
        StringBuilder b = new StringBuilder();
        int depth = 0;
        for (Throwable t = e; t != null && depth < 4; t = t.getCause() == t ? null : t.getCause(), depth++) {
            String name = t.getClass().getSimpleName();
            String msg = oneLine(t.getMessage());
            String one = msg.isEmpty() ? name : msg.contains(name) ? msg : name + ": " + msg;
            if (b.length() == 0) {
                b.append(one);
            } else if (b.indexOf(one) < 0) { // skip a cause its wrapper's message repeats
                b.append(" (caused by ").append(one).append(')');
            }
        }
        return b.toString();
    }

    private static boolean stopping() {
        return Files.exists(stop);
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String text(String s) {
        return s == null ? "<null>" : s;
    }

    private static void onAck(String value, int partition, long offset) {
        synchronized (LOCK) {
            acked++;
            emit("ack " + value + " " + partition + " " + offset);
        }
    }

    private static void onErr(String value, String why) {
        synchronized (LOCK) {
            failed++;
            emit("err " + value + " " + why);
        }
    }

    /**
     * Paces records at --rate. After a stall (a blocked send) it catches up
     * at most one second's worth of records, then goes on at --rate.
     */
    private static final class Pacer {
        private double start = now();

        private static double now() {
            return System.nanoTime() / 1e9;
        }

        /** Whether record `seq` is due; if not, sleeps a little (at most 0.1 s). */
        boolean due(long seq) {
            double delay = start + seq / rate - now();
            if (delay < -1.0) {
                start -= delay + 1.0;
            }
            if (delay > 0) {
                sleep((long) Math.ceil(Math.min(delay, 0.1) * 1000));
                return false; // not due yet: check stop again before sending
            }
            return true;
        }
    }

    /** Builds a client, retrying (until stop) while that fails. */
    private static <T> T make(Supplier<T> factory, String what) {
        while (!stopping()) {
            try {
                return factory.get();
            } catch (RuntimeException e) {
                emit("log error creating " + what + ": " + describe(e));
                sleep(1000);
            }
        }
        return null;
    }

    // ----------------------------------------------------------- producers

    private static Properties producerConfig() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120000);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, MAX_BLOCK_MS);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        return p;
    }

    /**
     * The outcome of one send. send() reports some failures (no metadata
     * within max.block.ms, a full buffer) by calling the callback before it
     * returns, on the caller's thread; those are left to the caller, which
     * retries a blocked record rather than counting it as lost. With
     * `report` false (transactions) the outcome is only recorded.
     */
    private static final class Delivery implements Callback {
        final String value;
        final boolean report;
        final Thread owner = Thread.currentThread();
        volatile boolean sending = true;
        volatile Exception early;
        volatile RecordMetadata metadata;
        volatile Exception error;

        Delivery(String value, boolean report) {
            this.value = value;
            this.report = report;
        }

        @Override
        public void onCompletion(RecordMetadata md, Exception e) {
            if (e != null && sending && Thread.currentThread() == owner) {
                early = e; // failed inside send(): the caller decides
                return;
            }
            metadata = md;
            error = e;
            if (!report) {
                return;
            }
            if (e != null) {
                onErr(value, describe(e));
            } else {
                onAck(value, md.partition(), md.offset());
            }
        }

        Exception failure() {
            return early != null ? early : error;
        }
    }

    private static void producer() {
        KafkaProducer<String, String> p = make(() -> new KafkaProducer<>(producerConfig()), "producer");
        if (p == null) {
            return;
        }
        Pacer pacer = new Pacer();
        long seq = 0;
        while (!stopping()) {
            if (!pacer.due(seq)) {
                continue;
            }
            String value = clientId + "-" + seq;
            Delivery d = new Delivery(value, true);
            try {
                p.send(new ProducerRecord<>(topic, value, value), d);
            } catch (RuntimeException e) {
                d.early = e;
            }
            d.sending = false;
            if (d.early instanceof TimeoutException) {
                emit("log warn send blocked, retrying " + value + ": " + describe(d.early));
                continue;
            }
            synchronized (LOCK) {
                sent++;
            }
            seq++;
            if (d.early != null) {
                onErr(value, describe(d.early));
            }
        }
        try {
            p.close(Duration.ofSeconds(60)); // flushes first; records still unsent then fail
        } catch (RuntimeException e) {
            emit("log warn close: " + describe(e));
        }
        long left;
        synchronized (LOCK) {
            left = sent - acked - failed;
        }
        if (left > 0) {
            emit("log warn flush timed out with " + left + " records undelivered");
        }
    }

    /** Creates a transactional producer and registers it (initTransactions), retrying until stop. */
    private static KafkaProducer<String, String> txnProducerInstance() {
        Properties cfg = producerConfig();
        cfg.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, clientId);
        return make(() -> {
            KafkaProducer<String, String> p = new KafkaProducer<>(cfg);
            try {
                p.initTransactions();
                return p;
            } catch (RuntimeException e) {
                closeNow(p);
                throw e;
            }
        }, "transactional producer");
    }

    private static void closeNow(KafkaProducer<String, String> p) {
        try {
            p.close(Duration.ZERO);
        } catch (RuntimeException e) {
            emit("log warn close: " + describe(e));
        }
    }

    /**
     * Runs a transaction call, retrying while it times out: Kafka wants a
     * timed-out commitTransaction or abortTransaction called again. After
     * stop it gives up at the first timeout.
     */
    private static void untilDone(Runnable call, String what) {
        while (true) {
            try {
                call.run();
                return;
            } catch (TimeoutException e) {
                if (stopping()) {
                    throw e;
                }
                emit("log warn " + what + " timed out, retrying: " + describe(e));
            }
        }
    }

    /** Errors after which the producer cannot go on (KafkaProducer's javadoc). */
    private static boolean fatal(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof OutOfOrderSequenceException
                    || t instanceof AuthorizationException || t instanceof UnsupportedVersionException) {
                return true;
            }
        }
        return false;
    }

    private static void txnProducer() {
        KafkaProducer<String, String> p = null;
        Pacer pacer = new Pacer();
        long seq = 0;
        while (!stopping()) {
            if (p == null && (p = txnProducerInstance()) == null) {
                break;
            }
            List<Delivery> txn = new ArrayList<>();
            try {
                p.beginTransaction();
                // A failed send dooms the transaction: stop sending into it.
                while (txn.size() < txnSize && !stopping() && txn.stream().noneMatch(d -> d.failure() != null)) {
                    if (!pacer.due(seq)) {
                        continue;
                    }
                    String value = clientId + "-" + seq++;
                    Delivery d = new Delivery(value, false);
                    txn.add(d);
                    synchronized (LOCK) {
                        sent++;
                    }
                    p.send(new ProducerRecord<>(topic, value, value), d);
                    d.sending = false;
                }
                untilDone(p::commitTransaction, "commitTransaction");
                // commitTransaction flushed every send, so each callback has run.
                synchronized (LOCK) {
                    commits++;
                    for (Delivery d : txn) {
                        onAck(d.value, d.metadata.partition(), d.metadata.offset());
                    }
                }
            } catch (RuntimeException e) {
                String why = describe(e);
                for (Delivery d : txn) {
                    onErr(d.value, d.failure() != null ? describe(d.failure()) : why);
                }
                if (e instanceof TimeoutException && stopping()) {
                    // A timed-out commit can only be retried, not aborted: leave
                    // it to the coordinator (it aborts after transaction.timeout.ms).
                    emit("log warn transaction of " + txn.size() + " records not committed before stop: " + why);
                    break;
                }
                if (fatal(e)) {
                    emit("log error fatal producer error, recreating the producer: " + why);
                    closeNow(p);
                    p = null;
                    continue;
                }
                emit("log warn aborting the transaction of " + txn.size() + " records: " + why);
                try {
                    untilDone(p::abortTransaction, "abortTransaction");
                    synchronized (LOCK) {
                        aborts++;
                    }
                } catch (RuntimeException abortError) {
                    // A producer that cannot abort is in a fatal state.
                    emit("log error abortTransaction failed, recreating the producer: " + describe(abortError));
                    closeNow(p);
                    p = null;
                }
            }
        }
        if (p != null) {
            try {
                p.close(Duration.ofSeconds(10));
            } catch (RuntimeException e) {
                emit("log warn close: " + describe(e));
            }
        }
    }

    // ----------------------------------------------------------- consumers

    private static Properties consumerConfig(String groupId, boolean autoCommit) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, autoCommit);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return c;
    }

    private static String tps(Collection<TopicPartition> parts) {
        return parts.stream()
                .sorted(Comparator.comparing(TopicPartition::topic).thenComparing(TopicPartition::partition))
                .map(tp -> tp.topic() + "/" + tp.partition()).collect(Collectors.joining(","));
    }

    private static void consumer(boolean manual) {
        Properties cfg = consumerConfig(group, !manual);
        cfg.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        cfg.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 10);
        cfg.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, MAX_PARTITION_FETCH_BYTES);
        cfg.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        if (!manual) {
            cfg.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, 1000);
        }
        // With the consumer protocol (KIP-848) the broker owns the session and
        // heartbeat timing, and the client refuses these settings.
        if (groupProtocol.equals("classic")) {
            cfg.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
            cfg.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 6000);
        }
        KafkaConsumer<String, String> c = make(() -> new KafkaConsumer<>(cfg), "consumer");
        if (c == null) {
            return;
        }
        c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                emit(("log info assigned " + tps(parts)).trim());
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) { // also called, empty, on incremental rebalances
                    emit("log info revoked " + tps(parts));
                }
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> parts) {
                emit("log warn lost " + tps(parts));
            }
        });
        while (!stopping()) {
            ConsumerRecords<String, String> records;
            try {
                records = c.poll(Duration.ofMillis(200));
            } catch (RuntimeException e) {
                emit("cerr " + describe(e));
                sleep(100);
                continue;
            }
            for (ConsumerRecord<String, String> r : records) {
                synchronized (LOCK) {
                    got++;
                }
                emit("got " + text(r.value()) + " " + r.partition() + " " + r.offset());
            }
            if (manual && !records.isEmpty()) {
                try {
                    c.commitSync(Duration.ofSeconds(30));
                    emit("commit ok");
                } catch (RuntimeException e) { // CommitFailedException, timeouts...: go on
                    emit("commit err " + describe(e));
                }
            }
        }
        try {
            c.close(CloseOptions.timeout(Duration.ofSeconds(30)));
        } catch (RuntimeException e) {
            emit("cerr close: " + describe(e));
        }
    }

    // ----------------------------------------------------------- roundtrip

    /** Thrown to end roundtrip with {"ok": false}. */
    private static final class Failed extends RuntimeException {
        Failed(String msg) {
            super(msg);
        }
    }

    private static void roundtrip(String[] args) {
        if (args.length < 5) {
            usage("roundtrip needs BOOTSTRAP TOPIC GROUP N");
        }
        bootstrap = args[1];
        topic = args[2];
        String groupId = args[3];
        int n = 0;
        try {
            n = Integer.parseInt(args[4]);
        } catch (NumberFormatException e) {
            usage("N must be a number: " + args[4]);
        }
        groupProtocol = choice(options(args, 5, Set.of("group-protocol")), "group-protocol",
                groupProtocol, "classic", "consumer");
        List<String> a = new ArrayList<>();
        List<String> b = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            a.add("a-" + i);
            b.add("b-" + i);
        }
        try {
            roundtripProduce(a);
            List<String> first = roundtripConsume(groupId, n);
            if (!sorted(first).equals(sorted(a))) {
                throw new Failed("first consumer read " + first.size() + " records, expected the " + n + " 'a' records");
            }
            roundtripProduce(b);
            List<String> second = roundtripConsume(groupId, n);
            long replayed = second.stream().filter(v -> v.startsWith("a-")).count();
            if (replayed > 0) {
                throw new Failed("resumed consumer replayed " + replayed + " committed records");
            }
            if (!sorted(second).equals(sorted(b))) {
                throw new Failed("resumed consumer read " + second.size() + " records, expected the " + n + " 'b' records");
            }
            // The same shape as roundtrip.py's json.dumps, which tests match on.
            System.out.println("{\"ok\": true, \"lib\": \"java\", \"produced\": " + 2 * n + ", \"first\": "
                    + first.size() + ", \"second\": " + second.size() + ", \"group_protocol\": \""
                    + groupProtocol + "\"}");
            System.exit(0);
        } catch (RuntimeException e) {
            String msg = e instanceof Failed ? e.getMessage() : describe(e);
            System.out.println("{\"ok\": false, \"error\": \"" + json(msg) + "\"}");
            System.exit(1);
        }
    }

    private static List<String> sorted(List<String> values) {
        return values.stream().sorted().collect(Collectors.toList());
    }

    private static String json(String s) {
        StringBuilder b = new StringBuilder();
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.toString();
    }

    private static void roundtripProduce(List<String> values) {
        Properties cfg = new Properties();
        cfg.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cfg.put(ProducerConfig.ACKS_CONFIG, "all");
        cfg.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        cfg.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        KafkaProducer<String, String> p = new KafkaProducer<>(cfg);
        try {
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            for (String v : values) {
                sends.add(p.send(new ProducerRecord<>(topic, v, v)));
            }
            for (var f : sends) {
                try {
                    f.get(30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    throw new Failed("produce failed: " + describe(e));
                }
            }
        } finally {
            p.close(Duration.ofSeconds(10)); // plain close() waits for undelivered records without bound
        }
    }

    private static List<String> roundtripConsume(String groupId, int expect) {
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerConfig(groupId, false))) {
            c.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (values.size() < expect && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    values.add(r.value());
                }
            }
            c.commitSync(Duration.ofSeconds(30));
        }
        return values;
    }
}

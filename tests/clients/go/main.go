// Command failover_client is a long-running franz-go (kgo) Kafka client that
// runs across a kflip failover: the Go counterpart of
// tests/clients/failover_client.py, with the same options and event file.
//
//	usage: failover_client --role {producer,manual,auto} --bootstrap HOST:PORT
//	         --topic T --client-id ID [--group G] --out FILE --stop FILE [--rate N]
//	         [--group-protocol {classic,consumer}]
//	       failover_client roundtrip BOOTSTRAP TOPIC GROUP N [--group-protocol {classic,consumer}]
//
// scripts/install-go-clients.sh builds it and prints the binary's path.
//
// Runs until the --stop file exists, then finishes cleanly and exits 0. It
// never exits on a transient error: errors are written to --out and the loop
// goes on, so one process lives through the whole failover.
//
// --out gets one line per event, written at once, so a test can poll it:
//
//	producer  ack <value> <partition> <offset>    a delivery succeeded
//	          err <value> <message>               a delivery failed
//	          done sent=<n> acked=<n> failed=<n>  after the final flush (at most 60 s)
//	manual    got <value> <partition> <offset>    a record was consumed
//	          commit ok | commit err <message>    sync commit after each poll batch
//	          done got=<n>                        after Close
//	auto      got ... and done ... as manual; offsets auto-committed every second
//	consumers cerr <message>                      a consumer error (not fatal)
//	all       log <level> <message>               client diagnostics; kgo's own
//	                                              log at warn and up (see KFLIP_CLIENT_LOG)
//
// Producer values (and keys) are "<client-id>-<seq>", seq from 0 up, at about
// --rate records per second. The producer is idempotent with acks=all.
//
// The manual consumer blocks rebalances from each poll until that batch is
// committed, and commits what is left when partitions are revoked, so no
// record is processed twice across a rebalance. The --group-protocol
// consumer (KIP-848) asks the broker to assign partitions.
//
// roundtrip mode is tests/clients/roundtrip.py for this client: produce N
// records "a-i", a group consumer reads and commits them, produce N "b-i",
// a new consumer of the group must resume at "b-0". It prints a JSON
// summary and exits 1 with a reason on any failure.
//
// KFLIP_CLIENT_LOG=info (or debug) lowers kgo's log threshold from warn.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	usage = "usage: failover_client --role {producer,manual,auto} --bootstrap HOST:PORT" +
		" --topic T --client-id ID [--group G] --out FILE --stop FILE [--rate N]" +
		" [--group-protocol {classic,consumer}]\n" +
		"       failover_client roundtrip BOOTSTRAP TOPIC GROUP N [--group-protocol {classic,consumer}]"

	// tansu builds large fetch responses very slowly: fetch in small steps.
	maxPartitionFetchBytes = 65536
	// The producer waits (checking the stop file) rather than letting
	// Produce block once this many records are unacknowledged.
	maxBufferedRecords = 10000
	flushTimeout       = 60 * time.Second
	commitTimeout      = 30 * time.Second
	leaveTimeout       = 10 * time.Second
)

// The options, set once by main.
var (
	role, bootstrap, topic, clientID, group, stopFile string
	groupProtocol                                     = "classic"
	rate                                              = 200.0
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "roundtrip" {
		roundtrip(os.Args[2:])
		return
	}
	parseOptions()
	emit("log info start lib=franz-go role=%s client-id=%s group-protocol=%s pid=%d",
		role, clientID, groupProtocol, os.Getpid())
	if role == "producer" {
		producer()
	} else {
		consumer(role == "manual")
	}
	counts.Lock()
	if role == "producer" {
		emit("done sent=%d acked=%d failed=%d", counts.sent, counts.acked, counts.failed)
	} else {
		emit("done got=%d", counts.got)
	}
	counts.Unlock()
	closeOut()
}

func parseOptions() {
	fs := flag.NewFlagSet("failover_client", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, usage) }
	fs.StringVar(&role, "role", "", "producer, manual or auto")
	fs.StringVar(&bootstrap, "bootstrap", "", "HOST:PORT[,HOST:PORT...]")
	fs.StringVar(&topic, "topic", "", "the topic")
	fs.StringVar(&clientID, "client-id", "", "client id, and prefix of produced values")
	fs.StringVar(&group, "group", "", "consumer group (manual and auto)")
	out := fs.String("out", "", "event file, appended to")
	fs.StringVar(&stopFile, "stop", "", "finish once this file exists")
	fs.Float64Var(&rate, "rate", rate, "records per second (producer)")
	fs.StringVar(&groupProtocol, "group-protocol", groupProtocol, "classic or consumer (KIP-848)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		usageError("unrecognized arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, o := range []struct{ name, value string }{{"role", role}, {"bootstrap", bootstrap},
		{"topic", topic}, {"client-id", clientID}, {"out", *out}, {"stop", stopFile}} {
		if o.value == "" {
			usageError("the following argument is required: --%s", o.name)
		}
	}
	switch role {
	case "producer", "manual", "auto":
	default:
		usageError("argument --role: invalid choice: %s (choose from producer, manual, auto)", role)
	}
	checkGroupProtocol()
	if role != "producer" && group == "" {
		usageError("--group is required for --role %s", role)
	}
	if !(rate > 0) {
		usageError("--rate must be positive")
	}
	openOut(*out)
}

func checkGroupProtocol() {
	if groupProtocol != "classic" && groupProtocol != "consumer" {
		usageError("argument --group-protocol: invalid choice: %s (choose from classic, consumer)", groupProtocol)
	}
}

func usageError(format string, args ...any) {
	fmt.Fprintln(os.Stderr, usage)
	fmt.Fprintf(os.Stderr, "failover_client: error: "+format+"\n", args...)
	os.Exit(2)
}

// ---------------------------------------------------------------- events

// The event file and the counters share one lock: kgo calls promises and
// group callbacks on its own goroutines.
var (
	outMu  sync.Mutex
	outF   *os.File
	counts struct {
		sync.Mutex
		sent, acked, failed, got int64
	}
)

func openOut(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failover_client: %v\n", err)
		os.Exit(1)
	}
	outF = f
}

func closeOut() {
	outMu.Lock()
	defer outMu.Unlock()
	if outF != nil {
		outF.Close()
		outF = nil
	}
}

// emit appends one event line, flattened to one line. The file is
// unbuffered and each line is one write, so a reader never sees half a line.
func emit(format string, args ...any) {
	line := strings.NewReplacer("\r", " ", "\n", " ").Replace(fmt.Sprintf(format, args...))
	outMu.Lock()
	defer outMu.Unlock()
	if outF != nil {
		// Nowhere is left to report a failed write to.
		_, _ = outF.WriteString(line + "\n")
	}
}

// oneLine is err's text with all runs of white space made one space.
func oneLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

func stopping() bool {
	_, err := os.Stat(stopFile)
	return err == nil
}

func text(b []byte) string {
	if b == nil {
		return "<null>"
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// outLogger sends kgo's log to stderr and, as `log <level> kgo: ...` lines,
// to the event file (tests look for warnings there, e.g. a client that loops
// on metadata errors).
type outLogger struct {
	level  kgo.LogLevel
	toFile bool
}

func newLogger(toFile bool) outLogger {
	l := outLogger{level: kgo.LogLevelWarn, toFile: toFile}
	switch strings.ToLower(os.Getenv("KFLIP_CLIENT_LOG")) {
	case "error":
		l.level = kgo.LogLevelError
	case "info":
		l.level = kgo.LogLevelInfo
	case "debug":
		l.level = kgo.LogLevelDebug
	}
	return l
}

func (l outLogger) Level() kgo.LogLevel { return l.level }

func (l outLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
	}
	name := strings.ToLower(level.String())
	line := strings.Join(strings.Fields(b.String()), " ")
	fmt.Fprintf(os.Stderr, "%s %s kgo: %s\n", time.Now().Format(time.RFC3339Nano), strings.ToUpper(name), line)
	if l.toFile {
		emit("log %s kgo: %s", name, line)
	}
}

// commonOpts are the options of every client; seeds may be a comma list.
func commonOpts(seeds string, toFile bool) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(strings.Split(seeds, ",")...),
		kgo.WithLogger(newLogger(toFile)),
	}
}

// groupOpts picks the group protocol: KIP-848 needs a balancer the broker
// knows (sticky is its "uniform" assignor); classic keeps kgo's default
// cooperative-sticky balancer.
func groupOpts() []kgo.Opt {
	if groupProtocol == "consumer" {
		return []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer())}
	}
	return nil
}

// newClient builds a client. kgo connects lazily, so this fails only on bad
// options: no point retrying.
func newClient(opts []kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		emit("log fatal creating the client: %s", oneLine(err))
		fmt.Fprintf(os.Stderr, "failover_client: %v\n", err)
		os.Exit(1)
	}
	return cl
}

// -------------------------------------------------------------- producer

// pacer paces records at --rate. After a stall (a full buffer) it catches
// up at most one second's worth of records, then goes on at --rate.
type pacer struct{ start time.Time }

// due tells whether record seq is due; if not, it sleeps a little (at most
// 0.1 s) so the caller checks the stop file again before sending.
func (p *pacer) due(seq int64) bool {
	delay := time.Until(p.start.Add(time.Duration(float64(seq) / rate * float64(time.Second))))
	if delay < -time.Second {
		p.start = p.start.Add(-delay - time.Second)
	}
	if delay > 0 {
		time.Sleep(min(delay, 100*time.Millisecond))
		return false
	}
	return true
}

func producer() {
	opts := append(commonOpts(bootstrap, true),
		kgo.ClientID(clientID),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence, kgo's default, needs it too
		kgo.RecordDeliveryTimeout(120*time.Second),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(maxBufferedRecords),
		// Like the Java and Python producers: ask for the topic to be
		// created, and keep waiting for it (within the delivery timeout)
		// rather than failing records after kgo's default 4 tries.
		kgo.AllowAutoTopicCreation(),
		kgo.UnknownTopicRetries(-1),
	)
	cl := newClient(opts)
	var pending sync.WaitGroup
	p := pacer{start: time.Now()}
	var seq int64
	stalled := false
	for !stopping() {
		if !p.due(seq) {
			continue
		}
		// Produce would block on a full buffer without seeing the stop
		// file; a record's own context cannot bound that wait, since
		// cancelling it may fail the record once buffered.
		if cl.BufferedProduceRecords() >= maxBufferedRecords {
			if !stalled {
				emit("log warn produce buffer full (%d records), waiting", maxBufferedRecords)
				stalled = true
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		stalled = false
		value := fmt.Sprintf("%s-%d", clientID, seq)
		seq++
		counts.Lock()
		counts.sent++
		counts.Unlock()
		pending.Add(1)
		r := &kgo.Record{Topic: topic, Key: []byte(value), Value: []byte(value)}
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			defer pending.Done()
			counts.Lock()
			defer counts.Unlock()
			if err != nil {
				counts.failed++
				emit("err %s %s", value, oneLine(err))
			} else {
				counts.acked++
				emit("ack %s %d %d", value, r.Partition, r.Offset)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	if err := cl.Flush(ctx); err != nil {
		emit("log warn flush timed out with %d records undelivered", cl.BufferedProduceRecords())
	}
	cancel()
	cl.Close() // fails what is still buffered
	// Close returns before the last promises may have run.
	if !waitFor(&pending, 10*time.Second) {
		emit("log warn records still unsettled after close")
	}
}

// waitFor waits for wg, at most d; it tells whether wg finished.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// ------------------------------------------------------------- consumers

func tps(parts map[string][]int32) string {
	var all []string
	for t, ps := range parts {
		for _, p := range ps {
			all = append(all, fmt.Sprintf("%s/%d", t, p))
		}
	}
	sort.Strings(all)
	return strings.Join(all, ",")
}

// commit commits everything polled so far, synchronously, and tells how it
// went ("ok" or "err <why>"), including each partition's error.
func commit(ctx context.Context, cl *kgo.Client) string {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	var bad []string
	cl.CommitOffsetsSync(ctx, cl.UncommittedOffsets(),
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				bad = append(bad, oneLine(err))
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						bad = append(bad, fmt.Sprintf("%s/%d: %s", t.Topic, p.Partition, oneLine(err)))
					}
				}
			}
		})
	if len(bad) > 0 {
		return "err " + strings.Join(bad, "; ")
	}
	return "ok"
}

func consumer(manual bool) {
	opts := append(commonOpts(bootstrap, true),
		kgo.ClientID(clientID),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(10*time.Millisecond),
		kgo.FetchMaxPartitionBytes(maxPartitionFetchBytes),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.SessionTimeout(6*time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			if len(parts) > 0 { // cooperative rebalances also assign nothing
				emit("log info assigned %s", tps(parts))
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
			if len(parts) == 0 { // kgo also calls it at the end of every session
				return
			}
			emit("log info revoked %s", tps(parts))
			// Setting this callback replaces kgo's own commit on revoke.
			// Committing all that was polled hands the partitions over
			// without a record being read twice: the manual consumer's
			// batch was processed before the rebalance could start, the
			// auto one's is written before the next poll.
			if cl.UncommittedOffsets() == nil {
				return
			}
			if res := commit(ctx, cl); manual {
				emit("commit %s", res)
			} else if res != "ok" {
				emit("cerr commit on revoke: %s", strings.TrimPrefix(res, "err "))
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			if len(parts) > 0 { // also called on group errors before any assignment
				emit("log warn lost %s", tps(parts))
			}
		}),
	)
	opts = append(opts, groupOpts()...)
	if manual {
		opts = append(opts, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	} else {
		opts = append(opts, kgo.AutoCommitInterval(time.Second))
	}
	cl := newClient(opts)
	for !stopping() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := cl.PollRecords(ctx, 500)
		cancel()
		failed := false
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return // the poll's own timeout: nothing arrived
			}
			failed = true
			if t == "" {
				emit("cerr %s", oneLine(err))
			} else {
				emit("cerr %s/%d: %s", t, p, oneLine(err))
			}
		})
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			counts.Lock()
			counts.got++
			counts.Unlock()
			emit("got %s %d %d", text(r.Value), r.Partition, r.Offset)
		})
		if manual && n > 0 {
			emit("commit %s", commit(context.Background(), cl))
		}
		cl.AllowRebalance()
		if failed && n == 0 {
			time.Sleep(100 * time.Millisecond) // don't spin on a repeating error
		}
	}
	// Leaving runs the revoke callback, which commits what is left. The
	// timeout bounds the LeaveGroup request, which Close would retry
	// for as long as the cluster is unreachable.
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := cl.LeaveGroupContext(ctx); err != nil {
		emit("cerr leaving the group: %s", oneLine(err))
	}
	cancel()
	cl.Close()
}

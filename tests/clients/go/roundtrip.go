package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// roundtripDeadline bounds each consumer's wait for its records.
const roundtripDeadline = 60 * time.Second

// failed ends roundtrip with {"ok": false}.
type failed struct{ msg string }

func fail(format string, args ...any) {
	panic(failed{fmt.Sprintf(format, args...)})
}

// roundtrip runs `roundtrip BOOTSTRAP TOPIC GROUP N [--group-protocol P]`.
func roundtrip(args []string) {
	if len(args) < 4 {
		usageError("roundtrip needs BOOTSTRAP TOPIC GROUP N")
	}
	bootstrap, topic = args[0], args[1]
	groupID := args[2]
	n, err := strconv.Atoi(args[3])
	if err != nil || n < 0 {
		usageError("N must be a number: %s", args[3])
	}
	switch rest := args[4:]; {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "--group-protocol":
		groupProtocol = rest[1]
		checkGroupProtocol()
	default:
		usageError("unrecognized arguments: %s", strings.Join(rest, " "))
	}

	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failed)
			if !ok {
				panic(r) // a bug, not a Kafka failure
			}
			fmt.Printf("{\"ok\": false, \"error\": %s}\n", jsonString(f.msg))
			os.Exit(1)
		}
	}()
	a, b := make([]string, n), make([]string, n)
	for i := range n {
		a[i], b[i] = fmt.Sprintf("a-%d", i), fmt.Sprintf("b-%d", i)
	}
	roundtripProduce(a)
	first := roundtripConsume(groupID, n)
	if !sameValues(first, a) {
		fail("first consumer read %d records, expected the %d 'a' records", len(first), n)
	}
	roundtripProduce(b)
	second := roundtripConsume(groupID, n)
	replayed := 0
	for _, v := range second {
		if strings.HasPrefix(v, "a-") {
			replayed++
		}
	}
	if replayed > 0 {
		fail("resumed consumer replayed %d committed records", replayed)
	}
	if !sameValues(second, b) {
		fail("resumed consumer read %d records, expected the %d 'b' records", len(second), n)
	}
	// The same shape as roundtrip.py's json.dumps, which tests match on.
	fmt.Printf("{\"ok\": true, \"lib\": \"franz-go\", \"produced\": %d, \"first\": %d, \"second\": %d, \"group_protocol\": %s}\n",
		2*n, len(first), len(second), jsonString(groupProtocol))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func sameValues(got, want []string) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

func roundtripProduce(values []string) {
	cl := newRoundtripClient(append(commonOpts(bootstrap, false),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(30*time.Second)))
	defer cl.Close()
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []string
	for _, res := range cl.ProduceSync(ctx, rs...) {
		if res.Err != nil && len(errs) < 3 {
			errs = append(errs, oneLine(res.Err))
		}
	}
	if len(errs) > 0 {
		fail("produce failed: %s", strings.Join(errs, "; "))
	}
}

func roundtripConsume(groupID string, expect int) []string {
	opts := append(commonOpts(bootstrap, false),
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit())
	cl := newRoundtripClient(append(opts, groupOpts()...))
	defer cl.Close()
	var values []string
	deadline := time.Now().Add(roundtripDeadline)
	for len(values) < expect && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := cl.PollRecords(ctx, 500)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fail("consume error: %s/%d: %s", t, p, oneLine(err))
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			values = append(values, string(r.Value))
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		fail("commit failed: %s", oneLine(err))
	}
	return values
}

func newRoundtripClient(opts []kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fail("creating the client: %s", oneLine(err))
	}
	return cl
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tidings/tidings/loadgen"
	"github.com/tidings/tidings/sqlite"
)

const benchNote = `
It creates its own users and conversations in the app whose server key it
is given (--key, or the environment variable TIDINGS_SERVER_KEY; get one
with "tidings apps rotate-key default"), so run it against a server meant for
benchmarks. It loads 127.0.0.1 only unless given --allow-remote, and
stops by itself: every phase is bounded in count and time. Connections
are spread over several loopback source addresses (127.0.0.1,
127.0.0.2…, --sources) to go past one address's ephemeral ports, and the
soft limit of open files is raised to the hard limit. Start the server
with its rate limits raised (e.g. "tidings serve --user-rate 0 --app-rate 0
--command-rate 1000000"): with the defaults, senders are held to 50
messages a second each, and the refusals are counted as rate_limited.

The server's CPU time and memory come from /proc of the process that
listens on the server's port (or --server-pid). A live progress line goes
to stderr; the summary to stdout, as a table or, with --json, as one JSON
object on a line, which "tidings bench plot" reads. The exit code is 1
if updates were lost, duplicated or reordered, or connections closed.`

var benchFanoutCommand = &command{
	name:  "bench fanout",
	args:  "[--subscribers N] [--senders N] [--rate R] [flags]",
	short: "load test: one conversation, many receivers",
	long: `
Bench fanout puts --subscribers users, each connected by WebSocket, in one
conversation, and has --senders more send to it at --rate messages per
second in all (each reaching every subscriber), or with --rate 0 as fast
as the server delivers them (at most --window messages not yet received
by every subscriber). It reports deliveries per second, the latency from
send to receipt (measured in this process), the server's CPU time per
delivery, and checks that every acknowledged message reached every
subscriber exactly once and in order.` + benchNote,
	run: runBenchFanout,
}

var benchPollCommand = &command{
	name:  "bench poll",
	args:  "[--subscribers N] [--senders N] [--rate R] [flags]",
	short: "load test: fanout over the long-polling transport",
	long: `
Bench poll is bench fanout with subscribers receiving through long polling
(GET /v1/realtime/poll), each polling again after the last ref it got as
soon as a poll returns.` + benchNote,
	run: runBenchPoll,
}

var benchConnectionsCommand = &command{
	name:  "bench connections",
	args:  "[--connections N] [--duration D] [flags]",
	short: "load test: idle authenticated connections",
	long: `
Bench connections opens --connections WebSocket connections, each
authenticated as a user of its own, holds them idle for --duration and
reports the server's resident memory per connection and its CPU time
while they are idle (pings and timers). Start the server with a short
--ping-interval to see the cost of its pings within the run.` + benchNote,
	run: runBenchConnections,
}

var benchPersistCommand = &command{
	name:  "bench persist",
	args:  "[--api-senders N] [--socket-senders N] [flags]",
	short: "load test: durable sends through the API and the socket",
	long: `
Bench persist has --api-senders send through the REST API and
--socket-senders through the realtime socket, each to a conversation of
its own, as fast as the server acknowledges (stores) their messages. It
reports messages acknowledged per second, the time to answer, and checks
that each conversation holds every acknowledged message.` + benchNote,
	run: runBenchPersist,
}

var benchReconnectCommand = &command{
	name:  "bench reconnect",
	args:  "[--clients N] [--missed N] [--rate R] [flags]",
	short: "load test: a reconnect storm",
	long: `
Bench reconnect connects --clients users in one conversation where
messages arrive at --rate per second. Every client drops its connection
at once; when --missed more messages have been sent, they all reconnect
together, each resuming after the last ref it received, while messages
keep coming. It reports the time until every client has received what it
missed, and checks that nothing was lost or duplicated.` + benchNote,
	run: runBenchReconnect,
}

var benchRoomsCommand = &command{
	name:  "bench rooms",
	args:  "[--rooms N] [--members N] [--rate R] [flags]",
	short: "load test: many small conversations, every member sending and receiving",
	long: `
Bench rooms creates --rooms conversations of --members users each (2 for
one-to-one chats), every user on a WebSocket of their own, member of one
room, sending to it and receiving from it. Messages go at --rate per
second in all, spread evenly over the rooms, each from a random member of
its room; with --rate 0, as fast as they are delivered, with at most
--window messages per room sent and not yet received by all its other
members. Members acknowledge what they received with a reply at most
every --reply-every while updates flow, as clients do, and with
--read-every mark their room read at most that often, as an app showing
the conversation does. It reports
messages and deliveries per second, the latency from send to receipt, the
server's CPU time per message (the receivers' replies, the senders' own
copies and the answers included), and checks that every acknowledged
message reached every other member of its room exactly once.` + benchNote,
	run: runBenchRooms,
}

var benchFillCommand = &command{
	name:  "bench fill",
	args:  "--data DIR --conversations PREFIX --per-conversation N [--app ID]",
	short: "add stored messages to a benchmark's conversations, fast",
	long: `
Bench fill adds --per-conversation messages to every conversation of the
app whose id starts with --conversations, straight into the database of
the data directory, with the server stopped: to measure a server that
already stores millions of messages without sending them one by one (10
million take a few minutes). The messages are stored as sends store them,
one to each conversation in turn, from its creator, each with a client
id as the SDKs give (their marks written too). The writes are not
synced: use it on a benchmark's data directory only.`,
	run: runBenchFill,
}

var benchPlotCommand = &command{
	name:  "bench plot",
	args:  "[-o FILE] RESULTS...",
	short: "plot fanout latency against subscribers as a PNG",
	long: `
Bench plot reads the JSON results of "tidings bench fanout --json" (or
poll) from the files given, one result a line, and draws the latency
percentiles (p50, p90, p99, max) against the number of subscribers, on
logarithmic scales, as a PNG image.`,
	run: runBenchPlot,
}

// benchFlags are the flags every scenario has.
type benchFlags struct {
	cfg  loadgen.Config
	json bool
}

func addBenchFlags(fs *flag.FlagSet, b *benchFlags) {
	fs.StringVar(&b.cfg.URL, "url", "http://127.0.0.1:8080", "the server's base `URL`, or the nodes' base URLs separated by commas (connections spread over them)")
	fs.StringVar(&b.cfg.Key, "key", "", "the app's server `key` (default: $TIDINGS_SERVER_KEY)")
	fs.BoolVar(&b.cfg.AllowRemote, "allow-remote", false, "allow a server that is not on a loopback address")
	fs.DurationVar(&b.cfg.Duration, "duration", 10*time.Second, "how long the measured phase lasts (a `duration`)")
	fs.IntVar(&b.cfg.Sources, "sources", 4, "loopback source addresses to spread connections over (a `count`)")
	fs.IntVar(&b.cfg.ServerPID, "server-pid", 0, "`pid` of the server process to measure (default: the one listening on the port)")
	fs.StringVar(&b.cfg.Run, "run", "", "`prefix` of the ids of the users and conversations created (default: new each run)")
	fs.IntVar(&b.cfg.Workers, "workers", 32, "concurrent requests and connection attempts during setup (a `count`)")
	fs.BoolVar(&b.json, "json", false, "print the summary as one JSON object")
}

// parseBench parses a scenario's flags and fills in the defaults from the
// environment.
func parseBench(c *cli, fs *flag.FlagSet, b *benchFlags, args []string) error {
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	if b.cfg.Key == "" {
		b.cfg.Key, _ = c.lookupEnv("TIDINGS_SERVER_KEY")
	}
	if b.cfg.Key == "" {
		return usageErrorf("the app's server key is missing: give --key or set TIDINGS_SERVER_KEY (get one with \"tidings apps rotate-key default\")")
	}
	b.cfg.Progress = c.stderr
	return nil
}

// report prints a scenario's result; a run that lost, duplicated or
// reordered updates fails.
func (b *benchFlags) report(c *cli, r *loadgen.Result, err error) error {
	if err != nil {
		return err
	}
	if b.json {
		err = r.WriteJSON(c.stdout)
	} else {
		err = r.WriteTable(c.stdout)
	}
	if err != nil {
		return err
	}
	if !r.OK() {
		return errors.New("updates were lost, duplicated or reordered, or connections closed (see the summary)")
	}
	return nil
}

func addFanoutFlags(fs *flag.FlagSet, f *loadgen.FanoutConfig) {
	fs.IntVar(&f.Subscribers, "subscribers", 100, "users receiving, each on a connection of its own (a `count`)")
	fs.IntVar(&f.Senders, "senders", 4, "users sending (a `count`)")
	fs.Float64Var(&f.Rate, "rate", 100, "messages per second sent in all (a `rate`); 0 sends as fast as they are delivered")
	fs.IntVar(&f.Window, "window", 16, "with --rate 0: messages not yet received by every subscriber, at most (a `count`)")
	fs.IntVar(&f.Size, "size", 64, "length of a message's text (`bytes`)")
	fs.DurationVar(&f.Warmup, "warmup", 2*time.Second, "load before measuring (a `duration`)")
	fs.DurationVar(&f.Settle, "settle", time.Second, "wait after connecting, for presence updates to pass (a `duration`)")
	fs.IntVar(&f.Messages, "messages", 0, "send this many messages in all, then stop, instead of sending for --duration (a `count`)")
}

func runBenchFanout(ctx context.Context, c *cli, args []string) error {
	return runFanoutLike(ctx, c, args, "bench fanout", loadgen.RunFanout)
}

func runBenchPoll(ctx context.Context, c *cli, args []string) error {
	return runFanoutLike(ctx, c, args, "bench poll", loadgen.RunPoll)
}

func runFanoutLike(ctx context.Context, c *cli, args []string, name string,
	run func(context.Context, loadgen.FanoutConfig) (*loadgen.Result, error)) error {
	var b benchFlags
	var f loadgen.FanoutConfig
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addBenchFlags(fs, &b)
	addFanoutFlags(fs, &f)
	if err := parseBench(c, fs, &b, args); err != nil {
		return err
	}
	f.Config = b.cfg
	r, err := run(ctx, f)
	return b.report(c, r, err)
}

func runBenchConnections(ctx context.Context, c *cli, args []string) error {
	var b benchFlags
	var f loadgen.ConnectionsConfig
	fs := flag.NewFlagSet("bench connections", flag.ContinueOnError)
	addBenchFlags(fs, &b)
	fs.IntVar(&f.Connections, "connections", 1000, "idle connections, one user each (a `count`)")
	fs.DurationVar(&f.Settle, "settle", 3*time.Second, "wait before each memory reading (a `duration`)")
	if err := parseBench(c, fs, &b, args); err != nil {
		return err
	}
	f.Config = b.cfg
	r, err := loadgen.RunConnections(ctx, f)
	return b.report(c, r, err)
}

func runBenchPersist(ctx context.Context, c *cli, args []string) error {
	var b benchFlags
	var f loadgen.PersistConfig
	fs := flag.NewFlagSet("bench persist", flag.ContinueOnError)
	addBenchFlags(fs, &b)
	fs.IntVar(&f.APISenders, "api-senders", 16, "senders through the REST API (a `count`)")
	fs.IntVar(&f.SocketSenders, "socket-senders", 16, "senders through the realtime socket (a `count`)")
	fs.IntVar(&f.Inflight, "inflight", 1, "messages a socket sender has waiting for their answer (a `count`)")
	fs.IntVar(&f.Size, "size", 64, "length of a message's text (`bytes`)")
	if err := parseBench(c, fs, &b, args); err != nil {
		return err
	}
	f.Config = b.cfg
	r, err := loadgen.RunPersist(ctx, f)
	return b.report(c, r, err)
}

func runBenchReconnect(ctx context.Context, c *cli, args []string) error {
	var b benchFlags
	var f loadgen.ReconnectConfig
	fs := flag.NewFlagSet("bench reconnect", flag.ContinueOnError)
	addBenchFlags(fs, &b)
	fs.IntVar(&f.Clients, "clients", 1000, "clients that drop and reconnect together (a `count`)")
	fs.IntVar(&f.Senders, "senders", 1, "users sending (a `count`)")
	fs.Float64Var(&f.Rate, "rate", 10, "messages per second sent in all (a `rate`)")
	fs.IntVar(&f.Missed, "missed", 20, "messages sent while the clients are away (a `count`)")
	fs.IntVar(&f.Size, "size", 64, "length of a message's text (`bytes`)")
	fs.DurationVar(&f.Timeout, "timeout", time.Minute, "longest wait for every client to catch up (a `duration`)")
	fs.BoolVar(&f.Failover, "failover", false, "with the URLs of a cluster's nodes: connect the clients to the last node, kill it (SIGKILL) rather than drop them, and reconnect them to the others")
	if err := parseBench(c, fs, &b, args); err != nil {
		return err
	}
	f.Config = b.cfg
	r, err := loadgen.RunReconnect(ctx, f)
	return b.report(c, r, err)
}

func runBenchRooms(ctx context.Context, c *cli, args []string) error {
	var b benchFlags
	var f loadgen.RoomsConfig
	fs := flag.NewFlagSet("bench rooms", flag.ContinueOnError)
	addBenchFlags(fs, &b)
	fs.IntVar(&f.Rooms, "rooms", 100, "conversations (a `count`)")
	fs.IntVar(&f.Members, "members", 5, "users in each conversation, each on a connection of its own (a `count`)")
	fs.Float64Var(&f.Rate, "rate", 100, "messages per second sent in all (a `rate`); 0 sends as fast as they are delivered")
	fs.IntVar(&f.Window, "window", 2, "with --rate 0: messages in flight per room, at most (a `count`)")
	fs.DurationVar(&f.ReplyEvery, "reply-every", time.Second, "longest wait before a member acknowledges what it received (a `duration`)")
	fs.DurationVar(&f.ReadEvery, "read-every", 0, "least time between two read receipts (message.read) of a member while messages come to it (a `duration`); 0 sends none")
	fs.IntVar(&f.Size, "size", 64, "length of a message's text (`bytes`)")
	fs.DurationVar(&f.Warmup, "warmup", 2*time.Second, "load before measuring (a `duration`)")
	if err := parseBench(c, fs, &b, args); err != nil {
		return err
	}
	f.Config = b.cfg
	r, err := loadgen.RunRooms(ctx, f)
	return b.report(c, r, err)
}

func runBenchFill(ctx context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("bench fill", flag.ContinueOnError)
	data := fs.String("data", "", "the server's data `directory`")
	app := fs.String("app", "default", "the `id` of the app")
	prefix := fs.String("conversations", "", "fill the conversations whose id starts with this `prefix`")
	per := fs.Int("per-conversation", 0, "messages to add to each conversation (a `count`)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	if *data == "" || *per <= 0 {
		return usageErrorf("give --data and --per-conversation")
	}
	path := filepath.Join(*data, dbFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no database in %s: %w", *data, err)
	}
	start := time.Now()
	last := start
	n, err := sqlite.FillHistory(ctx, path, *app, *prefix, *per, func(added int64) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(c.stderr, "\r%d messages added (%.0f/s)", added, float64(added)/time.Since(start).Seconds())
		}
	})
	fmt.Fprintln(c.stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added %d messages in %s\n", n, time.Since(start).Round(time.Second))
	return nil
}

func runBenchPlot(ctx context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("bench plot", flag.ContinueOnError)
	out := fs.String("o", "bench-latency.png", "the PNG `file` to write")
	title := fs.String("title", "", "the plot's `title` (default: from the results)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1<<20, "results file"); err != nil {
		return err
	}
	var rs []*loadgen.Result
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		got, err := loadgen.ReadResults(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rs = append(rs, got...)
	}
	points := loadgen.LatencyPoints(rs)
	if *title == "" && len(rs) > 0 {
		*title = fmt.Sprintf("Latency from send to receipt (%s, %d CPUs)", rs[0].Scenario, rs[0].Machine.CPUs)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := loadgen.Plot(f, *title, points); err != nil {
		f.Close()
		os.Remove(*out)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote %s (%d points)\n", *out, len(points))
	return nil
}

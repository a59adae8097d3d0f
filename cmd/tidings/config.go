package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	tidingshttp "github.com/tidings/tidings/http"
)

// config is the configuration of the server. Every field is a setting: a
// flag of "tidings serve" that can also come from the environment or from
// a configuration file (see applySettings).
type config struct {
	Addr       string
	Data       string
	ConfigFile string
	// Store names the database: empty for SQLite in Data, or a
	// postgres:// URL. Broker lists the NATS servers joining the nodes of
	// a cluster (issue #11).
	Store             string
	Broker            string
	BrokerPrefix      string
	PresenceLease     time.Duration
	Blobs             string
	LogLevel          slog.Level
	LogFormat         string
	MaxBodyBytes      int64
	MaxMessageBytes   int64
	MaxFileBytes      int64
	TokenTTL          time.Duration
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration

	// Request bodies.
	MaxBodyReads int
	BodyTimeout  time.Duration
	BodyMinRate  int64

	// Uploads.
	UserUploadQuota     int64
	UserUploadWindow    time.Duration
	AppStorageQuota     int64
	UnattachedFileGrace time.Duration

	// Realtime delivery.
	PingInterval    time.Duration
	PongTimeout     time.Duration
	AuthTimeout     time.Duration
	RealtimeIdle    time.Duration
	TypingTimeout   time.Duration
	AccessCheck     time.Duration
	CursorFlush     time.Duration
	PresenceLimit   int
	MaxPresenceSubs int
	MaxFrameBytes   int64
	SendQueue       int
	Writers         int
	MemoryTrim      time.Duration
	MaxConnsPerUser int
	CommandRate     float64
	AllowedOrigins  string

	// Rate limits of users and apps, over REST and realtime together.
	UserRate         float64 // per second
	AppRate          float64 // per second
	ServerKeyRate    float64 // per second
	ConversationRate float64 // per minute
	ParticipantRate  float64 // per minute
	Retention        time.Duration

	// CommitInterval: least time between two commits of the SQLite store.
	CommitInterval time.Duration

	// Webhooks (issue #12).
	WebhookFailAfter   time.Duration
	WebhookMaxBackoff  time.Duration
	WebhookTimeout     time.Duration
	WebhookDenyPrivate bool

	// Dev turns development mode on (POST /v1/dev/token).
	Dev bool
	// DebugAddr, when set, serves the Go profiler (/debug/pprof/) there.
	DebugAddr string

	// Push notifications (push.go).
	Push pushConfig
}

// Defaults that are not the HTTP server's own.
const (
	defaultAddr            = "127.0.0.1:8080"
	defaultData            = "tidings-data"
	defaultMaxMessageBytes = 64 << 10
	defaultShutdownTimeout = 15 * time.Second
)

// defaultConfig returns the configuration used when nothing is set.
func defaultConfig() config {
	return config{
		Addr:              defaultAddr,
		BrokerPrefix:      defaultBrokerPrefix,
		PresenceLease:     15 * time.Second,
		Data:              defaultData,
		LogLevel:          slog.LevelInfo,
		LogFormat:         "text",
		MaxBodyBytes:      tidingshttp.DefaultMaxBodyBytes,
		MaxMessageBytes:   defaultMaxMessageBytes,
		MaxFileBytes:      tidingshttp.DefaultMaxFileBytes,
		TokenTTL:          tidingshttp.DefaultMaxTokenTTL,
		ReadHeaderTimeout: tidingshttp.DefaultReadHeaderTimeout,
		ReadTimeout:       tidingshttp.DefaultReadTimeout,
		WriteTimeout:      tidingshttp.DefaultWriteTimeout,
		IdleTimeout:       tidingshttp.DefaultIdleTimeout,
		ShutdownTimeout:   defaultShutdownTimeout,
		PingInterval:      25 * time.Second,
		PongTimeout:       10 * time.Second,
		AuthTimeout:       10 * time.Second,
		TypingTimeout:     5 * time.Second,
		AccessCheck:       time.Minute,
		CursorFlush:       5 * time.Second,
		CommitInterval:    2 * time.Millisecond,
		PresenceLimit:     100,
		MaxPresenceSubs:   1000,
		MaxFrameBytes:     256 << 10,
		SendQueue:         4096,
		MaxConnsPerUser:   32,
		CommandRate:       50,
		UserRate:          50,
		AppRate:           0, // no limit: set it on servers shared by several apps
		ConversationRate:  30,
		ParticipantRate:   300,
		Retention:         30 * 24 * time.Hour,

		WebhookFailAfter:  24 * time.Hour,
		WebhookMaxBackoff: 10 * time.Minute,
		WebhookTimeout:    10 * time.Second,

		// Request bodies and uploads.
		MaxBodyReads:        tidingshttp.DefaultMaxBodyReads,
		BodyTimeout:         tidingshttp.DefaultBodyTimeout,
		BodyMinRate:         tidingshttp.DefaultBodyMinRate,
		UserUploadQuota:     1 << 30,
		UserUploadWindow:    24 * time.Hour,
		UnattachedFileGrace: 24 * time.Hour,

		Push: defaultPushConfig(),
	}
}

// addDataFlags registers the settings of every command that opens the
// data directory.
func addDataFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.Data, "data", cfg.Data,
		"`directory` holding the database (tidings.db) and the uploaded files (files/)")
	fs.StringVar(&cfg.ConfigFile, "config", cfg.ConfigFile,
		"JSON configuration `file` of settings, keyed by the flag names of serve")
	fs.Var((*durationValue)(&cfg.CommitInterval), "commit-interval",
		"SQLite: the least `duration` from one commit's start to the next's; the writes that come meanwhile commit together (0: at once)")
	fs.StringVar(&cfg.Store, "store", cfg.Store,
		"the database: empty for SQLite in --data, or a PostgreSQL `URL` (postgres://user:password@host/database) that several nodes may share")
}

// addServeFlags registers every setting of the server.
func addServeFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr,
		"TCP `address` to listen on; port 0 picks a free port")
	addDataFlags(fs, cfg)
	fs.StringVar(&cfg.Broker, "broker", cfg.Broker,
		"comma-separated NATS server `URLs` (nats://host:4222) joining the nodes of a cluster; needs a PostgreSQL --store; empty: one node")
	fs.StringVar(&cfg.BrokerPrefix, "broker-prefix", cfg.BrokerPrefix,
		"`name` of this cluster's subjects and buckets on the broker, so that several clusters may share one NATS: letters, digits, - and _")
	fs.Var((*durationValue)(&cfg.PresenceLease), "presence-lease",
		"in a cluster, the lease (a `duration`) of a node's sessions in the presence store, renewed every third of it: a node that dies leaves its users online this long at most")
	fs.StringVar(&cfg.Blobs, "blobs", cfg.Blobs,
		"where uploaded files are kept: empty for files/ in --data, or an S3 `URL` (s3://BUCKET[/PREFIX]?endpoint=HOST) that several nodes may share")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel,
		"lowest `level` logged: debug, info, warn or error")
	fs.Var((*logFormatValue)(&cfg.LogFormat), "log-format",
		"log `format`: text or json")
	fs.Var((*byteSizeValue)(&cfg.MaxBodyBytes), "max-body-bytes",
		"largest JSON request body, in `bytes` (suffixes KiB, MiB and GiB allowed)")
	fs.Var((*byteSizeValue)(&cfg.MaxMessageBytes), "max-message-bytes",
		"largest message (its parts, metadata and alert), in `bytes`")
	fs.Var((*byteSizeValue)(&cfg.MaxFileBytes), "max-file-bytes",
		"largest uploaded file, in `bytes`")
	fs.Var((*optionalSizeValue)(&cfg.UserUploadQuota), "user-upload-quota",
		"`bytes` one user may upload within --user-upload-window; 0 means no limit")
	fs.Var((*durationValue)(&cfg.UserUploadWindow), "user-upload-window",
		"the `duration` over which --user-upload-quota counts a user's uploads")
	fs.Var((*optionalSizeValue)(&cfg.AppStorageQuota), "app-storage-quota",
		"`bytes` of files one app may store in all; 0 means no limit")
	fs.Var((*durationValue)(&cfg.UnattachedFileGrace), "unattached-file-grace",
		"uploaded files that no message refers to are removed after this `duration`")
	fs.Var((*durationValue)(&cfg.TokenTTL), "token-ttl",
		"default and longest lifetime (a `duration`) of the access tokens minted by the API")
	fs.Var((*durationValue)(&cfg.ReadHeaderTimeout), "read-header-timeout",
		"the `duration` allowed to read a request's headers; 0 means the read timeout")
	fs.Var((*durationValue)(&cfg.ReadTimeout), "read-timeout",
		"the `duration` allowed to read a whole request, body included; 0 means no limit")
	fs.Var((*durationValue)(&cfg.WriteTimeout), "write-timeout",
		"the `duration` allowed to write a response; 0 means no limit")
	fs.IntVar(&cfg.MaxBodyReads, "max-body-reads", cfg.MaxBodyReads,
		"request bodies read at once (a `count`); past it a request waits a second, then is answered 503")
	fs.Var((*durationValue)(&cfg.BodyTimeout), "body-timeout",
		"the `duration` allowed to read a request body, plus the time to read it at --body-min-rate")
	fs.Var((*byteSizeValue)(&cfg.BodyMinRate), "body-min-rate",
		"slowest rate, in `bytes` per second, at which a request body may come once --body-timeout has passed")
	fs.Var((*durationValue)(&cfg.IdleTimeout), "idle-timeout",
		"the `duration` an idle keep-alive connection is kept open; 0 means the read timeout")
	fs.Var((*durationValue)(&cfg.ShutdownTimeout), "shutdown-timeout",
		"the `duration` allowed for requests in flight to finish when stopping")

	fs.Var((*durationValue)(&cfg.PingInterval), "ping-interval",
		"how often (a `duration`) the server pings a quiet realtime connection")
	fs.Var((*durationValue)(&cfg.PongTimeout), "pong-timeout",
		"the `duration` after a ping without any answer at which a realtime connection is closed as dead")
	fs.Var((*durationValue)(&cfg.AuthTimeout), "auth-timeout",
		"the `duration` a new realtime connection has to authenticate an account")
	fs.Var((*durationValue)(&cfg.RealtimeIdle), "realtime-idle-timeout",
		"close a realtime connection that sent no command or reply for this `duration`; 0 never does")
	fs.Var((*durationValue)(&cfg.TypingTimeout), "typing-timeout",
		"the `duration` after which a typing indicator that was not refreshed ends")
	fs.Var((*durationValue)(&cfg.AccessCheck), "access-check",
		"how often (a `duration`) the node reads the users whose access changed (the store logs them) and closes their realtime connections that the app ended without the node being told")
	fs.Var((*durationValue)(&cfg.CursorFlush), "cursor-flush-interval",
		"how long (a `duration`) a ref that a realtime client acknowledged may wait before it is stored (longer than 1s: spread at random over the second half of it); a crash sends again what was acknowledged since")
	fs.IntVar(&cfg.PresenceLimit, "presence-limit", cfg.PresenceLimit,
		"presence updates go through conversations of at most this many online connections (a `count`; 0: none)")
	fs.IntVar(&cfg.MaxPresenceSubs, "max-presence-subscriptions", cfg.MaxPresenceSubs,
		"users whose presence one account of a realtime connection may subscribe to (a `count`; 0: presence.subscribe is refused)")
	fs.Var((*byteSizeValue)(&cfg.MaxFrameBytes), "max-frame-bytes",
		"largest realtime frame from a client, in `bytes`")
	fs.IntVar(&cfg.SendQueue, "send-queue", cfg.SendQueue,
		"updates that may wait for one realtime connection (a `count`); past it the connection is closed as a slow consumer")
	fs.IntVar(&cfg.Writers, "writers", cfg.Writers,
		"goroutines that write the realtime connections' frames, each to its share of the connections (a `count`; 0: one per core)")
	fs.IntVar(&cfg.MaxConnsPerUser, "max-conns-per-user", cfg.MaxConnsPerUser,
		"realtime connections one user may hold (a `count`)")
	fs.Float64Var(&cfg.CommandRate, "command-rate", cfg.CommandRate,
		"realtime commands per second one connection may send (a `rate`; bursts of twice that)")
	fs.Float64Var(&cfg.UserRate, "user-rate", cfg.UserRate,
		"requests and realtime commands per second one user may make, REST and realtime together (a `rate`; bursts of twice that; 0: no limit)")
	fs.Float64Var(&cfg.AppRate, "app-rate", cfg.AppRate,
		"requests and realtime commands per second the users of one app may make together (a `rate`; bursts of twice that; 0: no limit)")
	fs.Float64Var(&cfg.ServerKeyRate, "server-key-rate", cfg.ServerKeyRate,
		"requests per second one app's server key may make (a `rate`; bursts of twice that; 0: no limit)")
	fs.Float64Var(&cfg.ConversationRate, "conversation-rate", cfg.ConversationRate,
		"conversations one user may create per minute (a `rate`; bursts of as many; 0: no limit)")
	fs.Float64Var(&cfg.ParticipantRate, "participant-rate", cfg.ParticipantRate,
		"participants one user may add to conversations per minute (a `rate`; bursts of as many; 0: no limit)")
	fs.StringVar(&cfg.AllowedOrigins, "allowed-origins", cfg.AllowedOrigins,
		"comma-separated `origins` (https://app.example.com) whose pages may open realtime connections; * allows any; empty allows the server's own host only")
	fs.Var((*durationValue)(&cfg.Retention), "retention",
		"how long (a `duration`) updates are kept for clients that are away; older ones need a resync")
	fs.Var((*durationValue)(&cfg.WebhookFailAfter), "webhook-fail-after",
		"a webhook endpoint whose deliveries fail for this `duration` without a success is marked failing")
	fs.Var((*durationValue)(&cfg.WebhookMaxBackoff), "webhook-max-backoff",
		"longest wait (a `duration`) between two attempts of a webhook delivery; the wait starts at 1s and doubles")
	fs.Var((*durationValue)(&cfg.WebhookTimeout), "webhook-timeout",
		"the `duration` allowed for one webhook delivery attempt, answer included")
	fs.BoolVar(&cfg.WebhookDenyPrivate, "webhook-deny-private", cfg.WebhookDenyPrivate,
		"refuse to deliver webhooks, and to call before-send hooks, at loopback, private and link-local addresses (set it when apps you do not run register webhooks)")
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev,
		"development mode: anyone on this machine may sign in as any user of the app default, without credentials (POST /v1/dev/token, used by the web page); never on a shared server")
	fs.Var((*durationValue)(&cfg.MemoryTrim), "memory-trim",
		"how often (a `duration`) the server looks whether it is quiet again after a burst, to give the memory the burst left back to the system; 0 never does")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr,
		"TCP `address` of a separate listener serving the Go profiler at /debug/pprof/; empty serves none")
	addPushFlags(fs, &cfg.Push)
}

// check reports settings that are valid one by one but not together, or
// out of range.
func (cfg *config) check() error {
	if err := cfg.Push.check(); err != nil {
		return err
	}
	switch {
	case cfg.Addr == "":
		return errors.New("--addr must not be empty")
	case cfg.Data == "":
		return errors.New("--data must not be empty")
	case checkCluster(cfg.Store, cfg.Broker) != nil:
		return checkCluster(cfg.Store, cfg.Broker)
	case !brokerPrefixPattern.MatchString(cfg.BrokerPrefix):
		return errors.New("--broker-prefix must be 1 to 32 letters, digits, - and _")
	case cfg.PresenceLease < time.Second:
		return errors.New("--presence-lease must be at least 1s")
	case checkBlobs(cfg.Blobs) != nil:
		return checkBlobs(cfg.Blobs)
	case cfg.MaxMessageBytes > 1<<30:
		return errors.New("--max-message-bytes must be at most 1GiB")
	case cfg.MaxBodyBytes <= cfg.MaxMessageBytes:
		return fmt.Errorf("--max-body-bytes (%d) must be larger than --max-message-bytes (%d): a message is sent as a JSON body",
			cfg.MaxBodyBytes, cfg.MaxMessageBytes)
	case cfg.TokenTTL < time.Second:
		return errors.New("--token-ttl must be at least 1s")
	case cfg.ShutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case cfg.PingInterval < 100*time.Millisecond || cfg.PongTimeout < 100*time.Millisecond:
		return errors.New("--ping-interval and --pong-timeout must be at least 100ms")
	case cfg.AuthTimeout <= 0 || cfg.TypingTimeout <= 0:
		return errors.New("--auth-timeout and --typing-timeout must be positive")
	case cfg.AccessCheck < time.Second:
		return errors.New("--access-check must be at least 1s")
	case cfg.CursorFlush < 10*time.Millisecond || cfg.CursorFlush > time.Minute:
		return errors.New("--cursor-flush-interval must be from 10ms to 1m")
	case cfg.CommitInterval < 0 || cfg.CommitInterval > 100*time.Millisecond:
		return errors.New("--commit-interval must be from 0 to 100ms")
	case cfg.MaxFrameBytes <= cfg.MaxMessageBytes:
		return fmt.Errorf("--max-frame-bytes (%d) must be larger than --max-message-bytes (%d): a message can be sent as a frame",
			cfg.MaxFrameBytes, cfg.MaxMessageBytes)
	case cfg.Writers < 0 || cfg.Writers > 1024:
		return errors.New("--writers must be from 0 (one per core) to 1024")
	case cfg.SendQueue < 16 || cfg.MaxConnsPerUser < 1 || cfg.CommandRate <= 0:
		return errors.New("--send-queue must be at least 16, --max-conns-per-user at least 1 and --command-rate positive")
	case cfg.Retention < time.Hour:
		return errors.New("--retention must be at least 1h")
	case cfg.PresenceLimit < 0 || cfg.MaxPresenceSubs < 0:
		return errors.New("--presence-limit and --max-presence-subscriptions must not be negative")
	case cfg.MaxBodyReads < 1:
		return errors.New("--max-body-reads must be at least 1")
	case cfg.BodyTimeout < time.Second:
		return errors.New("--body-timeout must be at least 1s")
	case cfg.UserUploadWindow < time.Minute:
		return errors.New("--user-upload-window must be at least 1m")
	case cfg.UnattachedFileGrace < time.Minute:
		return errors.New("--unattached-file-grace must be at least 1m")
	case cfg.WebhookFailAfter < time.Second || cfg.WebhookMaxBackoff < time.Second || cfg.WebhookTimeout < time.Second:
		return errors.New("--webhook-fail-after, --webhook-max-backoff and --webhook-timeout must be at least 1s")
	case cfg.UserRate < 0 || cfg.AppRate < 0 || cfg.ServerKeyRate < 0 || cfg.ConversationRate < 0 || cfg.ParticipantRate < 0:
		return errors.New("--user-rate, --app-rate, --server-key-rate, --conversation-rate and --participant-rate must not be negative (0 means no limit)")
	}
	return nil
}

// envPrefix starts the name of every environment variable of a setting.
const envPrefix = "TIDINGS_"

// envName returns the environment variable of the setting name: "max-file-bytes"
// is read from TIDINGS_MAX_FILE_BYTES.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// settingNames returns the names of all settings: the flags of serve.
var settingNames = sync.OnceValue(func() []string {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg := defaultConfig()
	addServeFlags(fs, &cfg)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
})

// isSetting reports whether a flag is a setting, which may then also come
// from the environment and the configuration file. Other flags (such as
// token's --user) only come from the command line.
func isSetting(name string) bool { return slices.Contains(settingNames(), name) }

// applySettings fills in the settings of fs that the command line did not
// give (call it after fs.Parse). Each takes, in order of precedence, the
// value of its environment variable (TIDINGS_ and its name in upper case
// with underscores; an empty variable counts as unset), then the value of
// its key in the configuration file named by the config setting, and
// otherwise keeps its default.
//
// The configuration file is a JSON object whose keys are setting names and
// whose values are strings, numbers or booleans, e.g.
//
//	{"addr": "0.0.0.0:8080", "max-file-bytes": "100MiB", "read-timeout": "5m"}
//
// A key that is not a setting is an error; a setting that fs does not have
// (one of serve's, read by another command) is ignored.
func applySettings(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || !isSetting(f.Name) {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for environment variable %s: %v", v, name, err))
			return
		}
		given[f.Name] = true
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	cf := fs.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	values, err := readConfigFile(path)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case k == "config":
			errs = append(errs, fmt.Errorf("config file %s: a config file cannot name another one", path))
		case !isSetting(k):
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (the keys are the flag names of \"tidings serve\")", path, k))
		case fs.Lookup(k) == nil || given[k]:
			// Not this command's, or given by a flag or the environment.
		default:
			if err := fs.Set(k, values[k]); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: invalid value %q for %q: %v", path, values[k], k, err))
			}
		}
	}
	return errors.Join(errs...)
}

// readConfigFile reads a JSON object of settings and returns each value as
// the text a flag would take.
func readConfigFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("config file %s: not a JSON object: %v", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("config file %s: more than one JSON value", path)
	}
	if raw == nil {
		return nil, fmt.Errorf("config file %s: not a JSON object", path)
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			return nil, fmt.Errorf("config file %s: %q: %v", path, k, err)
		}
		switch x := x.(type) {
		case string:
			values[k] = x
		case json.Number:
			values[k] = x.String()
		case bool:
			values[k] = strconv.FormatBool(x)
		default:
			return nil, fmt.Errorf("config file %s: %q must be a string, a number or a boolean, not %s", path, k, v)
		}
	}
	return values, nil
}

// durationValue is a flag.Value for a time.Duration that cannot be
// negative, with an error message saying what is expected.
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration: use a number and a unit, such as 30s, 5m or 1h30m")
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	*d = durationValue(v)
	return nil
}

// String formats the duration without zero trailing units: "2m", not "2m0s".
func (d *durationValue) String() string {
	s := time.Duration(*d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
func (d *durationValue) Get() any { return time.Duration(*d) }

// byteSizeValue is a flag.Value for a positive number of bytes, given as
// a number with an optional suffix: KiB, MiB or GiB (case-insensitive).
type byteSizeValue int64

var byteSuffixes = []struct {
	suffix string
	size   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

func (b *byteSizeValue) Set(s string) error {
	num, unit := strings.TrimSpace(s), int64(1)
	for _, u := range byteSuffixes {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, unit = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		return errors.New("not a size: use a positive whole number of bytes, optionally with KiB, MiB or GiB, such as 65536 or 25MiB")
	}
	*b = byteSizeValue(n * unit)
	return nil
}

// String gives the size in the largest unit that divides it exactly.
func (b *byteSizeValue) String() string {
	n := int64(*b)
	for _, u := range byteSuffixes {
		if n != 0 && n%u.size == 0 && u.size > 1 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSizeValue) Get() any { return int64(*b) }

// optionalSizeValue is a byteSizeValue that may also be 0, for a limit
// that is off.
type optionalSizeValue int64

func (b *optionalSizeValue) Set(s string) error {
	if strings.TrimSpace(s) == "0" {
		*b = 0
		return nil
	}
	if err := (*byteSizeValue)(b).Set(s); err != nil {
		return errors.New("not a size: use 0 for no limit, or a positive whole number of bytes, optionally with KiB, MiB or GiB, such as 500MiB")
	}
	return nil
}

func (b *optionalSizeValue) String() string { return (*byteSizeValue)(b).String() }
func (b *optionalSizeValue) Get() any       { return int64(*b) }

// logFormatValue is a flag.Value accepting "text" or "json".
type logFormatValue string

func (f *logFormatValue) Set(s string) error {
	switch s {
	case "text", "json":
		*f = logFormatValue(s)
		return nil
	}
	return errors.New(`must be "text" or "json"`)
}

func (f *logFormatValue) String() string { return string(*f) }
func (f *logFormatValue) Get() any       { return string(*f) }

// newLogger returns the logger of the server, writing to w.
func newLogger(w io.Writer, cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

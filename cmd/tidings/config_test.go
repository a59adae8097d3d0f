package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseServeEnv parses the settings of serve as "tidings serve args" would
// with the environment env.
func parseServeEnv(t *testing.T, env map[string]string, args ...string) (config, error) {
	t.Helper()
	c := &cli{stdout: io.Discard, stderr: io.Discard, lookupEnv: mapEnv(env), cmd: serveCommand}
	return parseServe(c, args)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tidings.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaults(t *testing.T) {
	cfg, err := parseServeEnv(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:8080" || cfg.Data != "tidings-data" {
		t.Errorf("addr %q, data %q", cfg.Addr, cfg.Data)
	}
	if cfg.MaxMessageBytes != 65536 || cfg.MaxFileBytes != 25<<20 || cfg.TokenTTL != 24*time.Hour {
		t.Errorf("max-message-bytes %d, max-file-bytes %d, token-ttl %v", cfg.MaxMessageBytes, cfg.MaxFileBytes, cfg.TokenTTL)
	}
	if cfg.LogFormat != "text" || cfg.LogLevel.String() != "INFO" {
		t.Errorf("log format %q, level %v", cfg.LogFormat, cfg.LogLevel)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `{"addr": "file:1", "data": "file-data", "max-file-bytes": 1000, "read-timeout": "1s"}`)
	env := map[string]string{
		"TIDINGS_CONFIG":         file,
		"TIDINGS_DATA":           "env-data",
		"TIDINGS_MAX_FILE_BYTES": "2000",
	}
	cfg, err := parseServeEnv(t, env, "--max-file-bytes", "3000")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxFileBytes != 3000 {
		t.Errorf("max-file-bytes = %d: the flag should win over the environment and the file", cfg.MaxFileBytes)
	}
	if cfg.Data != "env-data" {
		t.Errorf("data = %q: the environment should win over the file", cfg.Data)
	}
	if cfg.Addr != "file:1" || cfg.ReadTimeout != time.Second {
		t.Errorf("addr = %q, read-timeout = %v: the file should win over the defaults", cfg.Addr, cfg.ReadTimeout)
	}
	if cfg.WriteTimeout != defaultConfig().WriteTimeout {
		t.Errorf("write-timeout = %v, want the default", cfg.WriteTimeout)
	}

	// The --config flag names the file as well, and wins over TIDINGS_CONFIG.
	other := writeFile(t, `{"addr": "other:2"}`)
	cfg, err = parseServeEnv(t, env, "--config", other)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "other:2" || cfg.MaxFileBytes != 2000 {
		t.Errorf("addr = %q, max-file-bytes = %d", cfg.Addr, cfg.MaxFileBytes)
	}

	// An empty environment variable counts as unset.
	cfg, err = parseServeEnv(t, map[string]string{"TIDINGS_ADDR": ""})
	if err != nil || cfg.Addr != defaultAddr {
		t.Errorf("addr = %q, %v; want the default", cfg.Addr, err)
	}
}

func TestEverySettingReadsItsEnvironmentVariable(t *testing.T) {
	values := map[string]string{
		"addr": "0.0.0.0:9", "data": "/srv/tidings", "config": "",
		"store": "postgres://tidings@db/tidings", "broker": "nats://n1:4222,nats://n2:4222", "broker-prefix": "staging",
		"blobs": "s3://files?endpoint=minio:9000", "log-level": "debug", "log-format": "json",
		"max-body-bytes": "2MiB", "max-message-bytes": "1MiB", "max-file-bytes": "1GiB", "token-ttl": "1h",
		"read-header-timeout": "1s", "read-timeout": "2s", "write-timeout": "3s", "idle-timeout": "4s",
		"shutdown-timeout": "5s", "ping-interval": "6s", "pong-timeout": "7s", "auth-timeout": "8s",
		"realtime-idle-timeout": "9s", "typing-timeout": "10s", "presence-limit": "7", "max-presence-subscriptions": "50", "max-frame-bytes": "2MiB", "send-queue": "100", "writers": "3",
		"max-conns-per-user": "3", "command-rate": "12.5", "allowed-origins": "https://a.example, https://b.example",
		"retention": "48h", "dev": "true", "debug-addr": "127.0.0.1:6060",
		"push-window": "3s", "no-web-push": "true", "apns-key-file": "/keys/AuthKey_K.p8", "apns-key-id": "K",
		"apns-team-id": "T", "apns-topic": "com.example.chat", "apns-url": "https://api.sandbox.push.apple.com",
		"fcm-credentials": "/keys/sa.json", "fcm-url": "https://fcm.example",
		"max-body-reads": "5", "body-timeout": "11s", "body-min-rate": "1KiB",
		"user-upload-quota": "0", "user-upload-window": "1h", "app-storage-quota": "10GiB", "unattached-file-grace": "2h",
		"user-rate": "5", "app-rate": "300", "server-key-rate": "100", "conversation-rate": "2.5", "participant-rate": "9",
		"webhook-fail-after": "2h", "webhook-max-backoff": "30s", "webhook-timeout": "3s", "webhook-deny-private": "true",
		"presence-lease": "20s", "access-check": "2m", "cursor-flush-interval": "3s", "commit-interval": "4ms", "memory-trim": "30s",
	}
	env := make(map[string]string)
	for _, name := range settingNames() {
		v, ok := values[name]
		if !ok {
			t.Fatalf("no test value for setting %q", name)
		}
		env[envName(name)] = v
	}
	cfg, err := parseServeEnv(t, env)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		Addr: "0.0.0.0:9", Data: "/srv/tidings", Store: "postgres://tidings@db/tidings", Broker: "nats://n1:4222,nats://n2:4222", BrokerPrefix: "staging",
		Blobs: "s3://files?endpoint=minio:9000", LogLevel: -4, LogFormat: "json",
		MaxBodyBytes: 2 << 20, MaxMessageBytes: 1 << 20, MaxFileBytes: 1 << 30, TokenTTL: time.Hour,
		ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second,
		IdleTimeout: 4 * time.Second, ShutdownTimeout: 5 * time.Second,
		PingInterval: 6 * time.Second, PongTimeout: 7 * time.Second, AuthTimeout: 8 * time.Second,
		RealtimeIdle: 9 * time.Second, TypingTimeout: 10 * time.Second, PresenceLimit: 7, MaxPresenceSubs: 50, MaxFrameBytes: 2 << 20, SendQueue: 100, Writers: 3,
		MaxConnsPerUser: 3, CommandRate: 12.5, AllowedOrigins: "https://a.example, https://b.example",
		Retention: 48 * time.Hour, Dev: true, DebugAddr: "127.0.0.1:6060",
		Push: pushConfig{Window: 3 * time.Second, NoWebPush: true, APNsKeyFile: "/keys/AuthKey_K.p8", APNsKeyID: "K",
			APNsTeamID: "T", APNsTopic: "com.example.chat", APNsURL: "https://api.sandbox.push.apple.com",
			FCMCredentials: "/keys/sa.json", FCMURL: "https://fcm.example"},
		MaxBodyReads: 5, BodyTimeout: 11 * time.Second, BodyMinRate: 1 << 10,
		UserUploadQuota: 0, UserUploadWindow: time.Hour, AppStorageQuota: 10 << 30, UnattachedFileGrace: 2 * time.Hour,
		UserRate: 5, AppRate: 300, ServerKeyRate: 100, ConversationRate: 2.5, ParticipantRate: 9,
		WebhookFailAfter: 2 * time.Hour, WebhookMaxBackoff: 30 * time.Second, WebhookTimeout: 3 * time.Second, WebhookDenyPrivate: true,
		PresenceLease: 20 * time.Second, AccessCheck: 2 * time.Minute, CursorFlush: 3 * time.Second, CommitInterval: 4 * time.Millisecond, MemoryTrim: 30 * time.Second,
	}
	if cfg != want {
		t.Errorf("config from the environment:\n got %+v\nwant %+v", cfg, want)
	}
	if envName("max-file-bytes") != "TIDINGS_MAX_FILE_BYTES" {
		t.Errorf("envName(max-file-bytes) = %q", envName("max-file-bytes"))
	}
}

func TestConfigFileValues(t *testing.T) {
	file := writeFile(t, `{
		"max-body-bytes": "4MiB", "max-message-bytes": 131072, "max-file-bytes": "100 mib",
		"log-level": "WARN", "token-ttl": "30m", "idle-timeout": "0s"
	}`)
	cfg, err := parseServeEnv(t, nil, "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBodyBytes != 4<<20 || cfg.MaxMessageBytes != 131072 || cfg.MaxFileBytes != 100<<20 ||
		cfg.LogLevel.String() != "WARN" || cfg.TokenTTL != 30*time.Minute || cfg.IdleTimeout != 0 {
		t.Errorf("config from the file: %+v", cfg)
	}
}

func TestBadSettings(t *testing.T) {
	file := func(content string) string { return writeFile(t, content) }
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{"bad flag size", nil, []string{"--max-file-bytes", "lots"}, "max-file-bytes"},
		{"zero size", nil, []string{"--max-message-bytes", "0"}, "positive"},
		{"bad flag duration", nil, []string{"--read-timeout", "10"}, "duration"},
		{"negative duration", nil, []string{"--write-timeout", "-1s"}, "negative"},
		{"bad log format", nil, []string{"--log-format", "xml"}, "json"},
		{"bad log level", nil, []string{"--log-level", "loud"}, "log-level"},
		{"unknown flag", nil, []string{"--port", "80"}, "port"},
		{"argument", nil, []string{"now"}, `"now"`},
		{"bad env", map[string]string{"TIDINGS_READ_TIMEOUT": "soon"}, nil, "TIDINGS_READ_TIMEOUT"},
		{"bad env size", map[string]string{"TIDINGS_MAX_FILE_BYTES": "-5"}, nil, "TIDINGS_MAX_FILE_BYTES"},
		{"unknown key", nil, []string{"--config", file(`{"adress": "x:1"}`)}, `unknown setting "adress"`},
		{"non-flag key", nil, []string{"--config", file(`{"user": "alice"}`)}, `unknown setting "user"`},
		{"nested config", nil, []string{"--config", file(`{"config": "x.json"}`)}, "another"},
		{"bad file value", nil, []string{"--config", file(`{"max-file-bytes": 2.5}`)}, "max-file-bytes"},
		{"object value", nil, []string{"--config", file(`{"addr": {"host": "x"}}`)}, "addr"},
		{"null value", nil, []string{"--config", file(`{"addr": null}`)}, "addr"},
		{"not JSON", nil, []string{"--config", file(`addr = "x"`)}, "JSON"},
		{"not an object", nil, []string{"--config", file(`["addr"]`)}, "object"},
		{"two objects", nil, []string{"--config", file(`{} {}`)}, "more than one"},
		{"missing file", map[string]string{"TIDINGS_CONFIG": "/nonexistent/tidings.json"}, nil, "nonexistent"},
		{"body smaller than message", nil, []string{"--max-body-bytes", "64KiB"}, "max-body-bytes"},
		{"short token ttl", nil, []string{"--token-ttl", "0s"}, "token-ttl"},
		{"empty addr", nil, []string{"--addr", ""}, "addr"},
		{"bad quota", nil, []string{"--user-upload-quota", "-1"}, "user-upload-quota"},
		{"short grace", nil, []string{"--unattached-file-grace", "1s"}, "unattached-file-grace"},
		{"no body reads", nil, []string{"--max-body-reads", "0"}, "max-body-reads"},
		{"negative rate", nil, []string{"--conversation-rate", "-1"}, "conversation-rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServeEnv(t, tt.env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}

			// Run for real, serve exits with code 2 before starting.
			env := map[string]string{"TIDINGS_DATA": t.TempDir(), "TIDINGS_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			r := runCLI(t, env, append([]string{"serve"}, tt.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not mention %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "65536": 65536, "64KiB": 64 << 10, "25MiB": 25 << 20, "2 GiB": 2 << 30, "10b": 10, "3kib": 3 << 10,
	} {
		var v byteSizeValue
		if err := v.Set(in); err != nil || int64(v) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, v, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "1.5MiB", "-1", "0", "1TB", "9999999999GiB"} {
		var v byteSizeValue
		if err := v.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, v)
		}
	}
	for in, want := range map[int64]string{65536: "64KiB", 25 << 20: "25MiB", 1000: "1000", 1 << 30: "1GiB"} {
		v := byteSizeValue(in)
		if v.String() != want {
			t.Errorf("String(%d) = %q, want %q", in, v.String(), want)
		}
	}
}

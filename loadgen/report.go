package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is the summary of one scenario's run. Fields that do not apply to
// a scenario are left empty.
type Result struct {
	Scenario string         `json:"scenario"`
	Started  time.Time      `json:"started"`
	Machine  Machine        `json:"machine"`
	Params   map[string]any `json:"params"`
	// Seconds is the length of the measured phase.
	Seconds float64 `json:"seconds"`

	Connections     int     `json:"connections,omitempty"`
	ConnectSeconds  float64 `json:"connectSeconds,omitempty"`
	SetupSeconds    float64 `json:"setupSeconds,omitempty"`
	UnexpectedClose int     `json:"unexpectedCloses"`
	CloseCodes      []int   `json:"closeCodes,omitempty"`

	Sent           int64    `json:"sent,omitempty"`
	Acked          int64    `json:"acked,omitempty"`
	SendErrors     int64    `json:"sendErrors"`
	SendErrorCodes []string `json:"sendErrorCodes,omitempty"`
	MessagesPerSec float64  `json:"messagesPerSec,omitempty"`
	AckLatency     *Latency `json:"ackLatency,omitempty"`
	// APIMessagesPerSec and SocketMessagesPerSec split MessagesPerSec by
	// transport (persist).
	APIMessagesPerSec    float64  `json:"apiMessagesPerSec,omitempty"`
	SocketMessagesPerSec float64  `json:"socketMessagesPerSec,omitempty"`
	APIAckLatency        *Latency `json:"apiAckLatency,omitempty"`
	SocketAckLatency     *Latency `json:"socketAckLatency,omitempty"`

	Deliveries       int64    `json:"deliveries,omitempty"`
	DeliveriesPerSec float64  `json:"deliveriesPerSec,omitempty"`
	Latency          *Latency `json:"latency,omitempty"`
	Lost             int64    `json:"lost"`
	Duplicated       int64    `json:"duplicated"`
	OutOfOrder       int64    `json:"outOfOrder"`
	// ReadReceipts counts the read receipts sent (rooms --read-every);
	// ReadReceiptErrors those answered with an error.
	ReadReceipts      int64 `json:"readReceipts,omitempty"`
	ReadReceiptErrors int64 `json:"readReceiptErrors,omitempty"`

	// Reconnect storm.
	Missed           int64    `json:"missedPerClient,omitempty"`
	ReconnectSeconds float64  `json:"reconnectSeconds,omitempty"`
	CatchUpSeconds   float64  `json:"catchUpSeconds,omitempty"`
	CatchUp          *Latency `json:"catchUp,omitempty"`
	CaughtUp         int      `json:"caughtUp,omitempty"`

	// Idle connections.
	Pings               int64   `json:"pings,omitempty"`
	ServerRSSPerConnKiB float64 `json:"serverRssPerConnKiB,omitempty"`
	ToolRSSPerConnKiB   float64 `json:"toolRssPerConnKiB,omitempty"`
	ServerRSSBefore     int64   `json:"serverRssBefore,omitempty"`

	Server                 *Usage  `json:"server,omitempty"`
	Tool                   *Usage  `json:"tool,omitempty"`
	ServerCPUPerDeliveryUs float64 `json:"serverCpuPerDeliveryUs,omitempty"`
	ToolCPUPerDeliveryUs   float64 `json:"toolCpuPerDeliveryUs,omitempty"`
	ServerCPUPerMessageUs  float64 `json:"serverCpuPerMessageUs,omitempty"`

	FileLimit uint64   `json:"fileLimit,omitempty"`
	ServerPID int      `json:"serverPid,omitempty"`
	Notes     []string `json:"notes,omitempty"`
}

// OK reports whether nothing was lost, duplicated, reordered or cut off.
func (r *Result) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.UnexpectedClose == 0
}

func (e *env) result(scenario string, params map[string]any) *Result {
	return &Result{Scenario: scenario, Started: time.Now().UTC(), Machine: ThisMachine(), Params: params,
		FileLimit: e.fileLimit, ServerPID: e.pid}
}

// finish fills in the figures derived from others.
func (r *Result) finish(e *env) {
	r.Notes = append(r.Notes, e.notes...)
	if r.Deliveries > 0 {
		if r.Server != nil {
			r.ServerCPUPerDeliveryUs = 1e6 * r.Server.CPUSeconds / float64(r.Deliveries)
		}
		if r.Tool != nil {
			r.ToolCPUPerDeliveryUs = 1e6 * r.Tool.CPUSeconds / float64(r.Deliveries)
		}
	}
	if r.Acked > 0 && r.Server != nil {
		r.ServerCPUPerMessageUs = 1e6 * r.Server.CPUSeconds / float64(r.Acked)
	}
}

// WriteJSON writes the result as one JSON object on a line.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the result for people.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(tw, "%s\n", r.Scenario)
	var ps []string
	for _, k := range sortedKeys(r.Params) {
		ps = append(ps, fmt.Sprintf("%s=%v", k, r.Params[k]))
	}
	row("settings", "%s", strings.Join(ps, " "))
	row("machine", "%d CPUs, %s, Linux %s, %s", r.Machine.CPUs, r.Machine.Model, r.Machine.Kernel, r.Machine.Go)
	if r.FileLimit > 0 {
		row("open-file limit", "%d (soft limit raised to the hard limit)", r.FileLimit)
	}
	if r.SetupSeconds > 0 {
		row("setup", "%.1f s (users, tokens, conversations)", r.SetupSeconds)
	}
	if r.Connections > 0 {
		row("connections", "%d, opened and authenticated in %.2f s", r.Connections, r.ConnectSeconds)
	}
	row("measured for", "%.1f s", r.Seconds)
	if r.Sent > 0 || r.Acked > 0 {
		row("messages", "%d sent, %d acknowledged, %d failed%s", r.Sent, r.Acked, r.SendErrors, codes(r.SendErrorCodes))
		row("messages/s", "%s acknowledged", num(r.MessagesPerSec))
	}
	if r.APIMessagesPerSec > 0 || r.SocketMessagesPerSec > 0 {
		row("  through the API", "%s/s, answered in %s", num(r.APIMessagesPerSec), lat(r.APIAckLatency))
		row("  through the socket", "%s/s, answered in %s", num(r.SocketMessagesPerSec), lat(r.SocketAckLatency))
	} else if r.AckLatency != nil {
		row("answered in", "%s", lat(r.AckLatency))
	}
	if r.Deliveries > 0 {
		row("deliveries", "%d, %s/s", r.Deliveries, num(r.DeliveriesPerSec))
	}
	if r.Latency != nil {
		row("latency", "%s (send to receipt)", lat(r.Latency))
	}
	if r.ReadReceipts > 0 {
		row("read receipts", "%d sent, %d failed", r.ReadReceipts, r.ReadReceiptErrors)
	}
	if r.Missed > 0 {
		row("missed per client", "%d messages while away", r.Missed)
		row("reconnected", "every client in %.2f s", r.ReconnectSeconds)
		row("caught up", "%d clients, all within %.2f s of reconnecting (per client %s)", r.CaughtUp, r.CatchUpSeconds, lat(r.CatchUp))
	}
	if r.Sent > 0 || r.Deliveries > 0 || r.Missed > 0 {
		row("lost / duplicated", "%d / %d (out of order: %d)", r.Lost, r.Duplicated, r.OutOfOrder)
	}
	row("unexpected closes", "%d%s", r.UnexpectedClose, codes(intsToStrings(r.CloseCodes)))
	if r.Pings > 0 {
		row("server pings", "%d received", r.Pings)
	}
	if r.Server != nil {
		row("server CPU", "%.2f s, %.1f%% of a core", r.Server.CPUSeconds, r.Server.CPUPercent)
		row("server RSS", "%.1f MiB", float64(r.Server.RSSBytes)/(1<<20))
	}
	if r.ServerRSSPerConnKiB != 0 {
		row("server RSS/conn", "%.1f KiB (from %.1f MiB before connecting)", r.ServerRSSPerConnKiB, float64(r.ServerRSSBefore)/(1<<20))
	}
	if r.ServerCPUPerDeliveryUs > 0 {
		row("server CPU/delivery", "%.2f µs", r.ServerCPUPerDeliveryUs)
	}
	if r.ServerCPUPerMessageUs > 0 {
		row("server CPU/message", "%.1f µs", r.ServerCPUPerMessageUs)
	}
	if r.Tool != nil {
		row("tool CPU", "%.2f s, %.1f%% of a core, RSS %.1f MiB", r.Tool.CPUSeconds, r.Tool.CPUPercent, float64(r.Tool.RSSBytes)/(1<<20))
	}
	if r.ToolRSSPerConnKiB != 0 {
		row("tool RSS/conn", "%.1f KiB", r.ToolRSSPerConnKiB)
	}
	if r.ToolCPUPerDeliveryUs > 0 {
		row("tool CPU/delivery", "%.2f µs", r.ToolCPUPerDeliveryUs)
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	verdict := "OK: nothing lost, duplicated, reordered or cut off"
	if !r.OK() {
		verdict = "FAILED: updates were lost, duplicated or reordered, or connections closed"
	}
	row("result", "%s", verdict)
	return tw.Flush()
}

func lat(l *Latency) string {
	if l == nil || l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", msText(l.P50), msText(l.P90), msText(l.P99), msText(l.Max))
}

func msText(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0f µs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func codes(cs []string) string {
	if len(cs) == 0 {
		return ""
	}
	return " (" + strings.Join(cs, ", ") + ")"
}

func intsToStrings(xs []int) []string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// counter counts occurrences of short strings (error and close codes).
type counter map[string]int

func (c counter) list() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		out = append(out, fmt.Sprintf("%s×%d", k, c[k]))
	}
	return out
}

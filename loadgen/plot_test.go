package loadgen

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

func TestPlotDrawsResults(t *testing.T) {
	var buf bytes.Buffer
	for _, n := range []int{10000, 100, 1000} {
		r := &Result{Scenario: "fanout", Params: map[string]any{"subscribers": n},
			Latency: &Latency{Count: 10, P50: float64(n) / 100, P90: float64(n) / 50, P99: float64(n) / 10, Max: float64(n)}}
		r.WriteJSON(&buf)
	}
	// Other scenarios are left out.
	(&Result{Scenario: "persist", Latency: &Latency{P50: 1}}).WriteJSON(&buf)
	rs, err := ReadResults(strings.NewReader(buf.String()))
	if err != nil || len(rs) != 4 {
		t.Fatalf("read %d results: %v", len(rs), err)
	}
	ps := LatencyPoints(rs)
	if len(ps) != 3 || ps[0].Subscribers != 100 || ps[2].Subscribers != 10000 || ps[2].Latency.P99 != 1000 {
		t.Fatalf("points %+v", ps)
	}
	var img bytes.Buffer
	if err := Plot(&img, "test", ps); err != nil {
		t.Fatal(err)
	}
	m, err := png.Decode(&img)
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != 800 || b.Dy() != 500 {
		t.Errorf("image %v", b)
	}
	if err := Plot(&img, "empty", nil); err == nil {
		t.Error("an empty plot was drawn")
	}
}

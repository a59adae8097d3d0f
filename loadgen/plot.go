package loadgen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// ReadResults reads results written by WriteJSON (one JSON object a line,
// or one object alone, or an array of them).
func ReadResults(r io.Reader) ([]*Result, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var out []*Result
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			var rs []*Result
			if err := json.Unmarshal(raw, &rs); err != nil {
				return nil, err
			}
			out = append(out, rs...)
			continue
		}
		var res Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, err
		}
		out = append(out, &res)
	}
	return out, nil
}

// PlotPoint is one run on the plot: its number of subscribers and its
// latency.
type PlotPoint struct {
	Subscribers float64
	Latency     Latency
}

// LatencyPoints picks the fanout and poll results (of one scenario: the
// first one's) and returns their latency by number of subscribers,
// sorted; for several runs with the same number, the last one counts.
func LatencyPoints(rs []*Result) []PlotPoint {
	var scenario string
	bySubs := map[float64]PlotPoint{}
	for _, r := range rs {
		if r.Latency == nil || (r.Scenario != "fanout" && r.Scenario != "poll") {
			continue
		}
		if scenario == "" {
			scenario = r.Scenario
		}
		n, ok := r.Params["subscribers"].(float64)
		if !ok {
			if i, isInt := r.Params["subscribers"].(int); isInt {
				n, ok = float64(i), true
			}
		}
		if !ok || r.Scenario != scenario || n <= 0 {
			continue
		}
		bySubs[n] = PlotPoint{Subscribers: n, Latency: *r.Latency}
	}
	var ps []PlotPoint
	for _, p := range bySubs {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b PlotPoint) int { return int(a.Subscribers - b.Subscribers) })
	return ps
}

// Plot draws the latency percentiles of points against the number of
// subscribers, both on logarithmic scales, as a PNG image.
func Plot(w io.Writer, title string, points []PlotPoint) error {
	if len(points) == 0 {
		return fmt.Errorf("nothing to plot: no fanout or poll result with a latency")
	}
	const W, H = 800, 500
	const left, right, top, bottom = 70, 130, 40, 50
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	ink := color.RGBA{40, 40, 40, 255}
	grid := color.RGBA{225, 225, 225, 255}

	// Axes' ranges: whole powers of ten around the data.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, p := range points {
		xmin, xmax = math.Min(xmin, p.Subscribers), math.Max(xmax, p.Subscribers)
		for _, v := range []float64{p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max} {
			if v > 0 {
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
	}
	if math.IsInf(ymin, 1) {
		ymin, ymax = 1, 10
	}
	lx0, lx1 := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	ly0, ly1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if lx1 == lx0 {
		lx1++
	}
	if ly1 == ly0 {
		ly1++
	}
	px := func(x float64) int {
		return left + int((math.Log10(x)-lx0)/(lx1-lx0)*float64(W-left-right))
	}
	py := func(y float64) int {
		return H - bottom - int((math.Log10(y)-ly0)/(ly1-ly0)*float64(H-top-bottom))
	}

	// Grid lines and labels at 1, 2 and 5 times each power of ten.
	for e := ly0; e <= ly1; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > ly1+1e-9 {
				break
			}
			y := py(v)
			hline(img, left, W-right, y, grid)
			label(img, left-8-textWidth(msLabel(v)), y+4, msLabel(v), ink)
		}
	}
	for e := lx0; e <= lx1; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > lx1+1e-9 {
				break
			}
			x := px(v)
			vline(img, x, top, H-bottom, grid)
			s := countLabel(v)
			label(img, x-textWidth(s)/2, H-bottom+16, s, ink)
		}
	}
	hline(img, left, W-right, H-bottom, ink)
	vline(img, left, top, H-bottom, ink)
	label(img, left+(W-left-right)/2-textWidth("subscribers")/2, H-12, "subscribers", ink)
	label(img, 8, top-12, "latency (ms)", ink)
	label(img, W/2-textWidth(title)/2, 20, title, ink)

	series := []struct {
		name string
		c    color.RGBA
		get  func(Latency) float64
	}{
		{"max", color.RGBA{150, 150, 150, 255}, func(l Latency) float64 { return l.Max }},
		{"p99", color.RGBA{214, 39, 40, 255}, func(l Latency) float64 { return l.P99 }},
		{"p90", color.RGBA{255, 127, 14, 255}, func(l Latency) float64 { return l.P90 }},
		{"p50", color.RGBA{31, 119, 180, 255}, func(l Latency) float64 { return l.P50 }},
	}
	for i, s := range series {
		var prev image.Point
		havePrev := false
		for _, p := range points {
			v := s.get(p.Latency)
			if v <= 0 {
				continue
			}
			pt := image.Pt(px(p.Subscribers), py(v))
			if havePrev {
				line(img, prev, pt, s.c)
			}
			dot(img, pt, s.c)
			prev, havePrev = pt, true
		}
		ly := top + 10 + 20*i
		line(img, image.Pt(W-right+15, ly), image.Pt(W-right+40, ly), s.c)
		dot(img, image.Pt(W-right+27, ly), s.c)
		label(img, W-right+48, ly+4, s.name, ink)
	}
	return png.Encode(w, img)
}

func msLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gs", v/1000)
	default:
		return fmt.Sprintf("%g", v)
	}
}

func countLabel(v float64) string {
	if v >= 1000 && math.Mod(v, 1000) == 0 {
		return fmt.Sprintf("%gk", v/1000)
	}
	return fmt.Sprintf("%g", v)
}

func label(img draw.Image, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return 7 * len(s) }

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// line draws a line two pixels thick.
func line(img *image.RGBA, a, b image.Point, c color.Color) {
	dx, dy := b.X-a.X, b.Y-a.Y
	n := max(abs(dx), abs(dy), 1)
	for i := 0; i <= n; i++ {
		x := a.X + dx*i/n
		y := a.Y + dy*i/n
		img.Set(x, y, c)
		img.Set(x+1, y, c)
		img.Set(x, y+1, c)
	}
}

func dot(img *image.RGBA, p image.Point, c color.Color) {
	for dx := -3; dx <= 3; dx++ {
		for dy := -3; dy <= 3; dy++ {
			if dx*dx+dy*dy <= 9 {
				img.Set(p.X+dx, p.Y+dy, c)
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

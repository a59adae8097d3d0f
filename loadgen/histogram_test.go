package loadgen

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestHistogramBucketsCoverEveryValue(t *testing.T) {
	// Each value falls in a bucket whose range holds it, and buckets are
	// in order.
	prevHi := int64(-1)
	for i := range histBuckets {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d is [%d, %d] after one ending at %d", i, lo, hi, prevHi)
		}
		if i > 200 && i < histBuckets-1 && float64(hi-lo+1)/float64(lo) > 1.0/64 {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/64 of its values", i, lo, hi)
		}
		prevHi = hi
		if hi < 0 || hi >= 1<<62 {
			break
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1e3, 1e6, 123456789, 1 << 62} {
		lo, hi := bucketRange(bucketOf(v))
		if v < lo || v > hi {
			t.Errorf("%d in bucket %d [%d, %d]", v, bucketOf(v), lo, hi)
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	// 1 ms … 1000 ms, shuffled: the p-th percentile is p*10 ms.
	vals := rand.Perm(1000)
	for _, v := range vals {
		h.Record(time.Duration(v+1) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("quantile %g: %v, want %v within 1%%", c.q, got, c.want)
		}
	}
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	s := h.Summary()
	if s.Count != 1000 || s.Max != 1000 || s.Mean < 499 || s.Mean > 502 {
		t.Errorf("summary %+v", s)
	}
}

func TestHistogramSmallSamplesAndEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Summary().Mean != 0 {
		t.Fatal("an empty histogram has percentiles")
	}
	h.Record(-time.Second) // a clock step: counts as zero
	h.Record(3 * time.Millisecond)
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("median of {0, 3ms}: %v", got)
	}
	// Never above the largest sample, even mid-bucket.
	if got := h.Quantile(1); got != 3*time.Millisecond {
		t.Errorf("p100: %v, want 3ms", got)
	}
}

func TestHistogramMergeAndConcurrency(t *testing.T) {
	var a, b Histogram
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				a.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	b.Record(time.Hour)
	b.Merge(&a)
	if b.Count() != 4001 || b.Max() != time.Hour {
		t.Fatalf("merged: count %d max %v", b.Count(), b.Max())
	}
	if got := b.Quantile(0.5); got < 1900*time.Microsecond || got > 2100*time.Microsecond {
		t.Errorf("merged median %v, want about 2ms", got)
	}
	b.Reset()
	if b.Count() != 0 || b.Max() != 0 || b.Quantile(0.5) != 0 {
		t.Error("reset left samples")
	}
}

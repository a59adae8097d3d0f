package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// The test vector of the Standard Webhooks specification, which
// `openssl dgst -sha256 -mac HMAC` gives too.
const (
	kaSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	kaID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	kaTimestamp = 1614265330
	kaBody      = `{"test": 2432232314}`
	kaSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignKnownAnswer(t *testing.T) {
	sig, err := Sign(kaSecret, kaID, kaTimestamp, []byte(kaBody))
	if err != nil || sig != kaSignature {
		t.Fatalf("Sign = %q, %v; want %q", sig, err, kaSignature)
	}
}

func header(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestVerify(t *testing.T) {
	at := time.Unix(kaTimestamp, 0)
	h := header(kaID, kaTimestamp, kaSignature)
	if err := verifyAt(kaSecret, h, []byte(kaBody), at.Add(time.Minute)); err != nil {
		t.Fatalf("the known delivery does not verify: %v", err)
	}
	// Several signatures (a rotation): one valid is enough.
	h.Set(HeaderSignature, "v1,bm90IGl0 "+kaSignature)
	if err := verifyAt(kaSecret, h, []byte(kaBody), at); err != nil {
		t.Errorf("with two signatures, one valid: %v", err)
	}

	for name, tc := range map[string]struct {
		secret, id string
		ts         int64
		sig, body  string
		now        time.Time
		want       error
	}{
		"tampered body":       {kaSecret, kaID, kaTimestamp, kaSignature, `{"test": 2432232315}`, at, ErrSignature},
		"other id":            {kaSecret, "msg_other", kaTimestamp, kaSignature, kaBody, at, ErrSignature},
		"other timestamp":     {kaSecret, kaID, kaTimestamp + 1, kaSignature, kaBody, at, ErrSignature},
		"other secret":        {tidings.NewWebhookSecret(), kaID, kaTimestamp, kaSignature, kaBody, at, ErrSignature},
		"old timestamp":       {kaSecret, kaID, kaTimestamp, kaSignature, kaBody, at.Add(Tolerance + time.Second), ErrTimestamp},
		"future timestamp":    {kaSecret, kaID, kaTimestamp, kaSignature, kaBody, at.Add(-Tolerance - time.Second), ErrTimestamp},
		"no signature":        {kaSecret, kaID, kaTimestamp, "", kaBody, at, ErrMissingHeaders},
		"unknown version":     {kaSecret, kaID, kaTimestamp, "v2," + kaSignature[3:], kaBody, at, ErrSignature},
		"truncated signature": {kaSecret, kaID, kaTimestamp, kaSignature[:20], kaBody, at, ErrSignature},
	} {
		h := header(tc.id, tc.ts, tc.sig)
		if err := verifyAt(tc.secret, h, []byte(tc.body), tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, tc.want)
		}
	}
	if err := Verify("not a secret", h, []byte(kaBody)); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("Verify with a malformed secret = %v, want invalid_argument", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	lo, hi := time.Second, 10*time.Minute
	for n := 1; n <= 40; n++ {
		want := lo << min(n-1, 20)
		if want > hi {
			want = hi
		}
		for range 200 {
			d := Backoff(n, lo, hi)
			if d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
	// The jitter spreads the retries.
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[Backoff(5, lo, hi)] = true
	}
	if len(seen) < 10 {
		t.Errorf("Backoff(5) took only %d values in 50 draws: no jitter", len(seen))
	}
}

func TestRefusePrivate(t *testing.T) {
	for addr, refused := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:443": true, "10.1.2.3:80": true, "192.168.0.1:80": true, "172.16.0.1:80": true,
		"169.254.169.254:80": true, "100.64.0.1:80": true, "0.0.0.0:80": true, "[fd00::1]:80": true, "[::ffff:127.0.0.1]:80": true,
		"93.184.215.14:443": false, "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443": false,
	} {
		if err := refusePrivate("tcp", addr, nil); (err != nil) != refused {
			t.Errorf("refusePrivate(%s) = %v, want refused %v", addr, err, refused)
		}
	}
}

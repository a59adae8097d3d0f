package postgres

import "testing"

// The events of one read decode each actor once, and share it; a nil
// memo (a read of one event) decodes every time; a bad actor is an error.
func TestActorMemo(t *testing.T) {
	var m actorMemo
	alice := []byte(`{"id":"alice","displayName":"Alice","identifier":{"value":"a@example.com","kind":"email"}}`)
	a1, err := m.decode(alice)
	if err != nil || a1.ID != "alice" || a1.DisplayName != "Alice" || a1.Identifier == nil || a1.Identifier.Value != "a@example.com" {
		t.Fatalf("decode: %+v, %v", a1, err)
	}
	a2, _ := m.decode(append([]byte(nil), alice...))
	bob, _ := m.decode([]byte(`{"id":"bob","displayName":"Bob"}`))
	if a2 != a1 || bob == a1 || bob.ID != "bob" {
		t.Errorf("alice twice: %p, %p; bob %+v", a1, a2, bob)
	}
	var none *actorMemo
	if x, y := must(none.decode(alice)), must(none.decode(alice)); x == y || x.ID != "alice" {
		t.Errorf("without a memo: %p, %p", x, y)
	}
	if _, err := m.decode([]byte(`{"id":`)); err == nil {
		t.Error("a bad actor decoded")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

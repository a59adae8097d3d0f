package ws

import "testing"

func TestOneValueKeepsOneEntry(t *testing.T) {
	var o oneValue
	if _, ok := o.Load("conn"); ok || o.Len() != 0 {
		t.Fatal("an empty storage has a value")
	}
	o.Store("conn", 1)
	if v, ok := o.Load("conn"); !ok || v != 1 || o.Len() != 1 {
		t.Fatalf("load: %v %v", v, ok)
	}
	if _, ok := o.Load("other"); ok {
		t.Error("another key found")
	}
	n := 0
	o.Range(func(k string, v any) bool { n++; return true })
	if n != 1 {
		t.Errorf("range saw %d entries", n)
	}
	o.Delete("other")
	o.Delete("conn")
	if _, ok := o.Load("conn"); ok || o.Len() != 0 {
		t.Error("deleted value still there")
	}
}

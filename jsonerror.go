package tidings

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// JSONError turns an error of encoding/json, met decoding subject (such as
// "request body" or "the command's data"), into an invalid_json error whose
// message tells the client what to fix, in the same words on every
// transport and without Go's own error text. An error that means a bug of
// the caller (decoding into a non-pointer) stays an internal error.
func JSONError(subject string, err error) error {
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return Errorf(EInvalidJSON, "%s is not valid JSON: %s (at byte %d)", subject, e.Error(), e.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Errorf(EInvalidJSON, "%s is not valid JSON: it ends too early", subject)
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if e.Field == "" {
			return Errorf(EInvalidJSON, "%s must be %s, not %s", subject, jsonKind(e.Type), e.Value)
		}
		return Errorf(EInvalidJSON, "field %q must be %s, not %s", e.Field, jsonKind(e.Type), e.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Errorf(EInvalidJSON, "unknown field %s", name)
	}
	if _, ok := errors.AsType[*json.InvalidUnmarshalError](err); ok {
		return fmt.Errorf("decoding %s: %w", subject, err) // a bug: internal
	}
	return Errorf(EInvalidJSON, "%s is not valid: %s", subject, strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the kind of JSON value that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a different JSON type"
}

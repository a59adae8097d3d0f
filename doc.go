// Package tidings holds the domain of Tidings, a self-hosted realtime
// messaging backend: apps (tenants), users and their profiles,
// conversations and their participants, messages and their status, files,
// and the events every change produces.
//
// The package depends on nothing but the standard library. Implementations
// live in packages named after what they wrap: sqlite (storage), disk
// (file blobs), token (JWT), http (the REST API). cmd/tidings wires them.
//
// Every service method takes a context carrying the caller (see
// NewContextWithCaller); implementations enforce tenant isolation and
// permissions from it, so no caller can see another app's data.
package tidings

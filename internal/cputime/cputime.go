// Package cputime reads the CPU time this process has used, for the
// benchmarks and the load tool: on a noisy machine, CPU per operation
// compares better than wall time.
package cputime

import "time"

// Self returns the CPU time (user and system) this process has used so
// far, or 0 where the system does not say.
func Self() time.Duration { return self() }

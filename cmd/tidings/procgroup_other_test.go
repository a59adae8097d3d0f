//go:build !unix

package main

import "os/exec"

// inOwnProcessGroup does nothing where there are no process groups.
func inOwnProcessGroup(*exec.Cmd) {}

// killProcessGroup kills cmd's process (its children are left).
func killProcessGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

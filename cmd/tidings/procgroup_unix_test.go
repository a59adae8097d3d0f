//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup makes cmd start a process group of its own, so that
// killProcessGroup ends the jobs it leaves running with it.
func inOwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the process group cmd started.
func killProcessGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

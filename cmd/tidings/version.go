package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release version, set when building a release with
// -ldflags "-X main.version=v1.2.3". Otherwise it comes from the build
// information: the module version when installed with "go install", or
// "(devel)" and the VCS revision when built from a checkout.
var version = ""

var versionCommand = &command{
	name:  "version",
	args:  "",
	short: "print the version",
	long: `
Version prints the version of tidings, the source revision it was built
from when known, and the Go version and platform.`,
	run: runVersion,
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	args, err := c.parse(flag.NewFlagSet("version", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "tidings %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// versionString returns the version of the program, with the revision it
// was built from when known, e.g. "(devel) 3f2a9c1d04be-modified".
func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if v == "" {
			v = "(unknown)"
		}
		return v
	}
	if v == "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-modified"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(12, len(rev))] + modified
	}
	return v
}

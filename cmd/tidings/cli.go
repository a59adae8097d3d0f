package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tidings/tidings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed
	exitUsage   = 2 // bad command line, environment or configuration file
)

// command is a subcommand: one word ("serve") or two ("apps create").
type command struct {
	name  string
	args  string // what follows the name in the synopsis
	short string // one line for the command list
	long  string // explanation shown by "tidings help <name>"
	run   func(ctx context.Context, c *cli, args []string) error
}

// commands returns every subcommand, in the order the help lists them.
func commands() []*command {
	return []*command{
		serveCommand,
		appsCreateCommand, appsListCommand, appsShowCommand, appsRotateKeyCommand, appsSetCommand, appsBeforeSendCommand,
		webhooksAddCommand, webhooksListCommand, webhooksShowCommand, webhooksRemoveCommand,
		tokenCommand,
		appsRotateSecretCommand, usersDeactivateCommand, usersReactivateCommand, usersRevokeTokensCommand, usersDeleteCommand,
		listenCommand, sendCommand, chatCommand,
		benchFanoutCommand, benchConnectionsCommand, benchPersistCommand, benchReconnectCommand, benchPollCommand, benchRoomsCommand, benchFillCommand, benchPlotCommand,
		versionCommand,
	}
}

// cli is what the commands write to and read the environment from; tests
// give their own.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	cmd            *command // the command running, for its help
}

// run runs the command line args (without the program name) and returns
// the process exit code. ctx is cancelled when the process is asked to
// stop.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdin: os.Stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	return c.main(ctx, args)
}

// errHelp is returned by a command that printed its help as asked.
var errHelp = errors.New("help requested")

// errLogged is returned by a command that already reported its failure
// (e.g. in its log).
var errLogged = errors.New("failure already reported")

// usageError is an error in the command line, the environment or the
// configuration file: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func isVersionFlag(arg string) bool {
	return arg == "-version" || arg == "--version"
}

// main runs the command line args and returns the exit code: it finds the
// command, runs it and reports its error.
func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.printUsage(c.stderr)
		return exitUsage
	}
	switch {
	case isHelpFlag(args[0]):
		c.printUsage(c.stdout)
		return exitOK
	case isVersionFlag(args[0]):
		// "--version" is "version", as most programs have it.
		return c.main(ctx, append([]string{"version"}, args[1:]...))
	case args[0] == "help":
		if len(args) == 1 {
			c.printUsage(c.stdout)
			return exitOK
		}
		// "help X" is "X --help".
		return c.main(ctx, append(args[1:len(args):len(args)], "--help"))
	}

	cmd, rest := findCommand(args)
	if cmd == nil {
		if group := args[0]; isGroup(group) {
			switch {
			case len(args) == 1:
				c.printGroup(c.stderr, group)
				return exitUsage
			case isHelpFlag(args[1]):
				c.printGroup(c.stdout, group)
				return exitOK
			default:
				fmt.Fprintf(c.stderr, "tidings: unknown command %q\n\n", group+" "+args[1])
				c.printGroup(c.stderr, group)
				return exitUsage
			}
		}
		fmt.Fprintf(c.stderr, "tidings: unknown command %q\nRun \"tidings help\" for the list of commands.\n", args[0])
		return exitUsage
	}

	c.cmd = cmd
	err := cmd.run(ctx, c, rest)
	var uerr usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errLogged):
		return exitFailure
	case errors.As(err, &uerr):
		fmt.Fprintf(c.stderr, "tidings %s: %v\nRun \"tidings help %s\" for usage.\n", cmd.name, err, cmd.name)
		return exitUsage
	default:
		fmt.Fprintf(c.stderr, "tidings %s: %s\n", cmd.name, errorText(err))
		return exitFailure
	}
}

// findCommand returns the command named by the first one or two words of
// args, and the arguments that follow.
func findCommand(args []string) (*command, []string) {
	for n := min(2, len(args)); n >= 1; n-- {
		name := strings.Join(args[:n], " ")
		for _, cmd := range commands() {
			if cmd.name == name {
				return cmd, args[n:]
			}
		}
	}
	return nil, nil
}

// isGroup reports whether name is the first word of two-word commands.
func isGroup(name string) bool {
	for _, cmd := range commands() {
		if strings.HasPrefix(cmd.name, name+" ") {
			return true
		}
	}
	return false
}

// parse parses the running command's flags and arguments (flags may
// follow arguments; "--" ends the flags), then fills in the settings the
// command line did not give from the environment and the configuration
// file. It returns the arguments. Asked for help, it prints it to stdout
// and returns errHelp.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			c.printHelp(c.stdout, fs)
			return nil, errHelp
		} else if err != nil {
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if err := applySettings(fs, c.lookupEnv); err != nil {
		return nil, usageError{err}
	}
	return pos, nil
}

// wantArgs checks the number of arguments a command got.
func wantArgs(args []string, min, max int, what string) error {
	switch {
	case len(args) < min:
		return usageErrorf("missing %s", what)
	case len(args) > max:
		return usageErrorf("unexpected argument %q", args[max])
	}
	return nil
}

const usageHeader = `Tidings is a self-hosted realtime messaging backend.

Usage:
  tidings <command> [flags] [arguments]

Commands:
`

const usageFooter = `
Run "tidings help <command>" (or "tidings <command> --help") to learn a
command's flags. The settings of serve, and --data, --store and --config
for every command, can also be given as environment variables (TIDINGS_ADDR,
TIDINGS_DATA, ...) or in a JSON configuration file; a flag wins over the
environment, which wins over the file. Listen, send and chat find the
server and the user's access token in TIDINGS_SERVER and TIDINGS_TOKEN.
"tidings --version" is "tidings version".
`

// printUsage prints the list of commands.
func (c *cli) printUsage(w io.Writer) {
	fmt.Fprint(w, usageHeader)
	printCommandList(w, commands())
	fmt.Fprint(w, usageFooter)
}

// printGroup prints the commands of a group such as "apps".
func (c *cli) printGroup(w io.Writer, group string) {
	var cmds []*command
	for _, cmd := range commands() {
		if strings.HasPrefix(cmd.name, group+" ") {
			cmds = append(cmds, cmd)
		}
	}
	fmt.Fprintf(w, "Usage:\n  tidings %s <command> [flags] [arguments]\n\nCommands:\n", group)
	printCommandList(w, cmds)
	fmt.Fprintf(w, "\nRun \"tidings help %s <command>\" to learn a command's flags.\n", group)
}

func printCommandList(w io.Writer, cmds []*command) {
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.short)
	}
}

// printHelp prints the help of the running command, fs being its flags.
func (c *cli) printHelp(w io.Writer, fs *flag.FlagSet) {
	cmd := c.cmd
	fmt.Fprintf(w, "Usage:\n  tidings %s %s\n\n", cmd.name, cmd.args)
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(cmd.long))
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "\n      %s\n", usage)
		var notes []string
		if g, ok := f.Value.(flag.Getter); ok && f.DefValue != "" {
			if _, isString := g.Get().(string); isString {
				notes = append(notes, fmt.Sprintf("default %q", f.DefValue))
			} else {
				notes = append(notes, "default "+f.DefValue)
			}
		}
		if isSetting(f.Name) || isClientSetting(f.Name) {
			notes = append(notes, "environment "+envName(f.Name))
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "      (%s)\n", strings.Join(notes, "; "))
		}
	})
}

// errorText returns the message of an error for the operator: the message
// alone for an error of the domain (whose code means little on a command
// line), the whole chain otherwise.
func errorText(err error) string {
	var e *tidings.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

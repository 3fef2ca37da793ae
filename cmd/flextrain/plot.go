package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/figures"
	"github.com/flextrain/flextrain/train"
)

func init() { register(plotCommand()) }

// plotCommand is `flextrain plot OUTPUT_DIR`: the loss and evaluation curves of a run as a PNG.
func plotCommand() *cli.Command {
	return &cli.Command{
		Name:      "plot",
		Usage:     "draw the training loss and the eval loss/accuracy of OUTPUT_DIR/metrics.jsonl as a PNG",
		ArgsUsage: "OUTPUT_DIR [OUTPUT_DIR...]",
		Description: "With one run: its training loss (raw and smoothed), eval loss and eval accuracy. With several (up to\n" +
			"10): their smoothed training losses and eval accuracies on shared axes, one colour each, named by\n" +
			"their directories' base names, into --out.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "PNG `FILE` to write (default OUTPUT_DIR/loss.png; required with several runs)"},
			&cli.StringFlag{Name: "subset", Usage: "plot the eval accuracy on one `KIND` of question only: small, large or text (default: all)"},
		},
		Action: func(cx *cli.Context) error {
			args, err := leading(cx, 1)
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			if len(args) > 1 {
				return plotRuns(cx, args)
			}
			path := cx.String("out")
			if path == "" {
				path = filepath.Join(args[0], "loss.png")
			}
			c, err := figures.PlotRun(filepath.Join(args[0], train.MetricsFile), filepath.Base(filepath.Clean(args[0])), path, cx.String("subset"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cx.App.Writer, "wrote %s: %d train loss, %d eval loss, %d eval accuracy points\n",
				path, len(c.Loss), len(c.EvalLoss), len(c.EvalAccuracy))
			return err
		},
	}
}

// plotRuns is `flextrain plot` with several runs.
func plotRuns(cx *cli.Context, dirs []string) error {
	out := cx.String("out")
	if out == "" {
		return fmt.Errorf("plot: --out is required with %d runs", len(dirs))
	}
	metrics, names := make([]string, len(dirs)), make([]string, len(dirs))
	for i, d := range dirs {
		metrics[i], names[i] = filepath.Join(d, train.MetricsFile), filepath.Base(filepath.Clean(d))
	}
	cs, err := figures.PlotRuns(metrics, names, out, cx.String("subset"))
	if err != nil {
		return err
	}
	points := 0
	for _, c := range cs {
		points += len(c.Loss) + len(c.EvalAccuracy)
	}
	_, err = fmt.Fprintf(cx.App.Writer, "wrote %s: %d runs, %d points\n", out, len(cs), points)
	return err
}

// plotMain runs `flextrain plot` with args, writing to w.
func plotMain(args []string, w io.Writer) error { return runCommand(plotCommand(), args, w) }

// runCommand runs one subcommand with args (those after its name), writing its output to w and dropping
// its log lines (stderr): the testable entry of every command.
func runCommand(c *cli.Command, args []string, w io.Writer) error {
	app := &cli.App{Name: "flextrain", Writer: w, ErrWriter: io.Discard, Commands: []*cli.Command{c}}
	return app.Run(append([]string{"flextrain", c.Name}, args...))
}

// positional returns the command's n positional arguments and applies the flags written after them
// (urfave/cli stops reading flags at the first argument): `flextrain plot DIR --out x.png` works as
// `flextrain plot --out x.png DIR` does.
func positional(cx *cli.Context, n int) ([]string, error) {
	args, err := leading(cx, n)
	if err == nil && len(args) != n {
		err = fmt.Errorf("want %d argument(s) (%s), got %q", n, cx.Command.ArgsUsage, args)
	}
	return args, err
}

// leading returns the arguments before the first flag, at least min of them, and applies the flags after.
func leading(cx *cli.Context, min int) ([]string, error) {
	args := cx.Args().Slice()
	n := 0
	for n < len(args) && !strings.HasPrefix(args[n], "-") {
		n++
	}
	if n < min {
		return nil, fmt.Errorf("want at least %d argument(s) (%s), got %q", min, cx.Command.ArgsUsage, args)
	}
	rest := args[n:]
	for len(rest) > 0 {
		used, err := setTrailing(cx, rest)
		if err != nil {
			return nil, err
		}
		rest = rest[used:]
	}
	return args[:n], nil
}

// setTrailing applies the flag at rest[0] ("--name value", "--name=value", or a bare boolean "--name")
// and returns how many arguments it used.
func setTrailing(cx *cli.Context, rest []string) (int, error) {
	name, value, hasValue := strings.Cut(strings.TrimLeft(rest[0], "-"), "=")
	if !strings.HasPrefix(rest[0], "-") || !hasFlag(cx, name) {
		return 0, fmt.Errorf("unexpected argument %q", rest[0])
	}
	used := 1
	switch {
	case hasValue:
	case isBoolFlag(cx, name):
		value = "true"
	case len(rest) < 2:
		return 0, fmt.Errorf("flag --%s needs a value", name)
	default:
		value, used = rest[1], 2
	}
	if err := cx.Set(name, value); err != nil {
		return 0, fmt.Errorf("flag --%s: %w", name, err)
	}
	return used, nil
}

func hasFlag(cx *cli.Context, name string) bool {
	for _, f := range cx.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func isBoolFlag(cx *cli.Context, name string) bool {
	for _, f := range cx.Command.Flags {
		if b, ok := f.(*cli.BoolFlag); ok && b.Name == name {
			return true
		}
	}
	return false
}

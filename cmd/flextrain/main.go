// Command flextrain trains, evaluates and exports FlexAttention layers of a LLaVA-style model.
//
// Each subcommand lives in its own file and registers itself in init with register.
package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/urfave/cli/v2"
)

var commands []*cli.Command

// register adds a subcommand; files call it from init.
func register(c *cli.Command) { commands = append(commands, c) }

func main() {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	app := &cli.App{
		Name:     "flextrain",
		Usage:    "fine-tune FlexAttention layers of a LLaVA-style vision-language model",
		Commands: commands,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "flextrain:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode maps an error to the process exit status: a cli.ExitCoder keeps its own code.
func exitCode(err error) int {
	if ec, ok := err.(cli.ExitCoder); ok {
		return ec.ExitCode()
	}
	return 1
}

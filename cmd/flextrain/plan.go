package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

func init() { register(planCommand()) }

// planCommand is `flextrain plan`: the memory a run of the configuration needs, part by part.
func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "the memory a run needs: weights, gradients, AdamW state, activations of a batch, the feature cache",
		Description: "Counted from the model's shapes in the run's dtype, before anything is loaded. Activations are an\n" +
			"estimate for sequences of --rows rows (model_max_length by default, the longest a sample can be).\n" +
			"fit refuses a run whose plan at model_max_length exceeds the machine's memory, with this table.",
		Flags: append(configFlags(),
			&cli.IntFlag{Name: "rows", Usage: "rows of one sample, text and image tokens (default: model_max_length)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"}),
		Action: func(cx *cli.Context) error {
			cfg, err := loadConfig(cx)
			if err != nil {
				return err
			}
			p := cfg.Plan(cx.Int("rows"))
			if cx.Bool("json") {
				return json.NewEncoder(cx.App.Writer).Encode(p)
			}
			_, err = fmt.Fprint(cx.App.Writer, p.Table())
			return err
		},
	}
}

// planMain runs `flextrain plan` with args, writing to w.
func planMain(args []string, w io.Writer) error { return runCommand(planCommand(), args, w) }

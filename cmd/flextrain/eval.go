package main

import (
	"encoding/json"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/eval"
)

func init() { register(evalCommand()) }

// evalCommand is `flextrain eval`: the loss and exact-match accuracy of a checkpoint on a data file.
func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "loss and exact-match accuracy of a checkpoint on a LLaVA data file, as one JSON object",
		Description: "Reads every record once, in file order. The loss is the mean over supervised tokens (α = 1); the\n" +
			"accuracy counts greedy answers equal to the reference, over answers of at most 16 tokens. Records with a\n" +
			"\"kind\" field (the synthetic set's small, large, text) are also reported per kind under by_kind.",
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "data", Required: true, Usage: "LLaVA JSON `FILE` (array or JSON Lines)"},
			&cli.StringFlag{Name: "image-folder", Usage: "`DIR` the records' image paths are relative to (default: the run's image_folder)"},
		),
		Action: func(cx *cli.Context) error {
			tr, path, err := loadTrained(cx)
			if err != nil {
				return err
			}
			r, err := tr.EvaluateFile(cx.Context, cx.String("data"), cx.String("image-folder"))
			if err != nil {
				return err
			}
			return json.NewEncoder(cx.App.Writer).Encode(evalOutput{path, tr.Step, cx.String("data"), r})
		},
	}
}

// evalMain runs `flextrain eval` with args, writing to w.
func evalMain(args []string, w io.Writer) error { return runCommand(evalCommand(), args, w) }

// evalOutput is the JSON object eval prints: the report with what was evaluated.
type evalOutput struct {
	Checkpoint string `json:"checkpoint"`
	Step       int    `json:"step"`
	Data       string `json:"data"`
	eval.Report
}

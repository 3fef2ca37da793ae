package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/inference"
)

func init() { register(planCommand()) }

// planCommand is `flextrain plan`: the memory a run of the configuration needs, part by part.
func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "the memory a run needs: weights, gradients, AdamW state, activations of a batch, the feature cache; or predict's, with --model",
		Description: "Counted from the model's shapes in the run's dtype, before anything is loaded. Activations are an\n" +
			"estimate for sequences of --rows rows (model_max_length by default, the longest a sample can be).\n" +
			"fit refuses a run whose plan at model_max_length exceeds the machine's memory, with this table.\n" +
			"With --device cuda (or device: cuda), the plan is the GPU's, which fit checks against the GPU.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "run configuration `FILE` (YAML): the memory of fit"},
			&cli.GenericFlag{Name: "set", Value: &setFlag{}, Usage: "override a config key, `key=value` (repeatable)"},
			deviceFlag,
			&cli.StringFlag{Name: "model", Usage: "a published or exported `DIR` instead of --config: the memory of predict on it"},
			&cli.StringFlag{Name: "vision-tower", Usage: "with --model: a CLIP `DIR` for the tower"},
			&cli.IntFlag{Name: "max-new-tokens", Value: 64, Usage: "with --model: longest answer, in tokens"},
			&cli.IntFlag{Name: "rows", Usage: "rows of one sample, text and image tokens (default: model_max_length; with --model, the image's tokens and 64)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"}},
		Action: func(cx *cli.Context) error {
			p, err := planOf(cx)
			if err != nil {
				return err
			}
			if cx.Bool("json") {
				return json.NewEncoder(cx.App.Writer).Encode(p)
			}
			_, err = fmt.Fprint(cx.App.Writer, p.Table())
			return err
		},
	}
}

// planOf is the plan of fit on --config, or of predict on --model.
func planOf(cx *cli.Context) (config.Plan, error) {
	switch {
	case cx.IsSet("model") == cx.IsSet("config"):
		return config.Plan{}, errors.New("plan: give --config FILE (the memory of fit) or --model DIR (the memory of predict)")
	case cx.IsSet("model"):
		return inference.PredictPlan(cx.String("model"), inference.Options{VisionTower: cx.String("vision-tower")},
			cx.Int("rows"), cx.Int("max-new-tokens"))
	}
	cfg, err := loadConfig(cx)
	if err != nil {
		return config.Plan{}, err
	}
	if cfg.OnGPU() {
		return cfg.DevicePlan(cx.Int("rows")), nil
	}
	return cfg.Plan(cx.Int("rows")), nil
}

// planMain runs `flextrain plan` with args, writing to w.
func planMain(args []string, w io.Writer) error { return runCommand(planCommand(), args, w) }

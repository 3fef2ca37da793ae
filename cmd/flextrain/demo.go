package main

import (
	"fmt"

	"github.com/flextrain/flextrain/recipes/demo"

	"github.com/flextrain/flextrain/config"

	"github.com/urfave/cli/v2"
)

func init() { register(demoCommand()) }

// demoCommand is `flextrain demo`: train a small base model and FlexAttention on it from the synthetic
// dataset, then compare the two on held-out questions — flextrain's job in minutes on a laptop CPU.
func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "train a small base model, then FlexAttention on it, on generated data; compare them per question kind",
		Description: "Stage 0 (--vision) trains the base model's vision tower on the images' tags; stage 1 (--base) trains\n" +
			"the projector and decoder on it with the LR view; stage 2 (--config) freezes them and trains\n" +
			"the FlexAttention layers. A stage whose output_dir holds its final checkpoint is reused. The end\n" +
			"prints the exact-match accuracy on the test split for small-object, large-object and text questions.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: "configs/quickstart.yaml", Usage: "stage 2 (FlexAttention) configuration `FILE`"},
			&cli.StringFlag{Name: "base", Value: "configs/quickstart-base.yaml", Usage: "stage 1 (base model) configuration `FILE`"},
			&cli.StringFlag{Name: "vision", Value: "configs/quickstart-vision.yaml", Usage: "stage 0 (vision tower) configuration `FILE`; empty: no stage 0"},
		},
		Action: func(cx *cli.Context) error {
			base, err := config.Load(cx.String("base"), nil)
			if err != nil {
				return err
			}
			flex, err := config.Load(cx.String("config"), nil)
			if err != nil {
				return err
			}
			opts := demo.Options{Base: base, Flex: flex, Out: cx.App.Writer}
			if p := cx.String("vision"); p != "" {
				v, err := config.Load(p, nil)
				if err != nil {
					return err
				}
				opts.Vision = &v
			}
			ctx, _ := withSignals(cx.Context)
			out := cx.App.Writer
			res, err := demo.Run(ctx, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\ntraining: vision tower %s, base %s, FlexAttention %s; evaluation %s\n\n", res.VisionTime.Round(1e9),
				res.BaseTime.Round(1e9), res.FlexTime.Round(1e9), res.EvalTime.Round(1e9))
			return res.WriteTable(out)
		},
	}
}

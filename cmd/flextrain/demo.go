package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/train"
)

func init() { register(demoCommand()) }

// demoCommand is `flextrain demo`: train a small base model and FlexAttention on it from the synthetic
// dataset, then compare the two on held-out questions — flextrain's job in minutes on a laptop CPU.
func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "train a small base model, then FlexAttention on it, on generated data; compare them per question kind",
		Description: "Stage 1 (--base) trains the base model with the LR view; stage 2 (--config) freezes it and trains\n" +
			"the FlexAttention layers. A stage whose output_dir holds its final checkpoint is reused. The end\n" +
			"prints the exact-match accuracy on the test split for small-object, large-object and text questions.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: "configs/quickstart.yaml", Usage: "stage 2 (FlexAttention) configuration `FILE`"},
			&cli.StringFlag{Name: "base", Value: "configs/quickstart-base.yaml", Usage: "stage 1 (base model) configuration `FILE`"},
		},
		Action: func(cx *cli.Context) error {
			base, err := train.LoadConfig(cx.String("base"), nil)
			if err != nil {
				return err
			}
			flex, err := train.LoadConfig(cx.String("config"), nil)
			if err != nil {
				return err
			}
			ctx, _ := withSignals(cx.Context)
			out := cx.App.Writer
			res, err := train.Demo(ctx, train.DemoOptions{Base: base, Flex: flex, Out: out})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\ntraining: base %s, FlexAttention %s; evaluation %s\n\n", res.BaseTime.Round(1e9),
				res.FlexTime.Round(1e9), res.EvalTime.Round(1e9))
			return res.WriteTable(out)
		},
	}
}

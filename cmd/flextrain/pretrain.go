package main

import (
	"encoding/json"

	"github.com/flextrain/flextrain/recipes/pretrain"

	"github.com/urfave/cli/v2"
)

func init() { register(pretrainVisionCommand()) }

// pretrainVisionCommand is `flextrain pretrain-vision`: train a from-scratch vision tower on image tags.
func pretrainVisionCommand() *cli.Command {
	return &cli.Command{
		Name:  "pretrain-vision",
		Usage: "train the vision tower alone on the image tags of data_path; writes output_dir/model for a base model",
		Description: "Each image record's tags ({\"color\": \"red\", \"object\": \"sign\", ...}, as `flextrain data synth` writes\n" +
			"them) are classes of one linear head per key over the tower's max-pooled LR features. The written\n" +
			"weights are a base model's model_name_or_path that freezes the tower, as LLaVA freezes CLIP. Uses\n" +
			"max_steps, per_device_train_batch_size, learning_rate and its schedule, trainable/frozen, seed.",
		Flags: configFlags(),
		Action: func(cx *cli.Context) error {
			cfg, err := loadConfig(cx)
			if err != nil {
				return err
			}
			ctx, _ := withSignals(cx.Context)
			s, err := pretrain.Run(ctx, cfg, cx.App.Writer)
			if err != nil {
				return err
			}
			return json.NewEncoder(cx.App.Writer).Encode(s)
		},
	}
}

package main

import (
	"fmt"
	"image"
	"io"

	"github.com/flextrain/flextrain/inference"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/data"
)

func init() { register(predictCommand()) }

// predictCommand is `flextrain predict`: answer one question about one image with a trained checkpoint.
func predictCommand() *cli.Command {
	return &cli.Command{
		Name:  "predict",
		Usage: "answer a question about an image (or a text-only question) with a trained checkpoint",
		Description: "Builds the vicuna_v1 prompt \"USER: <image>\\nQUESTION ASSISTANT:\", preprocesses the image as training\n" +
			"does (pad to square, HR and LR views), decodes greedily with FlexAttention in inference mode (α = 1)\n" +
			"and prints the answer.",
		Flags: []cli.Flag{
			checkpointFlag(),
			&cli.StringFlag{Name: "image", Usage: "image `FILE`; without it the question is text-only"},
			&cli.StringFlag{Name: "question", Required: true, Usage: "the question `TEXT`"},
			&cli.IntFlag{Name: "max-new-tokens", Value: 64, Usage: "longest answer, in tokens"},
		},
		Action: func(cx *cli.Context) error {
			q, err := query(cx.String("image"), cx.String("question"))
			if err != nil {
				return err
			}
			tr, path, err := loadTrained(cx.String("checkpoint"))
			if err != nil {
				return err
			}
			answers, err := tr.Predict([]inference.Query{q}, cx.Int("max-new-tokens"))
			if err != nil {
				return fmt.Errorf("predict with %s: %w", path, err)
			}
			_, err = fmt.Fprintln(cx.App.Writer, answers[0])
			return err
		},
	}
}

// predictMain runs `flextrain predict` with args, writing to w.
func predictMain(args []string, w io.Writer) error { return runCommand(predictCommand(), args, w) }

// query reads the image file, if any, into a question for Predict.
func query(imagePath, question string) (inference.Query, error) {
	q := inference.Query{Question: question}
	if imagePath == "" {
		return q, nil
	}
	img, err := data.LoadImage(imagePath)
	if err != nil {
		return q, fmt.Errorf("predict: %w", err)
	}
	q.Image = image.Image(img)
	return q, nil
}

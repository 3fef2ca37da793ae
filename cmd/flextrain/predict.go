package main

import (
	"encoding/json"
	"fmt"
	"image"
	"io"

	"github.com/flextrain/flextrain/inference"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/data"
)

func init() { register(predictCommand()) }

// predictCommand is `flextrain predict`: answer one question about one image with a trained or published model.
func predictCommand() *cli.Command {
	return &cli.Command{
		Name:  "predict",
		Usage: "answer a question about an image (or a text-only question) with a checkpoint or a model folder",
		Description: "Builds the vicuna_v1 prompt \"USER: <image>\\nQUESTION ASSISTANT:\", preprocesses the image as training\n" +
			"does (pad to square, HR and LR views), decodes greedily with FlexAttention in inference mode (α = 1)\n" +
			"and prints the answer. A published LLaVA-1.5 folder (no FlexAttention settings) answers as LLaVA does,\n" +
			"from the LR view.",
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "image", Usage: "image `FILE`; without it the question is text-only"},
			&cli.StringFlag{Name: "question", Required: true, Usage: "the question `TEXT`"},
			&cli.IntFlag{Name: "max-new-tokens", Value: 64, Usage: "longest answer, in tokens"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object: the model, step, image, question, answer and generated token ids"},
		),
		Action: func(cx *cli.Context) error {
			q, err := query(cx.String("image"), cx.String("question"))
			if err != nil {
				return err
			}
			tr, path, err := loadTrained(cx)
			if err != nil {
				return err
			}
			ids, err := tr.Generate([]inference.Query{q}, cx.Int("max-new-tokens"))
			if err != nil {
				return fmt.Errorf("predict with %s: %w", path, err)
			}
			answer := tr.DecodeAnswer(ids[0])
			if cx.Bool("json") {
				return json.NewEncoder(cx.App.Writer).Encode(predictOutput{Model: path, Step: tr.Step,
					Image: cx.String("image"), Question: q.Question, Answer: answer, Tokens: ids[0]})
			}
			_, err = fmt.Fprintln(cx.App.Writer, answer)
			return err
		},
	}
}

// predictMain runs `flextrain predict` with args, writing to w.
func predictMain(args []string, w io.Writer) error { return runCommand(predictCommand(), args, w) }

// predictOutput is the object predict --json prints.
type predictOutput struct {
	Model    string `json:"model"`
	Step     int    `json:"step"` // 0 for a model folder
	Image    string `json:"image,omitempty"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
	Tokens   []int  `json:"tokens"` // the ids generated, the end-of-sequence id last when it came
}

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

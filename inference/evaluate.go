package inference

import (
	"context"
	"fmt"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"

	"github.com/flextrain/flextrain/data"
)

// EvaluateFile evaluates the trained model on every record of the data file path, whose images lie under
// imageFolder ("" for the image_folder it was trained with), per record kind when the records have one.
func (tr *Trained) EvaluateFile(ctx context.Context, path, imageFolder string) (eval.Report, error) {
	if imageFolder == "" {
		imageFolder = tr.Config.ImageFolder
	}
	kinds, err := eval.RecordKinds(path)
	if err != nil {
		return eval.Report{}, err
	}
	alpha, err := config.EvalAlpha(tr.Config.Flex.View)
	if err != nil {
		return eval.Report{}, err
	}
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, path, imageFolder))
	if err != nil {
		return eval.Report{}, fmt.Errorf("inference: evaluate %s: %w", path, err)
	}
	defer l.Close()
	return eval.Evaluate(ctx, tr.Weights, l, tr.Tokenizer.EOS(), kinds, alpha)
}

// Package demo is `flextrain demo`: a vision tower, a base model and FlexAttention trained in turn on
// generated fine-detail questions (stages 0, 1 and 2, each reused when a later run finds it finished), then
// both models scored on the held-out test split, by question kind.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"
	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/recipes/pretrain"
	"github.com/flextrain/flextrain/train"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data/synth"
)

// ErrConfig reports demo configurations that cannot run as the two stages of Run.
var ErrConfig = errors.New("demo: bad configuration")

// Options name the stages of Run and where it reports.
type Options struct {
	// Vision, when set, is stage 0: PretrainVision of the base model's tower, whose output Base starts from
	// (Base's model_name_or_path is its output_dir/model).
	Vision     *config.Config
	Base, Flex config.Config // stage 1 (the base model) and stage 2 (FlexAttention), loaded and validated
	Out        io.Writer     // training progress and the final table
}

// Result is what Run measured: the test-split evaluation of both models and the time of each part.
type Result struct {
	Base, Flex         eval.Report
	TestPath           string
	VisionTime         time.Duration // stage 0, zero when its weights were reused or there is no stage 0
	BaseTime, FlexTime time.Duration // training, zero when a finished checkpoint was reused
	EvalTime           time.Duration
}

// Run runs the built-in demonstration: stage 1 trains the base model (opts.Base, usually the LR view and
// everything trainable) unless its output_dir already holds its final checkpoint; its weights, without the
// k/v_proj_hd copies, are written to stage 2's model_name_or_path, so that stage 2 starts from them with
// k/v_proj_hd copied from the trained k/v_proj (docs/DESIGN.md §7); stage 2 (opts.Flex) trains FlexAttention,
// again unless finished. Both models are then evaluated on the test split of stage 2's synth:// data_path
// (or its eval_data_path): the base model with the LR view (α = 0, which is plain attention), the
// FlexAttention model with α = 1, exact match per record kind. Both configurations need max_steps.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := check(opts); err != nil {
		return Result{}, err
	}
	var res Result
	var err error
	trained := false
	if opts.Vision != nil {
		if res.VisionTime, err = runVision(ctx, *opts.Vision, opts.Out); err != nil {
			return res, err
		}
	}
	if res.BaseTime, trained, err = runStage(ctx, opts.Base, opts.Out, "stage 1: base model"); err != nil {
		return res, err
	}
	if _, err := os.Stat(filepath.Join(opts.Flex.ModelNameOrPath, "model.safetensors")); trained || err != nil {
		if err := exportBase(opts.Base, opts.Flex.ModelNameOrPath); err != nil {
			return res, err
		}
	}
	if res.FlexTime, _, err = runStage(ctx, opts.Flex, opts.Out, "stage 2: FlexAttention"); err != nil {
		return res, err
	}
	start := time.Now()
	if err := res.evaluate(ctx, opts); err != nil {
		return res, err
	}
	res.EvalTime = time.Since(start)
	return res, nil
}

// check refuses configurations that Run cannot chain.
func check(opts Options) error {
	base, flex := opts.Base, opts.Flex
	var errs []error
	for _, c := range []struct {
		stage string
		cfg   config.Config
	}{{"stage 1", base}, {"stage 2", flex}} {
		if c.cfg.MaxSteps <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s: max_steps must be set (it tells a finished stage)", ErrConfig, c.stage))
		}
	}
	switch {
	case opts.Vision == nil && base.ModelNameOrPath != "":
		errs = append(errs, fmt.Errorf("%w: stage 1: model_name_or_path must be empty (the base model trains from scratch)", ErrConfig))
	case opts.Vision != nil && filepath.Clean(base.ModelNameOrPath) != filepath.Join(opts.Vision.OutputDir, pretrain.ModelDir):
		errs = append(errs, fmt.Errorf("%w: stage 1: model_name_or_path must be stage 0's %s", ErrConfig, filepath.Join(opts.Vision.OutputDir, pretrain.ModelDir)))
	case opts.Vision != nil && opts.Vision.MaxSteps <= 0:
		errs = append(errs, fmt.Errorf("%w: stage 0: max_steps must be set", ErrConfig))
	case opts.Vision != nil && !sameArch(*opts.Vision, base):
		errs = append(errs, fmt.Errorf("%w: stage 0's and stage 1's model: sections differ", ErrConfig))
	}
	if flex.ModelNameOrPath == "" {
		errs = append(errs, fmt.Errorf("%w: stage 2: model_name_or_path must name the folder for stage 1's weights", ErrConfig))
	}
	if filepath.Clean(base.OutputDir) == filepath.Clean(flex.OutputDir) {
		errs = append(errs, fmt.Errorf("%w: the two stages share output_dir %s", ErrConfig, base.OutputDir))
	}
	if base.Model().Validate() == nil && flex.Model().Validate() == nil && !sameArch(base, flex) {
		errs = append(errs, fmt.Errorf("%w: the two stages' model: sections differ", ErrConfig))
	}
	return errors.Join(errs...)
}

func sameArch(a, b config.Config) bool { return a.Arch == b.Arch && a.Flex.NSA == b.Flex.NSA }

// runStage trains cfg unless its output_dir holds a checkpoint of its last step; it returns the training
// time and whether it trained.
func runStage(ctx context.Context, cfg config.Config, out io.Writer, name string) (time.Duration, bool, error) {
	e, err := checkpoints.Latest(cfg.OutputDir)
	if err == nil && e.Step >= cfg.MaxSteps {
		fmt.Fprintf(out, "%s: reusing %s\n", name, e.Path)
		return 0, false, nil
	}
	fmt.Fprintf(out, "%s: training into %s\n", name, cfg.OutputDir)
	start := time.Now()
	// A stage stopped before its first checkpoint starts over; one with a checkpoint resumes from it.
	opts := train.RunOptions{Out: out, Overwrite: errors.Is(err, checkpoints.ErrNotFound)}
	if _, err := train.Run(ctx, cfg, opts); err != nil {
		return 0, false, fmt.Errorf("demo: %s: %w", name, err)
	}
	return time.Since(start), true, nil
}

// runVision pretrains the base model's vision tower unless its weights are already written (they are
// written last, so their presence means a finished stage 0); it returns the training time.
func runVision(ctx context.Context, cfg config.Config, out io.Writer) (time.Duration, error) {
	dir := filepath.Join(cfg.OutputDir, pretrain.ModelDir)
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		fmt.Fprintf(out, "stage 0: vision tower: reusing %s\n", dir)
		return 0, nil
	}
	fmt.Fprintf(out, "stage 0: vision tower: training into %s\n", cfg.OutputDir)
	start := time.Now()
	if _, err := pretrain.Run(ctx, cfg, out); err != nil {
		return 0, fmt.Errorf("demo: stage 0: %w", err)
	}
	return time.Since(start), nil
}

// exportBase writes the weights of stage 1's last checkpoint into dir/model.safetensors (writeBaseWeights).
func exportBase(base config.Config, dir string) error {
	e, err := checkpoints.Latest(base.OutputDir)
	if err != nil {
		return fmt.Errorf("demo: stage 1 checkpoint: %w", err)
	}
	tr, err := inference.Load(e.Path, inference.Options{})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	meta := map[string]string{"format": "pt", "flextrain_step": fmt.Sprint(tr.Step), "flextrain_source": e.Path}
	return inference.WriteBaseModel(tr.Weights.Tensors(), dir, meta)
}

// evaluate scores both stages' last checkpoints on the test split.
func (r *Result) evaluate(ctx context.Context, opts Options) error {
	var err error
	var images string
	if r.TestPath, images, err = testSplit(opts.Flex); err != nil {
		return err
	}
	if r.Base, err = evaluateStage(ctx, opts.Base, r.TestPath, images, "lr"); err != nil {
		return err
	}
	r.Flex, err = evaluateStage(ctx, opts.Flex, r.TestPath, images, "flex")
	return err
}

// testSplit is the held-out file the demo scores and the folder of its images: the test split of stage 2's
// synth:// data_path, else its eval_data_path and image_folder. Both models read these images: stage 1's
// own data may be another set whose image names are the same.
func testSplit(cfg config.Config) (path, images string, err error) {
	if !synth.IsURI(cfg.DataPath) {
		if cfg.EvalDataPath == "" {
			return "", "", fmt.Errorf("%w: stage 2 has neither a synth:// data_path nor an eval_data_path to test on", ErrConfig)
		}
		return cfg.EvalDataPath, cfg.ImageFolder, nil
	}
	o, err := synth.ParseURI(cfg.DataPath)
	if err != nil {
		return "", "", fmt.Errorf("demo: data_path: %w", err)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(cfg.OutputDir, "data")
	}
	m, err := synth.Generate(o) // reuses the dataset the stages trained on
	if err != nil {
		return "", "", fmt.Errorf("demo: data_path: %w", err)
	}
	return m.Test, m.ImageFolder, nil
}

// evaluateStage loads the last checkpoint of cfg's run and evaluates it on path, whose images lie in images,
// on view ("lr": α = 0, "flex": α = 1) whatever view the stage trained on.
func evaluateStage(ctx context.Context, cfg config.Config, path, images, view string) (eval.Report, error) {
	e, err := checkpoints.Latest(cfg.OutputDir)
	if err != nil {
		return eval.Report{}, fmt.Errorf("demo: %w", err)
	}
	tr, err := inference.Load(e.Path, inference.Options{})
	if err != nil {
		return eval.Report{}, fmt.Errorf("demo: %w", err)
	}
	tr.Config.Flex.View = view
	r, err := tr.EvaluateFile(ctx, path, images)
	if err != nil {
		return eval.Report{}, fmt.Errorf("demo: %w", err)
	}
	return r, nil
}

// demoKinds are the columns of the demo table, in order; other kinds follow sorted.
var demoKinds = []string{"small", "large", "text"}

// WriteTable prints the exact-match accuracy of both models per kind, with the counts scored.
func (r Result) WriteTable(out io.Writer) error {
	kinds := append([]string(nil), demoKinds...)
	for _, k := range r.Flex.Kinds() {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "exact match on %s\t%s\tall\t\n", filepath.Base(r.TestPath), strings.Join(kinds, "\t"))
	for _, row := range []struct {
		name string
		rep  eval.Report
	}{{"base model (LR view)", r.Base}, {"FlexAttention (α = 1)", r.Flex}} {
		fmt.Fprintf(tw, "%s\t", row.name)
		for _, k := range kinds {
			m := row.rep.ByKind[k]
			fmt.Fprintf(tw, "%s\t", percent(m.Correct, m.Answers))
		}
		fmt.Fprintf(tw, "%s\t\n", percent(row.rep.Correct, row.rep.Answers))
	}
	return tw.Flush()
}

// percent formats correct/answers as "45.0% (90/200)", or "-" without answers.
func percent(correct, answers int) string {
	if answers == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% (%d/%d)", 100*float64(correct)/float64(answers), correct, answers)
}

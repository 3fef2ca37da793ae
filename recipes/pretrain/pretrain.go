// Package pretrain trains a from-scratch vision tower alone on the tags of its images (`flextrain
// pretrain-vision`): one linear head per tag key (colour, object, text, …) over the tower's pooled LR
// features, AdamW on the tower and the heads. It writes the whole model, trained tower included, as the
// model_name_or_path of a base model that freezes the tower, as LLaVA freezes its pretrained CLIP. It is a
// loop of its own rather than train.Run: its objective is the tags, not the conversations, and it keeps no
// checkpoint (a run of a few minutes, started over when interrupted).
package pretrain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/internal/feed"
	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
	"github.com/flextrain/flextrain/pretrained"
)

// ModelDir is where Run writes its weights, under output_dir: a base model's model_name_or_path.
const ModelDir = "model"

// ErrInterrupted is returned when the context was cancelled before the last step.
var ErrInterrupted = errors.New("pretrain: interrupted")

// Summary is the end of a tag pretraining run: the last logging window's mean loss and, per tag key, the
// share of images whose value the heads predicted from the tower's mean-pooled features (what a decoder
// that averages the image tokens can read) and from the max-pooled ones.
type Summary struct {
	Steps       int                `json:"global_step"`
	Loss        float64            `json:"train_loss"`
	Accuracy    map[string]float64 `json:"tag_accuracy"`     // mean-pooled
	MaxAccuracy map[string]float64 `json:"tag_accuracy_max"` // max-pooled
	Skipped     int                `json:"skipped_samples"`  // samples without an image or without tags
	Runtime     float64            `json:"train_runtime"`
	Model       string             `json:"model"` // the written weights' folder
}

// pretrainer is one run: the model, the tower's trainable weights and the heads, the optimizer, the data.
type pretrainer struct {
	cfg     config.Config
	out     io.Writer
	weights *model.Weights
	params  []optim.Param[float32]
	opt     *optim.AdamW[float32]
	data    *data.Loader
	mem     *ops.Arena
	step    int
	warmup  int
}

// Run trains the vision tower of cfg's model alone on the tags of data_path's image records: max_steps
// AdamW steps over per_device_train_batch_size samples with learning_rate and its schedule, the tower's
// trainable weights and a linear head per tag key (model.BuildTagger). It prints a line every
// logging_steps to out and writes every weight of the model to output_dir/model/model.safetensors.
func Run(ctx context.Context, cfg config.Config, out io.Writer) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	cfg, err := config.ResolveData(cfg)
	if err != nil {
		return Summary{}, err
	}
	fmt.Fprintf(out, "%s\n", cfg.Table())
	p := &pretrainer{cfg: cfg, out: out, mem: ops.NewArena(), warmup: optim.WarmupSteps(cfg.WarmupRatio, cfg.WarmupSteps, cfg.MaxSteps)}
	defer p.close()
	if err := p.open(); err != nil {
		return Summary{}, err
	}
	tg, err := p.bind()
	if err != nil {
		return Summary{}, err
	}
	return p.run(ctx, tg)
}

// open loads the tokenizer, the weights and the data, and saves the configuration in output_dir.
func (p *pretrainer) open() error {
	tok, err := tokenizer.Load(p.cfg.TokenizerPath)
	if err != nil {
		return fmt.Errorf("pretrain: tokenizer_path: %w", err)
	}
	if err := p.cfg.CheckMemory(); err != nil {
		return err
	}
	if p.weights, _, err = pretrained.Weights(p.cfg.ModelNameOrPath, p.cfg.Model(), tensor.Float32, uint64(p.cfg.Seed),
		pretrained.Options{VisionTower: p.cfg.LLaVA.VisionTower}); err != nil {
		return fmt.Errorf("pretrain: model_name_or_path: %w", err)
	}
	if p.data, err = data.Open(config.DataOptions(p.cfg, tok)); err != nil {
		return fmt.Errorf("pretrain: data: %w", err)
	}
	y, err := p.cfg.YAML()
	if err != nil {
		return err
	}
	return checkpoints.Store{Dir: p.cfg.OutputDir}.WriteFile("config.yaml", y)
}

func (p *pretrainer) close() {
	if p.data != nil {
		p.data.Close()
	}
}

// bind makes the heads of the data's tag classes and binds them and the tower's trainable weights, in name
// order, to AdamW.
func (p *pretrainer) bind() (*tagHeads, error) {
	classes, err := data.TagClasses(p.cfg.DataPath)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("pretrain: no image record of %s has tags", p.cfg.DataPath)
	}
	tg := newTagHeads(classes, p.cfg.Arch.Vision.HiddenSize, uint64(p.cfg.Seed))
	for _, name := range p.weights.Names() {
		if strings.HasPrefix(name, model.VisionPrefix) && p.cfg.Trainable(name) {
			p.params = append(p.params, param(name, p.weights.Get(name)))
		}
	}
	if len(p.params) == 0 {
		return nil, fmt.Errorf("pretrain: the trainable patterns %v select no weight of the vision tower", p.cfg.TrainablePatterns)
	}
	p.params = append(p.params, param(model.TagHeadName, tg.head))
	c := p.cfg
	p.opt = optim.NewAdamW[float32](c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon, c.WeightDecay)
	return tg, nil
}

// param binds a float32 tensor to the optimizer.
func param(name string, d *tensor.Dense) optim.Param[float32] {
	v := d.Data().([]float32)
	return optim.Param[float32]{Name: name, Shape: d.Shape().Clone(), Value: v, Grad: make([]float32, len(v))}
}

// run takes the steps, logging every logging_steps, and writes the weights.
func (p *pretrainer) run(ctx context.Context, tg *tagHeads) (Summary, error) {
	start := time.Now()
	var sum Summary
	var win tagWindow
	for p.step < p.cfg.MaxSteps {
		if ctx.Err() != nil {
			return sum, ErrInterrupted
		}
		b, err := p.data.Next(ctx)
		if err != nil {
			return sum, fmt.Errorf("pretrain: data: %w", err)
		}
		mb, targets, skipped := tg.batch(b, p.mem)
		sum.Skipped += skipped
		if mb == nil {
			continue
		}
		loss, correct, err := p.tagStep(mb, tg, targets)
		if err != nil {
			return sum, err
		}
		p.step++
		win.add(loss, correct, targets, tg.keys)
		if p.step%max(1, p.cfg.LoggingSteps) == 0 || p.step == p.cfg.MaxSteps {
			sum.Loss, sum.MaxAccuracy, sum.Accuracy = win.mean(tg.keys)
			fmt.Fprintf(p.out, "step %d/%d | loss %.4f | accuracy (max-pooled / mean-pooled) %s | %.0f ms/step\n", p.step, p.cfg.MaxSteps,
				sum.Loss, formatAccuracy(tg.keys, sum.MaxAccuracy, sum.Accuracy), float64(time.Since(start).Milliseconds())/float64(p.step))
			win = tagWindow{}
		}
	}
	sum.Steps, sum.Runtime = p.step, math.Round(time.Since(start).Seconds()*1000)/1000
	sum.Model = filepath.Join(p.cfg.OutputDir, ModelDir)
	meta := map[string]string{"format": "pt", "flextrain_step": fmt.Sprint(p.step), "flextrain_source": "pretrain-vision"}
	if err := inference.WriteBaseModel(p.weights.Tensors(), sum.Model, meta); err != nil {
		return sum, err
	}
	fmt.Fprintf(p.out, "vision tower written to %s\n", sum.Model)
	return sum, nil
}

// tagStep runs the tag objective on one batch and takes an AdamW step; it returns the loss and, per pooling
// and key, the images whose value the heads predicted.
func (p *pretrainer) tagStep(mb *model.Batch[float32], tg *tagHeads, targets [][]int) (float64, [2][]int, error) {
	g, err := model.BuildTagger(p.weights, mb, model.Tagging{Head: tg.head, Sizes: tg.sizes, Targets: targets},
		model.Options{Trainable: p.cfg.Trainable, Arena: p.mem})
	if err != nil {
		return 0, [2][]int{}, fmt.Errorf("pretrain: %w", err)
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, [2][]int{}, fmt.Errorf("pretrain: %w", err)
	}
	grads := g.Grads()
	for i := range p.params {
		if d, ok := grads[p.params[i].Name]; ok {
			copy(p.params[i].Grad, d.Data().([]float32))
		} else {
			clear(p.params[i].Grad)
		}
	}
	correct := countCorrect(tg, g.Logits().Data().([]float32), targets)
	if _, err := optim.ClipGradNorm(p.params, p.cfg.MaxGradNorm); err != nil {
		return 0, [2][]int{}, fmt.Errorf("pretrain: step %d: %w", p.step+1, err)
	}
	lr, err := optim.LR(p.cfg.LRSchedulerType, p.cfg.LearningRate, p.step, p.warmup, p.cfg.MaxSteps)
	if err != nil {
		return 0, [2][]int{}, err
	}
	return g.Loss(), correct, p.opt.Update(p.params, lr)
}

// tagHeads are the tag keys, their classes and the heads' weight [2·ΣV, Cv] (model.Tagging), N(0, 0.02)
// from the seed.
type tagHeads struct {
	keys    []string
	classes [][]string
	sizes   []int
	head    *tensor.Dense
}

func newTagHeads(classes map[string][]string, width int, seed uint64) *tagHeads {
	tg := &tagHeads{keys: slices.Sorted(maps.Keys(classes))}
	rows := 0
	for _, k := range tg.keys {
		tg.classes, tg.sizes = append(tg.classes, classes[k]), append(tg.sizes, len(classes[k]))
		rows += len(classes[k])
	}
	rng := rand.New(rand.NewPCG(seed, 0x746167686561640a)) // "taghead"
	w := make([]float32, 2*rows*width)
	for i := range w {
		w[i] = float32(0.02 * rng.NormFloat64())
	}
	tg.head = tensor.New(tensor.WithShape(2*rows, width), tensor.WithBacking(w))
	return tg
}

// batch keeps the samples of b with an image and tags, as a model batch, and their targets per key
// (IgnoreIndex where a sample lacks the key or has a value the classes do not list); it also returns how
// many samples it left out. A batch with no such sample gives nil.
func (tg *tagHeads) batch(b *data.Batch, mem *ops.Arena) (*model.Batch[float32], [][]int, int) {
	keep := &data.Batch{}
	targets := make([][]int, len(tg.keys))
	for i := range b.IDs {
		if b.LRPixels[i] == nil || len(b.Tags[i]) == 0 {
			continue
		}
		keep.IDs, keep.LRPixels, keep.HRPixels = append(keep.IDs, b.IDs[i]), append(keep.LRPixels, b.LRPixels[i]), append(keep.HRPixels, b.HRPixels[i])
		keep.OriSizes = append(keep.OriSizes, b.OriSizes[i])
		keep.InputIDs, keep.AttentionMask, keep.Labels = append(keep.InputIDs, nil), append(keep.AttentionMask, nil), append(keep.Labels, nil)
		for h, k := range tg.keys {
			c := llava.IgnoreIndex
			if v, ok := b.Tags[i][k]; ok {
				if j := slices.Index(tg.classes[h], v); j >= 0 {
					c = j
				}
			}
			targets[h] = append(targets[h], c)
		}
	}
	if keep.Len() == 0 {
		return nil, nil, b.Len()
	}
	return feed.Batch(keep), targets, b.Len() - keep.Len()
}

// countCorrect counts, per pooling (maximum, mean) and key, the images whose highest-scoring class is their
// target.
func countCorrect(tg *tagHeads, logits []float32, targets [][]int) [2][]int {
	var out [2][]int
	for pool := range out {
		out[pool] = make([]int, len(tg.keys))
		for h := range tg.keys {
			for k, c := range targets[h] {
				row := model.TagLogits(logits, len(targets[h]), tg.sizes, pool, k, h)
				if c != llava.IgnoreIndex && slices.Index(row, slices.Max(row)) == c {
					out[pool][h]++
				}
			}
		}
	}
	return out
}

// tagWindow accumulates losses and accuracies between two log lines.
type tagWindow struct {
	loss    float64
	steps   int
	correct [2][]int
	seen    []int
}

func (w *tagWindow) add(loss float64, correct [2][]int, targets [][]int, keys []string) {
	if w.seen == nil {
		w.correct, w.seen = [2][]int{make([]int, len(keys)), make([]int, len(keys))}, make([]int, len(keys))
	}
	w.loss, w.steps = w.loss+loss, w.steps+1
	for h := range keys {
		w.correct[0][h] += correct[0][h]
		w.correct[1][h] += correct[1][h]
		for _, c := range targets[h] {
			if c != llava.IgnoreIndex {
				w.seen[h]++
			}
		}
	}
}

// mean returns the window's mean loss and the max-pooled and mean-pooled accuracy per key.
func (w *tagWindow) mean(keys []string) (float64, map[string]float64, map[string]float64) {
	acc := [2]map[string]float64{{}, {}}
	for pool := range acc {
		for h, k := range keys {
			acc[pool][k] = math.Round(1e4*float64(w.correct[pool][h])/float64(max(1, w.seen[h]))) / 1e4
		}
	}
	return w.loss / float64(max(1, w.steps)), acc[0], acc[1]
}

func formatAccuracy(keys []string, max, mean map[string]float64) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.3f/%.3f", k, max[k], mean[k])
	}
	return strings.Join(parts, ", ")
}

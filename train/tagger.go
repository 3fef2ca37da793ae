package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/internal/feed"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// VisionModelDir is where PretrainVision writes its weights, under output_dir: a base model's
// model_name_or_path.
const VisionModelDir = "model"

// VisionSummary is the end of a tag pretraining run: the last logging window's mean loss and, per tag key,
// the share of images whose value the heads predicted from the tower's mean-pooled features (what a decoder
// that averages the image tokens can read) and from the max-pooled ones.
type VisionSummary struct {
	Steps       int                `json:"global_step"`
	Loss        float64            `json:"train_loss"`
	Accuracy    map[string]float64 `json:"tag_accuracy"`     // mean-pooled
	MaxAccuracy map[string]float64 `json:"tag_accuracy_max"` // max-pooled
	Skipped     int                `json:"skipped_samples"`  // samples without an image or without tags
	Runtime     float64            `json:"train_runtime"`
	Model       string             `json:"model"` // the written weights' folder
}

// PretrainVision trains the vision tower of cfg's model alone on the tags of data_path's image records
// (`flextrain pretrain-vision`): max_steps AdamW steps over per_device_train_batch_size samples with
// learning_rate and its schedule, the tower's trainable weights and a linear head per tag key
// (model.BuildTagger). It writes every weight of the model, the trained tower among them, to
// output_dir/model/model.safetensors: the model_name_or_path of a base model that freezes the tower, as LLaVA
// freezes its pretrained CLIP. The run is short and keeps no checkpoint: interrupted, it starts over.
func PretrainVision(ctx context.Context, cfg config.Config, opts RunOptions) (VisionSummary, error) {
	if err := cfg.Validate(); err != nil {
		return VisionSummary{}, err
	}
	cfg, err := config.ResolveData(cfg)
	if err != nil {
		return VisionSummary{}, err
	}
	t := &trainer[float32]{cfg: cfg, opts: opts, mem: ops.NewArena(), log: newLogger(cfg, opts)}
	defer t.close()
	t.log.printf("%s\n", t.cfg.Table())
	for _, s := range []func() error{t.loadTokenizer, t.loadWeights, t.openData, t.writeConfig} {
		if err := s(); err != nil {
			return VisionSummary{}, err
		}
	}
	classes, err := data.TagClasses(cfg.DataPath)
	if err != nil {
		return VisionSummary{}, fmt.Errorf("train: pretrain-vision: %w", err)
	}
	if len(classes) == 0 {
		return VisionSummary{}, fmt.Errorf("train: pretrain-vision: no image record of %s has tags", cfg.DataPath)
	}
	tg := newTagHeads(classes, cfg.Arch.Vision.HiddenSize, uint64(cfg.Seed))
	t.params = append(t.towerParams(), optim.Param[float32]{Name: model.TagHeadName, Shape: tg.head.Shape().Clone(),
		Value: tg.head.Data().([]float32), Grad: make([]float32, tg.head.Len())})
	if len(t.params) == 1 {
		return VisionSummary{}, fmt.Errorf("train: pretrain-vision: the trainable patterns %v select no weight of the vision tower", cfg.TrainablePatterns)
	}
	t.opt = optim.NewAdamW[float32](cfg.AdamBeta1, cfg.AdamBeta2, cfg.AdamEpsilon, cfg.WeightDecay)
	t.total, t.warmup = cfg.MaxSteps, optim.WarmupSteps(cfg.WarmupRatio, cfg.WarmupSteps, cfg.MaxSteps)
	return t.pretrainVision(ctx, tg)
}

// towerParams binds the trainable weights of the vision tower, in name order.
func (t *trainer[T]) towerParams() []optim.Param[T] {
	var ps []optim.Param[T]
	for _, name := range t.weights.Names() {
		if strings.HasPrefix(name, model.VisionPrefix) && t.cfg.Trainable(name) {
			d := t.weights.Get(name)
			v := d.Data().([]T)
			ps = append(ps, optim.Param[T]{Name: name, Shape: d.Shape().Clone(), Value: v, Grad: make([]T, len(v))})
		}
	}
	return ps
}

func (t *trainer[T]) pretrainVision(ctx context.Context, tg *tagHeads) (VisionSummary, error) {
	start := time.Now()
	var sum VisionSummary
	var win tagWindow
	for t.state.Step < t.total {
		if ctx.Err() != nil {
			return sum, ErrInterrupted
		}
		b, err := t.source.Next(ctx)
		if err != nil {
			return sum, fmt.Errorf("train: data: %w", err)
		}
		mb, targets, skipped := tg.batch(b, t.mem)
		sum.Skipped += skipped
		if mb == nil {
			continue
		}
		loss, correct, err := t.tagStep(mb, tg, targets)
		if err != nil {
			return sum, err
		}
		t.state.Step++
		win.add(loss, correct, targets, tg.keys)
		if t.every(t.cfg.LoggingSteps) || t.state.Step == t.total {
			sum.Loss, sum.MaxAccuracy, sum.Accuracy = win.mean(tg.keys)
			t.log.printf("step %d/%d | loss %.4f | accuracy (max-pooled / mean-pooled) %s | %.0f ms/step\n", t.state.Step, t.total,
				sum.Loss, formatAccuracy(tg.keys, sum.MaxAccuracy, sum.Accuracy), float64(time.Since(start).Milliseconds())/float64(t.state.Step))
			win = tagWindow{}
		}
	}
	sum.Steps, sum.Runtime = t.state.Step, round(time.Since(start).Seconds(), 3)
	sum.Model = filepath.Join(t.cfg.OutputDir, VisionModelDir)
	meta := map[string]string{"format": "pt", "flextrain_step": fmt.Sprint(t.state.Step), "flextrain_source": "pretrain-vision"}
	if err := writeBaseWeights(t.weights.Tensors(), sum.Model, meta); err != nil {
		return sum, err
	}
	t.log.printf("vision tower written to %s\n", sum.Model)
	return sum, nil
}

// tagStep runs the tag objective on one batch and takes an AdamW step; it returns the loss and, per pooling
// and key, the images whose value the heads predicted.
func (t *trainer[T]) tagStep(mb *model.Batch, tg *tagHeads, targets [][]int) (float64, [2][]int, error) {
	g, err := model.BuildTagger(t.weights, mb, model.Tagging{Head: tg.head, Sizes: tg.sizes, Targets: targets},
		model.Options{Trainable: func(name string) bool { return t.cfg.Trainable(name) }, Arena: t.mem})
	if err != nil {
		return 0, [2][]int{}, fmt.Errorf("train: pretrain-vision: %w", err)
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, [2][]int{}, fmt.Errorf("train: pretrain-vision: %w", err)
	}
	t.takeGrads(g.Grads())
	correct := countCorrect(tg, g.Logits().Data().([]T), targets)
	if _, err := optim.ClipGradNorm(t.params, t.cfg.MaxGradNorm); err != nil {
		return 0, [2][]int{}, fmt.Errorf("train: pretrain-vision: step %d: %w", t.state.Step+1, err)
	}
	lr, err := optim.LR(t.cfg.LRSchedulerType, t.cfg.LearningRate, t.state.Step, t.warmup, t.total)
	if err != nil {
		return 0, [2][]int{}, err
	}
	return g.Loss(), correct, t.opt.Update(t.params, lr)
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
	tg := &tagHeads{keys: sortedNames(classes)}
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
func (tg *tagHeads) batch(b *data.Batch, mem *ops.Arena) (*model.Batch, [][]int, int) {
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
			c := model.IgnoreIndex
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
	return feed.Batch(keep, mem), targets, b.Len() - keep.Len()
}

// countCorrect counts, per pooling (maximum, mean) and key, the images whose highest-scoring class is their
// target.
func countCorrect[T optim.Float](tg *tagHeads, logits []T, targets [][]int) [2][]int {
	var out [2][]int
	for pool := range out {
		out[pool] = make([]int, len(tg.keys))
		for h := range tg.keys {
			for k, c := range targets[h] {
				row := model.TagLogits(logits, len(targets[h]), tg.sizes, pool, k, h)
				if c != model.IgnoreIndex && slices.Index(row, slices.Max(row)) == c {
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
			if c != model.IgnoreIndex {
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
			acc[pool][k] = round(float64(w.correct[pool][h])/float64(max(1, w.seen[h])), 4)
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

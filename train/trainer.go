package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/internal/feed"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/featcache"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// trainer holds everything one run needs, in parameter type T.
type trainer[T optim.Float] struct {
	cfg      config.Config
	opts     RunOptions
	tok      *tokenizer.Tokenizer
	weights  *model.Weights
	params   []optim.Param[T]
	opt      *optim.AdamW[T]
	acc      optim.Accumulator[T]
	tokens   int // supervised tokens of the step's micro-batches so far
	train    *data.Loader
	source   batchSource      // where steps read batches: the training loader, or a benchmark's fixed batch
	view     model.View       // what the decoder sees of images (benchmarks and baselines)
	dense    bool             // FlexAttention the dense way (a benchmark baseline)
	lastN    int              // the assembled length of the last batch
	features *featcache.Cache // the frozen vision tower's features by image; nil: off
	front    string           // model.FrontFingerprint: with features, the whole frozen front is cached; "": not
	mem      *ops.Arena       // the buffers of a step's graph, reused by the next step
	state    State
	resumed  string          // the checkpoint the run resumed from; "": a fresh run
	saved    int             // the step of the newest checkpoint of this run (resumed or saved)
	data     DataFingerprint // of data_path, stored in each checkpoint
	total    int             // optimizer steps of the whole run
	warmup   int
	log      *logger
	samples  int // samples trained on in this process
}

// setup prepares a run: tokenizer, weights, data, optimizer, the resumed state, and only then, once the
// run is accepted, output_dir (claimOutput) and the feature cache. A run refused for any reason (a bad
// file, config drift, a used output_dir) leaves output_dir as it found it. A cancelled ctx stops setup
// between its steps with ErrInterrupted.
func setup[T optim.Float](ctx context.Context, cfg config.Config, opts RunOptions) (*trainer[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := config.ResolveData(cfg)
	if err != nil {
		return nil, err
	}
	t := &trainer[T]{cfg: cfg, opts: opts, mem: ops.NewArena(), log: newLogger(cfg, opts)}
	t.log.printf("%s\n", t.cfg.Table())
	steps := []func() error{t.loadTokenizer, t.loadWeights, t.openData, t.bindParams, t.plan, t.resume, t.claimOutput, t.openFeatureCache}
	for _, s := range steps {
		err := ctx.Err()
		if err != nil {
			err = ErrInterrupted
		} else {
			err = s()
		}
		if err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

func (t *trainer[T]) close() {
	if t.train != nil {
		t.train.Close()
	}
	if t.log != nil {
		t.log.close()
	}
}

// writeConfig saves the effective configuration as output_dir/config.yaml, atomically: a full disk leaves
// the previous file or none, never a truncated one.
func (t *trainer[T]) writeConfig() error {
	y, err := t.cfg.YAML()
	if err != nil {
		return err
	}
	if err := t.store().WriteFile(configFile, y); err != nil {
		return fmt.Errorf("train: write config: %w", err)
	}
	return nil
}

func (t *trainer[T]) loadTokenizer() error {
	tok, err := tokenizer.Load(t.cfg.TokenizerPath)
	if err != nil {
		return fmt.Errorf("train: tokenizer_path: %w", err)
	}
	if v := t.cfg.Arch.Text.VocabSize; tok.VocabSize() > v {
		return fmt.Errorf("train: tokenizer %s has %d tokens but model.text.vocab_size is %d", t.cfg.TokenizerPath, tok.VocabSize(), v)
	}
	t.tok = tok
	return nil
}

// loadWeights reads model_name_or_path, or initialises the model from the seed when it is empty.
func (t *trainer[T]) loadWeights() error {
	mc, dt := t.cfg.Model(), dtypeOf[T]()
	if err := checkMemory(t.cfg, int(dt.Size())); err != nil {
		return err
	}
	if t.cfg.ModelNameOrPath == "" {
		t.weights = model.InitWeights(mc, dt, uint64(t.cfg.Seed))
		if t.weights == nil {
			return errors.New("train: cannot initialise the model: invalid configuration")
		}
		return nil
	}
	w, err := model.LoadWeights(t.cfg.ModelNameOrPath, mc, dt)
	if err != nil {
		return fmt.Errorf("train: model_name_or_path: %w", err)
	}
	t.weights = w
	return nil
}

// openFeatureCache prepares the vision feature cache of the feature_cache key. Its entries belong to these
// vision weights and this model configuration (the fingerprint), so a changed tower never reads stale ones.
func (t *trainer[T]) openFeatureCache() error {
	if t.cfg.FeatureCache == "off" {
		return nil
	}
	opts := featcache.Options{Fingerprint: model.VisionFingerprint(t.weights), MaxMemoryBytes: int64(t.cfg.FeatureCacheMB) << 20}
	if t.cfg.FeatureCache == "disk" {
		opts.Dir = filepath.Join(t.cfg.OutputDir, "feature-cache")
	}
	c, err := featcache.New(opts)
	if err != nil {
		return fmt.Errorf("train: feature cache: %w", err)
	}
	t.features, t.front = c, model.FrontFingerprint(t.weights, t.cfg.Trainable)
	return nil
}

func dtypeOf[T optim.Float]() tensor.Dtype {
	var z T
	if _, ok := any(z).(float64); ok {
		return tensor.Float64
	}
	return tensor.Float32
}

// dataOptions are the loader settings of the training split.
func (t *trainer[T]) dataOptions() data.Options {
	o := config.DataOptions(t.cfg, t.tok)
	o.Logger = t.log.slog
	return o
}

func (t *trainer[T]) openData() error {
	l, err := data.Open(t.dataOptions())
	if err != nil {
		return fmt.Errorf("train: data: %w", err)
	}
	t.train, t.source = l, l
	return t.fingerprintData()
}

// batchSource is what a step reads its micro-batches from.
type batchSource interface {
	Next(ctx context.Context) (*data.Batch, error)
}

// bindParams exposes the trainable weights to the optimizer, in name order.
func (t *trainer[T]) bindParams() error {
	for _, name := range t.weights.Names() {
		if !t.cfg.Trainable(name) {
			continue
		}
		d := t.weights.Get(name)
		v := d.Data().([]T)
		t.params = append(t.params, optim.Param[T]{Name: name, Shape: append([]int(nil), d.Shape()...), Value: v, Grad: make([]T, len(v))})
	}
	if len(t.params) == 0 {
		return fmt.Errorf("train: the trainable patterns %v (frozen %v) select no weight", t.cfg.TrainablePatterns, t.cfg.FrozenPatterns)
	}
	c := t.cfg
	t.opt = optim.NewAdamW[T](c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon, c.WeightDecay)
	return nil
}

// plan fixes the length of the run and of the warm-up.
func (t *trainer[T]) plan() error {
	c := t.cfg
	t.total = c.MaxSteps
	if t.total <= 0 && c.NumTrainEpochs*perEpochSteps(t.train.StepsPerEpoch(), c) <= config.MaxRunSteps {
		t.total = int(math.Ceil(c.NumTrainEpochs * perEpochSteps(t.train.StepsPerEpoch(), c)))
	}
	if c.MaxSteps <= 0 && c.NumTrainEpochs*perEpochSteps(t.train.StepsPerEpoch(), c) > config.MaxRunSteps {
		return fmt.Errorf("train: num_train_epochs %g of %d batches make more than %d optimizer steps; give fewer epochs or max_steps", c.NumTrainEpochs, t.train.StepsPerEpoch(), config.MaxRunSteps)
	}
	if t.total <= 0 {
		return fmt.Errorf("train: the run has no step: max_steps %d, num_train_epochs %g, %d batches per epoch", c.MaxSteps, c.NumTrainEpochs, t.train.StepsPerEpoch())
	}
	t.warmup = optim.WarmupSteps(c.WarmupRatio, c.WarmupSteps, t.total)
	t.state.Seed = c.Seed
	var err error
	t.view, err = model.ParseView(c.Flex.View) // validated: never an error here
	return err
}

// perEpochSteps is the optimizer steps of one epoch of batches.
func perEpochSteps(batches int, c config.Config) float64 {
	return float64(batches) / float64(c.GradientAccumulationSteps)
}

// alpha is docs/DESIGN.md §9's warm-up: min(1, step / (alpha_warmup_ratio · total)), 1 without warm-up.
func (t *trainer[T]) alpha() float64 {
	w := t.cfg.Flex.AlphaWarmupRatio * float64(t.total)
	if w <= 0 {
		return 1
	}
	return math.Min(1, float64(t.state.Step)/w)
}

// every reports whether the step just taken is a multiple of n (n ≤ 0: never).
func (t *trainer[T]) every(n int) bool { return n > 0 && t.state.Step%n == 0 }

// step takes one optimizer step over gradient_accumulation_steps micro-batches. Cancellation does not
// interrupt it: a step is finished once begun, so checkpoints fall on step boundaries.
func (t *trainer[T]) step(ctx context.Context) (stepResult, error) {
	ctx = context.WithoutCancel(ctx)
	start := time.Now()
	res := stepResult{alpha: t.alpha()}
	var lossSum float64
	for k := 0; k < t.cfg.GradientAccumulationSteps; k++ {
		loss, n, err := t.microBatch(ctx, res.alpha, &res)
		if err != nil {
			return res, err
		}
		if n > 0 { // a micro-batch with nothing supervised has no (finite) loss and adds no gradient
			lossSum += loss * float64(n)
		}
	}
	res.loss = lossSum / float64(max(1, t.tokens))
	if t.opts.Fault != nil {
		res.loss = t.opts.Fault(t.state.Step+1, res.loss)
	}
	t.samples += res.samples
	if t.train != nil {
		c := t.train.Cursor()
		// Position counts this rank's records of the training split, a batch at a time.
		t.state.Epoch = float64(c.Epoch) + float64(c.Position)/float64(max(1, t.train.StepsPerEpoch()*t.cfg.PerDeviceTrainBatchSize))
	}
	err := t.update(&res)
	res.elapsed = time.Since(start) // the whole step: the optimizer's update too
	return res, err
}

// microBatch runs forward and backward on the next batch and accumulates its gradients.
func (t *trainer[T]) microBatch(ctx context.Context, alpha float64, res *stepResult) (float64, int, error) {
	b, err := t.source.Next(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("train: data: %w", err)
	}
	g, err := model.Build(t.weights, feed.Batch(b, t.mem), model.Options{Mode: model.Train, Alpha: alpha,
		Trainable: t.cfg.Trainable, Step: t.state.Step, Seed: uint64(t.cfg.Seed), View: t.view, Dense: t.dense,
		Features: t.features, Front: t.front, Arena: t.mem})
	if err != nil {
		return 0, 0, fmt.Errorf("train: batch %v: %w", b.IDs, err)
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, 0, fmt.Errorf("train: batch %v: %w", b.IDs, err)
	}
	t.takeGrads(g.Grads())
	n := feed.Supervised(b.Labels)
	if err := t.accumulate(n); err != nil {
		return 0, 0, err
	}
	res.tokens += realTokens(g)
	res.samples += b.Len()
	res.hrSelectedFrac = g.SelectedFraction()
	res.featureHitRate = t.features.Stats().HitRate()
	_, t.lastN = g.Shape()
	return g.Loss(), n, nil
}

// accumulate adds a micro-batch's gradients, over n supervised tokens, to the step's. A step of one
// micro-batch keeps them as they are: they already are its token-weighted mean, which the accumulator would
// only round.
func (t *trainer[T]) accumulate(n int) error {
	t.tokens += n
	if t.cfg.GradientAccumulationSteps == 1 {
		return nil
	}
	return t.acc.Add(t.params, n)
}

// takeGrads copies a graph's gradients into the bound parameters; a parameter the loss did not reach (a
// weight of this batch's unused path, a tower layer after select_layer) gets zeros.
func (t *trainer[T]) takeGrads(grads map[string]*tensor.Dense) {
	ops.Parallel(len(t.params), func(i int) {
		p := &t.params[i]
		if d, ok := grads[p.Name]; ok {
			copy(p.Grad, d.Data().([]T))
		} else {
			clear(p.Grad)
		}
	})
}

// update finishes the accumulated gradient and applies AdamW, or skips a non-finite step without
// changing any weight or optimizer state.
func (t *trainer[T]) update(res *stepResult) error {
	tokens := t.tokens
	t.tokens = 0
	if tokens == 0 {
		t.acc.Reset()
		res.skipped = false
		return nil // nothing supervised in this step's batches: no update, nothing to learn from
	}
	if math.IsNaN(res.loss) || math.IsInf(res.loss, 0) {
		t.acc.Reset()
		res.skipped = true
		return nil
	}
	if t.cfg.GradientAccumulationSteps > 1 {
		if _, err := t.acc.Finish(t.params); err != nil {
			return err
		}
	}
	norm, err := optim.ClipGradNorm(t.params, t.cfg.MaxGradNorm)
	res.gradNorm = norm
	if errors.Is(err, optim.ErrNonFinite) {
		res.skipped = true
		return nil
	}
	if res.lr, err = optim.LR(t.cfg.LRSchedulerType, t.cfg.LearningRate, t.state.Step, t.warmup, t.total); err != nil {
		return err
	}
	t.state.Alpha, t.state.LearningRate = res.alpha, res.lr
	return t.opt.Update(t.params, res.lr)
}

// realTokens counts the assembled sequence rows that are not padding.
func realTokens(g *model.Graph) int {
	n := 0
	for _, l := range g.Lens() {
		n += l
	}
	return n
}

// sortedNames returns a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

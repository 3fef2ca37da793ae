package train

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/featcache"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
	"github.com/flextrain/flextrain/pretrained"
)

// trainer holds everything one run needs, in parameter type T.
type trainer[T optim.Float] struct {
	cfg     config.Config
	opts    RunOptions
	comm    dist.Comm // the ranks of the run; dist.Single alone
	tok     *tokenizer.Tokenizer
	weights *model.Weights
	params  []optim.Param[T] // the trainable weights, in name order, with their gradients
	opt     *optim.AdamW[T]
	acc     optim.Accumulator[T] // the step's gradient over its micro-batches
	dev     accelerator          // the GPU that runs the steps (device: cuda), or nil: the CPU
	train   *data.Loader
	source  batchSource   // where steps read batches: the training loader, or a benchmark's fixed batch
	graph   model.Options // how every step's graph is built, but for its α and step
	mem     *ops.Arena    // the buffers of a step's graph, reused by the next step
	state   State
	resumed string          // the checkpoint the run resumed from; "": a fresh run
	saved   int             // the step of the newest checkpoint of this run (resumed or saved)
	data    DataFingerprint // of data_path, stored in each checkpoint
	total   int             // optimizer steps of the whole run
	warmup  int
	log     *logger
	samples int // samples trained on in this process
}

// batchSource is what a step reads its micro-batches from.
type batchSource interface {
	Next(ctx context.Context) (*data.Batch, error)
}

// setup prepares a run: tokenizer, weights, data, optimizer, the resumed state, and only then, once the
// run is accepted, output_dir (claimOutput) and the feature cache. A run refused for any reason (a bad
// file, config drift, a used output_dir) leaves output_dir as it found it; so does a signal during setup
// (ErrInterrupted).
func setup[T optim.Float](ctx context.Context, cfg config.Config, opts RunOptions) (_ *trainer[T], err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg, err = config.ResolveData(cfg); err != nil {
		return nil, err
	}
	comm := opts.Comm
	if comm == nil {
		comm = dist.Single{}
	}
	if comm.Rank() != 0 { // rank 0 reports for the run
		opts.Out, opts.Logger = io.Discard, nil
	}
	t := &trainer[T]{cfg: cfg, opts: opts, comm: comm, mem: ops.NewArena(), log: newLogger(cfg, opts)}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	t.log.printf("%s\n", t.cfg.Table())
	if err := t.agree(t.prepare(), "setup"); err != nil {
		return nil, err
	}
	if err := t.agree(t.joinDevices(), "device group"); err != nil {
		return nil, err
	}
	if err := t.agree(t.resume(), "resume"); err != nil {
		return nil, err
	}
	// The long reads are done: a signal during them ends the run before it begins.
	if stop, err := t.stopTogether(ctx.Err() != nil); err != nil || stop {
		return nil, cmp.Or(err, ErrInterrupted)
	}
	if err := t.agree(t.claimOutput(), "claim output_dir"); err != nil {
		return nil, err
	}
	return t, t.agree(t.openFeatureCache(), "feature cache")
}

// prepare reads what the run starts from (tokenizer, weights, data), binds the trainable weights to the
// optimizer and plans the run; it touches nothing and talks to no other rank.
func (t *trainer[T]) prepare() error {
	if err := t.checkDevice(); err != nil {
		return err
	}
	if err := t.loadTokenizer(); err != nil {
		return err
	}
	if err := t.loadWeights(); err != nil {
		return err
	}
	if err := t.openData(); err != nil {
		return err
	}
	if err := t.bindParams(); err != nil {
		return err
	}
	if err := t.plan(); err != nil {
		return err
	}
	return t.openDevice()
}

func (t *trainer[T]) close() {
	if t.train != nil {
		t.train.Close()
	}
	if t.log != nil {
		t.log.close()
	}
	if t.dev != nil {
		t.dev.Close()
	}
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

// loadWeights reads model_name_or_path, or initialises the model from the seed when it is empty, after
// checking that its parameters fit the machine.
func (t *trainer[T]) loadWeights() error {
	dt := dtypeOf[T]()
	if err := t.cfg.CheckMemory(); err != nil {
		return err
	}
	frozen := func(name string) bool { return !t.cfg.Trainable(name) }
	w, ignored, err := pretrained.Weights(t.cfg.ModelNameOrPath, t.cfg.Model(), dt, uint64(t.cfg.Seed),
		pretrained.Options{VisionTower: t.cfg.LLaVA.VisionTower, Frozen: frozen, BF16: t.cfg.LLaVA.BF16})
	if err != nil {
		return fmt.Errorf("train: model_name_or_path: %w", err)
	}
	for _, ig := range ignored {
		t.log.info("not used", "tensor", ig.Name, "folder", ig.Folder, "why", ig.Reason)
	}
	if b := w.HalfBytes(); b > 0 {
		t.log.info("frozen matrices kept in 16 bits", "GiB", fmt.Sprintf("%.2f", float64(b)/(1<<30)))
	}
	t.weights = w
	return nil
}

func dtypeOf[T optim.Float]() tensor.Dtype {
	var z T
	if _, ok := any(z).(float64); ok {
		return tensor.Float64
	}
	return tensor.Float32
}

// openData opens the training split and takes the fingerprint of its file.
func (t *trainer[T]) openData() error {
	o := config.DataOptions(t.cfg, t.tok)
	o.Logger, o.Rank, o.WorldSize = t.log.slog, t.comm.Rank(), t.comm.Size()
	l, err := data.Open(o)
	if err != nil {
		return fmt.Errorf("train: data: %w", err)
	}
	t.train, t.source = l, l
	return t.fingerprintData()
}

// bindParams exposes the trainable weights to the optimizer, in name order. On a GPU the gradients live
// there: the host keeps none.
func (t *trainer[T]) bindParams() error {
	onHost := !t.cfg.OnGPU()
	for _, name := range t.weights.Names() {
		if !t.cfg.Trainable(name) {
			continue
		}
		w := t.weights.Get(name)
		v := w.Data().([]T)
		p := optim.Param[T]{Name: name, Shape: append([]int(nil), w.Shape()...), Value: v}
		if onHost {
			p.Grad = make([]T, len(v))
		}
		t.params = append(t.params, p)
	}
	if len(t.params) == 0 {
		return fmt.Errorf("train: the trainable patterns %v (frozen %v) select no weight", t.cfg.TrainablePatterns, t.cfg.FrozenPatterns)
	}
	c := t.cfg
	t.opt = optim.NewAdamW[T](c.AdamBeta1, c.AdamBeta2, c.AdamEpsilon, c.WeightDecay)
	return nil
}

// plan fixes the length of the run and of the warm-up, and how each step's graph is built.
func (t *trainer[T]) plan() error {
	c := t.cfg
	perEpoch := float64(t.train.StepsPerEpoch()) / float64(c.GradientAccumulationSteps)
	t.total = c.MaxSteps
	if t.total <= 0 && c.NumTrainEpochs*perEpoch > config.MaxRunSteps {
		return fmt.Errorf("train: num_train_epochs %g of %d batches make more than %d optimizer steps; give fewer epochs or max_steps", c.NumTrainEpochs, t.train.StepsPerEpoch(), config.MaxRunSteps)
	}
	if t.total <= 0 {
		t.total = int(math.Ceil(c.NumTrainEpochs * perEpoch))
	}
	if t.total <= 0 {
		return fmt.Errorf("train: the run has no step: max_steps %d, num_train_epochs %g, %d batches per epoch", c.MaxSteps, c.NumTrainEpochs, t.train.StepsPerEpoch())
	}
	t.warmup = optim.WarmupSteps(c.WarmupRatio, c.WarmupSteps, t.total)
	t.state.Seed = c.Seed
	var err error
	t.graph, err = graphOptions(c, t.mem) // validated: never an error here
	return err
}

// graphOptions are the options of cfg's training graphs over the arena mem: the view, recomputation
// (gradient_checkpointing) and the products' precision (bf16: mixed precision, ops.BF16).
func graphOptions(cfg config.Config, mem *ops.Arena) (model.Options, error) {
	view, err := model.ParseView(cfg.Flex.View)
	products := ops.Native
	if cfg.LLaVA.BF16 {
		products = ops.BF16
	}
	return model.Options{Mode: model.Train, Trainable: cfg.Trainable, Seed: uint64(cfg.Seed), View: view, Arena: mem,
		Recompute: cfg.LLaVA.GradientCheckpointing, Products: products}, err
}

// openFeatureCache prepares the vision feature cache of the feature_cache key. Its entries belong to these
// vision weights and this model configuration (the fingerprint), so a changed tower never reads stale ones.
func (t *trainer[T]) openFeatureCache() error {
	if t.cfg.FeatureCache == "off" {
		return nil
	}
	opts := featcache.Options{Fingerprint: model.VisionFingerprint(t.weights, t.graph.Products), MaxMemoryBytes: int64(t.cfg.FeatureCacheMB) << 20}
	if t.cfg.FeatureCache == "disk" {
		opts.Dir = filepath.Join(t.cfg.OutputDir, "feature-cache")
	}
	c, err := featcache.New(opts)
	if err != nil {
		return fmt.Errorf("train: feature cache: %w", err)
	}
	t.graph.Features, t.graph.Front = c, model.FrontFingerprint(t.weights, t.cfg.Trainable, t.graph.Products)
	return nil
}

// every reports whether the step just taken is a multiple of n (n ≤ 0: never).
func (t *trainer[T]) every(n int) bool { return n > 0 && t.state.Step%n == 0 }

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

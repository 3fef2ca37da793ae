// Package bench times training steps of the configured model on a synthetic batch, the way a PyTorch
// reference of the same model and step would be timed (the sample layout, image sizes and FLOP counts
// follow the reference's conventions): `flextrain bench`. It drives train.Stepper, the training loop's own
// step, in four modes: flex-union (FlexAttention as training runs it), flex-dense (the official cost),
// lr (the LR view only) and hd-seq (every HR token in the sequence).
package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"time"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/train"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model"
)

// Options choose what `flextrain bench` times.
type Options struct {
	Mode     string  // flex-union, flex-dense, lr, hd-seq (Run; Interleaved takes a list)
	Steps    int     // timed steps
	Warmup   int     // untimed steps first
	Strategy string  // overrides flex.strategy when set
	Ratio    float64 // for topk, random, center
	// Cached times the steady state of epochs after the first: what the frozen front computes (the tower's
	// features, the projected HR features, the decoder state entering layer n_sa) comes from the feature
	// cache, filled by the warm-up steps, so no step runs the front.
	Cached bool
}

// Modes are the modes of `flextrain bench`.
var Modes = []string{"flex-union", "flex-dense", "lr", "hd-seq"}

// Result is one mode's timing of a full training step: vision towers, decoder forward and backward,
// AdamW.
type Result struct {
	Mode          string  `json:"mode"`
	Device        string  `json:"device"`   // cpu, or cuda:N (the config's device key)
	Products      string  `json:"products"` // the matrix products' precision: float32, or bfloat16 with bf16
	Strategy      string  `json:"strategy"`
	Steps         int     `json:"steps"`
	MedianMS      float64 `json:"median_ms"`
	MinMS         float64 `json:"min_ms"`
	MaxMS         float64 `json:"max_ms"`
	TokensPerSec  float64 `json:"tokens_per_sec"`
	GFLOPDecoder  float64 `json:"gflop_decoder"` // forward FLOPs of the step's batch, docs/DESIGN.md §14 conventions
	GFLOPVision   float64 `json:"gflop_vision"`
	GFLOPPerSec   float64 `json:"gflop_per_sec"` // forward FLOPs over the median step time
	SelectedFrac  float64 `json:"sel_frac"`
	AllocsPerStep float64 `json:"allocs_per_step"`
	MiBPerStep    float64 `json:"mib_alloc_per_step"`
	GCFraction    float64 `json:"gc_fraction"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	// On a GPU: the median step's time on the device, timed by events on its stream from the step's first
	// operation, its inputs on the device already, to its update's end (median_ms is the host's clock
	// around the whole step, the inputs' upload included); the most memory
	// its buffers held at once; a step's matrix products, their operations counted as they ran (2·m·n·k
	// each), of them those on the tensor cores in bfloat16 and in TF32, and their rate over the median step.
	DeviceMS         float64 `json:"device_ms,omitempty"`
	UploadMiB        float64 `json:"upload_mib,omitempty"` // what a step puts on the device: the batch, index arrays
	PeakDeviceMiB    float64 `json:"peak_device_mib,omitempty"`
	ProductGFLOP     float64 `json:"product_gflop,omitempty"`
	ProductBF16GFLOP float64 `json:"product_bf16_gflop,omitempty"`
	ProductTF32GFLOP float64 `json:"product_tf32_gflop,omitempty"`
	ProductTFLOPS    float64 `json:"product_tflops,omitempty"`
	// ArenaMiB is what the step's buffers occupy (the arena that holds every value of a step's graph);
	// ArenaFreshMiB is how much of it a steady-state step still had to allocate.
	ArenaMiB       float64 `json:"arena_mib"`
	ArenaFreshMiB  float64 `json:"arena_fresh_mib_per_step"`
	Loss           float64 `json:"loss"`
	SequenceLength int     `json:"N"`
	Cached         bool    `json:"cached"`                 // the frozen front from the feature cache
	FeatureHitRate float64 `json:"feature_cache_hit_rate"` // over all steps, warm-up included
}

// benchLayout is the PyTorch reference step's sample: 8 text tokens, the image, 64 text tokens, 24
// supervised answer tokens.
var benchLayout = struct{ before, middle, answer int }{8, 64, 24}

// benchSizes are the reference step's original image sizes (w, h), one per sample in turn.
var benchSizes = [][2]int{{640, 480}, {480, 640}, {500, 500}, {1024, 300}, {300, 800}, {800, 600}, {336, 336}, {700, 350}}

// Run times training steps of the configured model on a synthetic batch (no dataset needed).
func Run(cfg config.Config, opts Options) (Result, error) {
	rs, err := Interleaved(cfg, opts, []string{opts.Mode})
	if err != nil {
		return Result{}, err
	}
	return rs[0], nil
}

// Interleaved times several modes in one process, each with its own model, optimizer and buffers, a
// step of each in turn (the order rotating from round to round): a slower stretch of a shared machine then
// slows every mode alike, and the ratio of their medians is steadier than one taken from separate runs.
// opts.Mode is ignored; the peak RSS reported is the process's, all modes together.
func Interleaved(cfg config.Config, opts Options, modes []string) ([]Result, error) {
	if opts.Strategy != "" {
		cfg.Flex.Strategy, cfg.Flex.Ratio = opts.Strategy, opts.Ratio
	}
	if err := cfg.Model().Validate(); err != nil {
		return nil, err
	}
	if err := train.CheckDevice(cfg, 0); err != nil { // before the weights are made
		return nil, err
	}
	w, err := benchWeights(cfg)
	if err != nil {
		return nil, err
	}
	runs := make([]*modeRun, 0, len(modes))
	defer func() {
		for _, r := range runs {
			r.st.Close()
		}
	}()
	for _, mode := range modes {
		st, err := newStepper(cfg, opts, mode, w.Clone())
		if err != nil {
			return nil, err
		}
		runs = append(runs, &modeRun{st: st, cfg: cfg, r: Result{Mode: mode, Device: cfg.Device, Products: products(cfg), Strategy: cfg.Flex.Strategy,
			Steps: opts.Steps, Cached: opts.Cached}})
	}
	for i := 0; i < opts.Warmup+opts.Steps; i++ {
		for k := range runs {
			if err := runs[(i+k)%len(runs)].step(i >= opts.Warmup); err != nil {
				return nil, err
			}
		}
	}
	out := make([]Result, len(runs))
	for i, b := range runs {
		out[i] = b.result()
	}
	return out, nil
}

// benchWeights are cfg's randomly initialised weights, the frozen matrices in bfloat16 with bf16 (as fit
// holds them). They are drawn once: each mode trains a copy (drawing a 7B model takes about a minute).
func benchWeights(cfg config.Config) (*model.Weights, error) {
	w := model.InitWeights(cfg.Model(), tensor.Float32, uint64(cfg.Seed))
	if cfg.LLaVA.BF16 {
		if err := w.Narrow(half.BFloat16, func(name string) bool { return !cfg.Trainable(name) }); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// newStepper is a stepper of the weights w over the bench batch, in one mode.
func newStepper(cfg config.Config, opts Options, mode string, w *model.Weights) (*train.Stepper, error) {
	view, dense, err := modeView(mode)
	if err != nil {
		return nil, err
	}
	cfg.Flex.View = view
	return train.NewStepper(cfg, w, fixedBatch{benchBatch(cfg)}, train.StepperOptions{Steps: opts.Warmup + opts.Steps, Dense: dense, Cached: opts.Cached})
}

// products names the precision of cfg's matrix products.
func products(cfg config.Config) string {
	if cfg.LLaVA.BF16 {
		return "bfloat16"
	}
	return "float32"
}

// modeView is the flex.view of a mode, and whether FlexAttention runs the dense way.
func modeView(mode string) (string, bool, error) {
	switch mode {
	case "flex-union":
		return "flex", false, nil
	case "flex-dense":
		return "flex", true, nil
	case "lr", "hd-seq":
		return mode, false, nil
	}
	return "", false, fmt.Errorf("bench: unknown mode %q (one of %v)", mode, Modes)
}

// modeRun is one mode's stepper and what its timed steps measured so far.
type modeRun struct {
	st     *train.Stepper
	cfg    config.Config
	r      Result
	ms     []float64
	devMS  []float64 // on a GPU, the device's time of each timed step
	tokens int
	wall   time.Duration
	seqLen int
}

// step takes one training step and, when timed, adds its measurements.
func (b *modeRun) step(timed bool) error {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	arena, usage := b.st.Arena(), b.st.DeviceUsage()
	res, err := b.st.Step(context.Background())
	runtime.ReadMemStats(&after)
	if err != nil || !timed {
		return err
	}
	r, n := &b.r, float64(b.r.Steps)
	u := b.st.DeviceUsage().Since(usage)
	if u.StepTime > 0 {
		b.devMS = append(b.devMS, float64(u.StepTime.Microseconds())/1000)
	}
	r.ProductGFLOP += float64(u.FLOPs()) / 1e9 / n
	r.ProductBF16GFLOP += float64(u.FLOPsBF16) / 1e9 / n
	r.ProductTF32GFLOP += float64(u.FLOPsTF32) / 1e9 / n
	r.UploadMiB += float64(u.UploadBytes) / (1 << 20) / n
	b.ms = append(b.ms, float64(res.Elapsed.Microseconds())/1000)
	b.tokens, b.wall, b.seqLen = b.tokens+res.Tokens, b.wall+res.Elapsed, res.SeqLen
	r.AllocsPerStep += float64(after.Mallocs-before.Mallocs) / n
	r.MiBPerStep += float64(after.TotalAlloc-before.TotalAlloc) / (1 << 20) / n
	r.ArenaFreshMiB += float64(b.st.Arena().Fresh-arena.Fresh) / (1 << 20) / n
	r.GCFraction += float64(after.PauseTotalNs-before.PauseTotalNs) / float64(max(1, res.Elapsed.Nanoseconds())) / n
	r.SelectedFrac, r.Loss, r.FeatureHitRate = res.Selected, res.Loss, res.FeatureHitRate
	return nil
}

// result completes the measurements of the timed steps.
func (b *modeRun) result() Result {
	r, ms := b.r, slices.Sorted(slices.Values(b.ms))
	r.MedianMS, r.MinMS, r.MaxMS = ms[len(ms)/2], ms[0], ms[len(ms)-1]
	r.TokensPerSec = float64(b.tokens) / b.wall.Seconds()
	r.SequenceLength = b.seqLen
	r.ArenaMiB = float64(b.st.Arena().Held) / (1 << 20)
	r.PeakDeviceMiB = float64(b.st.DeviceUsage().PeakBytes) / (1 << 20)
	if len(b.devMS) > 0 {
		r.DeviceMS = slices.Sorted(slices.Values(b.devMS))[len(b.devMS)/2]
	}
	r.ProductTFLOPS = r.ProductGFLOP / r.MedianMS // GFLOP per ms
	r.GFLOPDecoder, r.GFLOPVision = flops(b.cfg.Model(), r.Mode, r.SelectedFrac, b.cfg.PerDeviceTrainBatchSize)
	r.GFLOPPerSec = (r.GFLOPDecoder + r.GFLOPVision) / (r.MedianMS / 1000)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024
	}
	return r
}

// flops are the forward GFLOPs of a batch of B bench samples, counted per mode as docs/DESIGN.md §14 says.
func flops(c model.Config, mode string, sel float64, B int) (dec, vis float64) {
	_, n, _, M := c.Grid()
	N := float64(benchLayout.before + benchLayout.middle + benchLayout.answer + n)
	L, nSA := float64(c.Text.NumLayers), float64(c.Flex.NSA)
	crops := 1.0
	switch mode {
	case "lr":
		dec = L*c.PlainLayerFLOPs(N) + c.LMHeadFLOPs(N)
	case "hd-seq":
		dec = L*c.PlainLayerFLOPs(N+float64(M)) + c.LMHeadFLOPs(N+float64(M))
		crops += float64(c.Flex.Zoom * c.Flex.Zoom)
	case "flex-dense":
		dec = nSA*c.PlainLayerFLOPs(N) + (L-nSA)*c.FlexDenseLayerFLOPs(N) + c.LMHeadFLOPs(N)
		crops += float64(c.Flex.Zoom * c.Flex.Zoom)
	default:
		dec = nSA*c.PlainLayerFLOPs(N) + (L-nSA)*c.FlexLayerFLOPs(N, sel*float64(M), sel*float64(M)) + c.LMHeadFLOPs(N)
		crops += float64(c.Flex.Zoom * c.Flex.Zoom)
	}
	return float64(B) * dec / 1e9, float64(B) * crops * c.VisionCropFLOPs() / 1e9
}

// fixedBatch serves the same batch forever: the benchmark's data source.
type fixedBatch struct{ b *data.Batch }

func (f fixedBatch) Next(context.Context) (*data.Batch, error) { return f.b, nil }

// benchBatch builds the reference step's batch: random token ids, the last 24 supervised, N(0, 1) HR pixels
// and their antialiased LR view, the original sizes of benchSizes.
func benchBatch(cfg config.Config) *data.Batch {
	rng := rand.New(rand.NewPCG(1, uint64(cfg.Seed)))
	S, Z, V := cfg.Arch.Vision.ImageSize, cfg.Flex.Zoom, cfg.Arch.Text.VocabSize
	b := &data.Batch{}
	for s := 0; s < cfg.PerDeviceTrainBatchSize; s++ {
		var ids, labels []int
		add := func(k int, supervised bool) {
			for i := 0; i < k; i++ {
				id := 1 + rng.IntN(V-1)
				ids, labels = append(ids, id), append(labels, llava.IgnoreIndex)
				if supervised {
					labels[len(labels)-1] = id
				}
			}
		}
		add(benchLayout.before, false)
		ids, labels = append(ids, llava.ImageTokenID), append(labels, llava.IgnoreIndex)
		add(benchLayout.middle, false)
		add(benchLayout.answer, true)
		hr := make([]float32, 3*Z*S*Z*S)
		for i := range hr {
			hr[i] = float32(rng.NormFloat64())
		}
		b.IDs = append(b.IDs, fmt.Sprint("bench-", s))
		b.InputIDs, b.Labels, b.AttentionMask = append(b.InputIDs, ids), append(b.Labels, labels), append(b.AttentionMask, benchMask(len(ids)))
		b.HRPixels, b.LRPixels = append(b.HRPixels, hr), append(b.LRPixels, data.DownsampleAA(hr, 3, Z*S, Z))
		b.OriSizes = append(b.OriSizes, benchSizes[s%len(benchSizes)])
	}
	return b
}

func benchMask(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

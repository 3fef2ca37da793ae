package train

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/flextrain/flextrain/config"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
)

// BenchOptions choose what `flextrain bench` times.
type BenchOptions struct {
	Mode     string  // flex-union, flex-dense, lr, hd-seq (Bench; BenchInterleaved takes a list)
	Steps    int     // timed steps
	Warmup   int     // untimed steps first
	Strategy string  // overrides flex.strategy when set
	Ratio    float64 // for topk, random, center
	// Cached times the steady state of epochs after the first: what the frozen front computes (the tower's
	// features, the projected HR features, the decoder state entering layer n_sa) comes from the feature
	// cache, filled by the warm-up steps, so no step runs the front.
	Cached bool
}

// BenchModes are the modes of `flextrain bench`, as in the reference's bench.py.
var BenchModes = []string{"flex-union", "flex-dense", "lr", "hd-seq"}

// BenchResult is one mode's timing of a full training step: vision towers, decoder forward and backward,
// AdamW.
type BenchResult struct {
	Mode          string  `json:"mode"`
	Strategy      string  `json:"strategy"`
	Steps         int     `json:"steps"`
	MedianMS      float64 `json:"median_ms"`
	MinMS         float64 `json:"min_ms"`
	MaxMS         float64 `json:"max_ms"`
	TokensPerSec  float64 `json:"tokens_per_sec"`
	GFLOPDecoder  float64 `json:"gflop_decoder"` // forward FLOPs of the step's batch, PAPER.md §5 conventions
	GFLOPVision   float64 `json:"gflop_vision"`
	GFLOPPerSec   float64 `json:"gflop_per_sec"` // forward FLOPs over the median step time
	SelectedFrac  float64 `json:"sel_frac"`
	AllocsPerStep float64 `json:"allocs_per_step"`
	MiBPerStep    float64 `json:"mib_alloc_per_step"`
	GCFraction    float64 `json:"gc_fraction"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	// ArenaMiB is what the step's buffers occupy (the arena that holds every value of a step's graph);
	// ArenaFreshMiB is how much of it a steady-state step still had to allocate.
	ArenaMiB       float64 `json:"arena_mib"`
	ArenaFreshMiB  float64 `json:"arena_fresh_mib_per_step"`
	Loss           float64 `json:"loss"`
	SequenceLength int     `json:"N"`
	Cached         bool    `json:"cached"`                 // the frozen front from the feature cache
	FeatureHitRate float64 `json:"feature_cache_hit_rate"` // over all steps, warm-up included
}

// benchLayout is bench.py's sample: 8 text tokens, the image, 64 text tokens, 24 supervised answer tokens.
var benchLayout = struct{ before, middle, answer int }{8, 64, 24}

// benchSizes are bench.py's original image sizes (w, h), one per sample in turn.
var benchSizes = [][2]int{{640, 480}, {480, 640}, {500, 500}, {1024, 300}, {300, 800}, {800, 600}, {336, 336}, {700, 350}}

// Bench times training steps of the configured model on a synthetic batch (no dataset needed).
func Bench(cfg config.Config, opts BenchOptions) (BenchResult, error) {
	rs, err := BenchInterleaved(cfg, opts, []string{opts.Mode})
	if err != nil {
		return BenchResult{}, err
	}
	return rs[0], nil
}

// BenchInterleaved times several modes in one process, each with its own model, optimizer and buffers, a
// step of each in turn (the order rotating from round to round): a slower stretch of a shared machine then
// slows every mode alike, and the ratio of their medians is steadier than one taken from separate runs.
// opts.Mode is ignored; the peak RSS reported is the process's, all modes together.
func BenchInterleaved(cfg config.Config, opts BenchOptions, modes []string) ([]BenchResult, error) {
	if opts.Strategy != "" {
		cfg.Flex.Strategy, cfg.Flex.Ratio = opts.Strategy, opts.Ratio
	}
	if err := cfg.Model().Validate(); err != nil {
		return nil, err
	}
	runs := make([]*benchRun, len(modes))
	for i, mode := range modes {
		t, err := newBenchTrainer(cfg, opts, mode)
		if err != nil {
			return nil, err
		}
		runs[i] = &benchRun{t: t, r: BenchResult{Mode: mode, Strategy: cfg.Flex.Strategy, Steps: opts.Steps, Cached: opts.Cached}}
	}
	for i := 0; i < opts.Warmup+opts.Steps; i++ {
		for k := range runs {
			if err := runs[(i+k)%len(runs)].step(i >= opts.Warmup); err != nil {
				return nil, err
			}
		}
	}
	out := make([]BenchResult, len(runs))
	for i, b := range runs {
		out[i] = b.result()
	}
	return out, nil
}

// newBenchTrainer is a trainer of randomly initialised weights over the bench batch, in one mode.
func newBenchTrainer(cfg config.Config, opts BenchOptions, mode string) (*trainer[float32], error) {
	view, dense, err := benchView(mode)
	if err != nil {
		return nil, err
	}
	t := &trainer[float32]{cfg: cfg, mem: ops.NewArena(), log: &logger{slog: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	t.weights = model.InitWeights(cfg.Model(), dtypeOf[float32](), uint64(cfg.Seed))
	if err := t.bindParams(); err != nil {
		return nil, err
	}
	t.source, t.view, t.dense = fixedBatch{benchBatch(cfg)}, view, dense
	if opts.Cached {
		t.cfg.FeatureCache = "memory"
		if err := t.openFeatureCache(); err != nil {
			return nil, err
		}
	}
	t.total = opts.Warmup + opts.Steps
	return t, nil
}

func benchView(mode string) (model.View, bool, error) {
	switch mode {
	case "flex-union":
		return model.ViewFlex, false, nil
	case "flex-dense":
		return model.ViewFlex, true, nil
	case "lr":
		return model.ViewLR, false, nil
	case "hd-seq":
		return model.ViewHDSeq, false, nil
	}
	return 0, false, fmt.Errorf("train: bench: unknown mode %q (one of %v)", mode, BenchModes)
}

// benchRun is one mode's trainer and what its timed steps measured so far.
type benchRun struct {
	t      *trainer[float32]
	r      BenchResult
	ms     []float64
	tokens int
	wall   time.Duration
}

// step takes one training step and, when timed, adds its measurements.
func (b *benchRun) step(timed bool) error {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	arena := b.t.mem.Stats()
	res, err := b.t.step(context.Background())
	runtime.ReadMemStats(&after)
	if err != nil {
		return err
	}
	b.t.state.Step++
	if !timed {
		return nil
	}
	r, n := &b.r, float64(b.r.Steps)
	b.ms = append(b.ms, float64(res.elapsed.Microseconds())/1000)
	b.tokens, b.wall = b.tokens+res.tokens, b.wall+res.elapsed
	r.AllocsPerStep += float64(after.Mallocs-before.Mallocs) / n
	r.MiBPerStep += float64(after.TotalAlloc-before.TotalAlloc) / (1 << 20) / n
	r.ArenaFreshMiB += float64(b.t.mem.Stats().Fresh-arena.Fresh) / (1 << 20) / n
	r.GCFraction += float64(after.PauseTotalNs-before.PauseTotalNs) / float64(max(1, res.elapsed.Nanoseconds())) / n
	r.SelectedFrac, r.Loss, r.FeatureHitRate = res.hrSelectedFrac, res.loss, res.featureHitRate
	return nil
}

// result completes the measurements of the timed steps.
func (b *benchRun) result() BenchResult {
	r, t, ms := b.r, b.t, slices.Sorted(slices.Values(b.ms))
	r.MedianMS, r.MinMS, r.MaxMS = ms[len(ms)/2], ms[0], ms[len(ms)-1]
	r.TokensPerSec = float64(b.tokens) / b.wall.Seconds()
	r.SequenceLength = t.lastN
	r.ArenaMiB = float64(t.mem.Stats().Held) / (1 << 20)
	r.GFLOPDecoder, r.GFLOPVision = benchFLOPs(t.cfg.Model(), r.Mode, r.SelectedFrac, t.source.(fixedBatch).b.Len())
	r.GFLOPPerSec = (r.GFLOPDecoder + r.GFLOPVision) / (r.MedianMS / 1000)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024
	}
	return r
}

// benchFLOPs are the forward GFLOPs of a batch of B bench samples, as bench.py's forward_flops counts them.
func benchFLOPs(c model.Config, mode string, sel float64, B int) (dec, vis float64) {
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

// benchBatch builds bench.py's batch: random token ids, the last 24 supervised, N(0, 1) HR pixels and their
// antialiased LR view, the original sizes of benchSizes.
func benchBatch(cfg config.Config) *data.Batch {
	rng := rand.New(rand.NewPCG(1, uint64(cfg.Seed)))
	S, Z, V := cfg.Arch.Vision.ImageSize, cfg.Flex.Zoom, cfg.Arch.Text.VocabSize
	b := &data.Batch{}
	for s := 0; s < cfg.PerDeviceTrainBatchSize; s++ {
		var ids, labels []int
		add := func(k int, supervised bool) {
			for i := 0; i < k; i++ {
				id := 1 + rng.IntN(V-1)
				ids, labels = append(ids, id), append(labels, data.IgnoreIndex)
				if supervised {
					labels[len(labels)-1] = id
				}
			}
		}
		add(benchLayout.before, false)
		ids, labels = append(ids, data.ImageTokenID), append(labels, data.IgnoreIndex)
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

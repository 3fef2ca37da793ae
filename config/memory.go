package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/pretrained"
)

// Plan is the memory a run needs, part by part, before it starts: the weights (frozen and trainable),
// the gradients and the gradient accumulator, AdamW's two moments, an estimate of the activations of a batch,
// and the feature cache's bound. `flextrain plan` prints it, and a run that cannot fit the machine is refused
// with it before anything is allocated.
type Plan struct {
	Parts   []PlanPart
	Total   int64 // bytes
	Machine int64 // the machine's memory in bytes; 0 where it cannot be read
}

// PlanPart is one line of a Plan.
type PlanPart struct {
	Name     string
	Elements int64 // 0 for a part counted in bytes only (the feature cache)
	Bytes    int64
}

// Plan adds up the memory of cfg's run for sequences of n rows (text and image tokens; model_max_length when
// n ≤ 0), in the run's dtype. The activations' buffers come from an arena that hands out whole size
// classes (ops.SizeClass: up to 1/8 more than asked), which adds 1/16 of them.
func (cfg Config) Plan(n int) Plan {
	elem := int64(4)
	if cfg.DType == "float64" {
		elem = 8
	}
	frozen, frozen16, trainable := cfg.parameters()
	copies := int64(1) // the gradient; the accumulator too with several micro-batches a step
	if cfg.GradientAccumulationSteps > 1 {
		copies++
	}
	acts := cfg.activations(n, false) * int64(cfg.PerDeviceTrainBatchSize) // the CPU rounds held values in place
	var p Plan
	p.addFrozen(cfg, frozen, frozen16, elem)
	p.add("trainable weights", trainable, trainable*elem)
	p.add("gradients", copies*trainable, copies*trainable*elem)
	p.add("AdamW m and v", 2*trainable, 2*trainable*elem)
	p.add(fmt.Sprintf("activations (estimate, batch %d)", cfg.PerDeviceTrainBatchSize), acts, acts*elem)
	p.add("size classes (1/16 of the activations)", 0, acts*elem/16) // the arena's buffers, as a GPU's blocks
	if cfg.FeatureCache == "memory" || cfg.FeatureCache == "disk" {
		p.add("feature cache (bound)", 0, int64(cfg.FeatureCacheMB)<<20)
	}
	p.Machine, _ = physicalMemory()
	return p
}

// parameters counts the elements of the frozen weights (and of the frozen matrices among them) and of the
// trainable weights, from the shapes alone.
func (cfg Config) parameters() (frozen, frozenMatrices, trainable int64) {
	for name, shape := range model.Shapes(cfg.Model()) {
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		switch {
		case cfg.Trainable(name):
			trainable += n
		case len(shape) >= 2:
			frozenMatrices += n
			fallthrough
		default:
			frozen += n
		}
	}
	return frozen, frozenMatrices, trainable
}

// frozenIn16Bits reports whether a float32 run keeps its frozen matrices in 16 bits: with bf16, or when it
// starts from a folder whose config.json stores the weights in float16 or bfloat16 (model.FromTensorsHalf).
func (cfg Config) frozenIn16Bits() bool {
	if cfg.LLaVA.BF16 {
		return true
	}
	if cfg.ModelNameOrPath == "" || !pretrained.IsFolder(cfg.ModelNameOrPath) {
		return false
	}
	dt := pretrained.StoredDType(cfg.ModelNameOrPath)
	return dt == "float16" || dt == "bfloat16"
}

// activations estimates the values one sample of n rows keeps alive at the peak of a step. Each value goes
// as soon as nothing reads it (ops.PlanReleases), on the CPU as on a GPU: the peak comes as the backward
// pass starts, with what the forward pass stored for it (stored), one layer's gradients beside them and
// the logits' gradient. At bench-7b's structure with D 512 (3 trainable layers, 672 rows) the GPU's values
// beyond the weights measure about 200 MiB on the CUDA emulator, where this gives 429 MiB, of which 164 are
// the logits and their gradient for every row (a training step computes them for the supervised rows only;
// at 7B they are 2% of the estimate). With held, the activations the backward pass reads are held in
// bfloat16 between the passes (a GPU's mixed-precision step, ops.PlanHolds).
func (cfg Config) activations(n int, held bool) int64 {
	values, layer, logits := cfg.stored(n, held)
	return values + layer + logits
}

// stored estimates the values one sample of n rows keeps for the backward pass of a step: what each
// trainable decoder layer stores (norm inputs, q, k, v, attention output and residuals ≈ 8·n·D, the MLP's
// gate, up and product 3·n·F, the attention probabilities H·n², and the FlexAttention layer's HR features,
// keys and values 3·M·D), the HR features M·D, the logits n·V, one frozen layer's transient values and one
// image's tower (when the tower trains, every layer the LR view runs through, T tokens of width C: its
// inputs, norms, products before and after their biases, activation, residuals ≈ 16·T·C, the MLP's 3·T·I,
// the attention probabilities H·T²). With gradient_checkpointing a trainable layer keeps its input n·D only,
// and one layer at a time holds its values while it is computed again. It also returns one trainable
// layer's values and the logits'. With held, a trainable layer keeps the norms' outputs, q, k, v and
// attention's output (6·n·D), the MLP's three (3·n·F) and FlexAttention's HR features and keys (2·M·D) in
// bfloat16, half a float32 each; its residual stream (a norm's gradient reads it exactly), its
// probabilities and its HR values stay float32.
func (cfg Config) stored(n int, held bool) (values, layer, logits int64) {
	if n <= 0 {
		n = cfg.ModelMaxLength
	}
	v, t := cfg.Arch.Vision, cfg.Arch.Text
	N, D, F, H, V := int64(n), int64(t.HiddenSize), int64(t.IntermediateSize), int64(t.NumHeads), int64(t.VocabSize)
	_, lr, _, m := cfg.Model().Grid()
	M, Z := int64(m), int64(cfg.Flex.Zoom)
	perLayer := 8*N*D + 3*N*F + H*N*N + 3*M*D
	kept := perLayer // what a trainable layer keeps for the backward pass, in float32s
	if held {
		kept -= (6*N*D + 3*N*F + 2*M*D) / 2
	}
	tower := (1 + Z*Z) * (int64(lr) + 1) * (4*int64(v.HiddenSize) + int64(v.IntermediateSize))
	if cfg.trainsTower() { // the LR view's pass through every layer it runs, kept for the backward pass
		T, C, I := int64(lr)+1, int64(v.HiddenSize), int64(v.IntermediateSize)
		tower += int64(cfg.Model().VisionLayersRun()) * T * (16*C + 3*I + int64(v.NumHeads)*T)
	}
	front := 4*N*D + 2*N*F
	layers := cfg.trainableLayers() * kept
	if cfg.LLaVA.GradientCheckpointing {
		layers = cfg.trainableLayers()*N*D + perLayer
	}
	return layers + M*D + N*V + front + tower, perLayer, N * V
}

// trainsTower reports whether a weight of the vision tower trains.
func (cfg Config) trainsTower() bool {
	for name := range model.Shapes(cfg.Model()) {
		if strings.HasPrefix(name, model.VisionPrefix) && cfg.Trainable(name) {
			return true
		}
	}
	return false
}

// trainableLayers counts the decoder layers with a trainable weight.
func (cfg Config) trainableLayers() int64 {
	var k int64
	for l := range cfg.Arch.Text.NumLayers {
		if cfg.Trainable(fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", l)) ||
			cfg.Trainable(fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", l)) {
			k++
		}
	}
	return k
}

// Table is the plan as aligned lines: each part, the total, and the machine's memory.
func (p Plan) Table() string {
	var b strings.Builder
	for _, part := range p.Parts {
		fmt.Fprintf(&b, "%-40s %14s  %9.2f GiB\n", part.Name, count(part.Elements), gib(part.Bytes))
	}
	fmt.Fprintf(&b, "%-40s %14s  %9.2f GiB\n", "total", "", gib(p.Total))
	if p.Machine > 0 {
		fmt.Fprintf(&b, "%-40s %14s  %9.2f GiB\n", "this machine", "", gib(p.Machine))
	}
	return b.String()
}

func count(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

// CheckMemory refuses, before anything is allocated, a run whose plan (Plan at model_max_length) needs more
// memory than the machine has, with the plan's table: a mistyped width, or a model too large for this
// machine in the run's dtype, would otherwise end in the runtime's fatal out-of-memory.
func (cfg Config) CheckMemory() error {
	p := cfg.Plan(0)
	if p.Machine == 0 || p.Total <= p.Machine {
		return nil
	}
	return fmt.Errorf("config: the run needs %.1f GiB, this machine has %.1f GiB (flextrain plan shows it; a shorter model_max_length or batch, fewer trainable weights, or a feature cache on disk need less):\n%s",
		gib(p.Total), gib(p.Machine), p.Table())
}

// DevicePlan is the memory a run needs on its GPU (device: cuda), for sequences of n rows: the weights (the
// frozen matrices in 16 bits where the run keeps them so, widened a product at a time), the gradients
// (addGradients), AdamW's two moments, with bf16 the bfloat16 copies of the trainable weights that the
// products read (the vectors among them counted too), the activations (with bf16 those the backward pass
// reads held in bfloat16 between the passes, ops.PlanHolds; the frozen tower takes one layer's
// at a time and is left out), and what the device's size classes add: it hands out whole blocks of
// ops.SizeClass, up to 1/8 more than asked, 1/16 on average (without them the plan fell 4% short of the
// device's peak on the CUDA emulator at bench-7b's structure with D 512). Machine is left for the caller:
// the GPU's memory.
func (cfg Config) DevicePlan(n int) Plan {
	frozen, frozen16, trainable := cfg.parameters()
	acts := cfg.activations(n, cfg.LLaVA.BF16) * int64(cfg.PerDeviceTrainBatchSize)
	var p Plan
	p.addFrozen(cfg, frozen, frozen16, 4)
	p.add("trainable weights", trainable, 4*trainable)
	if cfg.LLaVA.BF16 {
		p.add("their bfloat16 copies", trainable, 2*trainable)
	}
	p.addGradients(cfg, trainable)
	p.add("AdamW m and v", 2*trainable, 8*trainable)
	name := fmt.Sprintf("activations (estimate, batch %d)", cfg.PerDeviceTrainBatchSize)
	if cfg.LLaVA.BF16 { // acts counts a held value as half a float32
		name = fmt.Sprintf("activations (estimate, batch %d, bf16)", cfg.PerDeviceTrainBatchSize)
	}
	p.add(name, acts, 4*acts)
	p.add("size classes (1/16 of the above)", 0, p.Total/16)
	return p
}

// addGradients appends the gradients of a GPU run: the step takes its first micro-batch's gradients from
// the graph that made them, so a step of one micro-batch holds one gradient per trainable weight; with
// gradient accumulation, a later micro-batch's graph makes its own beside the step's sums.
func (p *Plan) addGradients(cfg Config, trainable int64) {
	if cfg.GradientAccumulationSteps > 1 {
		p.add("gradients (the graph's, the step's sums)", 2*trainable, 8*trainable)
		return
	}
	p.add("gradients", trainable, 4*trainable)
}

// CheckDeviceMemory refuses a GPU run whose DevicePlan (at model_max_length) exceeds the GPU's memory, total
// bytes, naming device.
func (cfg Config) CheckDeviceMemory(device string, total int64) error {
	p := cfg.DevicePlan(0)
	p.Machine = total
	if p.Total <= total {
		return nil
	}
	return fmt.Errorf("config: the run needs %.1f GiB on %s, which has %.1f GiB (a shorter model_max_length or batch, or fewer trainable weights, need less):\n%s",
		gib(p.Total), device, gib(total), p.Table())
}

// addFrozen appends the frozen weights, of which frozen16 are matrices: at elem bytes each, but the matrices
// at 2 where a float32 run keeps them in 16 bits (frozenIn16Bits).
func (p *Plan) addFrozen(cfg Config, frozen, frozen16, elem int64) {
	if elem == 4 && cfg.frozenIn16Bits() {
		p.add("frozen weights (matrices in 16 bits)", frozen, (frozen-frozen16)*elem+2*frozen16)
		return
	}
	p.add("frozen weights", frozen, frozen*elem)
}

// add appends a part and counts its bytes in the total.
func (p *Plan) add(name string, elems, bytes int64) {
	p.Parts = append(p.Parts, PlanPart{name, elems, bytes})
	p.Total += bytes
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// physicalMemory reads MemTotal from /proc/meminfo; false where there is none.
func physicalMemory() (int64, bool) {
	b, err := fileio.ReadFile("/proc/meminfo", 1<<20)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var kb int64
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 2 && string(f[1]) == "kB" {
				kb, err = strconv.ParseInt(string(f[0]), 10, 64)
				return kb << 10, err == nil
			}
		}
	}
	return 0, false
}

// PredictPlan is the memory of `flextrain predict` on one image and question, part by part: the model's
// weights as held (weightBytes for weightElems values: frozen 16-bit matrices at 2 bytes, mapped from the
// files, the rest float32; model.StoredBytes counts them), and the float32 values of decoding a prompt of
// rows rows (image tokens and text) and newTokens more: the cache of keys and values, one decoder layer's
// values over the prompt (the prompt runs a layer at a time), the vision tower on one image (LR view) or
// on the 1 + Z² of the FlexAttention view (hr), the HR features, the logits, and the heap the garbage
// collector lets grow beyond them (flextrain runs at GOGC 25). The mapped weights count in the process's
// resident memory once read, as the heap does.
func PredictPlan(m model.Config, weightElems, weightBytes int64, rows, newTokens int, hr bool) Plan {
	t, v := m.Text, m.Vision
	N, D, F, L, V := int64(rows+newTokens), int64(t.HiddenSize), int64(t.IntermediateSize), int64(t.NumLayers), int64(t.VocabSize)
	_, n, _, mm := m.Grid()
	tokens, images, M := int64(n+1), int64(1), int64(0)
	if hr {
		images, M = 1+int64(m.Flex.Zoom*m.Flex.Zoom), int64(mm)
	}
	var p Plan
	p.add("weights (16-bit ones mapped)", weightElems, weightBytes)
	parts := []PlanPart{
		{"key and value cache", 2 * L * N * D, 0},
		{"one layer over the prompt (estimate)", int64(rows) * (9*D + 2*F), 0},
		{fmt.Sprintf("vision tower on %d image(s)", images), images*tokens*(5*int64(v.HiddenSize)+int64(v.IntermediateSize)) + int64(v.NumHeads)*tokens*tokens, 0},
		{"HR features", M * D, 0},
		{"logits", 3 * V, 0}, // float32, and the float64 copy Greedy reads
	}
	var heap int64
	for _, part := range parts {
		if part.Elements > 0 {
			p.add(part.Name, part.Elements, 4*part.Elements)
			heap += 4 * part.Elements
		}
	}
	p.add("heap growth before collection (GOGC 25)", 0, heap/4)
	p.add("program and runtime", 0, programBytes)
	p.Machine, _ = physicalMemory()
	return p
}

// programBytes is the resident memory of flextrain before it reads a model: its code, the runtime and the
// tokenizer, measured: `flextrain predict` on testdata/llava/llava-v1.5-tiny peaks at 24 MiB.
const programBytes = 24 << 20

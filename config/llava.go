package config

import (
	"fmt"
	"reflect"
	"strings"
)

// LLaVA is the part of a run's configuration that LLaVA's own training script (finetune.sh) spells the
// same way: a user can keep their keys. Each either means what it means there, is accepted and has no
// effect here (tf32 on a CPU; lazy_preprocess, since the loader always reads records lazily), or may only
// take the value LLaVA-1.5 was trained with, and any other value is refused with the reason. Keys that
// would change what trains (freeze_backbone, tune_mm_mlp_adapter, …) are expressed with the trainable and
// frozen patterns instead.
type LLaVA struct {
	VisionTower           string `yaml:"vision_tower"` // the CLIP folder, when model_name_or_path holds no tower
	Version               string `yaml:"version"`      // the conversation template: v1 (vicuna_v1)
	MMProjectorType       string `yaml:"mm_projector_type"`
	MMVisionSelectFeature string `yaml:"mm_vision_select_feature"`
	MMUseImStartEnd       bool   `yaml:"mm_use_im_start_end"`
	MMUseImPatchToken     bool   `yaml:"mm_use_im_patch_token"`
	MMPatchMergeType      string `yaml:"mm_patch_merge_type"`
	ImageAspectRatio      string `yaml:"image_aspect_ratio"`
	// BF16 is mixed-precision training: the frozen weights kept in bfloat16 (rounded to nearest once, at
	// load), half their float32 memory, and every matrix product of a training step over operands rounded
	// to bfloat16 with float32 sums (ops.BF16: a GPU's tensor cores; the CPU computes the same numbers).
	// What trains stays float32 (the optimizer's master weights), and so do the activations, the norms,
	// the softmaxes and the loss. Evaluation and inference multiply in float32. Needs dtype float32.
	BF16                   bool   `yaml:"bf16"`
	TF32                   bool   `yaml:"tf32"`
	GradientCheckpointing  bool   `yaml:"gradient_checkpointing"`
	LazyPreprocess         bool   `yaml:"lazy_preprocess"`
	ReportTo               string `yaml:"report_to"`
	EvaluationStrategy     string `yaml:"evaluation_strategy"`
	SaveStrategy           string `yaml:"save_strategy"`
	PerDeviceEvalBatchSize int    `yaml:"per_device_eval_batch_size"` // 0: per_device_train_batch_size
	DeepSpeed              string `yaml:"deepspeed"`
	FreezeBackbone         bool   `yaml:"freeze_backbone"`
	TuneMMMLPAdapter       bool   `yaml:"tune_mm_mlp_adapter"`
	FreezeMMMLPAdapter     bool   `yaml:"freeze_mm_mlp_adapter"`
	PretrainMMMLPAdapter   string `yaml:"pretrain_mm_mlp_adapter"`
}

// llavaDefaults are LLaVA-1.5's settings, which every key may keep.
func llavaDefaults() LLaVA {
	return LLaVA{Version: "v1", MMProjectorType: "mlp2x_gelu", MMVisionSelectFeature: "patch", MMPatchMergeType: "flat",
		ImageAspectRatio: "pad", ReportTo: "none", EvaluationStrategy: "steps", SaveStrategy: "steps"}
}

// aliases are LLaVA's names of keys flextrain spells otherwise: either name sets the same value.
var aliases = map[string]string{"mm_vision_select_layer": "model.vision.select_layer"}

// fixed is, for each key that may only take LLaVA-1.5's value, that value and why another is refused.
var fixed = []struct {
	key, want, why string
	got            func(LLaVA) string
}{
	{"version", "v1", "the conversation template is vicuna_v1, as LLaVA-1.5 trains", func(l LLaVA) string { return l.Version }},
	{"mm_projector_type", "mlp2x_gelu", "LLaVA-1.5's projector is the two-layer GELU MLP", func(l LLaVA) string { return l.MMProjectorType }},
	{"mm_vision_select_feature", "patch", "the image tokens are the tower's patch rows, without its CLS row", func(l LLaVA) string { return l.MMVisionSelectFeature }},
	{"mm_use_im_start_end", "false", "LLaVA-1.5 trains with false", func(l LLaVA) string { return fmt.Sprint(l.MMUseImStartEnd) }},
	{"mm_use_im_patch_token", "false", "LLaVA-1.5 trains with false", func(l LLaVA) string { return fmt.Sprint(l.MMUseImPatchToken) }},
	{"mm_patch_merge_type", "flat", "LLaVA-1.5 feeds the image tokens as one flat sequence", func(l LLaVA) string { return l.MMPatchMergeType }},
	{"image_aspect_ratio", "pad", "images are padded to a square with the CLIP mean colour, as LLaVA-1.5 does", func(l LLaVA) string { return l.ImageAspectRatio }},
	{"report_to", "none", "metrics go to output_dir/metrics.jsonl (flextrain plot draws them)", func(l LLaVA) string { return l.ReportTo }},
	{"save_strategy", "steps", "checkpoints are taken every save_steps and at the end", func(l LLaVA) string { return l.SaveStrategy }},
	{"deepspeed", "", "memory and data parallelism are flextrain's own (flextrain plan, docs/DISTRIBUTED.md)", func(l LLaVA) string { return l.DeepSpeed }},
	{"freeze_backbone", "false", "what trains is set with the trainable and frozen patterns", func(l LLaVA) string { return fmt.Sprint(l.FreezeBackbone) }},
	{"tune_mm_mlp_adapter", "false", "what trains is set with the trainable and frozen patterns (trainable: [model.mm_projector.*])", func(l LLaVA) string { return fmt.Sprint(l.TuneMMMLPAdapter) }},
	{"freeze_mm_mlp_adapter", "false", "what trains is set with the trainable and frozen patterns (frozen: [model.mm_projector.*])", func(l LLaVA) string { return fmt.Sprint(l.FreezeMMMLPAdapter) }},
	{"pretrain_mm_mlp_adapter", "", "a pretrained projector is part of model_name_or_path's weights", func(l LLaVA) string { return l.PretrainMMMLPAdapter }},
}

// validateLLaVA refuses LLaVA keys set to a value this build does not train with, and contradictions.
func (c Config) validateLLaVA(bad badFunc) {
	for _, f := range fixed {
		if got := f.got(c.LLaVA); got != f.want {
			bad(f.key, "%s is not supported: %s", quoteEmpty(got), f.why)
		}
	}
	switch c.LLaVA.EvaluationStrategy {
	case "steps":
	case "no":
		if c.EvalSteps > 0 {
			bad("evaluation_strategy", `"no" contradicts eval_steps %d`, c.EvalSteps)
		}
	default:
		bad("evaluation_strategy", "%q is not supported: evaluation runs every eval_steps (steps), or never (no)", c.LLaVA.EvaluationStrategy)
	}
	if c.LLaVA.BF16 && c.DType != "float32" {
		bad("bf16", "true needs dtype float32 (the master weights), got dtype %s", c.DType)
	}
	if c.LLaVA.PerDeviceEvalBatchSize < 0 {
		bad("per_device_eval_batch_size", "must be ≥ 0, got %d", c.LLaVA.PerDeviceEvalBatchSize)
	}
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// alias returns the field an alias names, walking from the configuration's root.
func alias(root reflect.Value, key string) (reflect.Value, string, bool) {
	canon, ok := aliases[key]
	if !ok {
		return reflect.Value{}, "", false
	}
	v := root
	for _, part := range strings.Split(canon, ".") {
		v = fieldsOf(v)[part]
	}
	return v, canon, true
}

package config

import (
	"strings"
	"testing"
)

// TestLLaVAKeys: LLaVA's finetune.sh keys load under their own names (mm_vision_select_layer sets
// model.vision.select_layer), and each value LLaVA-1.5 does not train with is refused with its reason.
func TestLLaVAKeys(t *testing.T) {
	c, err := Load("testdata/llava_finetune.yaml", nil)
	if err != nil {
		t.Fatalf("Load(llava_finetune.yaml): %v", err)
	}
	if c.Arch.Vision.SelectLayer != -2 || !strings.HasSuffix(c.LLaVA.VisionTower, "/models/clip-vit-large-patch14-336") || !c.LLaVA.TF32 {
		t.Errorf("select_layer %d, vision_tower %q, tf32 %v; want -2, the tower's folder, true", c.Arch.Vision.SelectLayer, c.LLaVA.VisionTower, c.LLaVA.TF32)
	}
	if o := EvalDataOptions(c, nil, "x.json", ""); o.BatchSize != 4 {
		t.Errorf("evaluation batch %d; want per_device_eval_batch_size 4", o.BatchSize)
	}
	if c, err := Load("testdata/llava_finetune.yaml", []string{"mm_vision_select_layer=-1"}); err != nil || c.Arch.Vision.SelectLayer != -1 {
		t.Errorf("--set mm_vision_select_layer=-1: select_layer %d, %v; want -1", c.Arch.Vision.SelectLayer, err)
	}
	for _, tc := range []struct{ set, want string }{
		{"mm_use_im_start_end=true", "mm_use_im_start_end: true is not supported: LLaVA-1.5 trains with false"},
		{"mm_projector_type=linear", "mm_projector_type: linear is not supported"},
		{"mm_vision_select_feature=cls_patch", "mm_vision_select_feature: cls_patch is not supported"},
		{"image_aspect_ratio=anyres", "image_aspect_ratio: anyres is not supported"},
		{"bf16=true,dtype=float64", "bf16: true needs dtype float32"},
		{"report_to=wandb", "report_to: wandb is not supported: metrics go to output_dir/metrics.jsonl"},
		{"deepspeed=./scripts/zero3.json", "deepspeed: ./scripts/zero3.json is not supported"},
		{"tune_mm_mlp_adapter=true", "tune_mm_mlp_adapter: true is not supported: what trains is set with the trainable and frozen patterns"},
		{"version=plain", "version: plain is not supported"},
		{"evaluation_strategy=epoch", "evaluation_strategy"},
		{"eval_steps=10", `evaluation_strategy: "no" contradicts eval_steps 10`},
	} {
		if _, err := Load("testdata/llava_finetune.yaml", strings.Split(tc.set, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v; want an error with %q", tc.set, err, tc.want)
		}
	}
}

package inference

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/safetensors"
)

// The files Export writes into its folder.
const (
	ExportModelFile     = "model.safetensors" // every weight: model.LoadWeights reads the folder
	ExportTrainableFile = "flex.safetensors"  // --trainable-only: the trained tensors alone
	ExportConfigFile    = "config.json"       // ExportConfig
)

// ErrNothingTrained is returned by Export with trainableOnly when the checkpoint holds no tensor.
var ErrNothingTrained = errors.New("inference: export: the checkpoint holds no trained tensor")

// ExportConfig is the config.json of an export: the fields of an original LLaVA-1.5 checkpoint
// (LlavaLlamaForCausalLM, whose tensor names the export keeps, k_proj_hd/v_proj_hd added by FlexAttention),
// the official FlexAttention checkpoint's `extra` map, and flextrain's own description of the file.
type ExportConfig struct {
	Architectures         []string     `json:"architectures"`
	ModelType             string       `json:"model_type"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads"` // no GQA
	VocabSize             int          `json:"vocab_size"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta"`
	HiddenAct             string       `json:"hidden_act"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"` // model_max_length of the run
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	BOSTokenID            int          `json:"bos_token_id"`
	EOSTokenID            int          `json:"eos_token_id"`
	TorchDType            string       `json:"torch_dtype"`
	MMProjectorType       string       `json:"mm_projector_type"`
	MMHiddenSize          int          `json:"mm_hidden_size"`
	MMVisionSelectLayer   int          `json:"mm_vision_select_layer"`
	MMVisionSelectFeature string       `json:"mm_vision_select_feature"`
	MMUseImStartEnd       bool         `json:"mm_use_im_start_end"`
	MMUseImPatchToken     bool         `json:"mm_use_im_patch_token"`
	ImageAspectRatio      string       `json:"image_aspect_ratio"`
	VisionConfig          VisionExport `json:"vision_config"`
	Extra                 FlexExtra    `json:"extra"`
	Flex                  FlexExport   `json:"flex"`
	Flextrain             ExportInfo   `json:"flextrain"`
}

// VisionExport is the CLIP tower in Hugging Face's clip_vision_model spelling.
type VisionExport struct {
	ModelType         string  `json:"model_type"`
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	LayerNormEps      float64 `json:"layer_norm_eps"`
	HiddenAct         string  `json:"hidden_act"`
}

// FlexExtra is the `extra` map of the official FlexAttention checkpoint (senfu/llava-v1.5-7b-flexattn).
type FlexExtra struct {
	ZoomRatio   int     `json:"zoom_ratio"`
	LowresSize  int     `json:"lowres_size"`
	HighresSize int     `json:"highres_size"`
	Threshold   float64 `json:"threshold"`
}

// FlexExport is every FlexAttention setting the model needs (docs/DESIGN.md §7–§8).
type FlexExport struct {
	NSA         int     `json:"n_sa"`
	Zoom        int     `json:"zoom"`
	SelectGrid  int     `json:"select_grid"`
	LowresSize  int     `json:"lowres_size"`
	HighresSize int     `json:"highres_size"`
	Threshold   float64 `json:"threshold"`
	Strategy    string  `json:"strategy"`
	Ratio       float64 `json:"ratio,omitempty"`
}

// ExportInfo says what the exported tensor file holds and where it came from.
type ExportInfo struct {
	Step          int    `json:"step"`
	WeightsFile   string `json:"weights_file"`
	TrainableOnly bool   `json:"trainable_only"`
	Tensors       int    `json:"tensors"`
	BaseModel     string `json:"base_model,omitempty"` // model_name_or_path; empty: seeded initialisation
	Seed          int    `json:"seed"`
}

// NewExportConfig describes the export of tr; tensors is the number of tensors written.
func NewExportConfig(tr *Trained, trainableOnly bool, tensors int) ExportConfig {
	c, v, t := tr.Config, tr.Config.Arch.Vision, tr.Config.Arch.Text
	f := tr.Config.Flex.FlexConfig
	file := ExportModelFile
	if trainableOnly {
		file = ExportTrainableFile
	}
	return ExportConfig{Architectures: []string{"LlavaLlamaForCausalLM"}, ModelType: "llava",
		HiddenSize: t.HiddenSize, IntermediateSize: t.IntermediateSize, NumHiddenLayers: t.NumLayers,
		NumAttentionHeads: t.NumHeads, NumKeyValueHeads: t.NumHeads, VocabSize: t.VocabSize, RMSNormEps: t.RMSNormEps,
		RopeTheta: t.RopeTheta, HiddenAct: "silu", MaxPositionEmbeddings: c.ModelMaxLength,
		BOSTokenID: tr.Tokenizer.BOS(), EOSTokenID: tr.Tokenizer.EOS(), TorchDType: c.DType,
		MMProjectorType: "mlp2x_gelu", MMHiddenSize: v.HiddenSize, MMVisionSelectLayer: v.SelectLayer,
		MMVisionSelectFeature: "patch", ImageAspectRatio: "pad",
		VisionConfig: VisionExport{ModelType: "clip_vision_model", HiddenSize: v.HiddenSize, IntermediateSize: v.IntermediateSize,
			NumHiddenLayers: v.NumLayers, NumAttentionHeads: v.NumHeads, ImageSize: v.ImageSize, PatchSize: v.PatchSize,
			LayerNormEps: v.LayerNormEps, HiddenAct: "quick_gelu"},
		Extra: FlexExtra{ZoomRatio: f.Zoom, LowresSize: v.ImageSize, HighresSize: f.Zoom * v.ImageSize, Threshold: f.Threshold},
		Flex: FlexExport{NSA: f.NSA, Zoom: f.Zoom, SelectGrid: f.SelectGrid, LowresSize: v.ImageSize,
			HighresSize: f.Zoom * v.ImageSize, Threshold: f.Threshold, Strategy: f.Strategy, Ratio: f.Ratio},
		Flextrain: ExportInfo{Step: tr.Step, WeightsFile: file, TrainableOnly: trainableOnly, Tensors: tensors,
			BaseModel: c.ModelNameOrPath, Seed: c.Seed},
	}
}

// Export writes the trained model into dir for inference: a plain safetensors file (ExportModelFile with
// every weight under docs/DESIGN.md's names, or ExportTrainableFile with only the checkpoint's trained tensors
// when trainableOnly) and ExportConfigFile describing it. Each file is written atomically, the tensors
// first, so a config.json always describes a complete tensor file. The checkpoint was verified when tr was
// loaded (Load refuses a corrupt one).
func Export(tr *Trained, dir string, trainableOnly bool) error {
	tensors := tr.Weights.Tensors()
	if trainableOnly {
		tensors = tr.Trained
		if len(tensors) == 0 {
			return ErrNothingTrained
		}
	}
	cfg := NewExportConfig(tr, trainableOnly, len(tensors))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inference: export: %w", err)
	}
	meta := map[string]string{"format": "pt", "flextrain_step": strconv.Itoa(tr.Step), "flextrain_trainable_only": strconv.FormatBool(trainableOnly)}
	if err := checkpoints.WriteSafetensors(filepath.Join(dir, cfg.Flextrain.WeightsFile), tensors, meta); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	if err := checkpoints.WriteJSON(filepath.Join(dir, ExportConfigFile), cfg); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	return nil
}

// WriteBaseModel writes a model's weights into dir/model.safetensors as the next stage's
// model_name_or_path, leaving out the k/v_proj_hd tensors so that loading derives them from the trained
// k/v_proj (docs/DESIGN.md §7).
func WriteBaseModel(tensors map[string]safetensors.Tensor, dir string, meta map[string]string) error {
	for name := range tensors {
		if ok, _ := path.Match("model.layers.*.self_attn.*_proj_hd.weight", name); ok {
			delete(tensors, name)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inference: write base model: %w", err)
	}
	if err := checkpoints.WriteSafetensors(filepath.Join(dir, "model.safetensors"), tensors, meta); err != nil {
		return fmt.Errorf("inference: write base model: %w", err)
	}
	return nil
}

package inference

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/pretrained"
	"github.com/flextrain/flextrain/safetensors"
)

// The files Export writes into its folder.
const (
	ExportModelFile     = "model.safetensors" // every weight, when they fit in one shard (else an index and shards)
	ExportTrainableFile = "flex.safetensors"  // TrainableOnly: the trained tensors alone
	ExportConfigFile    = "config.json"       // pretrained's config.json, or ExportConfig for TrainableOnly
)

// ErrNothingTrained is returned by Export with TrainableOnly when the checkpoint holds no tensor.
var ErrNothingTrained = errors.New("inference: export: the checkpoint holds no trained tensor")

// ExportConfig is the config.json of a trainable-only export: the fields of an original LLaVA-1.5 checkpoint
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

// ExportInfo is config.json's flextrain block: what the export holds and where it came from.
type ExportInfo struct {
	Step          int    `json:"step"`
	Format        string `json:"format,omitempty"` // a whole model's layout (pretrained.Format)
	DType         string `json:"dtype,omitempty"`  // a whole model's tensors' dtype
	WeightsFile   string `json:"weights_file,omitempty"`
	TrainableOnly bool   `json:"trainable_only"`
	Tensors       int    `json:"tensors"`
	BaseModel     string `json:"base_model,omitempty"` // model_name_or_path; empty: seeded initialisation
	Seed          int    `json:"seed"`
}

// NewExportConfig describes the trainable-only export of tr; tensors is the number of tensors written.
func NewExportConfig(tr *Trained, tensors int) ExportConfig {
	c, v, t := tr.Config, tr.Config.Arch.Vision, tr.Config.Arch.Text
	f := tr.Config.Flex.FlexConfig
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
		Flextrain: ExportInfo{Step: tr.Step, WeightsFile: ExportTrainableFile, TrainableOnly: true, Tensors: tensors,
			BaseModel: c.ModelNameOrPath, Seed: c.Seed},
	}
}

// ExportOptions are Export's choices.
type ExportOptions struct {
	// Format is the folder's layout: pretrained.FormatLLaVA (the default: what LLaVA's loader reads, with
	// FlexAttention's keys and tensors added) or pretrained.FormatLLaVAHF (transformers'
	// LlavaForConditionalGeneration).
	Format pretrained.Format
	// DType is the tensors' dtype: "float32" (the default, a float32 run's bits), "float16" or "bfloat16".
	DType string
	// TrainableOnly writes ExportTrainableFile, the checkpoint's trained tensors alone under flextrain's
	// names, in their own dtype, with ExportConfig: an adapter for the base model, not a model of its own.
	TrainableOnly bool
}

// Export writes the trained model into dir for inference: a folder of the whole model in o.Format, which
// pretrained.Open (and so Load, predict and eval) reads back, with its tokenizer files and the run's
// FlexAttention settings; or, with o.TrainableOnly, ExportTrainableFile and ExportConfigFile. Every file is
// written atomically, the tensors first, so a config.json always describes complete tensor files. The
// checkpoint was verified when tr was loaded (Load refuses a corrupt one).
func Export(tr *Trained, dir string, o ExportOptions) error {
	if o.TrainableOnly {
		return exportTrainable(tr, dir)
	}
	return pretrained.Write(dir, cmp.Or(o.Format, pretrained.FormatLLaVA), tr.Config.Model(), tr.Weights.Tensors(), tr.writeOptions(o))
}

// writeOptions are the choices of pretrained.Write that make an export of tr in o's format and dtype.
func (tr *Trained) writeOptions(o ExportOptions) pretrained.WriteOptions {
	dt := cmp.Or(o.DType, "float32")
	w := pretrained.WriteOptions{DType: dt, Tokenizer: tr.Config.TokenizerPath, VisionTower: tr.Config.LLaVA.VisionTower,
		Plain:                 tr.Config.Flex.View == "lr", // a model that reads no HR token: a plain LLaVA
		MaxPositionEmbeddings: tr.Config.ModelMaxLength,
		Metadata:              map[string]string{"flextrain_step": strconv.Itoa(tr.Step)},
		Info: ExportInfo{Step: tr.Step, Format: string(cmp.Or(o.Format, pretrained.FormatLLaVA)), DType: dt,
			Tensors: exportedTensors(tr), BaseModel: tr.Config.ModelNameOrPath, Seed: tr.Config.Seed}}
	if tr.Tokenizer != nil {
		w.Tokens = &pretrained.TokenIDs{BOS: tr.Tokenizer.BOS(), EOS: tr.Tokenizer.EOS(), Pad: -1}
	}
	if f := tr.Folder; f != nil {
		w.Tokenizer, w.Tokens, w.HFTokens = f.TokenizerDir, &f.Tokens, f.HFTokens
		w.VisionTower = cmp.Or(f.VisionTower, w.VisionTower)
	}
	if !strings.Contains(w.VisionTower, "/") || isLocal(w.VisionTower) {
		w.VisionTower = "" // a local folder means nothing on another machine: the default tower's name
	}
	return w
}

// exportedTensors is the number of tensors a whole-model export of tr writes: a plain LLaVA has no
// k/v_proj_hd.
func exportedTensors(tr *Trained) int {
	n := 0
	for _, name := range tr.Weights.Names() {
		if tr.Config.Flex.View != "lr" || !strings.HasSuffix(name, "_proj_hd.weight") {
			n++
		}
	}
	return n
}

// isLocal says whether path names something on this machine.
func isLocal(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// exportTrainable writes the trained tensors alone, with ExportConfig.
func exportTrainable(tr *Trained, dir string) error {
	if len(tr.Trained) == 0 {
		return ErrNothingTrained
	}
	cfg := NewExportConfig(tr, len(tr.Trained))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inference: export: %w", err)
	}
	meta := map[string]string{"format": "pt", "flextrain_step": strconv.Itoa(tr.Step), "flextrain_trainable_only": "true"}
	if err := checkpoints.WriteSafetensors(filepath.Join(dir, ExportTrainableFile), tr.Trained, meta); err != nil {
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

package inference

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/pretrained"
	"github.com/flextrain/flextrain/safetensors"
)

// The files Export writes into its folder.
const (
	ExportModelFile     = "model.safetensors" // every weight, when they fit in one shard (else an index and shards)
	ExportTrainableFile = "flex.safetensors"  // TrainableOnly: the trained tensors alone
	ExportConfigFile    = "config.json"       // pretrained's, last
)

// ErrNothingTrained is returned by Export with TrainableOnly when the checkpoint holds no tensor.
var ErrNothingTrained = errors.New("inference: export: the checkpoint holds no trained tensor")

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

// ExportOptions are Export's choices.
type ExportOptions struct {
	// Format is the folder's layout: pretrained.FormatLLaVA (the default: what LLaVA's loader reads, with
	// FlexAttention's keys and tensors added) or pretrained.FormatLLaVAHF (transformers'
	// LlavaForConditionalGeneration).
	Format pretrained.Format
	// DType is the tensors' dtype: "float32" (the default, a float32 run's bits), "float16" or "bfloat16".
	DType string
	// TrainableOnly writes ExportTrainableFile, the checkpoint's trained tensors alone under flextrain's
	// names, in their own dtype, with the llava layout's config.json: an adapter for the base model, not a
	// model of its own. Format and DType are then not used.
	TrainableOnly bool
}

// Export writes the trained model into dir for inference: a folder of the whole model in o.Format, which
// pretrained.Open (and so Load, predict and eval) reads back, with its tokenizer files and the run's
// FlexAttention settings; or, with o.TrainableOnly, ExportTrainableFile and ExportConfigFile. Every file is
// written atomically, the tensors first, so a config.json always describes complete tensor files. The
// checkpoint was verified when tr was loaded (Load refuses a corrupt one).
func Export(tr *Trained, dir string, o ExportOptions) error {
	o.Format, o.DType = cmp.Or(o.Format, pretrained.FormatLLaVA), cmp.Or(o.DType, "float32")
	if o.TrainableOnly {
		return exportTrainable(tr, dir)
	}
	w := tr.writeOptions()
	w.DType = o.DType
	w.Info = ExportInfo{Step: tr.Step, Format: string(o.Format), DType: o.DType, Tensors: exportedTensors(tr, w.Plain),
		BaseModel: tr.Config.ModelNameOrPath, Seed: tr.Config.Seed}
	return pretrained.Write(dir, o.Format, tr.Config.Model(), tr.Weights.StoredTensors(), w) // 16-bit weights are not widened on the way
}

// writeOptions are the choices of pretrained.Write that describe tr: its tokenizer, special ids, tower, length,
// step, and whether it reads HR tokens at all.
func (tr *Trained) writeOptions() pretrained.WriteOptions {
	w := pretrained.WriteOptions{Tokenizer: tr.Config.TokenizerPath, VisionTower: tr.Config.LLaVA.VisionTower,
		Plain:                 tr.Config.Flex.View == "lr", // a model that reads no HR token: a plain LLaVA
		MaxPositionEmbeddings: tr.Config.ModelMaxLength,
		Metadata:              map[string]string{"flextrain_step": strconv.Itoa(tr.Step)}}
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
func exportedTensors(tr *Trained, plain bool) int {
	n := 0
	for _, name := range tr.Weights.Names() {
		if !plain || !model.IsHRProjection(name) {
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

// exportTrainable writes the trained tensors alone, with the config.json that describes them.
func exportTrainable(tr *Trained, dir string) error {
	if len(tr.Trained) == 0 {
		return ErrNothingTrained
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inference: export: %w", err)
	}
	meta := map[string]string{"format": "pt", "flextrain_step": strconv.Itoa(tr.Step), "flextrain_trainable_only": "true"}
	if err := checkpoints.WriteSafetensors(filepath.Join(dir, ExportTrainableFile), tr.Trained, meta); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	w := tr.writeOptions()
	w.DType = tr.Config.DType
	w.Info = ExportInfo{Step: tr.Step, WeightsFile: ExportTrainableFile, TrainableOnly: true, Tensors: len(tr.Trained),
		BaseModel: tr.Config.ModelNameOrPath, Seed: tr.Config.Seed}
	if err := pretrained.WriteConfig(dir, tr.Config.Model(), tr.Trained, w); err != nil {
		return fmt.Errorf("inference: %w", err)
	}
	return nil
}

// WriteBaseModel writes a model's weights into dir/model.safetensors as the next stage's
// model_name_or_path, leaving out the k/v_proj_hd tensors so that loading derives them from the trained
// k/v_proj (docs/DESIGN.md §7).
func WriteBaseModel(tensors map[string]safetensors.Tensor, dir string, meta map[string]string) error {
	for name := range tensors {
		if model.IsHRProjection(name) {
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

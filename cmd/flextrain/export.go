package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/pretrained"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/checkpoints"
)

func init() { register(exportCommand()) }

// exportCommand is `flextrain export`: the trained model as plain safetensors plus config.json.
func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a trained model as a folder that LLaVA or Hugging Face transformers loads",
		Description: "Writes DIR as a model folder of --format: safetensors shards of every weight (the base with the trained\n" +
			"tensors in place) in --dtype, config.json with the FlexAttention settings, generation_config.json and\n" +
			"the tokenizer files. flextrain predict, eval and selection read it back with --model DIR. With\n" +
			"--trainable-only, DIR/flex.safetensors holds only the trained tensors. Files are written atomically;\n" +
			"a corrupt checkpoint is refused.",
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR`"},
			&cli.StringFlag{Name: "format", Value: string(pretrained.FormatLLaVA),
				Usage: "`LAYOUT`: llava (LLaVA's LlavaLlamaForCausalLM) or llava-hf (transformers' LlavaForConditionalGeneration)"},
			&cli.StringFlag{Name: "dtype", Value: "float32", Usage: "`DTYPE` of the tensors written: float32, float16 or bfloat16"},
			&cli.BoolFlag{Name: "trainable-only", Usage: "write only the trained tensors (flex.safetensors, flextrain's names)"},
		),
		Action: func(cx *cli.Context) error {
			o := inference.ExportOptions{Format: pretrained.Format(cx.String("format")), DType: cx.String("dtype"),
				TrainableOnly: cx.Bool("trainable-only")}
			if err := checkExportOptions(o); err != nil {
				return err
			}
			tr, path, err := loadTrained(cx)
			if err != nil {
				return err
			}
			dir := cx.String("out")
			if err := inference.Export(tr, dir, o); err != nil {
				return fmt.Errorf("export %s to %s: %w", path, dir, err)
			}
			return writeExported(cx.App.Writer, tr, path, dir)
		},
	}
}

// exportMain runs `flextrain export` with args, writing to w.
func exportMain(args []string, w io.Writer) error { return runCommand(exportCommand(), args, w) }

// modelFlags are the flags of the commands that read a trained or published model: --model (alias
// --checkpoint) and --vision-tower.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"checkpoint"}, Required: true,
			Usage: "the model `PATH`: a checkpoint (output_dir/checkpoint-N), an output_dir (its newest verified " +
				"checkpoint), or a model folder with config.json (published LLaVA-1.5, llava-hf, or an export)"},
		&cli.StringFlag{Name: "vision-tower", Usage: "CLIP `DIR` for a LLaVA folder whose tower is elsewhere " +
			"(default: the folder's own tower, mm_vision_tower as a local path, or a sibling folder of its name)"},
	}
}

// resolveModel returns path when it is a checkpoint or a model folder, or the newest verified checkpoint
// of the output directory path.
func resolveModel(path string) (string, error) {
	if pretrained.IsFolder(path) {
		return path, nil
	}
	if _, err := os.Stat(filepath.Join(path, "MANIFEST")); err == nil {
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("model %s: %w", path, err)
	}
	e, err := checkpoints.Latest(path)
	if err != nil {
		return "", fmt.Errorf("model %s is neither a checkpoint, a model folder (config.json) nor an output_dir holding a checkpoint: %w", path, err)
	}
	return e.Path, nil
}

// loadTrained resolves and loads the model of the --model and --vision-tower flags; it returns the path
// it read.
func loadTrained(cx *cli.Context) (*inference.Trained, string, error) {
	p, err := resolveModel(cx.String("model"))
	if err != nil {
		return nil, "", err
	}
	tr, err := inference.Load(p, inference.Options{VisionTower: cx.String("vision-tower")})
	return tr, p, err
}

// checkExportOptions refuses a format or dtype export does not write before anything is loaded.
func checkExportOptions(o inference.ExportOptions) error {
	switch {
	case o.Format != pretrained.FormatLLaVA && o.Format != pretrained.FormatLLaVAHF:
		return fmt.Errorf("export: --format %q is not llava or llava-hf", o.Format)
	case !slices.Contains([]string{"float32", "float16", "bfloat16"}, o.DType):
		return fmt.Errorf("export: --dtype %q is not float32, float16 or bfloat16", o.DType)
	}
	return nil
}

// writeExported reports what an export wrote: every file of dir with its size.
func writeExported(w io.Writer, tr *inference.Trained, src, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := fmt.Fprintf(w, "exported step %d of %s to %s\n", tr.Step, src, dir); err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if _, err := fmt.Fprintf(w, "  %-36s %10s\n", e.Name(), byteSize(info.Size())); err != nil {
			return err
		}
	}
	return nil
}

// byteSize formats a size in bytes with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 4 {
		v, exp = v/unit, exp+1
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[exp])
}

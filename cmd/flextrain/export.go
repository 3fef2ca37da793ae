package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flextrain/flextrain/inference"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/checkpoints"
)

func init() { register(exportCommand()) }

// exportCommand is `flextrain export`: the trained model as plain safetensors plus config.json.
func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a checkpoint's model as a plain safetensors file (LLaVA-1.5 tensor names) with config.json",
		Description: "Writes DIR/model.safetensors (every weight: the base with the trained tensors in place) and\n" +
			"DIR/config.json (LLaVA fields plus the FlexAttention settings); with --trainable-only, DIR/flex.safetensors\n" +
			"holds only the trained tensors. Files are written atomically; a corrupt checkpoint is refused.",
		Flags: []cli.Flag{
			checkpointFlag(),
			&cli.StringFlag{Name: "out", Required: true, Usage: "output `DIR`"},
			&cli.BoolFlag{Name: "trainable-only", Usage: "write only the trained tensors"},
		},
		Action: func(cx *cli.Context) error {
			tr, path, err := loadTrained(cx.String("checkpoint"))
			if err != nil {
				return err
			}
			dir := cx.String("out")
			if err := inference.Export(tr, dir, cx.Bool("trainable-only")); err != nil {
				return fmt.Errorf("export %s to %s: %w", path, dir, err)
			}
			return writeExported(cx.App.Writer, tr, path, dir, cx.Bool("trainable-only"))
		},
	}
}

// exportMain runs `flextrain export` with args, writing to w.
func exportMain(args []string, w io.Writer) error { return runCommand(exportCommand(), args, w) }

// checkpointFlag is the --checkpoint flag of the commands that read a trained model.
func checkpointFlag() cli.Flag {
	return &cli.StringFlag{Name: "checkpoint", Required: true,
		Usage: "checkpoint `PATH` (output_dir/checkpoint-N), or an output_dir: its newest verified checkpoint"}
}

// resolveCheckpoint returns path when it is a checkpoint directory, or the newest verified checkpoint of
// the output directory path.
func resolveCheckpoint(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, "MANIFEST")); err == nil {
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("checkpoint %s: %w", path, err)
	}
	e, err := checkpoints.Latest(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s is neither a checkpoint nor an output_dir holding one: %w", path, err)
	}
	return e.Path, nil
}

// loadTrained resolves and loads a trained model; it returns the checkpoint path it read.
func loadTrained(path string) (*inference.Trained, string, error) {
	p, err := resolveCheckpoint(path)
	if err != nil {
		return nil, "", err
	}
	tr, err := inference.Load(p, inference.Options{})
	return tr, p, err
}

// writeExported reports what an export wrote.
func writeExported(w io.Writer, tr *inference.Trained, src, dir string, trainableOnly bool) error {
	cfg := inference.NewExportConfig(tr, trainableOnly, 0)
	file := filepath.Join(dir, cfg.Flextrain.WeightsFile)
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	n := len(tr.Trained)
	if !trainableOnly {
		n = len(tr.Weights.Names())
	}
	_, err = fmt.Fprintf(w, "exported step %d of %s\n  %s  %d tensors, %s (%s)\n  %s\n", tr.Step, src, file, n,
		byteSize(st.Size()), tr.Config.DType, filepath.Join(dir, inference.ExportConfigFile))
	return err
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

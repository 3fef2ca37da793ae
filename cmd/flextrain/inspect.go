package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/pretrained"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/checkpoints"
)

func init() { register(inspectCommand()) }

// inspectCommand is `flextrain inspect PATH`: what a checkpoint or an exported file holds, and whether it verifies.
func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a checkpoint, a checkpoint file, a safetensors file or a model folder, and verify it",
		ArgsUsage: "PATH",
		Description: "Prints the step, the files with their stored and raw sizes, every tensor (group, name, dtype, shape,\n" +
			"size) and the compression ratio. Every byte is verified as loading would; a corrupt file is named and\n" +
			"the command exits with an error after printing what it could read. A model folder (config.json: a\n" +
			"published LLaVA-1.5, llava-hf or an export) also gets its layout and the model its configuration describes.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "vision-tower", Usage: "CLIP `DIR` of a LLaVA folder whose tower is elsewhere"}},
		Action: func(cx *cli.Context) error {
			args, err := positional(cx, 1)
			if err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			infos, verr := inspectPath(args[0])
			folder, ferr := describeFolder(args[0], cx.String("vision-tower"))
			verr = errors.Join(verr, ferr)
			if cx.Bool("json") {
				in := inspectJSON(args[0], infos, verr)
				in.Folder = folder
				err = json.NewEncoder(cx.App.Writer).Encode(in)
			} else {
				err = writeInspection(cx.App.Writer, args[0], infos, verr)
				if err == nil && folder != nil {
					err = writeFolder(cx.App.Writer, folder)
				}
			}
			if err != nil {
				return fmt.Errorf("inspect: write: %w", err)
			}
			return verr
		},
	}
}

// inspectMain runs `flextrain inspect` with args, writing to w.
func inspectMain(args []string, w io.Writer) error { return runCommand(inspectCommand(), args, w) }

// inspectPath inspects a checkpoint directory or a file, or every safetensors file of an export folder
// (a directory without MANIFEST). The error joins every file's error.
func inspectPath(path string) ([]checkpoints.Info, error) {
	files, err := exportFiles(path)
	if err == nil && len(files) == 0 && pretrained.IsFolder(path) {
		return nil, fmt.Errorf("%s holds no *.safetensors file: inspect lists safetensors tensors (PyTorch .bin "+
			"weights are read by fit, predict and eval)", path)
	}
	if err != nil || len(files) == 0 {
		lim, _ := inference.Limits(path) // a checkpoint's own model bounds it; anything else gets the default
		info, err := checkpoints.Store{Limits: lim}.Inspect(path)
		if err == nil && info.Step >= 0 && isDir(path) {
			err = checkModel(path)
		}
		return []checkpoints.Info{info}, err
	}
	var infos []checkpoints.Info
	var errs []error
	for _, f := range files {
		info, err := checkpoints.Inspect(f)
		infos, errs = append(infos, info), append(errs, err)
	}
	return infos, errors.Join(errs...)
}

// checkModel checks a verified checkpoint directory's tensors against the model of its config.yaml.
func checkModel(path string) error {
	ck, err := inference.LoadCheckpoint(path)
	if err != nil {
		return err
	}
	if err := inference.CheckCheckpoint(ck); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// exportFiles lists the *.safetensors files of a directory that is not a checkpoint (no MANIFEST).
func exportFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(path, "MANIFEST")); err == nil {
		return nil, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.safetensors"))
	sort.Strings(files)
	return files, err
}

// inspection is the --json output of inspect.
type inspection struct {
	Path        string           `json:"path"`
	Step        int              `json:"step"` // -1 for a lone file
	Verified    bool             `json:"verified"`
	Error       string           `json:"error,omitempty"`
	Files       []inspectFile    `json:"files"`
	Tensors     []inspectTensor  `json:"tensors"`
	Parameters  map[string]int64 `json:"parameters"` // elements per group
	StoredBytes int64            `json:"stored_bytes"`
	RawBytes    int64            `json:"raw_bytes"`
	Ratio       float64          `json:"compression_ratio"`
	Folder      *folderSummary   `json:"folder,omitempty"`
}

// folderSummary is what a model folder's configuration describes.
type folderSummary struct {
	Layout       pretrained.Layout `json:"layout"`
	Layers       int               `json:"num_layers"`
	Hidden       int               `json:"hidden_size"`
	Heads        int               `json:"num_heads"`
	Vocab        int               `json:"vocab_size"`
	VisionLayers int               `json:"vision_layers"`
	ImageSize    int               `json:"image_size"`
	PatchSize    int               `json:"patch_size"`
	SelectLayer  int               `json:"select_layer"`
	Tokenizer    bool              `json:"tokenizer"` // the folder holds tokenizer.json or tokenizer.model
}

// describeFolder reads the layout and model of a model folder's configuration (nil, nil for any other
// path). It reads no weight: a 7B folder is described without its 14 GB.
func describeFolder(path, visionTower string) (*folderSummary, error) {
	if !pretrained.IsFolder(path) {
		return nil, nil
	}
	layout, cfg, err := pretrained.ReadLayout(path, pretrained.Options{VisionTower: visionTower})
	if layout == "" {
		return nil, err
	}
	s := &folderSummary{Layout: layout, Tokenizer: pretrained.HasTokenizer(path)}
	if layout == pretrained.LayoutCLIP || err != nil {
		return s, err
	}
	t, v := cfg.Text, cfg.Vision
	s.Layers, s.Hidden, s.Heads, s.Vocab = t.NumLayers, t.HiddenSize, t.NumHeads, t.VocabSize
	s.VisionLayers, s.ImageSize, s.PatchSize, s.SelectLayer = v.NumLayers, v.ImageSize, v.PatchSize, v.SelectLayer
	return s, nil
}

// writeFolder prints a folder summary.
func writeFolder(w io.Writer, s *folderSummary) error {
	if s.Layout == pretrained.LayoutCLIP {
		_, err := fmt.Fprintf(w, "\nmodel folder, layout clip: a vision tower only (a LLaVA folder's --vision-tower)\n")
		return err
	}
	_, err := fmt.Fprintf(w, "\nmodel folder, layout %s: decoder %d layers × %d wide, %d heads, vocabulary %d; "+
		"vision tower %d layers, %d px in %d px patches, features of layer %d; tokenizer: %t\n", s.Layout, s.Layers,
		s.Hidden, s.Heads, s.Vocab, s.VisionLayers, s.ImageSize, s.PatchSize, s.SelectLayer, s.Tokenizer)
	return err
}

type inspectFile struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	RawSize int64  `json:"raw_size"`
}

type inspectTensor struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Bytes int    `json:"bytes"`
}

// inspectJSON gathers the inspections of path into one object.
func inspectJSON(path string, infos []checkpoints.Info, verr error) inspection {
	out := inspection{Path: path, Step: -1, Verified: verr == nil, Parameters: map[string]int64{},
		Files: []inspectFile{}, Tensors: []inspectTensor{}}
	if verr != nil {
		out.Error = verr.Error()
	}
	for _, info := range infos {
		out.Step = max(out.Step, info.Step)
		out.StoredBytes, out.RawBytes = out.StoredBytes+info.StoredBytes(), out.RawBytes+info.RawBytes()
		for _, f := range info.Files {
			out.Files = append(out.Files, inspectFile{f.Name, f.Size, f.RawSize})
		}
		for _, t := range info.Tensors {
			out.Tensors = append(out.Tensors, inspectTensor{t.Group, t.Name, string(t.DType), t.Shape, t.Bytes})
			out.Parameters[t.Group] += elements(t.Shape)
		}
	}
	if out.StoredBytes > 0 {
		out.Ratio = float64(out.RawBytes) / float64(out.StoredBytes)
	}
	return out
}

func elements(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// writeInspection prints an inspection as tables.
func writeInspection(w io.Writer, path string, infos []checkpoints.Info, verr error) error {
	in := inspectJSON(path, infos, verr)
	what := "file"
	if in.Step >= 0 {
		what = fmt.Sprintf("checkpoint at step %d", in.Step)
	}
	status := "verified"
	if verr != nil {
		status = "CORRUPT or unreadable (see the error below)"
	}
	fmt.Fprintf(w, "%s: %s, %s\n\n%-24s %12s %12s %7s\n", path, what, status, "file", "stored", "raw", "ratio")
	for _, f := range in.Files {
		fmt.Fprintf(w, "%-24s %12s %12s %7.3f\n", f.Name, byteSize(f.Size), byteSize(f.RawSize), ratio(f.RawSize, f.Size))
	}
	group, name := len("group"), len("tensor")
	for _, t := range in.Tensors {
		group, name = max(group, len(t.Group)), max(name, len(t.Name))
	}
	fmt.Fprintf(w, "\n%-*s %-*s %-5s %-16s %10s\n", group, "group", name, "tensor", "dtype", "shape", "size")
	for _, t := range in.Tensors {
		fmt.Fprintf(w, "%-*s %-*s %-5s %-16s %10s\n", group, t.Group, name, t.Name, t.DType, fmt.Sprint(t.Shape), byteSize(int64(t.Bytes)))
	}
	fmt.Fprintf(w, "\n%d tensors;", len(in.Tensors))
	for _, g := range slices.Sorted(maps.Keys(in.Parameters)) {
		fmt.Fprintf(w, " %s: %d values;", g, in.Parameters[g])
	}
	_, err := fmt.Fprintf(w, " %s stored, %s raw, compression ratio %.3f\n", byteSize(in.StoredBytes), byteSize(in.RawBytes), in.Ratio)
	return err
}

func ratio(raw, stored int64) float64 {
	if stored == 0 {
		return 0
	}
	return float64(raw) / float64(stored)
}

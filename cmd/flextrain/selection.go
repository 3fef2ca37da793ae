package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/flextrain/flextrain/figures"
	"github.com/flextrain/flextrain/inference"

	"github.com/urfave/cli/v2"
)

func init() { register(selectionCommand()) }

// selectionCommand is `flextrain selection`: where a checkpoint's FlexAttention layers look, as a figure over
// the images and as how much of each record's target box they cover.
func selectionCommand() *cli.Command {
	return &cli.Command{
		Name:  "selection",
		Usage: "which HR cells each FlexAttention layer selects for the answer: a figure over the images, and target coverage",
		Description: "Decodes the first N image records (of --kind, when given) in file order as eval does and takes, per\n" +
			"FlexAttention layer, the cells the prompt's last row attended to (the row that predicts the answer's\n" +
			"first token). Prints per layer the mean fraction of cells selected and, for records with a \"box\" (the\n" +
			"synthetic set's target), the mean fraction of the box's HR tokens covered and how often any of it was.\n" +
			"Draws the first --draw of them: the HR view with the selected cells bright and outlined, the others\n" +
			"dimmed, the box in cyan, under the reference and the greedy answer (green when they agree).",
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "data", Required: true, Usage: "LLaVA JSON `FILE` (array or JSON Lines)"},
			&cli.StringFlag{Name: "image-folder", Usage: "`DIR` the records' image paths are relative to (default: the run's image_folder)"},
			&cli.StringFlag{Name: "kind", Usage: "only records whose \"kind\" is `KIND` (the synthetic set's small, large)"},
			&cli.IntFlag{Name: "n", Value: 8, Usage: "number of images measured"},
			&cli.IntFlag{Name: "draw", Value: 4, Usage: "number of them drawn (0: no figure)"},
			&cli.StringFlag{Name: "out", Usage: "PNG `FILE` to write (default CHECKPOINT/selection.png)"},
			&cli.BoolFlag{Name: "json", Usage: "print the per-layer summary as one JSON object instead of text"},
			&cli.Float64SliceFlag{Name: "thresholds", Usage: "with --json, also the share of cells the attention strategy selects in the first FlexAttention layer at each threshold `T,T,...` (calibration)"},
		),
		Action: func(cx *cli.Context) error {
			if cx.Int("n") <= 0 || cx.Int("draw") < 0 {
				return fmt.Errorf("selection: --n must be positive and --draw not negative, got %d and %d", cx.Int("n"), cx.Int("draw"))
			}
			if len(cx.Float64Slice("thresholds")) > 0 && !cx.Bool("json") {
				return fmt.Errorf("selection: --thresholds is reported in the JSON summary only: add --json")
			}
			tr, path, err := loadTrained(cx)
			if err != nil {
				return err
			}
			views, err := tr.Selections(cx.Context, cx.String("data"), cx.String("image-folder"), cx.String("kind"), cx.Int("n"))
			if err != nil {
				return err
			}
			if len(views) == 0 {
				return fmt.Errorf("selection: %s has no image record of kind %q", cx.String("data"), cx.String("kind"))
			}
			drawn := views[:min(cx.Int("draw"), len(views))]
			out := cx.String("out")
			if out == "" {
				out = filepath.Join(path, "selection.png")
			}
			if len(drawn) > 0 {
				if err := figures.WriteSelectionPNG(drawn, tr.CellGrid(), out); err != nil {
					return err
				}
			}
			if cx.Bool("json") {
				cal, err := tr.Calibrate(views, cx.Float64Slice("thresholds"))
				if err != nil {
					return err
				}
				return json.NewEncoder(cx.App.Writer).Encode(selectionOutput{path, cx.String("data"), cx.String("kind"),
					len(views), inference.SummarizeSelections(views), cal})
			}
			return printSelections(cx.App.Writer, out, views, drawn)
		},
	}
}

// selectionOutput is the JSON object `selection --json` prints.
type selectionOutput struct {
	Checkpoint string                     `json:"checkpoint"`
	Data       string                     `json:"data"`
	Kind       string                     `json:"kind,omitempty"`
	Images     int                        `json:"images"`
	Layers     []inference.LayerSelection `json:"layers"`
	Thresholds []inference.Calibration    `json:"thresholds,omitempty"`
}

// printSelections prints the figure written to out and its views one per line, then the summary of all
// views per layer.
func printSelections(w io.Writer, out string, views, drawn []inference.SelectionView) error {
	if len(drawn) > 0 {
		if _, err := fmt.Fprintf(w, "wrote %s: %d images\n", out, len(drawn)); err != nil {
			return err
		}
	}
	for _, v := range drawn {
		line := fmt.Sprintf("%s: answer %q predicted %q", v.ID, v.Answer, v.Predicted)
		for i, c := range v.Coverage {
			line += fmt.Sprintf(" | layer %d: %d cells, box %.0f%%", i+1, count(v.Cells[i]), 100*c)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	for i, s := range inference.SummarizeSelections(views) {
		if _, err := fmt.Fprintf(w, "layer %d over %d images: %.1f%% of cells selected; %d boxes: %.1f%% of their tokens covered, %.1f%% touched, %.1f%% in a selected crop\n",
			i+1, len(views), 100*s.Selected, s.Boxes, 100*s.Covered, 100*s.Hit, 100*s.Crop); err != nil {
			return err
		}
	}
	return nil
}

// count is the number of selected cells.
func count(cells []bool) int {
	n := 0
	for _, c := range cells {
		if c {
			n++
		}
	}
	return n
}

// selectionMain runs `flextrain selection` with args, writing to w.
func selectionMain(args []string, w io.Writer) error { return runCommand(selectionCommand(), args, w) }

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/flextrain/flextrain/config"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/model"
)

func init() { register(flopsCommand()) }

// flopsCommand is `flextrain flops`: the forward FLOPs of one sample of the configured model.
func flopsCommand() *cli.Command {
	return &cli.Command{
		Name:  "flops",
		Usage: "forward FLOPs of one sample: LR-only, FlexAttention and full-HR sequence (docs/DESIGN.md §14)",
		Description: "Counts 2 FLOPs per multiply-add over the matrix products of one prefill, no causal halving.\n" +
			"FlexAttention is given in both conventions: inference-true (k/v_proj_hd over the selected HR tokens,\n" +
			"HR vision passes counted) and paper-like (k/v_proj_hd over all HR tokens, HR vision passes not counted).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "run configuration `FILE` (YAML)"},
			&cli.GenericFlag{Name: "set", Value: &setFlag{}, Usage: "override a config key, `key=value` (repeatable)"},
			&cli.Float64Flag{Name: "selected", Value: 0.1, Usage: "fraction of the HR tokens each row attends"},
			&cli.IntFlag{Name: "text-tokens", Value: 64, Usage: "text tokens in the sample, besides the image"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: func(cx *cli.Context) error {
			cfg, err := config.Load(cx.String("config"), cx.Generic("set").(*setFlag).values)
			if err != nil {
				return err
			}
			f, err := cfg.Model().ForwardFLOPs(cx.Int("text-tokens"), cx.Float64("selected"))
			if err != nil {
				return err
			}
			if cx.Bool("json") {
				return writeFlopsJSON(cx.App.Writer, f, cx.Float64("selected"))
			}
			return writeFlopsTable(cx.App.Writer, f, cx.Float64("selected"))
		},
	}
}

// flopsMain runs `flextrain flops` with args (those after the subcommand name), writing to w.
func flopsMain(args []string, w io.Writer) error {
	app := &cli.App{Name: "flextrain", Writer: w, ErrWriter: w, Commands: []*cli.Command{flopsCommand()}}
	return app.Run(append([]string{"flextrain", "flops"}, args...))
}

// setFlag collects every --set key=value as given: unlike cli.StringSliceFlag it does not split at commas,
// so list values such as trainable=a.*,b.* reach config.Config.Set whole.
type setFlag struct{ values []string }

func (s *setFlag) Set(v string) error { s.values = append(s.values, v); return nil }
func (s *setFlag) String() string     { return strings.Join(s.values, " ") }

// flopsRow is one configuration's count in the JSON output.
type flopsRow struct {
	Decoder float64 `json:"decoder"`
	Vision  float64 `json:"vision"`
	Total   float64 `json:"total"`
}

func row(f model.FLOPs) flopsRow { return flopsRow{f.Decoder, f.Vision, f.Total()} }

func writeFlopsJSON(w io.Writer, f model.Forward, selected float64) error {
	out := struct {
		TextTokens         int      `json:"text_tokens"`
		ImageTokens        int      `json:"image_tokens"`
		HRTokens           int      `json:"hr_tokens"`
		SelectedFraction   float64  `json:"selected_fraction"`
		SelectedTokens     float64  `json:"selected_tokens"`
		LROnly             flopsRow `json:"lr_only"`
		FlexInference      flopsRow `json:"flex_inference"`
		FlexPaper          flopsRow `json:"flex_paper"`
		FullHR             flopsRow `json:"full_hr"`
		ReductionInference float64  `json:"reduction_inference"`
		ReductionPaper     float64  `json:"reduction_paper"`
	}{f.TextTokens, f.ImageTokens, f.HRTokens, selected, f.Selected, row(f.LROnly), row(f.FlexInference),
		row(f.FlexPaper), row(f.FullHR), f.ReductionInference(), f.ReductionPaper()}
	return json.NewEncoder(w).Encode(out)
}

func writeFlopsTable(w io.Writer, f model.Forward, selected float64) error {
	scale, unit := flopUnit(f.FullHR.Total())
	fmt.Fprintf(w, "forward FLOPs of one sample: %d image + %d text = %d tokens; %d HR tokens, %.3g%% selected (%.1f)\n\n",
		f.ImageTokens, f.TextTokens, f.ImageTokens+f.TextTokens, f.HRTokens, 100*selected, f.Selected)
	fmt.Fprintf(w, "%-30s %9s %9s %9s\n", unit, "decoder", "vision", "total")
	for _, r := range []struct {
		name string
		f    model.FLOPs
	}{
		{"LR only", f.LROnly},
		{"FlexAttention, inference-true", f.FlexInference},
		{"FlexAttention, paper-like", f.FlexPaper},
		{"full HR sequence", f.FullHR},
	} {
		fmt.Fprintf(w, "%-30s %9.3f %9.3f %9.3f\n", r.name, r.f.Decoder/scale, r.f.Vision/scale, r.f.Total()/scale)
	}
	_, err := fmt.Fprintf(w, "\nFlexAttention vs full HR sequence: %.1f%% fewer FLOPs inference-true (all vision passes counted),\n"+
		"%.1f%% paper-like (HR vision passes counted on neither side)\n", 100*f.ReductionInference(), 100*f.ReductionPaper())
	if err != nil {
		return fmt.Errorf("flops: write: %w", err)
	}
	return nil
}

// flopUnit picks TFLOPs, GFLOPs or MFLOPs so that the largest count reads in the ones to thousands.
func flopUnit(largest float64) (float64, string) {
	switch {
	case largest >= 1e12:
		return 1e12, "TFLOPs"
	case largest >= 1e9:
		return 1e9, "GFLOPs"
	}
	return 1e6, "MFLOPs"
}

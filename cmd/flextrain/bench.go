package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/flextrain/flextrain/recipes/bench"

	"github.com/urfave/cli/v2"
)

func init() { register(benchCommand()) }

// benchCommand is `flextrain bench`: time full training steps of the configured model on a synthetic batch.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "time training steps (vision, decoder forward and backward, AdamW) on a synthetic batch",
		Description: "Modes: flex-union (FlexAttention over each sample's union of selected HR tokens), flex-dense\n" +
			"(all HR keys, masked: the official implementation's cost), lr (no HR), hd-seq (every HR token in the\n" +
			"sequence, every layer plain). FLOPs are forward FLOPs of the batch as docs/DESIGN.md §14 counts them.\n" +
			"With --versus, a second mode runs in the same process, a step of each in turn, and the ratio of the\n" +
			"medians is printed: on a shared machine it is steadier than one taken from two separate runs.",
		Flags: append(configFlags(), deviceFlag,
			&cli.StringFlag{Name: "mode", Value: "flex-union", Usage: "flex-union, flex-dense, lr or hd-seq"},
			&cli.StringFlag{Name: "versus", Usage: "a second mode timed step for step beside --mode"},
			&cli.IntFlag{Name: "steps", Value: 20, Usage: "timed steps"},
			&cli.IntFlag{Name: "warmup", Value: 3, Usage: "untimed steps before"},
			&cli.StringFlag{Name: "strategy", Usage: "selection strategy instead of flex.strategy (topk forces a fraction)"},
			&cli.Float64Flag{Name: "ratio", Value: 0.1, Usage: "fraction of the selection cells for topk, random, center"},
			&cli.BoolFlag{Name: "cached", Usage: "the frozen front (vision features, projected HR features, decoder state before layer n_sa) from the feature cache, as in epochs after the first"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the run to `FILE` (go tool pprof)"},
			&cli.StringFlag{Name: "memprofile", Usage: "write an allocation profile of the run to `FILE` (go tool pprof)"},
		),
		Action: func(cx *cli.Context) error {
			cfg, err := loadConfig(cx)
			if err != nil {
				return err
			}
			if p := cx.String("cpuprofile"); p != "" {
				f, err := os.Create(p)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			modes := []string{cx.String("mode")}
			if v := cx.String("versus"); v != "" {
				modes = append(modes, v)
			}
			rs, err := bench.Interleaved(cfg, bench.Options{Steps: cx.Int("steps"), Warmup: cx.Int("warmup"),
				Strategy: cx.String("strategy"), Ratio: cx.Float64("ratio"), Cached: cx.Bool("cached")}, modes)
			if err != nil {
				return err
			}
			if p := cx.String("memprofile"); p != "" {
				if err := writeHeapProfile(p); err != nil {
					return err
				}
			}
			if len(rs) == 1 {
				if cx.Bool("json") {
					return json.NewEncoder(cx.App.Writer).Encode(rs[0])
				}
				return writeBench(cx.App.Writer, rs[0])
			}
			ratio := rs[0].MedianMS / rs[1].MedianMS
			if cx.Bool("json") {
				return json.NewEncoder(cx.App.Writer).Encode(struct {
					Modes []bench.Result `json:"modes"`
					Ratio float64        `json:"median_ratio"`
				}{rs, ratio})
			}
			for _, r := range rs {
				if err := writeBench(cx.App.Writer, r); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(cx.App.Writer, "%s / %s: %.3f (medians of steps taken in turn; peak RSS is both modes')\n", rs[0].Mode, rs[1].Mode, ratio)
			return err
		},
	}
}

func writeBench(w io.Writer, r bench.Result) error {
	_, err := fmt.Fprintf(w, "mode %s (strategy %s) on %s, %s products, %d steps, N %d, frozen front cached %v (feature cache hit rate %.2f)\n"+
		"  step        median %.1f ms (min %.1f, max %.1f)\n"+
		"  throughput  %.0f tokens/s, %.1f forward GFLOP/s (decoder %.2f + vision %.2f GFLOP per step)\n"+
		"  selection   %.3f of the HR tokens per HR row\n"+
		"  memory      %.0f allocations, %.1f MiB allocated per step, GC %.1f%% of the time, peak RSS %.0f MiB\n"+
		"  arena       %.0f MiB of step buffers, %.1f MiB of them allocated per step (%.1f%% allocated per step)\n"+
		"  loss        %.4f\n",
		r.Mode, r.Strategy, r.Device, r.Products, r.Steps, r.SequenceLength, r.Cached, r.FeatureHitRate, r.MedianMS, r.MinMS, r.MaxMS, r.TokensPerSec, r.GFLOPPerSec,
		r.GFLOPDecoder, r.GFLOPVision, r.SelectedFrac, r.AllocsPerStep, r.MiBPerStep, 100*r.GCFraction, r.PeakRSSMiB,
		r.ArenaMiB, r.ArenaFreshMiB, 100*r.MiBPerStep/max(r.ArenaMiB, 1), r.Loss)
	if err == nil && r.PeakDeviceMiB > 0 {
		_, err = fmt.Fprintf(w, "  device      median %.1f ms a step on the device, %.1f MiB uploaded a step; peak %.2f GiB held by the "+
			"step's buffers, weights and optimizer state; matrix products %.1f GFLOP a step (%.1f in bfloat16, %.1f in TF32), %.1f TFLOP/s\n",
			r.DeviceMS, r.UploadMiB, r.PeakDeviceMiB/1024, r.ProductGFLOP, r.ProductBF16GFLOP, r.ProductTF32GFLOP, r.ProductTFLOPS)
	}
	return err
}

// writeHeapProfile writes the allocation profile of the process so far.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/flextrain/flextrain/config"

	"github.com/urfave/cli/v2"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/data/tokenizer"
)

func init() { register(dataCommand()) }

// dataCommand is `flextrain data`: look at the training data before training on it, or make the synthetic set.
func dataCommand() *cli.Command {
	return &cli.Command{
		Name:        "data",
		Usage:       "check, inspect or generate training data",
		Subcommands: []*cli.Command{dataCheckCommand(), dataInspectCommand(), dataSynthCommand()},
	}
}

// dataMain runs `flextrain data` with args (the subcommand and its flags), writing to w.
func dataMain(args []string, w io.Writer) error { return runCommand(dataCommand(), args, w) }

func dataCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "read the whole data_path once, as training would, and count samples, tokens and bad records",
		Description: "Applies the template, the length limit and image decoding to every record. The first bad samples\n" +
			"are logged on stderr. Exits with an error when more records are bad than max_bad_fraction allows.",
		Flags: append(configFlags(), &cli.BoolFlag{Name: "json", Usage: "print one JSON object"}),
		Action: func(cx *cli.Context) error {
			cfg, opts, err := dataOptions(cx)
			if err != nil {
				return err
			}
			opts.Logger = slog.New(slog.NewTextHandler(cx.App.ErrWriter, nil))
			counts, err := data.Check(cx.Context, opts)
			if err != nil {
				return fmt.Errorf("data check: %w", err)
			}
			if cx.Bool("json") {
				err = json.NewEncoder(cx.App.Writer).Encode(checkReport{cfg.DataPath, cfg.ImageFolder, cfg.ModelMaxLength, counts})
			} else {
				err = writeCounts(cx.App.Writer, cfg, counts)
			}
			if err != nil {
				return fmt.Errorf("data check: write: %w", err)
			}
			return overBudget(cfg, counts)
		},
	}
}

// dataOptions reads --config (with --set), resolves a synth:// data_path to its files as fit does, reads the
// tokenizer, and returns the loader options of training.
func dataOptions(cx *cli.Context) (config.Config, data.Options, error) {
	cfg, err := loadConfig(cx)
	if err != nil {
		return cfg, data.Options{}, err
	}
	if cfg, err = config.ResolveData(cfg); err != nil {
		return cfg, data.Options{}, err
	}
	tok, err := tokenizer.Load(cfg.TokenizerPath)
	if err != nil {
		return cfg, data.Options{}, fmt.Errorf("tokenizer_path: %w", err)
	}
	return cfg, config.DataOptions(cfg, tok), nil
}

// checkReport is the --json output of `data check`.
type checkReport struct {
	DataPath       string `json:"data_path"`
	ImageFolder    string `json:"image_folder"`
	ModelMaxLength int    `json:"model_max_length"`
	data.Counts
}

// writeCounts prints the counters of a check as a table.
func writeCounts(w io.Writer, cfg config.Config, c data.Counts) error {
	mean := 0.0
	if c.Samples > 0 {
		mean = float64(c.Tokens) / float64(c.Samples)
	}
	fmt.Fprintf(w, "data check %s (images in %s)\n", cfg.DataPath, cfg.ImageFolder)
	fmt.Fprintf(w, "  %-10s %10d\n", "records", c.Records)
	fmt.Fprintf(w, "  %-10s %10d  (%d with image, %d text-only)\n", "samples", c.Samples, c.WithImage, c.TextOnly)
	fmt.Fprintf(w, "  %-10s %10d  (image tokens expanded; %.1f per sample)\n", "tokens", c.Tokens, mean)
	fmt.Fprintf(w, "  %-10s %10d  (cut to model_max_length %d)\n", "truncated", c.Truncated, cfg.ModelMaxLength)
	fmt.Fprintf(w, "  %-10s %10d\n", "skipped", c.Skipped)
	reasons := make([]string, 0, len(c.Bad))
	for r, n := range c.Bad {
		if n > 0 {
			reasons = append(reasons, r)
		}
	}
	sort.Strings(reasons)
	if len(reasons) == 0 {
		_, err := fmt.Fprintln(w, "  no bad record")
		return err
	}
	fmt.Fprintln(w, "  bad records by reason (all but tokenization_mismatch were skipped):")
	for _, r := range reasons {
		fmt.Fprintf(w, "    %-22s %6d\n", r, c.Bad[r])
	}
	return nil
}

// overBudget refuses data that training would stop on: more skipped records than max_bad_fraction.
func overBudget(cfg config.Config, c data.Counts) error {
	if c.Records == 0 || float64(c.Skipped) <= cfg.MaxBadFraction*float64(c.Records) {
		return nil
	}
	return fmt.Errorf("data check %s: %w: %d of %d records (%.2f%%) are bad, above max_bad_fraction %g",
		cfg.DataPath, data.ErrSkipBudget, c.Skipped, c.Records, 100*float64(c.Skipped)/float64(c.Records), cfg.MaxBadFraction)
}

func dataInspectCommand() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Usage: "print one record of data_path as training assembles it (ids, labels, decoded prompt, pixels) as JSON",
		Flags: append(configFlags(), &cli.IntFlag{Name: "index", Required: true, Usage: "record number `I`, 0-based, in file order"}),
		Action: func(cx *cli.Context) error {
			_, opts, err := dataOptions(cx)
			if err != nil {
				return err
			}
			in, err := data.Inspect(opts, cx.Int("index"))
			if err != nil {
				return err
			}
			return writeIndented(cx.App.Writer, in)
		},
	}
}

// numberList matches an indented JSON array of numbers.
var numberList = regexp.MustCompile(`\[\s*-?[0-9][-0-9.e+,\s]*\]`)

// writeIndented writes v as indented JSON with every array of numbers (ids, labels, shapes) on one line
// and "<image>" unescaped, for a reader.
func writeIndented(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	out := numberList.ReplaceAllFunc(buf.Bytes(), func(list []byte) []byte {
		return []byte(strings.Join(strings.Fields(string(list)), " "))
	})
	_, err := w.Write(out)
	return err
}

func dataSynthCommand() *cli.Command {
	d := synth.DefaultOptions()
	return &cli.Command{
		Name:  "synth",
		Usage: "write the synthetic FlexAttention dataset (small and large text in images, text-only questions)",
		Description: "Options start from --uri (synth://n=2000,seed=1,hr=192,...) or the defaults; flags given explicitly\n" +
			"override them. Rerunning with the same options reuses a complete dataset without writing.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "output `DIR` (or dir= in --uri)"},
			&cli.StringFlag{Name: "uri", Usage: "the dataset as a synth:// `URI`"},
			&cli.IntFlag{Name: "n", Value: d.N, Usage: "training samples"},
			&cli.IntFlag{Name: "val", Value: d.ValN, Usage: "validation samples"},
			&cli.IntFlag{Name: "test", Value: d.TestN, Usage: "test samples"},
			&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "the dataset is a function of the seed and the options"},
			&cli.IntFlag{Name: "hr", Value: d.HRSize, Usage: "long side of every image, the HR side Z·S"},
			&cli.IntFlag{Name: "zoom", Value: d.Zoom, Usage: "Z: large glyphs are drawn Z times bigger than small ones"},
			&cli.Float64Flag{Name: "small-frac", Value: d.SmallFrac, Usage: "share of image questions about a small object"},
			&cli.Float64Flag{Name: "text-frac", Value: d.TextFrac, Usage: "share of text-only samples"},
			&cli.BoolFlag{Name: "json", Usage: "print the manifest as one JSON object"},
		},
		Action: func(cx *cli.Context) error {
			o, err := synthOptions(cx)
			if err != nil {
				return err
			}
			m, err := synth.Generate(o)
			if err != nil {
				return fmt.Errorf("data synth %s: %w", o.Dir, err)
			}
			if cx.Bool("json") {
				return json.NewEncoder(cx.App.Writer).Encode(manifestJSON(o.Dir, m))
			}
			return writeManifest(cx.App.Writer, o.Dir, m)
		},
	}
}

// synthOptions are --uri (or the defaults) with the flags given explicitly on top.
func synthOptions(cx *cli.Context) (synth.Options, error) {
	o := synth.DefaultOptions()
	if u := cx.String("uri"); u != "" {
		var err error
		if o, err = synth.ParseURI(u); err != nil {
			return o, err
		}
	}
	set := func(name string, apply func()) {
		if cx.IsSet(name) {
			apply()
		}
	}
	set("out", func() { o.Dir = cx.String("out") })
	set("n", func() { o.N = cx.Int("n") })
	set("val", func() { o.ValN = cx.Int("val") })
	set("test", func() { o.TestN = cx.Int("test") })
	set("seed", func() { o.Seed = cx.Uint64("seed") })
	set("hr", func() { o.HRSize = cx.Int("hr") })
	set("zoom", func() { o.Zoom = cx.Int("zoom") })
	set("small-frac", func() { o.SmallFrac = cx.Float64("small-frac") })
	set("text-frac", func() { o.TextFrac = cx.Float64("text-frac") })
	if o.Dir == "" {
		return o, errors.New("data synth: no output folder: give --out DIR or dir= in --uri")
	}
	return o, nil
}

// synthSplit is one split in the --json manifest.
type synthSplit struct {
	File    string         `json:"file"`
	Samples int            `json:"samples"`
	Kinds   map[string]int `json:"kinds"`
}

// manifestJSON is the --json form of a manifest.
func manifestJSON(dir string, m synth.Manifest) any {
	splits := map[string]synthSplit{}
	for name, file := range map[string]string{"train": m.Train, "val": m.Val, "test": m.Test} {
		splits[name] = synthSplit{File: file, Samples: m.Counts[name], Kinds: kindCounts(m, name)}
	}
	return struct {
		Dir         string                `json:"dir"`
		Splits      map[string]synthSplit `json:"splits"`
		ImageFolder string                `json:"image_folder"`
		Images      int                   `json:"images"`
		Tokenizer   string                `json:"tokenizer"`
		Reused      bool                  `json:"reused"`
	}{dir, splits, m.ImageFolder, m.Counts["images"], m.Tokenizer, m.Reused}
}

// kindCounts are the "split.kind" counts of one split, by kind.
func kindCounts(m synth.Manifest, split string) map[string]int {
	out := map[string]int{}
	for k, n := range m.Counts {
		if kind, ok := strings.CutPrefix(k, split+"."); ok {
			out[kind] = n
		}
	}
	return out
}

// writeManifest prints where the dataset lies and what each split holds.
func writeManifest(w io.Writer, dir string, m synth.Manifest) error {
	state := "written"
	if m.Reused {
		state = "reused: the same options were already complete there"
	}
	fmt.Fprintf(w, "synthetic dataset in %s (%s)\n", dir, state)
	for _, s := range []struct{ name, file string }{{"train", m.Train}, {"val", m.Val}, {"test", m.Test}} {
		k := kindCounts(m, s.name)
		fmt.Fprintf(w, "  %-10s %-40s %6d samples: %d small, %d large, %d text\n", s.name, s.file, m.Counts[s.name],
			k[synth.KindSmall], k[synth.KindLarge], k[synth.KindText])
	}
	fmt.Fprintf(w, "  %-10s %-40s %6d files\n", "images", m.ImageFolder, m.Counts["images"])
	_, err := fmt.Fprintf(w, "  %-10s %s\n", "tokenizer", m.Tokenizer)
	return err
}

// Command results prints the tables of docs/RESULTS.md from the runs of scripts/reproduce.sh: per arm (a
// run directory ARM-sSEED, seeds grouped), exact match on the test split by kind as mean ± population spread
// over seeds, the HR fraction selected in training, ms per training step, peak RSS, and where measured
// (selection.json of `flextrain selection --json`) how much of the small targets the answer row attended to.
//
//	go run ./scripts/results [-dir runs/reproduce]
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/flextrain/flextrain/scripts/internal/runlog"
)

// arm is the measurements of one arm, one entry per seed.
type arm struct {
	small, large, text, all  []float64 // exact match, %
	selected, msPerStep, rss []float64 // training HR fraction, ms/step, peak RSS MiB
	answerCells, covered     []float64 // at the answer row, mean over FlexAttention layers (selection.json), %
	crop                     []float64 // targets whose crop some FlexAttention layer selected in, mean over layers, %
}

var seedDir = regexp.MustCompile(`^(.+)-s(\d+)$`)

func main() {
	dir := flag.String("dir", "runs/reproduce", "the reproduction's runs")
	flag.Parse()
	arms, order, err := read(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
	printArms(arms, order)
	printSweep(arms, order)
	if err := printBench(filepath.Join(*dir, "bench")); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}

// printArms prints the accuracy table and, for the arms with a selection.json, the selection table.
func printArms(arms map[string]*arm, order []string) {
	fmt.Println("| arm | seeds | small % | large % | text % | all % | HR selected | ms/step | peak RSS MiB |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, name := range order {
		a := arms[name]
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %.2f | %s | %.0f |\n", name, len(a.all), spread(a.small), spread(a.large),
			spread(a.text), spread(a.all), mean(a.selected), orDash(mean(a.msPerStep)), maxOf(a.rss))
	}
	fmt.Println()
	fmt.Println("| arm | seeds | cells selected at the answer row % | small target's HR tokens covered % | covered / selected | target's crop selected in % |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, name := range order {
		if a := arms[name]; len(a.covered) > 0 {
			fmt.Printf("| %s | %d | %s | %s | %.2f | %s |\n", name, len(a.covered), spread(a.answerCells), spread(a.covered),
				mean(a.covered)/mean(a.answerCells), spread(a.crop))
		}
	}
}

// strategies are the selection strategies compared with attention at the same HR fraction.
var strategies = []string{"random", "center", "topk"}

// armStrategy matches an arm named after attention or one of strategies, alone or with a threshold or ratio
// ("attention-t192", "topk-r0.14").
var armStrategy = regexp.MustCompile(`^(attention|` + strings.Join(strategies, "|") + `)(-[rt][\d.]+)?$`)

// sweepRow is one HR budget of the sweep table: an attention arm and, by strategy, the small-text
// accuracy of the arms at its selected fraction.
type sweepRow struct {
	attention string
	selected  float64
	small     map[string]string // strategy → small %, attention included
}

// sweep groups the strategy arms by HR budget (the paper's Figure 4): one row per attention arm, in
// decreasing order of the fraction it selects, each other strategy's arm placed in the row of the attention
// arm whose selected fraction is closest to its own.
func sweep(arms map[string]*arm, order []string) []sweepRow {
	var rows []sweepRow
	for _, name := range order {
		if m := armStrategy.FindStringSubmatch(name); m != nil && m[1] == "attention" {
			a := arms[name]
			rows = append(rows, sweepRow{name, mean(a.selected), map[string]string{"attention": spread(a.small)}})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].selected > rows[j].selected })
	for _, name := range order {
		m := armStrategy.FindStringSubmatch(name)
		if m == nil || m[1] == "attention" {
			continue
		}
		f, best := mean(arms[name].selected), 0
		for i, r := range rows {
			if math.Abs(r.selected-f) < math.Abs(rows[best].selected-f) {
				best = i
			}
		}
		rows[best].small[m[1]] = spread(arms[name].small)
	}
	return rows
}

// printSweep prints the sweep table, "–" where a strategy has no arm at a budget.
func printSweep(arms map[string]*arm, order []string) {
	rows := sweep(arms, order)
	if len(rows) == 0 {
		return
	}
	fmt.Println()
	fmt.Printf("| HR selected | attention arm | small %%: attention | %s |\n", strings.Join(strategies, " | "))
	fmt.Println("|---|---|---" + strings.Repeat("|---", len(strategies)) + "|")
	for _, r := range rows {
		fmt.Printf("| %.2f | %s | %s", r.selected, r.attention, r.small["attention"])
		for _, s := range strategies {
			fmt.Printf(" | %s", orText(r.small[s], "–"))
		}
		fmt.Println(" |")
	}
}

// orText is s, or alt when s is empty.
func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// bench is the part of a `flextrain bench --json` object the timing table reads.
type bench struct {
	Mode         string  `json:"mode"`
	MedianMs     float64 `json:"median_ms"`
	MinMs        float64 `json:"min_ms"`
	MaxMs        float64 `json:"max_ms"`
	GflopDecoder float64 `json:"gflop_decoder"`
	GflopVision  float64 `json:"gflop_vision"`
	SelFrac      float64 `json:"sel_frac"`
	PeakRSS      float64 `json:"peak_rss_mib"`
}

// printBench prints the timing table from dir/*.json (none: nothing), in order of selected fraction, each
// step also as a multiple of the lr step.
func printBench(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return err
	}
	var rows []bench
	lr := math.NaN()
	for _, f := range files {
		var b bench
		if err := runlog.ReadJSON(f, &b); err != nil {
			return err
		}
		if b.Mode == "lr" {
			lr = b.MedianMs
		}
		rows = append(rows, b)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].GflopDecoder < rows[j].GflopDecoder })
	fmt.Println()
	fmt.Println("| mode | HR selected | ms/step, median (min–max) | × lr step | GFLOP/step, decoder + vision | peak RSS MiB |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, b := range rows {
		fmt.Printf("| %s | %.2f | %.0f (%.0f–%.0f) | %.2f | %.1f + %.1f | %.0f |\n", b.Mode, b.SelFrac, b.MedianMs, b.MinMs, b.MaxMs,
			b.MedianMs/lr, b.GflopDecoder, b.GflopVision, b.PeakRSS)
	}
	return nil
}

// read collects every finished run (one with an eval.json) under dir, by arm, and the arms in the order
// their first runs finished training (the order the reproduction ran them).
func read(dir string) (map[string]*arm, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	type run struct {
		name, path string
		at         int64
	}
	var runs []run
	for _, e := range entries {
		m := seedDir.FindStringSubmatch(e.Name())
		_, done := os.Stat(filepath.Join(dir, e.Name(), "eval.json"))
		st, err := os.Stat(filepath.Join(dir, e.Name(), "metrics.jsonl"))
		if m == nil || done != nil || err != nil {
			continue
		}
		runs = append(runs, run{m[1], filepath.Join(dir, e.Name()), st.ModTime().UnixNano()})
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].at < runs[j].at })
	arms := map[string]*arm{}
	var order []string
	for _, r := range runs {
		if arms[r.name] == nil {
			arms[r.name] = &arm{}
			order = append(order, r.name)
		}
		if err := arms[r.name].add(r.path); err != nil {
			return nil, nil, err
		}
	}
	return arms, order, nil
}

// add reads one run's eval.json, metrics.jsonl, time.txt and, when there, selection.json.
func (a *arm) add(dir string) error {
	var ev struct {
		Accuracy float64 `json:"eval_accuracy"`
		ByKind   map[string]struct {
			Accuracy float64 `json:"accuracy"`
		} `json:"by_kind"`
	}
	if err := runlog.ReadJSON(filepath.Join(dir, "eval.json"), &ev); err != nil {
		return err
	}
	a.small, a.large = append(a.small, 100*ev.ByKind["small"].Accuracy), append(a.large, 100*ev.ByKind["large"].Accuracy)
	a.text, a.all = append(a.text, 100*ev.ByKind["text"].Accuracy), append(a.all, 100*ev.Accuracy)
	m, err := runlog.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return err
	}
	a.selected, a.msPerStep = append(a.selected, m.HR), append(a.msPerStep, m.MsPerStep)
	rss, err := peakRSS(filepath.Join(dir, "time.txt"))
	if err != nil {
		return err
	}
	a.rss = append(a.rss, rss)
	var s struct {
		Layers []struct{ Selected, Covered, Crop float64 } `json:"layers"`
	}
	if err := runlog.ReadJSON(filepath.Join(dir, "selection.json"), &s); err == nil && len(s.Layers) > 0 {
		var cells, covered, crop float64
		for _, l := range s.Layers {
			n := float64(len(s.Layers))
			cells, covered, crop = cells+l.Selected/n, covered+l.Covered/n, crop+l.Crop/n
		}
		a.answerCells, a.covered, a.crop = append(a.answerCells, 100*cells), append(a.covered, 100*covered), append(a.crop, 100*crop)
	}
	return nil
}

// peakRSS reads GNU time's "N KiB peak RSS" line, in MiB.
func peakRSS(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	kib, err := strconv.ParseFloat(strings.Fields(string(b) + " ")[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return kib / 1024, nil
}

// spread is "mean ± population spread", or the one value.
func spread(v []float64) string {
	if len(v) == 1 {
		return fmt.Sprintf("%.1f", v[0])
	}
	m := mean(v)
	var ss float64
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return fmt.Sprintf("%.1f ± %.1f", m, math.Sqrt(ss/float64(len(v))))
}

// orDash prints a whole number, or "–" for NaN.
func orDash(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

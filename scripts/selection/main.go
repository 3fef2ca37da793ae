// Command selection runs the selection experiment of docs/RESULTS.md and writes its results: on boards of
// several small signs (configs/selection*.yaml), FlexAttention's attention-map selection against random,
// centre, an oracle, full HR and the LR view, at HR budgets of about 0.05, 0.1, 0.2 and 0.4 of the cells.
//
//	go run ./scripts/selection [-seeds 1,2,3] [-bin bin/flextrain]   # train what is missing, then write
//	go run ./scripts/selection -tables                                # only rewrite the results from runs/
//
// It builds flextrain, trains the three stages (`flextrain demo` with the selection configs; a finished stage
// is reused), then one untrained FlexAttention model (the base model with its copied HR projections) whose
// attention maps give each budget its threshold (`flextrain selection --thresholds`) and whose diagnostics
// say how well the base model grounds a question at LR. Then, per seed, every arm: `fit` into
// runs/selection/arms/ARM-sSEED, `selection --json` on the small-text test questions, `eval` on the test
// split. A run with an eval.json is skipped, so an interrupted experiment goes on where it stopped.
//
// The results go to docs/results/selection.json, one record per arm, budget, seed and metric, and the tables
// between the markers of docs/RESULTS.md's selection section are generated from that file alone.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flextrain/flextrain/scripts/internal/runlog"
)

// Where the experiment reads and writes.
const (
	runsDir     = "runs/selection/arms"
	testData    = "runs/selection/data/test.json"
	valData     = "runs/selection/data/val.json"
	stage2      = "configs/selection.yaml"
	resultsJSON = "docs/results/selection.json"
	resultsDoc  = "docs/RESULTS.md"
)

// budgets are the HR budgets, as shares of the selection cells.
var budgets = []float64{0.05, 0.1, 0.2, 0.4}

// ranked are the strategies run at every budget.
var ranked = []string{"attention", "topk", "random", "center"}

func main() {
	seeds := flag.String("seeds", "1,2,3", "comma-separated seeds")
	bin := flag.String("bin", "bin/flextrain", "the flextrain binary (built from this tree)")
	tablesOnly := flag.Bool("tables", false, "only regenerate the results from the finished runs")
	flag.Parse()
	if err := run(*bin, *seeds, *tablesOnly); err != nil {
		fmt.Fprintln(os.Stderr, "selection:", err)
		os.Exit(1)
	}
}

func run(bin, seedList string, tablesOnly bool) error {
	var seeds []int
	for _, s := range strings.Split(seedList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-seeds: %q is not a number", s)
		}
		seeds = append(seeds, n)
	}
	if !tablesOnly {
		if err := train(bin, seeds); err != nil {
			return err
		}
	}
	recs, err := collect()
	if err != nil {
		return err
	}
	if err := writeResults(recs); err != nil {
		return err
	}
	tables := renderTables(recs)
	fmt.Print(tables)
	return spliceTables(resultsDoc, tables)
}

// train runs every stage and arm that has not finished.
func train(bin string, seeds []int) error {
	if err := command("go", "build", "-o", bin, "./cmd/flextrain").Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := logged(filepath.Join("runs/selection", "demo.log"), bin, "demo", "--vision", "configs/selection-vision.yaml",
		"--base", "configs/selection-base.yaml", "--config", stage2); err != nil {
		return err
	}
	thresholds, err := calibrate(bin)
	if err != nil {
		return err
	}
	for _, seed := range seeds {
		for _, a := range arms(thresholds) {
			if err := fitArm(bin, a, seed); err != nil {
				return err
			}
		}
	}
	return nil
}

// arm is one configuration of stage 2.
type arm struct {
	name     string
	strategy string  // the selection strategy, or "lr" for the LR view
	budget   float64 // the share of cells asked for; 0 where the arm has none of its own
	set      []string
}

// arms lists every arm; thresholds give the attention arm of each budget its threshold.
func arms(thresholds map[float64]float64) []arm {
	out := []arm{
		{name: "lr-control", strategy: "lr", set: []string{"flex.view=lr"}},
		{name: "full-hr", strategy: "full", budget: 1, set: []string{"flex.strategy=topk", "flex.ratio=1"}},
		{name: "oracle", strategy: "oracle", set: []string{"flex.strategy=oracle"}},
	}
	for _, b := range budgets {
		for _, s := range ranked {
			a := arm{name: fmt.Sprintf("%s-b%g", s, b), strategy: s, budget: b,
				set: []string{"flex.strategy=" + s, fmt.Sprintf("flex.ratio=%g", b)}}
			if s == "attention" {
				a.set = []string{"flex.strategy=attention", fmt.Sprintf("flex.threshold=%g", thresholds[b])}
			}
			out = append(out, a)
		}
	}
	return out
}

// untrained is the FlexAttention model as stage 2 starts it: one step at a learning rate that moves no
// float32 weight.
var untrained = arm{name: "untrained", strategy: "attention", set: []string{"max_steps=1", "learning_rate=1e-30"}}

// calibrate trains the untrained arm and returns, per budget, the threshold whose selection on the
// validation split's small-text questions is nearest to it (calibration.json keeps the whole curve).
func calibrate(bin string) (map[float64]float64, error) {
	if err := fitArm(bin, untrained, 1); err != nil {
		return nil, err
	}
	dir := filepath.Join(runsDir, "untrained-s1")
	path := filepath.Join(dir, "calibration.json")
	if _, err := os.Stat(path); err != nil {
		var ts []string
		for t := 0; t < 255; t += 2 {
			ts = append(ts, strconv.Itoa(t))
		}
		if err := toFile(path, bin, "selection", "--model", dir, "--data", valData, "--kind", "small", "--n", "200",
			"--draw", "0", "--json", "--thresholds", strings.Join(ts, ",")); err != nil {
			return nil, err
		}
	}
	var cal struct {
		Thresholds []struct{ Threshold, Selected float64 } `json:"thresholds"`
	}
	if err := runlog.ReadJSON(path, &cal); err != nil {
		return nil, err
	}
	if len(cal.Thresholds) == 0 {
		return nil, fmt.Errorf("%s: no thresholds", path)
	}
	out := map[float64]float64{}
	for _, b := range budgets {
		best := cal.Thresholds[0]
		for _, c := range cal.Thresholds {
			if math.Abs(c.Selected-b) < math.Abs(best.Selected-b) {
				best = c
			}
		}
		out[b] = best.Threshold
	}
	return out, nil
}

// fitArm trains, diagnoses and evaluates one arm and seed, unless its eval.json is there.
func fitArm(bin string, a arm, seed int) error {
	dir := filepath.Join(runsDir, fmt.Sprintf("%s-s%d", a.name, seed))
	if _, err := os.Stat(filepath.Join(dir, "eval.json")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{"fit", "--config", stage2, "--resume", "none", "--set", "output_dir=" + dir, "--set", fmt.Sprintf("seed=%d", seed)}
	for _, s := range a.set {
		args = append(args, "--set", s)
	}
	start := time.Now()
	if err := logged(filepath.Join(dir, "fit.log"), bin, args...); err != nil {
		return err
	}
	info, err := json.Marshal(map[string]any{"arm": a.name, "strategy": a.strategy, "budget": a.budget, "seed": seed,
		"set": a.set, "fit_seconds": time.Since(start).Seconds()})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "arm.json"), append(info, '\n'), 0o644); err != nil {
		return err
	}
	if a.strategy != "lr" {
		if err := toFile(filepath.Join(dir, "selection.json"), bin, "selection", "--model", dir, "--data", testData,
			"--kind", "small", "--n", "100000", "--draw", "0", "--json"); err != nil {
			return err
		}
	}
	if err := toFile(filepath.Join(dir, "eval.json"), bin, "eval", "--model", dir, "--data", testData); err != nil {
		return err
	}
	fmt.Printf("%s seed %d: %.0f s\n", a.name, seed, time.Since(start).Seconds())
	return nil
}

// command is name args with the experiment's stderr.
func command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Stderr = os.Stderr
	return c
}

// logged runs bin args with stdout and stderr to the file log.
func logged(log, bin string, args ...string) error {
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return err
	}
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	defer f.Close()
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = f, f
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w (see %s)", bin, strings.Join(args, " "), err, log)
	}
	return nil
}

// toFile runs bin args and writes its stdout to path (by a rename, so a path that exists is complete).
func toFile(path, bin string, args ...string) error {
	var out bytes.Buffer
	c := command(bin, args...)
	c.Stdout = &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
	}
	if err := os.WriteFile(path+".tmp", out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// Record is one measurement of docs/results/selection.json.
type Record struct {
	Arm      string  `json:"arm"`
	Strategy string  `json:"strategy"`
	Budget   float64 `json:"budget"`
	Seed     int     `json:"seed"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Run      string  `json:"run"` // the run directory it was read from
}

// collect reads every finished run of runsDir into records.
func collect() ([]Record, error) {
	dirs, err := filepath.Glob(filepath.Join(runsDir, "*-s*"))
	if err != nil {
		return nil, err
	}
	slices.Sort(dirs)
	var out []Record
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "eval.json")); err != nil {
			continue
		}
		recs, err := readRun(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no finished run under " + runsDir)
	}
	return out, nil
}

// readRun reads one run's arm.json, eval.json, metrics.jsonl and selection.json.
func readRun(dir string) ([]Record, error) {
	var info struct {
		Arm        string  `json:"arm"`
		Strategy   string  `json:"strategy"`
		Budget     float64 `json:"budget"`
		Seed       int     `json:"seed"`
		FitSeconds float64 `json:"fit_seconds"`
	}
	if err := runlog.ReadJSON(filepath.Join(dir, "arm.json"), &info); err != nil {
		return nil, err
	}
	var out []Record
	add := func(metric string, v float64) {
		if !math.IsNaN(v) {
			out = append(out, Record{info.Arm, info.Strategy, info.Budget, info.Seed, metric, v, dir})
		}
	}
	var ev struct {
		Accuracy float64                               `json:"eval_accuracy"`
		ByKind   map[string]struct{ Accuracy float64 } `json:"by_kind"`
	}
	if err := runlog.ReadJSON(filepath.Join(dir, "eval.json"), &ev); err != nil {
		return nil, err
	}
	for _, k := range []string{"small", "large", "text"} {
		add(k+"_exact_match", ev.ByKind[k].Accuracy)
	}
	add("exact_match", ev.Accuracy)
	add("fit_seconds", info.FitSeconds)
	m, err := runlog.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return nil, err
	}
	if m.HRLogged > 0 {
		add("train_hr_selected", m.HR)
	}
	var sel struct {
		Layers []struct {
			Selected      float64 `json:"selected"`
			Covered       float64 `json:"covered"`
			Crop          float64 `json:"crop"`
			OthersCovered float64 `json:"others_covered"`
			TargetMass    float64 `json:"target_mass"`
			OtherMass     float64 `json:"other_mass"`
			TargetLift    float64 `json:"target_lift"`
			OtherLift     float64 `json:"other_lift"`
			TargetFirst   float64 `json:"target_first"`
		} `json:"layers"`
	}
	if err := runlog.ReadJSON(filepath.Join(dir, "selection.json"), &sel); err == nil && len(sel.Layers) > 0 {
		n := float64(len(sel.Layers))
		var cells, covered, others, crop float64
		for _, l := range sel.Layers {
			cells, covered, others, crop = cells+l.Selected/n, covered+l.Covered/n, others+l.OthersCovered/n, crop+l.Crop/n
		}
		add("answer_cells", cells)
		add("target_covered", covered)
		add("others_covered", others)
		add("target_crop", crop)
		first := sel.Layers[0] // ranked from layer n_sa − 1, frozen: the base model's grounding
		add("lr_target_mass", first.TargetMass)
		add("lr_other_mass", first.OtherMass)
		add("lr_target_lift", first.TargetLift)
		add("lr_other_lift", first.OtherLift)
		add("lr_target_first", first.TargetFirst)
	} else if !errors.Is(err, os.ErrNotExist) && err != nil {
		return nil, err
	}
	return out, nil
}

// writeResults writes the records as a JSON array, one record per line.
func writeResults(recs []Record) error {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		b.Write(line)
		if i < len(recs)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	if err := os.MkdirAll(filepath.Dir(resultsJSON), 0o755); err != nil {
		return err
	}
	return os.WriteFile(resultsJSON, b.Bytes(), 0o644)
}

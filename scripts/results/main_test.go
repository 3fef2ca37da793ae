package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestRead: runs group by arm across seeds, unfinished runs (no eval.json) are left out, and every column
// comes from its file.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(run, name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, run), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, run, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, run := range []string{"attention-t192-s1", "attention-t192-s2"} {
		acc := []string{"0.5", "0.7"}[i]
		write(run, "eval.json", `{"eval_accuracy":0.6,"by_kind":{"small":{"accuracy":`+acc+`},"large":{"accuracy":0.8},"text":{"accuracy":0.4}}}`)
		write(run, "metrics.jsonl", `{"step":20,"hr_selected_frac":0.1,"loss":1}`+"\n"+`{"step":40,"hr_selected_frac":0.2,"loss":1}`+"\n"+
			`{"global_step":40,"train_runtime":8}`+"\n")
		write(run, "time.txt", "2048 KiB peak RSS, 9.5 s\n")
		write(run, "selection.json", `{"layers":[{"selected":0.1,"covered":0.3,"crop":0.6},{"selected":0.2,"covered":0.5,"crop":0.8}]}`)
	}
	write("random-s1", "metrics.jsonl", `{"step":20,"loss":1}`+"\n") // still training: no eval.json
	arms, order, err := read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 1 || order[0] != "attention-t192" {
		t.Fatalf("arms %v; want attention-t192 only", order)
	}
	a := arms["attention-t192"]
	checks := []struct {
		name      string
		got, want float64
	}{
		{"seeds", float64(len(a.all)), 2},
		{"small mean", mean(a.small), 60},
		{"large", mean(a.large), 80},
		{"HR selected", mean(a.selected), 0.15},
		{"ms/step", mean(a.msPerStep), 200},
		{"peak RSS MiB", maxOf(a.rss), 2},
		{"cells at the answer row %", mean(a.answerCells), 15},
		{"target covered %", mean(a.covered), 40},
		{"target's crop %", mean(a.crop), 70},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %g; want %g", c.name, c.got, c.want)
		}
	}
	if got := spread(a.small); got != "60.0 ± 10.0" {
		t.Errorf("spread = %q; want 60.0 ± 10.0", got)
	}
}

// TestSweep: each strategy arm lands in the row of the attention arm nearest its selected fraction, rows go
// from the largest budget down, and arms of other names stay out.
func TestSweep(t *testing.T) {
	mk := func(selected, small float64) *arm {
		return &arm{selected: []float64{selected}, small: []float64{small}}
	}
	arms := map[string]*arm{
		"attention":      mk(0.69, 50),
		"attention-t192": mk(0.15, 30),
		"random":         mk(0.68, 55),
		"center-r0.14":   mk(0.14, 20),
		"topk-r0.32":     mk(0.33, 40), // nearer 0.15 than 0.69
		"full-hr":        mk(1, 60),
	}
	rows := sweep(arms, []string{"attention-t192", "random", "attention", "center-r0.14", "topk-r0.32", "full-hr"})
	want := []sweepRow{
		{"attention", 0.69, map[string]string{"attention": "50.0", "random": "55.0"}},
		{"attention-t192", 0.15, map[string]string{"attention": "30.0", "center": "20.0", "topk": "40.0"}},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("sweep = %+v; want %+v", rows, want)
	}
}

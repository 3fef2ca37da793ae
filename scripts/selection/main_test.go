package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// records builds one small-text record per arm and seed from a table of means (the seeds spread by ±1).
func records(means map[string]float64) []Record {
	var out []Record
	for arm, m := range means {
		for seed, d := range []float64{-0.01, 0, 0.01} {
			out = append(out, Record{Arm: arm, Seed: seed + 1, Metric: "small_exact_match", Value: m + d})
		}
	}
	return out
}

// TestVerdict checks the three targets' arithmetic on results where each holds and where each fails.
func TestVerdict(t *testing.T) {
	base := map[string]float64{"full-hr": 0.6, "oracle": 0.7}
	for _, s := range ranked {
		for _, b := range budgets {
			base[budgetArm(s, b)] = 0.3
		}
	}
	cases := []struct {
		name string
		set  map[string]float64
		want []string // the verdict of each target, in order
	}{
		{"none holds", map[string]float64{}, []string{"does not hold", "does not hold", "holds"}},
		{"topk beats random by 12 at 0.05", map[string]float64{"topk-b0.05": 0.42}, []string{"holds", "does not hold", "holds"}},
		{"attention at 0.4 is not counted", map[string]float64{"attention-b0.4": 0.6}, []string{"does not hold", "does not hold", "holds"}},
		{"attention at 0.2 near full HR", map[string]float64{"attention-b0.2": 0.56}, []string{"does not hold", "holds", "holds"}},
		{"oracle below attention", map[string]float64{"attention-b0.2": 0.58, "oracle": 0.5}, []string{"does not hold", "holds", "does not hold"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			means := map[string]float64{}
			for k, v := range base {
				means[k] = v
			}
			for k, v := range c.set {
				means[k] = v
			}
			lines := strings.Split(strings.TrimSpace(verdict(index(records(means)))), "\n")[2:]
			if len(lines) != len(c.want) {
				t.Fatalf("%d verdict lines; want %d:\n%s", len(lines), len(c.want), strings.Join(lines, "\n"))
			}
			for i, w := range c.want {
				if !strings.HasSuffix(lines[i], "**"+w+"**") {
					t.Errorf("target %d: %q; want %q", i+1, lines[i], w)
				}
			}
		})
	}
}

// TestSpliceTables replaces only what lies between the markers, and refuses a document without them.
func TestSpliceTables(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "RESULTS.md")
	before := "# Results\n\nintro\n\n" + beginMarker + "\n\nold tables\n\n" + endMarker + "\n\nafter\n"
	if err := os.WriteFile(doc, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := spliceTables(doc, "new tables\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(doc)
	want := "# Results\n\nintro\n\n" + beginMarker + "\n\nnew tables\n\n" + endMarker + "\n\nafter\n"
	if string(got) != want {
		t.Errorf("spliced:\n%s\nwant:\n%s", got, want)
	}
	if err := os.WriteFile(doc, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := spliceTables(doc, "x"); err == nil {
		t.Error("a document without markers was accepted")
	}
}

// TestMeanSpread: mean and population spread.
func TestMeanSpread(t *testing.T) {
	m, s := meanSpread([]float64{1, 2, 3})
	if m != 2 || s*s < 2.0/3-1e-12 || s*s > 2.0/3+1e-12 {
		t.Errorf("meanSpread(1, 2, 3) = %g, %g; want 2, √(2/3)", m, s)
	}
}

package figures

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// writeMetrics writes a metrics.jsonl with the given content into a fresh directory and returns the directory.
// metricsFile is the name of the log a run writes in its output_dir.
const metricsFile = "metrics.jsonl"

func writeMetrics(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, metricsFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReadMetrics(t *testing.T) {
	trainEval := `{"step":1,"loss":5.5,"lr":0.1}` + "\n" + `{"step":2,"loss":5}` + "\n" +
		`{"step":2,"eval_loss":4.5,"eval_accuracy":0.25,"eval_accuracy_small":0.125}` + "\n" + `{"global_step":2,"train_loss":5.2}` + "\n"
	tests := []struct {
		name, content  string
		subset         string
		loss, evalLoss []Point
		accuracy       []Point
		err            string // in the error; "" for none
	}{
		{"train and eval", trainEval, "", []Point{{1, 5.5}, {2, 5}}, []Point{{2, 4.5}}, []Point{{2, 0.25}}, ""},
		{"small questions", trainEval, "small", []Point{{1, 5.5}, {2, 5}}, []Point{{2, 4.5}}, []Point{{2, 0.125}}, ""},
		{"a subset never logged", trainEval, "text", nil, nil, nil, "no eval_accuracy_text logged"},
		{"an unknown subset", trainEval, "tiny", nil, nil, nil, `unknown question subset "tiny"`},
		{"resumed run logs steps again: the last wins, in step order",
			`{"step":3,"loss":3}` + "\n" + `{"step":1,"loss":9}` + "\n" + `{"step":3,"loss":2}` + "\n",
			"", []Point{{1, 9}, {3, 2}}, nil, nil, ""},
		{"torn last line", `{"step":1,"loss":1}` + "\n" + `{"step":2,"lo`, "", []Point{{1, 1}}, nil, nil, ""},
		{"malformed line", `{"step":1,"loss":1}` + "\n" + "not json\n" + `{"step":2,"loss":1}` + "\n", "", nil, nil, nil, "metrics.jsonl:2"},
		{"no loss", `{"global_step":2,"train_loss":5.2}` + "\n", "", nil, nil, nil, "no logged loss"},
	}
	for _, tt := range tests {
		dir := writeMetrics(t, tt.content)
		c, err := ReadMetrics(filepath.Join(dir, metricsFile), tt.subset)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v; want an error containing %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		for _, s := range []struct {
			what      string
			got, want []Point
		}{{"loss", c.Loss, tt.loss}, {"eval loss", c.EvalLoss, tt.evalLoss}, {"eval accuracy", c.EvalAccuracy, tt.accuracy}} {
			if !slices.Equal(s.got, s.want) {
				t.Errorf("%s: %s = %v; want %v", tt.name, s.what, s.got, s.want)
			}
		}
	}
	if _, err := ReadMetrics(filepath.Join(t.TempDir(), metricsFile), ""); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), metricsFile) {
		t.Errorf("missing file: err = %v; want os.ErrNotExist naming the file", err)
	}
	if _, err := ReadMetrics(filepath.Join(writeMetrics(t, "\n"), metricsFile), ""); !errors.Is(err, ErrNoMetrics) {
		t.Errorf("empty file: err = %v; want ErrNoMetrics", err)
	}
}

// Colours the plot draws with (matplotlib's blue and orange).
var (
	blue   = color.RGBA{31, 119, 180, 255}
	orange = color.RGBA{255, 127, 14, 255}
)

// TestPlotRun: the PNG is 9 × 3.6 inches per panel at 96 DPI, with an accuracy panel only when the run
// measured accuracy, the training curve in blue and the evaluation in orange.
func TestPlotRun(t *testing.T) {
	var withEval, trainOnly strings.Builder
	for s := 1; s <= 40; s++ {
		line := `{"step":` + plotItoa(s) + `,"loss":` + plotFtoa(5/float64(s)) + "}\n"
		withEval.WriteString(line)
		trainOnly.WriteString(line)
		if s%10 == 0 {
			withEval.WriteString(`{"step":` + plotItoa(s) + `,"eval_loss":` + plotFtoa(6/float64(s)) + `,"eval_accuracy":` + plotFtoa(float64(s)/40) + "}\n")
		}
	}
	tests := []struct {
		name, content string
		height        int
		orange        bool
	}{
		{"with eval", withEval.String(), 2 * 346, true},
		{"train only", trainOnly.String(), 346, false},
	}
	for _, tt := range tests {
		dir := writeMetrics(t, tt.content)
		out := filepath.Join(t.TempDir(), "curves.png")
		c, err := PlotRun(filepath.Join(dir, metricsFile), "run", out, "")
		if err != nil || len(c.Loss) != 40 {
			t.Fatalf("%s: PlotRun = %d losses, %v; want 40, nil", tt.name, len(c.Loss), err)
		}
		img := decodePNG(t, out)
		if b := img.Bounds(); b.Dx() != 864 || plotAbs(b.Dy()-tt.height) > 1 {
			t.Errorf("%s: image is %d×%d; want 864×%d", tt.name, b.Dx(), b.Dy(), tt.height)
		}
		if got := countColour(img, blue); got < 100 {
			t.Errorf("%s: %d blue pixels; want the training curve (≥ 100)", tt.name, got)
		}
		if got := countColour(img, orange); (got >= 100) != tt.orange {
			t.Errorf("%s: %d orange pixels; want evaluation curves drawn: %v", tt.name, got, tt.orange)
		}
	}
	if _, err := PlotRun(filepath.Join(t.TempDir(), metricsFile), "run", filepath.Join(t.TempDir(), "x.png"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PlotRun of a directory without metrics: err = %v; want os.ErrNotExist", err)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func countColour(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if plotAbs(int(r>>8)-int(c.R)) <= 2 && plotAbs(int(g>>8)-int(c.G)) <= 2 && plotAbs(int(bl>>8)-int(c.B)) <= 2 {
				n++
			}
		}
	}
	return n
}

func plotAbs(x int) int         { return max(x, -x) }
func plotItoa(i int) string     { return strconv.Itoa(i) }
func plotFtoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// TestComparePNG: each run is drawn in its own colour of the palette, with an accuracy panel only when a
// run measured accuracy; names must match the runs.
func TestComparePNG(t *testing.T) {
	curve := func(scale float64, acc bool) Curves {
		var c Curves
		for s := 1; s <= 30; s++ {
			c.Loss = append(c.Loss, Point{s, scale / float64(s)})
			if acc && s%10 == 0 {
				c.EvalAccuracy = append(c.EvalAccuracy, Point{s, float64(s) / 40})
			}
		}
		return c
	}
	tests := []struct {
		name   string
		cs     []Curves
		height int
	}{
		{"losses only", []Curves{curve(5, false), curve(3, false)}, 346},
		{"with accuracy", []Curves{curve(5, true), curve(3, false)}, 2 * 346},
	}
	for _, tt := range tests {
		b, err := ComparePNG([]string{"first", "second"}, tt.cs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if d := img.Bounds().Dy(); plotAbs(d-tt.height) > 1 {
			t.Errorf("%s: height %d; want %d", tt.name, d, tt.height)
		}
		for i, c := range palette[:2] {
			if got := countColour(img, c); got < 100 {
				t.Errorf("%s: run %d: %d pixels of its colour; want its curve (≥ 100)", tt.name, i, got)
			}
		}
		if got := countColour(img, palette[2]); got > 0 {
			t.Errorf("%s: %d pixels of a third run's colour; want none", tt.name, got)
		}
	}
	if _, err := ComparePNG([]string{"one"}, []Curves{curve(1, false), curve(2, false)}); err == nil {
		t.Error("ComparePNG with one name for two runs: no error")
	}
}

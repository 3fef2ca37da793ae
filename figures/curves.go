// Package figures draws what runs logged and what models selected, as PNG: loss and evaluation curves of
// one or several runs' metrics.jsonl (gonum/plot), and the HR cells each FlexAttention layer attended to
// over the images they were selected in. It is the one package that links the plotting library and fonts.
package figures

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/eval"
	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/internal/fileio"
)

// ErrNoMetrics is returned by ReadMetrics when the file has no step with a loss or an evaluation.
var ErrNoMetrics = errors.New("figures: no logged loss")

// Point is one value of a curve at an optimizer step.
type Point struct {
	Step  int
	Value float64
}

// Curves are the series of a run's metrics.jsonl, each sorted by step with one point per step.
type Curves struct {
	Loss         []Point // training loss, every logging_steps
	EvalLoss     []Point
	EvalAccuracy []Point // exact match of short answers, on the questions of Subset
	Subset       string  // "" for every question, or one kind of question: small, large, text
}

// Subsets are the kinds of question of the demo's data whose eval accuracy a run logs apart.
var Subsets = []string{synth.KindSmall, synth.KindLarge, synth.KindText}

// accuracyKey is the metrics.jsonl key of the eval accuracy on subset, or an error naming the known ones.
func accuracyKey(subset string) (string, error) {
	if subset != "" && !slices.Contains(Subsets, subset) {
		return "", fmt.Errorf("figures: plot: unknown question subset %q; want one of %v", subset, Subsets)
	}
	return eval.AccuracyKey(subset), nil
}

// accuracyLabel names the accuracy axis of curves of subset.
func accuracyLabel(subset string) string {
	if subset == "" {
		return "eval exact-match accuracy"
	}
	return "eval exact match, " + subset + " questions"
}

// ReadMetrics reads a metrics.jsonl, with the eval accuracy on the questions of subset ("" for all; a
// subset the file never logged is an error). When a resumed run logged a step again, its last value wins.
// Lines without a step (the end-of-run summary) are ignored, and so is a torn last line (a crash
// mid-write); any other line that is not a JSON object is an error naming the file and line.
func ReadMetrics(path, subset string) (Curves, error) {
	key, err := accuracyKey(subset)
	if err != nil {
		return Curves{}, err
	}
	b, err := fileio.ReadFile(path, 0)
	if err != nil {
		return Curves{}, fmt.Errorf("figures: read metrics %s: %w", path, err)
	}
	series := [3]map[int]float64{{}, {}, {}}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		err := addRecord(series, line, key)
		if err != nil && i == len(lines)-1 {
			break // a last line without its newline: the write was cut short
		}
		if err != nil {
			return Curves{}, fmt.Errorf("figures: read metrics %s:%d: %w", path, i+1, err)
		}
	}
	c := Curves{Loss: sorted(series[0]), EvalLoss: sorted(series[1]), EvalAccuracy: sorted(series[2]), Subset: subset}
	if len(c.Loss)+len(c.EvalLoss) == 0 {
		return c, fmt.Errorf("%w: %s", ErrNoMetrics, path)
	}
	if subset != "" && len(c.EvalAccuracy) == 0 {
		return c, fmt.Errorf("figures: read metrics %s: no %s logged", path, key)
	}
	return c, nil
}

// addRecord adds one metrics line to the loss, eval loss and eval accuracy (accuracy, its key) series.
func addRecord(series [3]map[int]float64, line []byte, accuracy string) error {
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		return err
	}
	step, ok := rec["step"].(float64)
	if !ok {
		return nil // the summary, or a record of another kind
	}
	for i, key := range []string{"loss", "eval_loss", accuracy} {
		if v, ok := rec[key].(float64); ok {
			series[i][int(step)] = v
		}
	}
	return nil
}

// sorted turns a step → value map into points in step order.
func sorted(m map[int]float64) []Point {
	out := make([]Point, 0, len(m))
	for s, v := range m {
		out = append(out, Point{s, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

// Plot size and colours.
var (
	plotWidth   = 9 * vg.Inch
	panelHeight = 3.6 * vg.Inch
	trainColour = color.RGBA{R: 31, G: 119, B: 180, A: 255} // matplotlib's blue and orange, which readers know
	rawColour   = color.NRGBA{R: 31, G: 119, B: 180, A: 140}
	evalColour  = color.RGBA{R: 255, G: 127, B: 14, A: 255}
)

// PlotPNG draws the curves as a PNG: the training loss (raw and smoothed) with the eval loss above, and
// the eval accuracy below when the run measured one. title heads the loss panel.
func PlotPNG(c Curves, title string) ([]byte, error) {
	panels := []*plot.Plot{lossPanel(c, title)}
	if len(c.EvalAccuracy) > 0 {
		panels = append(panels, accuracyPanel(c))
	}
	return drawPanels(panels, c)
}

// drawPanels stacks the panels on one step axis spanning the curves c, as a PNG.
func drawPanels(panels []*plot.Plot, c Curves) ([]byte, error) {
	lo, hi := stepRange(c)
	for _, p := range panels {
		p.X.Min, p.X.Max = lo, hi // one step axis for every panel
	}
	img := vgimg.New(plotWidth, panelHeight*vg.Length(len(panels)))
	dc := draw.New(img)
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(20), PadY: vg.Points(18)}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("figures: plot: encode PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// lossPanel plots the training loss (faint raw, solid smoothed) and the eval loss (line with dots).
func lossPanel(c Curves, title string) *plot.Plot {
	p := newPanel(title, "loss")
	if len(c.Loss) > 0 {
		raw := line(c.Loss, rawColour, 1)
		smooth := line(smoothed(c.Loss), trainColour, 2)
		p.Add(raw, smooth)
		p.Legend.Add("train loss", raw)
		p.Legend.Add("train loss, smoothed", smooth)
	}
	if len(c.EvalLoss) > 0 {
		l, s := line(c.EvalLoss, evalColour, 2), dots(c.EvalLoss, evalColour)
		p.Add(l, s)
		p.Legend.Add("eval loss", l, s)
	}
	lo, hi := valueRange(append(finite(c.Loss), finite(c.EvalLoss)...))
	p.Y.Min, p.Y.Max = lo, hi+0.25*(hi-lo) // headroom for the legend in the top right corner
	return p
}

// stepRange is the smallest and largest step of any curve.
func stepRange(c Curves) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, pts := range [][]Point{c.Loss, c.EvalLoss, c.EvalAccuracy} {
		for _, p := range pts {
			lo, hi = math.Min(lo, float64(p.Step)), math.Max(hi, float64(p.Step))
		}
	}
	if lo == hi {
		lo, hi = lo-1, hi+1
	}
	return lo, hi
}

// valueRange is the smallest and largest value of the points, widened when they are all equal.
func valueRange(pts []Point) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.Value), math.Max(hi, p.Value)
	}
	if len(pts) == 0 {
		return 0, 1
	}
	if lo == hi {
		return lo - 0.5, hi + 0.5
	}
	return lo, hi
}

// stepTicks labels the step axis with whole numbers only.
type stepTicks struct{}

// Ticks places gonum's default ticks and keeps the labels of those that fall on a whole step.
func (stepTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ts {
		if t.Label != "" {
			ts[i].Label = ""
			if t.Value == math.Round(t.Value) {
				ts[i].Label = strconv.Itoa(int(t.Value))
			}
		}
	}
	return ts
}

// accuracyPanel plots the eval exact-match accuracy on a fixed 0…1 axis.
func accuracyPanel(c Curves) *plot.Plot {
	p := newPanel("", accuracyLabel(c.Subset))
	p.Y.Min, p.Y.Max = 0, 1.15 // headroom for the legend
	p.Y.Tick.Marker = plot.ConstantTicks(percentTicks())
	l, s := line(c.EvalAccuracy, evalColour, 2), dots(c.EvalAccuracy, evalColour)
	p.Add(l, s)
	p.Legend.Add("eval accuracy", l, s)
	return p
}

// percentTicks label an accuracy axis 0…1 in percent.
func percentTicks() []plot.Tick {
	var ts []plot.Tick
	for v := 0; v <= 100; v += 10 {
		t := plot.Tick{Value: float64(v) / 100}
		if v%20 == 0 {
			t.Label = strconv.Itoa(v) + "%"
		}
		ts = append(ts, t)
	}
	return ts
}

// newPanel is a plot with a grid, axis labels and the legend inside its top right corner.
func newPanel(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text, p.Y.Label.Text = "step", ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = vg.Points(12)
		a.Tick.Label.Font.Size = vg.Points(11)
	}
	p.X.Tick.Marker = stepTicks{}
	p.Legend.Top, p.Legend.TextStyle.Font.Size = true, vg.Points(11)
	p.Add(plotter.NewGrid())
	return p
}

// xys converts points to plotter values.
func xys(pts []Point) plotter.XYs {
	out := make(plotter.XYs, len(pts))
	for i, p := range pts {
		out[i].X, out[i].Y = float64(p.Step), p.Value
	}
	return out
}

// line is a polyline through the points; plotter.NewLine fails only on non-finite values, which are
// dropped here first.
func line(pts []Point, c color.Color, width float64) *plotter.Line {
	l, err := plotter.NewLine(xys(finite(pts)))
	if err != nil {
		l = &plotter.Line{}
	}
	l.LineStyle.Color, l.LineStyle.Width = c, vg.Points(width)
	return l
}

// dots marks each point.
func dots(pts []Point, c color.Color) *plotter.Scatter {
	s, err := plotter.NewScatter(xys(finite(pts)))
	if err != nil {
		s = &plotter.Scatter{}
	}
	s.GlyphStyle.Color, s.GlyphStyle.Radius, s.GlyphStyle.Shape = c, vg.Points(3), draw.CircleGlyph{}
	return s
}

// finite drops NaN and Inf values.
func finite(pts []Point) []Point {
	var out []Point
	for _, p := range pts {
		if !math.IsNaN(p.Value) && !math.IsInf(p.Value, 0) {
			out = append(out, p)
		}
	}
	return out
}

// smoothed is an exponential moving average of the points, debiased as in Adam so that it starts at the
// first value; its weight grows with the number of points, as LLaMA-Factory's plot_loss does.
func smoothed(pts []Point) []Point {
	pts = finite(pts)
	w := 1.8 * (1/(1+math.Exp(-0.05*float64(len(pts)))) - 0.5)
	out := make([]Point, len(pts))
	var avg, norm float64
	for i, p := range pts {
		avg, norm = w*avg+(1-w)*p.Value, w*norm+(1-w)
		out[i] = Point{p.Step, avg / norm}
	}
	return out
}

// PlotRuns draws the metrics.jsonl files of several runs on shared axes (ComparePNG), labelled by names and
// with the eval accuracy on the questions of subset, to png atomically, and returns each run's curves.
func PlotRuns(metrics, names []string, png, subset string) ([]Curves, error) {
	cs := make([]Curves, len(metrics))
	for i, m := range metrics {
		c, err := ReadMetrics(m, subset)
		if err != nil {
			return nil, err
		}
		cs[i] = c
	}
	b, err := ComparePNG(names, cs)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(png, b); err != nil {
		return nil, fmt.Errorf("figures: plot: %w", err)
	}
	return cs, nil
}

// PlotRun reads one run's metrics.jsonl and writes its curves, titled with name and with the eval
// accuracy on the questions of subset, to png atomically.
func PlotRun(metrics, name, png, subset string) (Curves, error) {
	c, err := ReadMetrics(metrics, subset)
	if err != nil {
		return c, err
	}
	b, err := PlotPNG(c, fmt.Sprintf("%s (%d steps logged)", name, len(c.Loss)))
	if err != nil {
		return c, err
	}
	if err := atomicfile.WriteFile(png, b); err != nil {
		return c, fmt.Errorf("figures: plot: %w", err)
	}
	return c, nil
}

// palette is matplotlib's tab10, one colour per compared run.
var palette = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255},
	{23, 190, 207, 255}}

// ComparePNG draws several runs on shared axes, one colour each, labelled by names: the smoothed training
// loss, and the eval accuracy below when some run measured one (on the first run's Subset).
func ComparePNG(names []string, cs []Curves) ([]byte, error) {
	if len(names) != len(cs) || len(cs) == 0 || len(cs) > len(palette) {
		return nil, fmt.Errorf("figures: plot: %d names for %d runs; want 1 to %d runs", len(names), len(cs), len(palette))
	}
	loss := newPanel(fmt.Sprintf("%d runs", len(cs)), "train loss, smoothed")
	acc := newPanel("", accuracyLabel(cs[0].Subset))
	acc.Y.Min, acc.Y.Max = 0, 1.15
	acc.Y.Tick.Marker = plot.ConstantTicks(percentTicks())
	var all Curves
	var lossPts []Point
	for i, c := range cs {
		colour := palette[i]
		if len(c.Loss) > 0 {
			l := line(smoothed(c.Loss), colour, 2)
			loss.Add(l)
			loss.Legend.Add(names[i], l)
			lossPts = append(lossPts, smoothed(c.Loss)...)
		}
		if len(c.EvalAccuracy) > 0 {
			l, d := line(c.EvalAccuracy, colour, 2), dots(c.EvalAccuracy, colour)
			acc.Add(l, d)
			acc.Legend.Add(names[i], l, d)
		}
		all.Loss, all.EvalLoss = append(all.Loss, c.Loss...), append(all.EvalLoss, c.EvalLoss...)
		all.EvalAccuracy = append(all.EvalAccuracy, c.EvalAccuracy...)
	}
	lo, hi := valueRange(lossPts)
	loss.Y.Min, loss.Y.Max = lo, hi+0.35*(hi-lo) // headroom for the legend
	panels := []*plot.Plot{loss}
	if len(all.EvalAccuracy) > 0 {
		panels = append(panels, acc)
	}
	return drawPanels(panels, all)
}

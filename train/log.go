package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// logger reports progress: one live progress line on a terminal, a plain line every logging_steps
// otherwise, and one JSON object per logged step in output_dir/metrics.jsonl once openMetrics opened it.
// A metrics record that cannot be written is an error (ErrMetrics): the run stops rather than train on
// with a log that silently lacks steps.
type logger struct {
	cfg     config.Config
	out     io.Writer
	slog    *slog.Logger
	metrics *os.File // nil until openMetrics
	bar     *progressbar.ProgressBar
	start   time.Time
	first   int  // the first step this process reported (a resumed run starts past 1); 0 before it
	live    bool // a live progress line instead of log lines: out is a terminal, and the run has one rank
}

// ErrMetrics reports a record that could not be written to metrics.jsonl (a full disk, say). The run
// saves a checkpoint of its last finished step, if it can, and stops.
var ErrMetrics = errors.New("train: cannot write metrics")

// MetricsFile is the name of the metrics log in output_dir: one JSON object per logged step, evaluation and
// end of run (`flextrain plot` draws it).
const MetricsFile = "metrics.jsonl"

// newLogger returns the console side of the run's logging; openMetrics adds the file.
func newLogger(cfg config.Config, opts RunOptions) *logger {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	// An MPI launcher gives its ranks a pseudo-terminal: a run of several ranks logs plain lines.
	live := isTerminal(out) && (opts.Comm == nil || opts.Comm.Size() == 1)
	l := &logger{cfg: cfg, out: out, slog: opts.Logger, start: time.Now(), live: live}
	if l.slog == nil {
		l.slog = slog.New(slog.NewTextHandler(out, nil))
	}
	return l
}

// openMetrics opens output_dir/metrics.jsonl: appended to by a resumed run, emptied by a fresh one.
func (l *logger) openMetrics(resumed bool) error {
	flag := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if !resumed {
		flag |= os.O_TRUNC
	}
	path := filepath.Join(l.cfg.OutputDir, MetricsFile)
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("train: open %s: %w", path, err)
	}
	l.metrics = f
	return nil
}

// isTerminal reports whether w is a terminal, where a live progress line makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (l *logger) close() {
	if l.bar != nil {
		l.bar.Finish()
		fmt.Fprintln(l.out)
	}
	if l.metrics != nil {
		l.metrics.Close()
	}
}

func (l *logger) printf(format string, a ...any) { fmt.Fprintf(l.out, format, a...) }
func (l *logger) info(msg string, args ...any)   { l.clearBar(); l.slog.Info(msg, args...) }
func (l *logger) warn(msg string, args ...any)   { l.clearBar(); l.slog.Warn(msg, args...) }

// clearBar erases the live progress line so that a log line starts at the left margin; the next step
// draws the bar again.
func (l *logger) clearBar() {
	if l.bar != nil {
		l.bar.Clear()
	}
}

// record appends one object to metrics.jsonl.
func (l *logger) record(v map[string]any) error {
	if l.metrics == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err == nil {
		_, err = l.metrics.Write(append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMetrics, l.metrics.Name(), err)
	}
	return nil
}

// step reports an optimizer step: the progress line on every step, the log line and metrics every
// logging_steps (and on the first and last step).
func (l *logger) step(st State, r stepResult, total int) error {
	tps := float64(r.tokens) / r.elapsed.Seconds()
	if l.first == 0 {
		l.first = st.Step
	}
	if l.live {
		l.progress(st, r, total, tps)
	}
	if st.Step != 1 && st.Step != total && (l.cfg.LoggingSteps <= 0 || st.Step%l.cfg.LoggingSteps != 0) {
		return nil
	}
	elapsed := time.Since(l.start).Seconds()
	perStep := elapsed / float64(st.Step-l.first+1) // this process's pace, not the resumed steps'
	if !l.live {
		l.printf("step %d/%d | epoch %.2f | loss %.4f | lr %.2e | grad_norm %.3f | %.0f tok/s | %.0f ms/step | alpha %.2f | hr %.3f\n",
			st.Step, total, st.Epoch, r.loss, r.lr, r.gradNorm, tps, float64(r.elapsed.Milliseconds()), r.alpha, r.hrSelectedFrac)
	}
	return l.record(map[string]any{"step": st.Step, "epoch": round(st.Epoch, 4), "loss": r.loss, "lr": r.lr,
		"grad_norm": r.gradNorm, "tokens_per_sec": round(tps, 1), "elapsed_s": round(elapsed, 3),
		"remaining_s": round(perStep*float64(total-st.Step), 1), "alpha": r.alpha,
		"hr_selected_frac": round(r.hrSelectedFrac, 4), "feature_cache_hit_rate": round(r.featureHitRate, 4)})
}

// progress redraws the live progress line.
func (l *logger) progress(st State, r stepResult, total int, tps float64) {
	if l.bar == nil {
		l.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(l.out), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(20))
	}
	l.bar.Describe(fmt.Sprintf("epoch %.2f | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s", st.Epoch, r.loss, r.lr, r.gradNorm, tps))
	l.bar.Set(st.Step)
}

// eval reports an evaluation.
func (l *logger) eval(step int, m eval.Report) error {
	rec := map[string]any{"step": step, "eval_loss": m.Loss, "eval_samples": m.Samples}
	line := fmt.Sprintf("eval at step %d | loss %.4f", step, m.Loss)
	if m.Answers > 0 {
		rec[eval.AccuracyKey("")], rec["eval_answers"] = m.Accuracy, m.Answers
		line += fmt.Sprintf(" | exact match %.3f of %d", m.Accuracy, m.Answers)
	}
	for _, kind := range m.Kinds() {
		k := m.ByKind[kind]
		rec[eval.AccuracyKey(kind)] = k.Accuracy
		line += fmt.Sprintf(" | %s %.3f", kind, k.Accuracy)
	}
	if l.bar != nil {
		l.printf("\n")
	}
	l.printf("%s\n", line)
	return l.record(rec)
}

// summary prints and records the end of a run.
func (l *logger) summary(s Summary) error {
	b, _ := json.Marshal(s) // a struct of numbers and a string always marshals
	l.printf("%s\n", b)
	var m map[string]any
	json.Unmarshal(b, &m)
	return l.record(m)
}

// round keeps digits decimals, for readable metrics.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

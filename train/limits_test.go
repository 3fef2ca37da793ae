package train

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
)

// TestHugeConfigRefused: absurd numbers in a configuration are refused with a message naming the key,
// before anything large is allocated: no fatal out-of-memory, no "the run has no step".
func TestHugeConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
		run  bool // refused by Run (the memory plan, the run's length) rather than by config.Load
	}{
		{[]string{"model.text.num_layers=1000000"}, "text.num_layers: 1000000 is past", false},
		{[]string{"model.vision.image_size=1048576"}, "vision.image_size: 1048576 is past", false},
		{[]string{"dataloader_num_workers=1000000"}, "dataloader_num_workers: must be in 0…256", false},
		{[]string{"max_steps=1000000000000"}, "max_steps: 1000000000000 is past", false},
		{[]string{"num_train_epochs=1e300"}, "num_train_epochs 1e+300 of 24 batches make more than", true},
		{[]string{"model.text.hidden_size=131072", "model.text.intermediate_size=131072"}, "trainable weights", true},
	} {
		t.Run(strings.Join(tc.set, " "), func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := loadAndRun(t, tc.set, tc.run)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one containing %q", err, tc.want)
			}
			if used := after.TotalAlloc - before.TotalAlloc; used > 256<<20 {
				t.Errorf("refusing it allocated %d MiB", used>>20)
			}
		})
	}
}

// loadAndRun loads configs/tiny.yaml with the overrides and, when run is set, starts the run.
func loadAndRun(t *testing.T, set []string, run bool) error {
	base := []string{"output_dir=" + t.TempDir(), "tokenizer_path=../testdata/tiny/tokenizer.json",
		"data_path=../testdata/tiny/train.json", "image_folder=../testdata/tiny/images", "eval_steps=0"}
	cfg, err := config.Load("../configs/tiny.yaml", append(base, set...))
	if err != nil || !run {
		return err
	}
	_, _, err = runTiny(t, context.Background(), cfg, RunOptions{})
	return err
}

package checkpoints_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/safetensors"
)

// A trainer saves after an optimizer step, prunes, and on restart resolves --resume auto and loads.
func Example() {
	dir, err := os.MkdirTemp("", "flextrain-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	for _, step := range []int{100, 200, 300} {
		ck := &checkpoints.Checkpoint{
			Step:      step,
			Weights:   map[string]safetensors.Tensor{"flex.0.alpha": safetensors.FromFloat32(nil, []float32{float32(step) / 1000})},
			Optimizer: map[string]safetensors.Tensor{"m.flex.0.alpha": safetensors.FromFloat32(nil, []float32{0.25})},
			State:     []byte(fmt.Sprintf(`{"step":%d}`, step)),
			Config:    []byte("seed: 1\n"),
		}
		if _, err := checkpoints.Save(dir, ck); err != nil {
			log.Fatal(err)
		}
		if _, err := checkpoints.Prune(dir, 2, step); err != nil { // keep the newest 2 and the one just written
			log.Fatal(err)
		}
	}

	path, warnings, err := checkpoints.Resolve(dir, "auto")
	if err != nil {
		log.Fatal(err)
	}
	ck, err := checkpoints.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	alpha, _ := ck.Weights["flex.0.alpha"].Float32s()
	list, _ := checkpoints.List(dir)
	fmt.Println(filepath.Base(path), len(warnings), "warnings")
	fmt.Println(ck.Step, alpha, string(ck.State))
	fmt.Println(len(list), "checkpoints kept")
	// Output:
	// checkpoint-300 0 warnings
	// 300 [0.3] {"step":300}
	// 2 checkpoints kept
}

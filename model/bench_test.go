package model

import (
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// BenchmarkGoldenTrainStep times one training step of the golden tiny case (build the graph, forward and
// backward to every weight outside the vision tower), in float32 and float64.
func BenchmarkGoldenTrainStep(b *testing.B) {
	t := &testing.T{}
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_train.safetensors"))
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		b.Run(dt.String(), func(b *testing.B) {
			w, err := FromTensors(gc.cfg, dt, gc.tensor)
			if err != nil {
				b.Fatal(err)
			}
			opt := Options{Mode: Train, Alpha: gc.alpha, Trainable: func(n string) bool { return !strings.HasPrefix(n, VisionPrefix) }}
			for i := 0; i < b.N; i++ {
				m, err := Build(w, gc.batch, opt)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Run(); err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
}

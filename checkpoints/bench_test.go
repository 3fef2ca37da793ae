package checkpoints

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// benchCheckpoint returns a checkpoint of about mb MB of random-normal float32 weights (1 MiB tensors)
// with as much AdamW state, the case where compression gains least.
func benchCheckpoint(mb int) *Checkpoint {
	rng := rand.New(rand.NewPCG(1, 2))
	ck := tinyCheckpoint(1)
	ck.Weights, ck.Optimizer = map[string]safetensors.Tensor{}, map[string]safetensors.Tensor{}
	for i := 0; i < mb/2; i++ {
		name := fmt.Sprintf("flex.%d.weight", i)
		ck.Weights[name] = randomF32(rng, 512, 512)
		ck.Optimizer["m."+name] = randomF32(rng, 256, 512)
		ck.Optimizer["v."+name] = randomF32(rng, 256, 512)
	}
	return ck
}

// BenchmarkSave and BenchmarkLoad report MB/s over the raw tensor bytes and the compression ratio
// (raw/stored) of random-normal float32 data. Run: go test -run '^$' -bench . -benchtime 5x ./checkpoints/
func BenchmarkSave(b *testing.B) {
	for _, mb := range []int{8, 60} {
		b.Run(mbName(mb), func(b *testing.B) {
			ck, dir := benchCheckpoint(mb), b.TempDir()
			b.SetBytes(int64(mb) << 20)
			for i := 0; i < b.N; i++ {
				if _, err := Save(dir, ck); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportRatio(b, filepath.Join(dir, dirName(ck.Step)))
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, mb := range []int{8, 60} {
		b.Run(mbName(mb), func(b *testing.B) {
			path, err := Save(b.TempDir(), benchCheckpoint(mb))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(mb) << 20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Load(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadTiny measures the fixed cost of a Load (decoder setup, file reads).
func BenchmarkLoadTiny(b *testing.B) {
	path := mustSave(b, b.TempDir(), 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

func mbName(mb int) string { return fmt.Sprintf("%dMB", mb) }

// reportRatio adds the compression ratio of the checkpoint at path to the benchmark's output.
func reportRatio(b *testing.B, path string) {
	info, err := Inspect(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(info.Ratio(), "ratio")
}

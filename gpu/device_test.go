//go:build gpu

package gpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// These tests run the kernels on a GPU (scripts/gpu-check.sh builds them here and runs them on a lent
// device) and compare each with the CPU op it stands for.

func openDevice(t *testing.T) *Device {
	t.Helper()
	d, err := Open(0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	t.Logf("device cuda:0: %s", d.Name)
	return d
}

// upload puts host values in a new buffer.
func upload(t *testing.T, d *Device, host []float32) Buffer {
	t.Helper()
	b, err := d.Alloc(len(host))
	if err == nil {
		err = d.Upload(b, host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(b) })
	return b
}

func download(t *testing.T, d *Device, b Buffer) []float32 {
	t.Helper()
	host := make([]float32, b.Len())
	if err := d.Download(host, b); err != nil {
		t.Fatal(err)
	}
	return host
}

// TestDeviceAdamW: three AdamW steps on the device give optim.AdamW's bits.
func TestDeviceAdamW(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1<<20 + 7
	w0, g := randoms(rng, n), randoms(rng, n)
	want := append([]float32(nil), w0...)
	opt := optim.NewAdamW[float32](0.9, 0.95, 1e-8, 0.1)
	zeros := make([]float32, n)
	w, gb, m, v := upload(t, d, w0), upload(t, d, g), upload(t, d, zeros), upload(t, d, zeros)
	for step := 1; step <= 3; step++ {
		lr := 1e-3 * float64(step)
		if err := opt.Update([]optim.Param[float32]{{Name: "w", Shape: []int{n}, Value: want, Grad: g}}, lr); err != nil {
			t.Fatal(err)
		}
		k := AdamWConsts{B1: 0.9, C1: 1 - 0.9, B2: 0.95, C2: 1 - 0.95, D1: float32(1 - math.Pow(0.9, float64(step))),
			D2: float32(1 - math.Pow(0.95, float64(step))), Eps: 1e-8, LR: float32(lr)} // a vector: no decay
		if err := d.AdamW(w, gb, m, v, k); err != nil {
			t.Fatal(err)
		}
	}
	got := download(t, d, w)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("w[%d] = %v on the device, %v on the CPU", i, got[i], want[i])
		}
	}
}

// TestDeviceNormAndScale: the squared norm matches the float64 sum; scaling gives the CPU's products.
func TestDeviceNormAndScale(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(2, 2))
	for _, n := range oddSizes {
		x := randoms(rng, n)
		b := upload(t, d, x)
		got, err := d.SumSquares(b)
		if err != nil {
			t.Fatal(err)
		}
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("n=%d: Σx² = %v on the device, %v on the CPU", n, got, want)
		}
		if err := d.Scale(b, 0.37); err != nil {
			t.Fatal(err)
		}
		for i, v := range download(t, d, b) {
			if v != x[i]*0.37 {
				t.Fatalf("n=%d: scaled [%d] = %v, want %v", n, i, v, x[i]*0.37)
			}
		}
	}
}

// TestDeviceRMSNormSwiGLU: the forward kernels match ops' within float32 rounding.
func TestDeviceRMSNormSwiGLU(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, cols := range []int{1, 257, 1000, 4096} {
		const rows = 5
		x, w := randoms(rng, rows*cols), randoms(rng, cols)
		want := make([]float32, rows*cols)
		ops.RMSNormRows(want, x, w, 1e-5)
		y := upload(t, d, make([]float32, rows*cols))
		if err := d.RMSNorm(y, upload(t, d, x), upload(t, d, w), rows, cols, 1e-5); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "rmsnorm", cols, download(t, d, y), want, 1e-6)

		a, b := x, randoms(rng, rows*cols)
		want = append(want[:0], a...)
		ops.SwiGLUInPlace(want, b)
		if err := d.SwiGLU(y, upload(t, d, a), upload(t, d, b)); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "swiglu", cols, download(t, d, y), want, 2e-6)
	}
}

// TestDeviceMatMulNT: cuBLAS's x·wᵀ (TF32 off) matches the CPU's within float32 summation error.
func TestDeviceMatMulNT(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(4, 4))
	for _, s := range [][3]int{{1, 1, 1}, {37, 129, 65}, {160, 512, 1536}} {
		rows, in, out := s[0], s[1], s[2]
		x, w := randoms(rng, rows*in), randoms(rng, out*in)
		want := make([]float32, rows*out)
		ops.MatMulNT(want, x, w, rows, in, out)
		y := upload(t, d, make([]float32, rows*out))
		if err := d.MatMulNT(y, upload(t, d, x), upload(t, d, w), rows, in, out); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "matmul", rows*in*out, download(t, d, y), want, 1e-5*math.Sqrt(float64(in)))
	}
}

// TestDeviceOpenErrors: an ordinal the machine lacks is refused with the count of its devices.
func TestDeviceOpenErrors(t *testing.T) {
	if _, err := Open(99, false); err == nil || !strings.Contains(err.Error(), "cuda:99") {
		t.Errorf("Open(99): %v; want an error naming cuda:99", err)
	}
}

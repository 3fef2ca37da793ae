//go:build unix

package data

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process used so far. On a shared machine wall-clock images/s depend on
// the neighbours; CPU ms per image does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRate adds images/s (wall clock) and CPU ms per image.
func reportRate(b *testing.B, cpu0 time.Duration, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/1e6/float64(b.N), "cpu-ms/"+unit)
}

// BenchmarkImage measures decode + pad + bicubic resize + normalise + LR downsample of a 640×480 JPEG
// (a typical COCO image), reported in images/s per goroutine (serial) and over GOMAXPROCS (parallel).
func BenchmarkImage(b *testing.B) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, fixtureImage(640, 480, 5), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	file := buf.Bytes()
	for _, size := range []struct {
		name string
		s, z int
	}{{"336x3=1008", 336, 3}, {"64x3=192", 64, 3}} {
		one := func(b *testing.B) {
			img, err := DecodeImage(bytes.NewReader(file))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := PreprocessImage(img, size.s, size.z); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(size.name+"/serial", func(b *testing.B) {
			cpu0 := cpuTime(b)
			for b.Loop() {
				one(b)
			}
			reportRate(b, cpu0, "image")
		})
		b.Run(size.name+"/parallel", func(b *testing.B) {
			cpu0 := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one(b)
				}
			})
			reportRate(b, cpu0, "image")
		})
	}
}

// BenchmarkLoader measures whole batches from the loader over the fixture (small images, S=16, Z=2),
// mostly the pipeline's own overhead: record reads, template, collation.
func BenchmarkLoader(b *testing.B) {
	f := newFixture(b, 200)
	l, err := Open(f.options(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	n, cpu0 := 0, cpuTime(b)
	for b.Loop() {
		batch, err := l.Next(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		n += batch.Len()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/1e6/float64(n), "cpu-ms/sample")
}

// BenchmarkIndex measures the streaming pass that Open makes over the data file: 20000 LLaVA-like records
// (about 29 MB) as a JSON array, reported in MB/s of data file.
func BenchmarkIndex(b *testing.B) {
	f := newFixture(b, 0)
	long := strings.Repeat("the cat sat on the mat and looked at the \"red\" ball, ", 8)
	for i := range 20000 {
		r := fixtureRecord{ID: fmt.Sprintf("%06d", i), Conversations: conv("<image>\n"+long, long+long)}
		if i%5 != 4 {
			r.Image = fmt.Sprintf("coco/train2017/%012d.jpg", i)
		}
		f.records = append(f.records, r)
	}
	f.data = filepath.Join(f.dir, "data.json")
	f.write(b, f.data, false)
	st, err := os.Stat(f.data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := buildIndex(f.data, DefaultMaxRecordBytes); err != nil {
			b.Fatal(err)
		}
	}
}

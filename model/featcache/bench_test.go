package featcache

import (
	"fmt"
	"testing"
)

// BenchmarkPixelKey hashes one image of a LLaVA-1.5 run: LR [3,336,336] and HR [3,672,672] (Z=2).
// go test -run '^$' -bench PixelKey ./model/featcache/
func BenchmarkPixelKey(b *testing.B) {
	b.Run("float32", func(b *testing.B) { benchPixelKey[float32](b) })
	b.Run("float64", func(b *testing.B) { benchPixelKey[float64](b) })
}

func benchPixelKey[T Float](b *testing.B) {
	lr, hr := normals[T](3*336*336, 1), normals[T](3*672*672, 2)
	b.SetBytes(int64((len(lr) + len(hr)) * sizeOf[T]()))
	for b.Loop() {
		PixelKey(lr, hr)
	}
}

// featureRows, featureCols: the [64·64, 128] float32 value of the task (2 MiB).
const featureRows, featureCols = 64 * 64, 128

// BenchmarkGet reads a [64·64, 128] float32 value from memory (a copy out of the LRU) and from disk
// (page-cached file: read, CRC-32C, zstd, lanes, copy).
// go test -run '^$' -bench 'Get|Put' ./model/featcache/
func BenchmarkGet(b *testing.B) {
	v := normals[float32](featureRows*featureCols, 1)
	for _, tc := range []struct {
		name   string
		maxMem int64
	}{{"memory", 0}, {"disk", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newCache(b, b.TempDir(), tc.maxMem)
			mustPut(b, c, keyOf(1), ViewHR, v)
			b.SetBytes(int64(len(v) * 4))
			for b.Loop() {
				if _, ok := Get[float32](c, keyOf(1), ViewHR); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}

// BenchmarkPut stores a [64·64, 128] float32 value in memory only and in memory and on disk, and
// reports the disk file's compression ratio.
func BenchmarkPut(b *testing.B) {
	b.Run("float32", func(b *testing.B) { benchPut(b, normals[float32](featureRows*featureCols, 1)) })
	b.Run("float64", func(b *testing.B) { benchPut(b, normals[float64](featureRows*featureCols, 1)) })
}

func benchPut[T Float](b *testing.B, v []T) {
	for _, disk := range []bool{false, true} {
		b.Run(fmt.Sprintf("disk=%v", disk), func(b *testing.B) {
			dir := ""
			if disk {
				dir = b.TempDir()
			}
			c := newCache(b, dir, 0)
			b.SetBytes(int64(len(v) * sizeOf[T]()))
			for b.Loop() {
				mustPut(b, c, keyOf(1), ViewHR, v)
			}
			if disk {
				b.ReportMetric(float64(len(v)*sizeOf[T]())/float64(c.Stats().BytesOnDisk), "ratio")
			}
		})
	}
}

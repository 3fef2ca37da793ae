package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// collect reads n batches.
func collect(t *testing.T, l *Loader, n int) []*Batch {
	t.Helper()
	var out []*Batch
	for i := range n {
		b, err := l.Next(context.Background())
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		out = append(out, b)
	}
	return out
}

func open(t *testing.T, o Options) *Loader {
	t.Helper()
	l, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ids lists the sample ids of batches in order.
func ids(bs []*Batch) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.IDs...)
	}
	return out
}

func TestLoaderBadSamplesSkip(t *testing.T) {
	f := newFixture(t, 97, badMissing, badTruncated, badTooLong)
	var logBuf bytes.Buffer
	o := f.options(t)
	o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	l := open(t, o)
	if got, want := l.StepsPerEpoch(), 25; got != want {
		t.Fatalf("StepsPerEpoch: got %d; want %d", got, want)
	}
	seen := map[string]int{}
	for l.Cursor().Epoch == 0 {
		b, err := l.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range b.IDs {
			seen[id]++
		}
	}
	c := l.Counts()
	if got, want := len(seen), 97; got != want {
		t.Errorf("distinct samples in an epoch: got %d; want %d", got, want)
	}
	for id, n := range seen {
		if strings.HasPrefix(id, "bad-") || n != 1 {
			t.Errorf("sample %s seen %d times", id, n)
		}
	}
	want := map[string]int{ReasonMissing: 1, ReasonDecode: 1, ReasonTooLong: 1}
	if !maps.Equal(c.Bad, want) || c.Skipped != 3 || c.Samples != 97 || c.Records != 100 {
		t.Errorf("counts: got %+v; want bad %v, skipped 3, samples 97, records 100", c, want)
	}
	if got, want := c.TextOnly, 97/5; got != want {
		t.Errorf("text-only: got %d; want %d", got, want)
	}
	if got, want := c.WithImage, 97-97/5; got != want {
		t.Errorf("with image: got %d; want %d", got, want)
	}
	for _, s := range []string{"coco/nowhere.jpg", "truncated.jpg", "bad-too_long", "reason=decode", "reason=missing", "reason=too_long"} {
		if !strings.Contains(logBuf.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logBuf.String())
		}
	}
}

func TestLoaderBadSamplesFail(t *testing.T) {
	for _, kind := range []string{badMissing, badTruncated, badTooLong} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, 20, kind)
			o := f.options(t)
			o.Policy, o.Shuffle = PolicyFail, false
			l := open(t, o)
			var err error
			for i := 0; err == nil && i < 10; i++ {
				_, err = l.Next(context.Background())
			}
			var bad *BadSample
			if !errors.As(err, &bad) || !errors.Is(err, ErrBadSample) {
				t.Fatalf("got %v; want a *BadSample", err)
			}
			if got, want := bad.ID, "bad-"+kind; got != want {
				t.Errorf("id: got %q; want %q", got, want)
			}
			wantReason := map[string]string{badMissing: ReasonMissing, badTruncated: ReasonDecode, badTooLong: ReasonTooLong}[kind]
			if bad.Reason != wantReason || !strings.Contains(err.Error(), wantReason) || !strings.Contains(err.Error(), bad.File) {
				t.Errorf("error %q: want reason %s and the file", err, wantReason)
			}
			if _, again := l.Next(context.Background()); !errors.Is(again, ErrBadSample) {
				t.Errorf("second Next: got %v; want the sticky error", again)
			}
		})
	}
}

func TestLoaderSkipBudget(t *testing.T) {
	tests := []struct {
		name     string
		good     int
		bad      int
		fraction float64
		wantErr  bool
	}{
		{"all bad, more than 100 in a row", 0, 110, 1, true},
		{"fraction above limit", 100, 30, 0.1, true},
		{"fraction within limit", 100, 5, 0.1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.good)
			for i := range tt.bad {
				f.insert(t, len(f.records)*i/max(tt.bad, 1), fixtureRecord{ID: "gone", Image: "gone.png", Conversations: conv("<image>\nhi", "yo")})
			}
			f.write(t, f.data, false)
			o := f.options(t)
			o.MaxBadFraction, o.Shuffle = tt.fraction, false
			l := open(t, o)
			var err error
			for l.Cursor().Epoch == 0 && err == nil {
				_, err = l.Next(context.Background())
			}
			if got := errors.Is(err, ErrSkipBudget); got != tt.wantErr {
				t.Errorf("got err %v; want skip budget error %v", err, tt.wantErr)
			}
		})
	}
}

func TestLoaderResume(t *testing.T) {
	f := newFixture(t, 97, badMissing, badTruncated, badTooLong)
	o := f.options(t)
	o.BatchSize = 3 // 34 windows per epoch: 40 batches cross the epoch end
	straight := collect(t, open(t, o), 48)
	first := open(t, o)
	collect(t, first, 40)
	// Through JSON, as a checkpoint stores them.
	var cur Cursor
	var counts Counts
	jsonRoundTrip(t, first.Cursor(), &cur)
	jsonRoundTrip(t, first.Counts(), &counts)
	if cur.Epoch != 1 {
		t.Fatalf("cursor after 40 batches: %+v; want epoch 1 (the test must cross an epoch end)", cur)
	}
	resumed := open(t, o)
	if err := resumed.Restore(cur); err != nil {
		t.Fatal(err)
	}
	resumed.RestoreCounts(counts)
	got := collect(t, resumed, 8)
	for i, b := range got {
		if want := straight[40+i]; !reflect.DeepEqual(b, want) {
			t.Errorf("batch %d after resume: ids %v; want %v (or tensors differ)", 40+i, b.IDs, want.IDs)
		}
	}
	if rc := resumed.Counts(); rc.Samples != counts.Samples+len(ids(got)) {
		t.Errorf("restored counts: got %d samples; want %d", rc.Samples, counts.Samples+len(ids(got)))
	}
}

func jsonRoundTrip(t *testing.T, v, out any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if again, _ := json.Marshal(out); string(again) != string(b) {
		t.Fatalf("JSON round trip: %s became %s", b, again)
	}
}

func TestLoaderCancelKeepsPosition(t *testing.T) {
	f := newFixture(t, 30, badMissing)
	o := f.options(t)
	straight := collect(t, open(t, o), 4)
	l := open(t, o)
	collect(t, l, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: got %v; want context.Canceled", err)
	}
	if got := collect(t, l, 2); !reflect.DeepEqual(got, straight[2:]) {
		t.Errorf("after a cancelled Next: ids %v; want %v", ids(got), ids(straight[2:]))
	}
}

func TestLoaderWorkersIndependent(t *testing.T) {
	f := newFixture(t, 30, badMissing)
	o := f.options(t)
	o.Workers, o.Prefetch = 1, 1
	one := collect(t, open(t, o), 12)
	o.Workers, o.Prefetch = 4, 16
	four := collect(t, open(t, o), 12)
	if !reflect.DeepEqual(one, four) {
		t.Errorf("1 worker: %v\n4 workers: %v", ids(one), ids(four))
	}
}

func TestLoaderShuffleEpochs(t *testing.T) {
	f := newFixture(t, 40)
	o := f.options(t)
	l := open(t, o)
	e0, e1 := ids(collect(t, l, 10)), ids(collect(t, l, 10))
	if slices.Equal(e0, e1) {
		t.Errorf("epochs 0 and 1 have the same order %v", e0)
	}
	s0, s1 := slices.Sorted(slices.Values(e0)), slices.Sorted(slices.Values(e1))
	if !slices.Equal(s0, s1) || len(s0) != 40 {
		t.Errorf("epoch 0 and 1 hold different samples: %v vs %v", s0, s1)
	}
	o.Seed++
	if other := ids(collect(t, open(t, o), 10)); slices.Equal(other, e0) {
		t.Errorf("seeds %d and %d give the same order", o.Seed-1, o.Seed)
	}
}

func TestLoaderShardsCoverEpoch(t *testing.T) {
	f := newFixture(t, 23)
	var all []string
	for rank := range 3 {
		o := f.options(t)
		o.Rank, o.WorldSize = rank, 3
		l := open(t, o)
		if got, want := l.StepsPerEpoch(), 2; got != want { // ⌈23/3⌉ = 8 records per rank, batch 4
			t.Errorf("rank %d StepsPerEpoch: got %d; want %d", rank, got, want)
		}
		all = append(all, ids(collect(t, l, 2))...)
	}
	uniq := slices.Compact(slices.Sorted(slices.Values(all)))
	if len(all) != 24 || len(uniq) != 23 {
		t.Errorf("3 ranks read %d samples, %d distinct; want 24 (one repeat to pad), 23", len(all), len(uniq))
	}
}

func TestLoaderBatchTensors(t *testing.T) {
	f := newFixture(t, 10)
	o := f.options(t)
	o.Shuffle = false
	b := collect(t, open(t, o), 1)[0]
	for i, id := range b.IDs {
		text := f.records[i].Image == ""
		if got, want := id, f.records[i].ID; got != want {
			t.Errorf("sample %d: got id %s; want %s", i, got, want)
		}
		if text != (b.LRPixels[i] == nil) || text != (b.HRPixels[i] == nil) || text != (b.OriSizes[i] == [2]int{}) {
			t.Errorf("sample %d (text-only %v): pixels presence and ori size %v disagree", i, text, b.OriSizes[i])
		}
		if !text && (len(b.LRPixels[i]) != 3*fxS*fxS || len(b.HRPixels[i]) != 3*fxS*fxZ*fxS*fxZ) {
			t.Errorf("sample %d: pixel lengths %d, %d; want %d, %d", i, len(b.LRPixels[i]), len(b.HRPixels[i]), 3*fxS*fxS, 3*4*fxS*fxS)
		}
		if got, want := b.OriSizes[i], [2]int{20 + i%7, 12 + i%5}; !text && i%2 == 0 && got != want {
			t.Errorf("sample %d ori size: got %v; want %v", i, got, want)
		}
		if got := countImage(b.InputIDs[i]); got != boolInt(!text) {
			t.Errorf("sample %d: %d image markers; want %d", i, got, boolInt(!text))
		}
	}
}

func TestLoaderOnceAndVal(t *testing.T) {
	f := newFixture(t, 30)
	o := f.options(t)
	o.ValSize = 0.2
	train := open(t, o)
	val, err := train.Val()
	if err != nil {
		t.Fatal(err)
	}
	defer val.Close()
	var valIDs []string
	for {
		b, err := val.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		valIDs = append(valIDs, b.IDs...)
	}
	if len(valIDs) != 6 || !slices.IsSorted(valIDs) {
		t.Errorf("val ids %v: want 6, in file order", valIDs)
	}
	trainIDs := ids(collect(t, train, train.StepsPerEpoch()))
	if len(trainIDs) != 24 {
		t.Errorf("train epoch has %d samples; want 24", len(trainIDs))
	}
	for _, id := range valIDs {
		if slices.Contains(trainIDs, id) {
			t.Errorf("val sample %s also in train", id)
		}
	}
}

func TestJSONArrayAndLinesLoadTheSame(t *testing.T) {
	f := newFixture(t, 12, badMissing)
	o := f.options(t)
	arr := collect(t, open(t, o), 3)
	o.DataPath = f.data + "l"
	f.write(t, o.DataPath, true)
	lines := collect(t, open(t, o), 3)
	if !reflect.DeepEqual(arr, lines) {
		t.Errorf("array: %v\nlines: %v", ids(arr), ids(lines))
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t, 97, badMissing, badTruncated, badTooLong)
	o := f.options(t)
	c, err := Check(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ReasonMissing: 1, ReasonDecode: 1, ReasonTooLong: 1}
	if !maps.Equal(c.Bad, want) || c.Samples != 97 || c.Records != 100 {
		t.Errorf("Check: got %+v; want bad %v, 97 samples of 100", c, want)
	}
	o.Policy = PolicyFail
	if _, err := Check(context.Background(), o); !errors.Is(err, ErrBadSample) {
		t.Errorf("Check with fail: got %v; want ErrBadSample", err)
	}
}

func TestInspect(t *testing.T) {
	f := newFixture(t, 4, badMissing)
	o := f.options(t)
	in, err := Inspect(o, 0)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != "good-000" || in.HR == nil || in.LR == nil || in.OriSize != [2]int{20, 12} || !strings.Contains(in.Prompt, "<image>") {
		t.Errorf("Inspect(0): got %+v", in)
	}
	if got, want := in.SeqLen, len(in.InputIDs)+fxS*fxS/(fxP*fxP)-1; got != want {
		t.Errorf("seq len: got %d; want %d", got, want)
	}
	if len(in.Targets) == 0 || !strings.Contains(strings.Join(in.Targets, " "), "red") {
		t.Errorf("targets %q: want the answer", in.Targets)
	}
	bad := slices.IndexFunc(f.records, func(r fixtureRecord) bool { return r.ID == "bad-missing" })
	if in, err := Inspect(o, bad); err != nil || in.Bad != ReasonMissing {
		t.Errorf("Inspect(bad): got %+v, %v; want reason %s", in, err, ReasonMissing)
	}
	if _, err := Inspect(o, 99); err == nil {
		t.Error("Inspect past the end: got nil error")
	}
}

func TestOpenRejectsOptions(t *testing.T) {
	f := newFixture(t, 2)
	good := f.options(t)
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"patch", func(o *Options) { o.PatchSize = 5 }, "multiple of patch_size"},
		{"rank", func(o *Options) { o.Rank, o.WorldSize = 2, 2 }, "rank 2"},
		{"policy", func(o *Options) { o.Policy = "ignore" }, "policy"},
		{"batch", func(o *Options) { o.BatchSize = 0 }, "batch_size"},
		{"image budget", func(o *Options) { o.ImageMaxPixels = -1 }, "image_max_pixels"},
		{"image budget past the ceiling", func(o *Options) { o.ImageMaxPixels = MaxImagePixels + 1 }, "image_max_pixels"},
		{"record bound", func(o *Options) { o.MaxRecordBytes = -1 }, "max_record_bytes"},
		{"val all", func(o *Options) { o.ValSize = 2 }, "leaving none"},
		{"no file", func(o *Options) { o.DataPath += ".nope" }, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.edit(&o)
			if _, err := Open(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

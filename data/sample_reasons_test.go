package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadReasons gives every kind of bad record and checks the reason it is counted under.
func TestLoadReasons(t *testing.T) {
	f := newFixture(t, 0)
	writeImage(t, f.folder, "ocr/fallback.png", fixtureImage(6, 4, 1))
	writeFile(t, filepath.Join(f.folder, "huge.png"), pngHeader(100000, 100000))
	writeImage(t, f.dir, "secret.png", fixtureImage(4, 4, 2))
	hasSymlink := os.Symlink("../secret.png", filepath.Join(f.folder, "link.png")) == nil
	raw := []struct{ json, reason string }{
		{`{"id":"ok","image":"ocr/fallback.png","conversations":[{"from":"human","value":"<image>\nq"},{"from":"gpt","value":"a"}]}`, ""},
		{`{"id":"fallback","image":"ocr/fallback.jpg","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ""},
		{`{"id":"text","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ""},
		{`{"id":"dotdot","image":"../secret.png","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonOutside},
		{`{"id":"abs","image":"/etc/passwd","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonOutside},
		{`{"id":"huge","image":"huge.png","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonTooLarge},
		{`{"id":"gone","image":"gone.png","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonMissing},
		{`{"id":"none","conversations":[]}`, ReasonEmpty},
		{`{"id":"blank","conversations":[{"from":"human","value":"  "}]}`, ReasonEmpty},
		{`{"id":"shape","conversations":"oops"}`, ReasonMalformed},
		{`{"id":"role","conversations":[{"from":"bot","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonMalformed},
		{`{"id":"placeholder","conversations":[{"from":"human","value":"<image> q"},{"from":"gpt","value":"a"}]}`, ReasonMalformed},
		{`{"id":"mismatch","conversations":[{"from":"human","value":"hi</s>there"},{"from":"gpt","value":"hello"}]}`, ReasonMismatch},
	}
	if hasSymlink {
		raw = append(raw, struct{ json, reason string }{`{"id":"link","image":"link.png","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}`, ReasonOutside})
	}
	var lines []string
	for _, r := range raw {
		lines = append(lines, r.json)
	}
	writeFile(t, f.data, []byte(strings.Join(lines, "\n")))
	l := open(t, f.options(t))
	for i, r := range raw {
		s, bad, err := l.proc.load(i)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		got := ""
		if bad != nil {
			got = bad.Reason
		}
		if got != r.reason {
			t.Errorf("record %d (%.60s): reason %q (%v); want %q", i, r.json, got, bad, r.reason)
		}
		if kept := s != nil; kept != (r.reason == "" || r.reason == ReasonMismatch) {
			t.Errorf("record %d: kept %v with reason %q", i, kept, r.reason)
		}
	}
	if s, _, _ := l.proc.load(1); s == nil || !strings.HasSuffix(s.Image, "fallback.png") || s.Pixels.OriSize != [2]int{6, 4} {
		t.Errorf("extension fallback: got %+v; want ocr/fallback.png, 6x4", s)
	}
	if s, _, _ := l.proc.load(12); s == nil || hasSupervised(s.Labels) {
		t.Errorf("mismatch sample: got %+v; want kept with every label masked", s)
	}
}

func TestLoaderKeepsMismatchAndCountsIt(t *testing.T) {
	f := newFixture(t, 5)
	f.insert(t, 2, fixtureRecord{ID: "mismatch", Conversations: conv("hi</s>there", "hello")})
	f.write(t, f.data, false)
	o := f.options(t)
	o.Shuffle, o.BatchSize = false, 6
	b := collect(t, open(t, o), 1)[0]
	c := open(t, o)
	if got := b.IDs[2]; got != "mismatch" {
		t.Fatalf("sample 2: got %s; want the mismatch sample, kept", got)
	}
	if hasSupervised(b.Labels[2]) {
		t.Errorf("mismatch sample labels %v: want all masked", b.Labels[2])
	}
	collect(t, c, 1)
	if got := c.Counts(); got.Bad[ReasonMismatch] != 1 || got.Skipped != 0 || got.Samples != 6 {
		t.Errorf("counts %+v: want 1 mismatch, none skipped, 6 samples", got)
	}
	o.Policy = PolicyFail
	if _, err := open(t, o).Next(context.Background()); !errors.Is(err, ErrBadSample) || !strings.Contains(err.Error(), ReasonMismatch) {
		t.Errorf("fail policy: got %v; want the mismatch as a bad sample", err)
	}
}

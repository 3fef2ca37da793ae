package synth

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	def := DefaultOptions()
	with := func(f func(o *Options)) Options {
		o := def
		f(&o)
		return o
	}
	cases := []struct {
		uri  string
		want Options
	}{
		{"synth://", def},
		{"synth://n=2000,seed=1,hr=192", with(func(o *Options) { o.N, o.Seed, o.HRSize = 2000, 1, 192 })},
		{"synth://n=10, val=3 ,test=0,seed=18446744073709551615", with(func(o *Options) {
			o.N, o.ValN, o.TestN, o.Seed = 10, 3, 0, 18446744073709551615
		})},
		{"synth://hr=96,zoom=3,small=0.25,text=0,min_aspect=0.75,clutter=0", with(func(o *Options) {
			o.HRSize, o.Zoom, o.SmallFrac, o.TextFrac, o.MinAspect, o.Clutter = 96, 3, 0.25, 0, 0.75, 0
		})},
		{"synth://dir=/tmp/x y,n=5,", with(func(o *Options) { o.Dir, o.N = "/tmp/x y", 5 })},
	}
	for _, c := range cases {
		got, err := ParseURI(c.uri)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", c.uri, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseURI(%q) = %+v; want %+v", c.uri, got, c.want)
		}
	}
}

func TestParseURIErrors(t *testing.T) {
	cases := []struct {
		uri, wantInMsg string
	}{
		{"data.json", "synth://"},
		{"synth://size=10", `"size"`},
		{"synth://n=10,hr=192,bogus=1", `"bogus"`},
		{"synth://n=ten", `"n"`},
		{"synth://seed=-1", `"seed"`},
		{"synth://small=half", `"small"`},
		{"synth://n", `"n"`},
		{"synth://n=1,n=2", `"n"`},
		{"synth://text=1.5", "text"},
		{"synth://hr=100", "hr"},      // not a multiple of zoom 3
		{"synth://zoom=1", "zoom"},    // no small/large distinction
		{"synth://val=-2", "val"},     // negative size
		{"synth://min_aspect=0.3", "min_aspect"}, // 58 pixels cannot hold a 42-pixel sign plus margins… at hr=192 it can
	}
	for _, c := range cases {
		if c.uri == "synth://min_aspect=0.3" {
			continue // valid at hr=192; the limit is checked in TestValidateSignRoom
		}
		_, err := ParseURI(c.uri)
		if err == nil {
			t.Errorf("ParseURI(%q) = nil error; want one naming %s", c.uri, c.wantInMsg)
			continue
		}
		if !errors.Is(err, ErrURI) || !strings.Contains(err.Error(), c.wantInMsg) {
			t.Errorf("ParseURI(%q) = %v; want ErrURI naming %s", c.uri, err, c.wantInMsg)
		}
	}
}

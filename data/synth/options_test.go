package synth

import (
	"errors"
	"math"
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
		{"synth://others=0", with(func(o *Options) { o.Others = 0 })},
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
		{"synth://hr=100", "hr"},   // not a multiple of zoom 3
		{"synth://zoom=1", "zoom"}, // no small/large distinction
		{"synth://val=-2", "val"},  // negative size
		{"synth://others=9", "others"},
	}
	for _, c := range cases {
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

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(o *Options)
		want   []string // fields the error must name; none: valid
	}{
		{"defaults", func(o *Options) {}, nil},
		{"tiny config", func(o *Options) { o.HRSize = 96 }, nil},
		{"empty splits", func(o *Options) { o.N, o.ValN, o.TestN = 0, 0, 0 }, nil},
		{"negative sizes", func(o *Options) { o.N, o.TestN = -1, -5 }, []string{"n:", "test:"}},
		{"fractions", func(o *Options) { o.SmallFrac, o.TextFrac = -0.1, 1.01 }, []string{"small:", "text:"}},
		{"NaN fraction", func(o *Options) { o.TextFrac = math.NaN() }, []string{"text:"}},
		{"zoom", func(o *Options) { o.Zoom = 9 }, []string{"zoom:"}},
		{"hr too small", func(o *Options) { o.HRSize = 48 }, []string{"hr:"}},
		{"hr not a multiple of zoom", func(o *Options) { o.HRSize = 100 }, []string{"hr:"}},
		// A large sign at Z = 3 is 42 pixels high: 0.6·64 = 38 pixels cannot hold it.
		{"no room for a large sign", func(o *Options) { o.HRSize = 66 }, []string{"min_aspect:"}},
		{"aspect", func(o *Options) { o.MinAspect = 0.2 }, []string{"min_aspect:"}},
		{"clutter", func(o *Options) { o.Clutter = -1 }, []string{"clutter:"}},
		{"no other objects", func(o *Options) { o.Others = 0 }, nil},
		{"others", func(o *Options) { o.Others, o.Clutter = -1, 201 }, []string{"others:", "clutter:"}},
		{"workers", func(o *Options) { o.Workers = -1 }, []string{"workers:"}},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.change(&o)
		err := o.Validate()
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: Validate() = %v; want nil", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Validate() = %v; want ErrOptions", c.name, err)
			continue
		}
		for _, field := range c.want {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("%s: Validate() = %v; want a message naming %s", c.name, err, field)
			}
		}
		if got := strings.Count(err.Error(), "\n") + 1; got != len(c.want) {
			t.Errorf("%s: Validate() gave %d problems (%v); want %d", c.name, got, err, len(c.want))
		}
	}
}

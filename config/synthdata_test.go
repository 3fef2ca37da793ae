package config

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/flextrain/flextrain/data/synth"
)

// TestResolveData checks where a synth:// data_path points the data keys, and that other paths stay.
func TestResolveData(t *testing.T) {
	dir := t.TempDir()
	uri := "synth://n=4,val=2,test=2,hr=96,seed=3"
	data := filepath.Join(dir, "out", "data")
	tests := []struct {
		name                    string
		cfg                     Config
		train, eval, tok, image string
	}{
		{"defaults", Config{OutputDir: filepath.Join(dir, "out"), DataPath: uri},
			filepath.Join(data, "train.json"), filepath.Join(data, "val.json"), filepath.Join(data, "tokenizer.json"), filepath.Join(data, "images")},
		{"own tokenizer, val_size", Config{OutputDir: filepath.Join(dir, "out"), DataPath: uri, TokenizerPath: "tok.json", ValSize: 1},
			filepath.Join(data, "train.json"), "", "tok.json", filepath.Join(data, "images")},
		{"dir in the URI", Config{OutputDir: "unused", DataPath: uri + ",dir=" + filepath.Join(dir, "d")},
			filepath.Join(dir, "d", "train.json"), filepath.Join(dir, "d", "val.json"), filepath.Join(dir, "d", "tokenizer.json"), filepath.Join(dir, "d", "images")},
		{"a file", Config{DataPath: "train.json", ImageFolder: "img", TokenizerPath: "t.json"}, "train.json", "", "t.json", "img"},
	}
	for _, tt := range tests {
		got, err := ResolveData(tt.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got.DataPath != tt.train || got.EvalDataPath != tt.eval || got.TokenizerPath != tt.tok || got.ImageFolder != tt.image {
			t.Errorf("%s: data %s, eval %s, tokenizer %s, images %s; want %s, %s, %s, %s", tt.name, got.DataPath,
				got.EvalDataPath, got.TokenizerPath, got.ImageFolder, tt.train, tt.eval, tt.tok, tt.image)
		}
	}
	if _, err := ResolveData(Config{OutputDir: dir, DataPath: "synth://n=4,colour=red"}); !errors.Is(err, synth.ErrURI) {
		t.Errorf("unknown URI key: %v; want synth.ErrURI", err)
	}
}

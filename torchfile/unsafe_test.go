package torchfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostile lists pickles that Python's pickle would run code for (touching the marker file), each with the
// global its error must name.
func hostile(marker string) []struct {
	name, global string
	pickle       []byte
} {
	cmd := "touch " + marker
	return []struct {
		name, global string
		pickle       []byte
	}{
		{"GLOBAL os.system + REDUCE", "os.system",
			newPickle(2).global("os", "system").str(cmd).op(opTuple1, opReduce).done()},
		{"GLOBAL posix.system, as pickle writes os.system on Linux", "posix.system",
			newPickle(2).global("posix", "system").str(cmd).op(opTuple1, opReduce).done()},
		{"STACK_GLOBAL builtins.eval", "builtins.eval",
			newPickle(4).stackGlobal("builtins", "eval").str("__import__('os').system('"+cmd+"')").op(opTuple1, opReduce).done()},
		{"subprocess.Popen inside a list inside a tensor dict", "subprocess.Popen",
			newPickle(2).op(opEmptyDict).str("w").op(opEmptyList, opMark).int(1).op(opEmptyDict).str("x").
				global("subprocess", "Popen").op(opMark).str("touch").str(marker).op(opList, opTuple1, opReduce).
				op(opSetItem, opAppends, opSetItem).done()},
		{"an unknown storage class", "torch.EvilStorage",
			newPickle(2).op(opEmptyDict).str("w").tensor("EvilStorage", "0", 1, 0, []int64{1}, []int64{1}).op(opSetItem).done()},
		{"a dtype global outside torch", "numpy.float32",
			newPickle(2).global("numpy", "float32").done()},
		{"INST os.system", "os.system",
			newPickle(2).op(opMark).str(cmd).op(opInst).op([]byte("os\nsystem\n")...).done()},
		{"a near-miss of an allowed name", "torch._utils._rebuild_tensor_v2 ",
			newPickle(2).global("torch._utils", "_rebuild_tensor_v2 ").op(opEmptyTuple, opReduce).done()},
		{"the extension registry", "extension registry",
			newPickle(2).op(opExt1, 1).op(opEmptyTuple, opReduce).done()},
	}
}

// TestReadFileRefusesUnsafeGlobals checks that every hostile pickle is refused with an ErrUnsafe error
// naming the file and the global, and that nothing ran: the marker file its command would create is absent.
func TestReadFileRefusesUnsafeGlobals(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	for i, c := range hostile(marker) {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("evil-%02d.bin", i))
			os.WriteFile(path, torchArchive(t, c.pickle, map[string][]byte{"0": make([]byte, 4)}), 0o644)
			_, err := ReadFile(path, 0)
			if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.global) {
				t.Errorf("got %v; want an ErrUnsafe error naming %s and %s", err, path, c.global)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the marker file exists (%v): the pickle ran", err)
			}
		})
	}
}

// TestReadShardedRefusesUnsafeGlobals checks that a hostile shard is refused with an error naming it.
func TestReadShardedRefusesUnsafeGlobals(t *testing.T) {
	dir := t.TempDir()
	evil := newPickle(2).global("os", "system").str("true").op(opTuple1, opReduce).done()
	os.WriteFile(filepath.Join(dir, "evil.bin"), torchArchive(t, evil, nil), 0o644)
	os.WriteFile(filepath.Join(dir, IndexName), []byte(`{"weight_map": {"w": "evil.bin"}}`), 0o644)
	_, err := ReadSharded(filepath.Join(dir, IndexName), 0)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "shard evil.bin") || !strings.Contains(err.Error(), "os.system") {
		t.Errorf("got %v; want an ErrUnsafe error naming the shard and os.system", err)
	}
}

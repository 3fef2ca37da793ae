package pretrained

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/flextrain/flextrain/internal/fileio"
)

// maxConfigBytes bounds a config.json (real ones hold a few KiB).
const maxConfigBytes = 16 << 20

// object is one JSON object of a config file, read key by key with the defaults of the class that reads it.
// Problems are collected in errs, shared by the objects of one file, so that all are reported at once, each
// naming the file and the key's path.
type object struct {
	file   string         // the config file, for errors
	prefix string         // the path of this object inside the file, "" or "text_config."
	m      map[string]any // decoded with json.Number
	errs   *[]error
}

// readObject reads a config file (a regular file of at most maxConfigBytes) holding one JSON object.
func readObject(path string) (object, error) {
	b, err := fileio.ReadFile(path, maxConfigBytes)
	if err != nil {
		return object{}, fmt.Errorf("pretrained: %w", err)
	}
	o, err := decodeObject(path, b)
	if err != nil {
		return object{}, fmt.Errorf("pretrained: %s: %w", path, err)
	}
	return o, nil
}

// decodeObject decodes b, one JSON object and nothing after it.
func decodeObject(file string, b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return object{}, err
	}
	if m == nil {
		return object{}, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return object{}, errors.New("data after the JSON object")
	}
	return object{file: file, m: m, errs: new([]error)}, nil
}

// newObject is an object of the given keys, as if read from file (a class's built-in defaults).
func newObject(file, prefix string, m map[string]any, errs *[]error) object {
	return object{file: file, prefix: prefix, m: m, errs: errs}
}

// err joins the problems found so far in the file, or returns nil.
func (o object) err() error { return errors.Join(*o.errs...) }

// fail records a problem with key.
func (o object) fail(key, format string, a ...any) {
	*o.errs = append(*o.errs, fmt.Errorf("pretrained: %s: key %q: %s", o.file, o.prefix+key, fmt.Sprintf(format, a...)))
}

// get returns the value of key; a null value counts as absent, as transformers takes None for its default.
func (o object) get(key string) (any, bool) {
	v := o.m[key]
	return v, v != nil
}

// has reports whether key is present and not null.
func (o object) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// sub returns the nested object at key; ok is false when it is absent or null, and a non-object is a problem.
func (o object) sub(key string) (object, bool) {
	v, ok := o.get(key)
	if !ok {
		return object{}, false
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		o.fail(key, "%v is not a JSON object", v)
		return object{}, false
	}
	return newObject(o.file, o.prefix+key+".", m, o.errs), true
}

// int returns the integer at key, or def when it is absent.
func (o object) int(key string, def int) int {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	n, isNum := v.(json.Number)
	i, err := n.Int64()
	if !isNum || err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		o.fail(key, "%v is not an integer", v)
		return def
	}
	return int(i)
}

// float returns the number at key, or def when it is absent.
func (o object) float(key string, def float64) float64 {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	n, isNum := v.(json.Number)
	f, err := n.Float64()
	if !isNum || err != nil {
		o.fail(key, "%v is not a number", v)
		return def
	}
	return f
}

// str returns the string at key, or def when it is absent.
func (o object) str(key, def string) string {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		o.fail(key, "%v is not a string", v)
		return def
	}
	return s
}

// bool returns the boolean at key, or def when it is absent.
func (o object) bool(key string, def bool) bool {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		o.fail(key, "%v is not a boolean", v)
		return def
	}
	return b
}

// onlyStr refuses a string other than the allowed ones; def is the loader's value when the key is absent.
func (o object) onlyStr(key, def, why string, allowed ...string) string {
	s := o.str(key, def)
	if !slices.Contains(allowed, s) {
		o.fail(key, "%s; %s supported: %s", refused(o.has(key), fmt.Sprintf("%q", s)), quoted(allowed), why)
	}
	return s
}

// onlyBool refuses a boolean other than want; def is the loader's value when the key is absent.
func (o object) onlyBool(key string, def, want bool, why string) {
	if b := o.bool(key, def); b != want {
		o.fail(key, "%s; only %v is supported: %s", refused(o.has(key), fmt.Sprint(b)), want, why)
	}
}

// absent refuses any non-null value at key.
func (o object) absent(key, why string) {
	if v, ok := o.get(key); ok {
		o.fail(key, "%s is not supported: %s", compact(v), why)
	}
}

// refused says which value is refused: the one written, or the loader's default for an absent key.
func refused(present bool, value string) string {
	if present {
		return value + " is not supported"
	}
	if value == `""` {
		return "absent"
	}
	return "absent, which the loader takes as " + value
}

// quoted lists strings for an error: "a", "b".
func quoted(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%q", x)
	}
	if len(s) == 1 {
		return "only " + out + " is"
	}
	return "only " + out + " are"
}

// jsonInt is n as the decoder gives it.
func jsonInt(n int) json.Number { return json.Number(strconv.Itoa(n)) }

// ints returns the list of integers at key, or nil when it is absent.
func (o object) ints(key string) []int {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	list, isList := v.([]any)
	out := make([]int, 0, len(list))
	for _, x := range list {
		n, isNum := x.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 0 || i > math.MaxInt32 {
			isList = false
			break
		}
		out = append(out, int(i))
	}
	if !isList {
		o.fail(key, "%s is not a list of layer numbers", compact(v))
		return nil
	}
	return out
}

// compact renders a decoded JSON value for an error.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

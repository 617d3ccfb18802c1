// Package nn holds what every model family shares: named weights loaded
// onto the GPU under their checkpoint keys, and the layers (linear, conv,
// norms, attention) written as engine ops over those weights.
package nn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Weights maps checkpoint keys (in the model's own layout, e.g. diffusers
// names) to GPU tensors. A Weights value may be a view under a key prefix
// (Sub), sharing the tensors.
type Weights struct {
	E        *gpu.Engine
	m        map[string]*gpu.Tensor
	prefix   string
	adapters *Adapters // shared by all views
}

// NewWeights returns an empty set on e.
func NewWeights(e *gpu.Engine) *Weights {
	return &Weights{E: e, m: map[string]*gpu.Tensor{}, adapters: new(Adapters)}
}

// Sub returns the view of the keys under prefix + ".".
func (w *Weights) Sub(prefix string) *Weights {
	return &Weights{E: w.E, m: w.m, prefix: w.prefix + prefix + ".", adapters: w.adapters}
}

// Key returns the full key of name in this view.
func (w *Weights) Key(name string) string { return w.prefix + name }

// Has reports whether name exists in this view.
func (w *Weights) Has(name string) bool { _, ok := w.m[w.prefix+name]; return ok }

// Get returns the tensor for name. A missing key is a programming or
// loading error (configs are validated against the weights at load time),
// so it panics with the full key.
func (w *Weights) Get(name string) *gpu.Tensor {
	t, ok := w.m[w.prefix+name]
	if !ok {
		panic(fmt.Sprintf("nn: missing weight %q", w.prefix+name))
	}
	return t
}

// Opt returns the tensor for name, or nil.
func (w *Weights) Opt(name string) *gpu.Tensor { return w.m[w.prefix+name] }

// Set stores t under name.
func (w *Weights) Set(name string, t *gpu.Tensor) {
	t.Name = w.prefix + name
	w.m[w.prefix+name] = t
}

// Keys lists the full keys in this view, sorted.
func (w *Weights) Keys() []string {
	var out []string
	for k := range w.m {
		if strings.HasPrefix(k, w.prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Shape returns the shape of name, or nil when absent.
func (w *Weights) Shape(name string) []int {
	if t := w.Opt(name); t != nil {
		return t.Shape()
	}
	return nil
}

// Params returns the tensors of this view (sorted by key), e.g. for an
// optimizer.
func (w *Weights) Params() []*gpu.Tensor {
	var out []*gpu.Tensor
	for _, k := range w.Keys() {
		out = append(out, w.m[k])
	}
	return out
}

// Release frees every tensor of the set.
func (w *Weights) Release() {
	for k, t := range w.m {
		t.Release()
		delete(w.m, k)
	}
}

// KeyMap converts a key of a foreign layout to the model's own key; ok is
// false for keys the model does not use.
type KeyMap func(foreign string) (key string, ok bool)

// Identity keeps every key.
func Identity(k string) (string, bool) { return k, true }

// Load uploads every tensor of f whose key km accepts, converted to
// float32, as frozen weights. Tensor data is streamed one tensor at a time.
func (w *Weights) Load(f *safetensors.File, km KeyMap) (int, error) {
	n := 0
	for _, name := range f.Names() {
		key, ok := km(name)
		if !ok {
			continue
		}
		v, info, err := f.Float32(name)
		if err != nil {
			return n, err
		}
		t, err := w.E.Upload(gpu.Weights, v, info.Shape...)
		if err != nil {
			return n, fmt.Errorf("%s: uploading %q: %w", f.Path, name, err)
		}
		if old := w.m[w.prefix+key]; old != nil {
			old.Release()
		}
		w.Set(key, t)
		n++
	}
	return n, nil
}

// Expect checks that name exists with the given shape, for validating a
// checkpoint before use; it returns an error naming the key.
func (w *Weights) Expect(name string, shape ...int) error {
	t := w.Opt(name)
	if t == nil {
		return fmt.Errorf("missing weight %q", w.prefix+name)
	}
	got := t.Shape()
	if len(got) != len(shape) {
		return fmt.Errorf("weight %q has shape %v, want %v", w.prefix+name, got, shape)
	}
	for i := range got {
		if got[i] != shape[i] {
			return fmt.Errorf("weight %q has shape %v, want %v", w.prefix+name, got, shape)
		}
	}
	return nil
}

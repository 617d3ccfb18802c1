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
//
// A weight is stored either as an f32 tensor (Set) or packed as binary16
// (SetF16, half the memory). Get and Opt unpack a packed weight into a
// fresh f32 tensor on every call; that tensor belongs to the innermost open
// gpu.Scope (the models run every forward inside one), so it is freed when
// the block that used it returns. Outside any scope the caller must Release
// it.
type Weights struct {
	E        *gpu.Engine
	m        map[string]*gpu.Tensor
	h        map[string]*gpu.F16 // packed weights
	prefix   string
	adapters *[]Adapters // attached adapter sets, shared by all views
}

// NewWeights returns an empty set on e.
func NewWeights(e *gpu.Engine) *Weights {
	return &Weights{E: e, m: map[string]*gpu.Tensor{}, h: map[string]*gpu.F16{}, adapters: new([]Adapters)}
}

// Sub returns the view of the keys under prefix + ".".
func (w *Weights) Sub(prefix string) *Weights {
	return &Weights{E: w.E, m: w.m, h: w.h, prefix: w.prefix + prefix + ".", adapters: w.adapters}
}

// Root returns the view of all keys (no prefix) over the same tensors and
// adapters, e.g. the root holding "text_model.*" of a clip.TextModel's W.
func (w *Weights) Root() *Weights {
	return &Weights{E: w.E, m: w.m, h: w.h, adapters: w.adapters}
}

// Key returns the full key of name in this view.
func (w *Weights) Key(name string) string { return w.prefix + name }

// Has reports whether name exists in this view.
func (w *Weights) Has(name string) bool {
	_, ok := w.m[w.prefix+name]
	_, packed := w.h[w.prefix+name]
	return ok || packed
}

// Get returns the tensor for name (for a packed weight: a fresh f32 copy
// owned by the innermost Scope). A missing key is a programming or loading
// error (configs are validated against the weights at load time), so it
// panics with the full key.
func (w *Weights) Get(name string) *gpu.Tensor {
	t := w.Opt(name)
	if t == nil {
		panic(fmt.Sprintf("nn: missing weight %q", w.prefix+name))
	}
	return t
}

// Opt returns the tensor for name (unpacked like Get), or nil.
func (w *Weights) Opt(name string) *gpu.Tensor {
	key := w.prefix + name
	if t, ok := w.m[key]; ok {
		return t
	}
	if h, ok := w.h[key]; ok {
		t := w.E.UnpackF16(h)
		t.Name = key
		return t
	}
	return nil
}

// Set stores t under name.
func (w *Weights) Set(name string, t *gpu.Tensor) {
	key := w.prefix + name
	t.Name = key
	if old := w.h[key]; old != nil {
		old.Release()
		delete(w.h, key)
	}
	w.m[key] = t
}

// SetF16 stores the packed weight h under name; Get unpacks it per use.
// Packed weights are frozen: Params does not return them.
func (w *Weights) SetF16(name string, h *gpu.F16) {
	key := w.prefix + name
	if old := w.m[key]; old != nil {
		old.Release()
		delete(w.m, key)
	}
	if old := w.h[key]; old != nil && old != h {
		old.Release()
	}
	w.h[key] = h
}

// Packed reports whether name is stored packed as binary16.
func (w *Weights) Packed(name string) bool { _, ok := w.h[w.prefix+name]; return ok }

// Keys lists the full keys in this view (f32 and packed), sorted.
func (w *Weights) Keys() []string {
	var out []string
	for k := range w.m {
		if strings.HasPrefix(k, w.prefix) {
			out = append(out, k)
		}
	}
	for k := range w.h {
		if strings.HasPrefix(k, w.prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Shape returns the shape of name, or nil when absent. It never unpacks.
func (w *Weights) Shape(name string) []int {
	if t, ok := w.m[w.prefix+name]; ok {
		return t.Shape()
	}
	if h, ok := w.h[w.prefix+name]; ok {
		return h.Shape()
	}
	return nil
}

// Params returns the f32 tensors of this view (sorted by key), e.g. for an
// optimizer; packed weights are not included.
func (w *Weights) Params() []*gpu.Tensor {
	var out []*gpu.Tensor
	for _, k := range w.Keys() {
		if t, ok := w.m[k]; ok {
			out = append(out, t)
		}
	}
	return out
}

// Release frees every tensor of the set, packed ones included.
func (w *Weights) Release() {
	for k, t := range w.m {
		t.Release()
		delete(w.m, k)
	}
	for k, h := range w.h {
		h.Release()
		delete(w.h, k)
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
		w.Set(key, t) // replaces a packed weight of that key too
		n++
	}
	return n, nil
}

// Expect checks that name exists with the given shape, for validating a
// checkpoint before use; it returns an error naming the key.
func (w *Weights) Expect(name string, shape ...int) error {
	got := w.Shape(name)
	if got == nil {
		return fmt.Errorf("missing weight %q", w.prefix+name)
	}
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

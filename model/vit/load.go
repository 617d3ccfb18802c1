package vit

import (
	"fmt"
	"sort"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/torchpt"
)

// Target says where one tensor of a foreign layout goes: the model's key,
// and for a model tensor fused from several foreign ones (timm's attn.qkv
// from transformers' query, key and value) which of Parts equal blocks of
// rows (dimension 0) it fills.
type Target struct {
	Key         string
	Part, Parts int // Parts 0 or 1: the whole tensor
}

// Table converts a foreign key to its Target; ok false skips the tensor.
// One Table per foreign layout is the whole conversion (see HFTable).
type Table func(foreign string) (t Target, ok bool)

// Identity keeps every key as is.
func Identity(k string) (Target, bool) { return Target{Key: k}, true }

// LoadWeights uploads every tensor of ck that table accepts as frozen f32
// weights under the model's keys, fusing parts; path labels errors. Tensors
// are read one at a time (a fused tensor's parts are held until complete).
func LoadWeights(e *gpu.Engine, ck torchpt.Checkpoint, path string, table Table) (*nn.Weights, error) {
	w := nn.NewWeights(e)
	type partial struct {
		parts [][]float32
		shape []int
		from  []string
	}
	pending := map[string]*partial{}
	from := map[string]string{}
	ok := false
	defer func() {
		if !ok {
			w.Release()
		}
	}()
	for _, name := range ck.Names() {
		t, keep := table(name)
		if !keep {
			continue
		}
		v, info, err := ck.Float32(name)
		if err != nil {
			return nil, err
		}
		if t.Parts <= 1 {
			if prev, dup := from[t.Key]; dup {
				return nil, fmt.Errorf("%s: %q and %q both convert to %q", path, prev, name, t.Key)
			}
			from[t.Key] = name
			up, err := e.Upload(gpu.Weights, v, info.Shape...)
			if err != nil {
				return nil, fmt.Errorf("%s: uploading %q: %w", path, name, err)
			}
			w.Set(t.Key, up)
			continue
		}
		if len(info.Shape) == 0 || t.Part < 0 || t.Part >= t.Parts {
			return nil, fmt.Errorf("%s: %q cannot be part %d of %d of %q", path, name, t.Part, t.Parts, t.Key)
		}
		p := pending[t.Key]
		if p == nil {
			if _, dup := from[t.Key]; dup {
				return nil, fmt.Errorf("%s: %q converts to %q, which is already complete", path, name, t.Key)
			}
			p = &partial{parts: make([][]float32, t.Parts), shape: info.Shape, from: make([]string, t.Parts)}
			pending[t.Key] = p
		}
		if p.parts[t.Part] != nil {
			return nil, fmt.Errorf("%s: %q and %q both convert to part %d of %q", path, p.from[t.Part], name, t.Part, t.Key)
		}
		if fmt.Sprint(p.shape) != fmt.Sprint(info.Shape) {
			return nil, fmt.Errorf("%s: %q has shape %v, the other parts of %q have %v", path, name, info.Shape, t.Key, p.shape)
		}
		p.parts[t.Part], p.from[t.Part] = v, name
		done := true
		for _, q := range p.parts {
			done = done && q != nil
		}
		if !done {
			continue
		}
		var all []float32
		for _, q := range p.parts {
			all = append(all, q...)
		}
		shape := append([]int{p.shape[0] * t.Parts}, p.shape[1:]...)
		up, err := e.Upload(gpu.Weights, all, shape...)
		if err != nil {
			return nil, fmt.Errorf("%s: uploading %q: %w", path, t.Key, err)
		}
		w.Set(t.Key, up)
		from[t.Key] = name
		delete(pending, t.Key)
	}
	if len(pending) > 0 {
		var keys []string
		for k, p := range pending {
			for i, q := range p.parts {
				if q == nil {
					keys = append(keys, fmt.Sprintf("%s (part %d of %d)", k, i, len(p.parts)))
				}
			}
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%s: incomplete fused tensors: missing %v", path, keys)
	}
	ok = true
	return w, nil
}

package ddpo

import (
	"fmt"
	"sort"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// FuseLoRA adds every adapter of a (keyed by module path of w) into its
// layer's weight: W' = W + Scale * Up Down (for a conv adapter, Up's 1x1
// kernel composed with Down's kernel). The fused model computes what the
// attached adapters compute (up to float rounding; a weight stored packed
// as binary16 is repacked, i.e. rounded to binary16 again), frees the
// U-Net's single adapter slot for the trainable RL LoRA, and costs nothing
// per step. The adapters themselves are left alone (the caller releases
// them); w must not have them attached.
func FuseLoRA(w *nn.Weights, a nn.Adapters) error {
	e := w.E
	paths := make([]string, 0, len(a))
	for p := range a {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := fuseOne(e, w.Sub(p), p, a[p]); err != nil {
			return err
		}
	}
	return e.Err()
}

func fuseOne(e *gpu.Engine, m *nn.Weights, path string, l *nn.LoRA) error {
	ws := m.Shape("weight")
	if ws == nil {
		return fmt.Errorf("ddpo: fuse LoRA: the model has no layer %q", path)
	}
	if l == nil || l.Down == nil || l.Up == nil {
		return fmt.Errorf("ddpo: fuse LoRA: adapter %q lacks a tensor", path)
	}
	ds, us := l.Down.Shape(), l.Up.Shape()
	r := ds[0]
	out, cols := ws[0], 1
	for _, d := range ws[1:] {
		cols *= d
	}
	if l.Down.Len() != r*cols || l.Up.Len() != out*r || us[0] != out {
		return fmt.Errorf("ddpo: fuse LoRA: adapter %q (down %v, up %v) does not fit the layer's weight %v", path, ds, us, ws)
	}
	packed := m.Packed("weight")
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		delta := e.MatMul(l.Up.Reshape(out, r), l.Down.Reshape(r, cols), false, false) // [out, cols]
		fused := e.Add(m.Get("weight").Reshape(out, cols), e.Scale(delta, l.Scale)).Reshape(ws...)
		if packed {
			e.Outside(func() { m.SetF16("weight", e.PackF16(fused)) })
			return
		}
		var v []float32
		if v, err = fused.Read(); err != nil {
			return
		}
		var t *gpu.Tensor
		e.Outside(func() { t, err = e.Upload(gpu.Weights, v, ws...) })
		if err != nil {
			return
		}
		old := m.Get("weight")
		m.Set("weight", t)
		old.Release()
	})
	if err != nil {
		return fmt.Errorf("ddpo: fuse LoRA %q: %w", path, err)
	}
	return nil
}

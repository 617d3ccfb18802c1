package lora

import (
	"fmt"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// Merge folds adapters into the weights they adapt, for every module of a:
// W += weight * Scale * Up Down (for a conv, Up [Cout, r, 1, 1] times Down
// [r, Cin, KH, KW] flattened to [r, Cin KH KW]). The product is summed in
// float64 on the CPU. An f32 weight is updated in place (the same tensor);
// a binary16-packed weight is repacked, so the merge is rounded to
// binary16 like the rest of that model. Afterwards the model computes
// without a the function it computed with a attached at the given weight;
// Merge with -weight undoes it up to rounding. Nothing is changed when an
// adapter does not fit its layer.
func Merge(w *nn.Weights, a nn.Adapters, weight float32) error {
	e := w.E
	type job struct {
		path     string
		out, in  int // W as [out, in] (in = Cin KH KW for a conv)
		rank     int
		down, up []float32
		scale    float64
	}
	var jobs []job
	for _, path := range sortedKeys(a) {
		ad := a[path]
		ws := w.Shape(path + ".weight")
		if ws == nil {
			return fmt.Errorf("lora: merge: the model has no layer %q", path)
		}
		ds, us := ad.Down.Shape(), ad.Up.Shape()
		r := ds[0]
		in := 1
		for _, d := range ws[1:] {
			in *= d
		}
		dn := 1
		for _, d := range ds[1:] {
			dn *= d
		}
		if dn != in || us[0] != ws[0] || ad.Up.Len() != ws[0]*r {
			return fmt.Errorf("lora: merge: adapter %q (down %v, up %v) does not fit the layer's weight %v", path, ds, us, ws)
		}
		dv, err := ad.Down.Read()
		if err != nil {
			return err
		}
		uv, err := ad.Up.Read()
		if err != nil {
			return err
		}
		jobs = append(jobs, job{path, ws[0], in, r, dv, uv, float64(weight) * float64(ad.Scale)})
	}
	for _, j := range jobs {
		key := j.path + ".weight"
		packed := w.Packed(key)
		var wv []float32
		var t *gpu.Tensor
		var err error
		if packed {
			s := e.Scope()
			wv, err = w.Get(key).Read()
			s.Close()
		} else {
			t = w.Get(key)
			wv, err = t.Read()
		}
		if err != nil {
			return fmt.Errorf("lora: merge: reading %s: %w", key, err)
		}
		for o := 0; o < j.out; o++ {
			for i := 0; i < j.in; i++ {
				s := 0.0
				for r := 0; r < j.rank; r++ {
					s += float64(j.up[o*j.rank+r]) * float64(j.down[r*j.in+i])
				}
				wv[o*j.in+i] = float32(float64(wv[o*j.in+i]) + j.scale*s)
			}
		}
		if packed {
			h, err := e.F16FromFloat32(wv, w.Shape(key)...)
			if err != nil {
				return fmt.Errorf("lora: merge: %s: %w", key, err)
			}
			w.SetF16(key, h)
		} else if err := t.Write(wv); err != nil {
			return fmt.Errorf("lora: merge: writing %s: %w", key, err)
		}
	}
	return nil
}

// Merge folds the set's U-Net and text-encoder adapters into the models
// of t at weight (see the function Merge).
func (s *Set) Merge(t Targets, weight float32) error {
	if len(s.UNet) > 0 {
		if t.UNet == nil {
			return fmt.Errorf("lora: merge: no U-Net to merge into")
		}
		if err := Merge(t.UNet, s.UNet, weight); err != nil {
			return err
		}
	}
	if len(s.TextEncoder) > 0 {
		if t.TextEncoder == nil {
			return fmt.Errorf("lora: merge: no text encoder to merge into")
		}
		return Merge(t.TextEncoder, s.TextEncoder, weight)
	}
	return nil
}

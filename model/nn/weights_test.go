package nn

import (
	"errors"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
)

// TestWeights_packed: a packed weight answers Has, Shape and Keys without
// unpacking, Get unpacks it into the current scope (freed with it), Params
// skips it, and Set/SetF16 replace each other.
func TestWeights_packed(t *testing.T) {
	e, err := gpu.Open(gpu.Options{})
	if errors.Is(err, gpu.ErrNoAdapter) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	w := NewWeights(e)
	h, err := e.F16FromFloat32([]float32{1, 2.5, -3, 0.1}, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	w.Sub("lin").SetF16("weight", h)
	var b *gpu.Tensor
	e.Outside(func() { b = e.FromSlice([]float32{0.5, -0.5}, 2) })
	w.Sub("lin").Set("bias", b)
	if !w.Has("lin.weight") || !w.Packed("lin.weight") || w.Packed("lin.bias") {
		t.Fatal("Has/Packed")
	}
	if s := w.Shape("lin.weight"); len(s) != 2 || s[0] != 2 || s[1] != 2 {
		t.Fatalf("Shape %v", s)
	}
	if k := w.Keys(); len(k) != 2 || k[0] != "lin.bias" || k[1] != "lin.weight" {
		t.Fatalf("Keys %v", k)
	}
	if p := w.Params(); len(p) != 1 || p[0] != b {
		t.Fatalf("Params %v", p)
	}
	live := e.MemStats().LiveTotal
	var y []float32
	e.NoGrad(func() {
		s := e.Scope()
		x := e.FromSlice([]float32{1, 1}, 1, 2)
		out := Linear(w.Sub("lin"), x) // [1, 2]
		s.Close(out)
		y = out.MustRead()
		out.Release()
	})
	// W x + b with W = [[1, 2.5], [-3, 0.1]] (0.1 rounded to binary16).
	if y[0] != 4 || y[1] != -3+0.099975586-0.5 {
		t.Errorf("Linear with a packed weight: %v", y)
	}
	if got := e.MemStats().LiveTotal; got != live {
		t.Errorf("%d bytes live after the scope, want %d (unpacked copy kept)", got, live)
	}
	var t2 *gpu.Tensor
	e.Outside(func() { t2 = e.FromSlice([]float32{1, 2, 3, 4}, 2, 2) })
	w.Set("lin.weight", t2)
	if w.Packed("lin.weight") || w.Get("lin.weight") != t2 {
		t.Error("Set does not replace the packed weight")
	}
	w.Release()
	if len(w.Keys()) != 0 {
		t.Error("Release left keys")
	}
}

// TestWeights_root: Root of a view sees every key unprefixed and shares
// the adapters with the view.
func TestWeights_root(t *testing.T) {
	e, err := gpu.Open(gpu.Options{})
	if errors.Is(err, gpu.ErrNoAdapter) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	w := NewWeights(e)
	defer w.Release()
	var b *gpu.Tensor
	e.Outside(func() { b = e.FromSlice([]float32{1, 2}, 2) })
	v := w.Sub("text_model").Sub("lin")
	v.Set("bias", b)
	r := v.Root()
	if !r.Has("text_model.lin.bias") || r.Has("bias") || r.Key("x") != "x" {
		t.Fatal("Root keys")
	}
	r.Attach(Adapters{"text_model.lin": &LoRA{Scale: 2}})
	if a := v.Attached(); len(a) != 1 || a[0]["text_model.lin"] == nil || a[0]["text_model.lin"].Scale != 2 {
		t.Fatal("Root does not share the adapters")
	}
}

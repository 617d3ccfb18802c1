package gpu

import (
	"testing"
)

// TestTape_fanOutAccumulates: y = x*x + x uses x three times; dy/dx = 2x+1.
func TestTape_fanOutAccumulates(t *testing.T) {
	e := engine(t)
	x := e.FromSlice([]float32{1, -2, 3}, 3).SetRequiresGrad(true)
	y := e.Add(e.Mul(x, x), x)
	if err := e.BackwardWith(y, e.Full(1, 3)); err != nil {
		t.Fatal(err)
	}
	compare(t, "d(x*x+x)/dx", x.Grad.MustRead(), []float64{3, -3, 7}, 0, 1e-6)
	// A second backward accumulates into the leaf's gradient.
	y2 := e.Scale(x, 2)
	if err := e.BackwardWith(y2, e.Full(1, 3)); err != nil {
		t.Fatal(err)
	}
	compare(t, "accumulated", x.Grad.MustRead(), []float64{5, -1, 9}, 0, 1e-6)
	ZeroGrad(x)
	if x.Grad != nil {
		t.Fatal("ZeroGrad left a gradient")
	}
}

// TestTape_addSharesGradient: both operands of an add receive the same
// gradient buffer; accumulating more into one must not change the other
// (copy on write).
func TestTape_addSharesGradient(t *testing.T) {
	e := engine(t)
	a := e.FromSlice([]float32{1, 2}, 2).SetRequiresGrad(true)
	b := e.FromSlice([]float32{3, 4}, 2).SetRequiresGrad(true)
	s := e.Add(a, b)
	y := e.Add(s, e.Scale(a, 10)) // a gets 1 + 10, b gets 1
	if err := e.BackwardWith(y, e.Full(1, 2)); err != nil {
		t.Fatal(err)
	}
	compare(t, "da", a.Grad.MustRead(), []float64{11, 11}, 0, 1e-6)
	compare(t, "db", b.Grad.MustRead(), []float64{1, 1}, 0, 1e-6)
}

// TestTape_noGradAndFrozen: nothing is recorded in NoGrad; frozen
// parameters get no gradient while others still do.
func TestTape_noGradAndFrozen(t *testing.T) {
	e := engine(t)
	w := e.Param("w", []float32{2, 2}, 2)
	frozen := e.Param("f", []float32{5, 5}, 2).SetRequiresGrad(false)
	var y *Tensor
	e.NoGrad(func() { y = e.Mul(w, frozen) })
	if y.RequiresGrad() || e.tape != nil && len(e.tape.nodes) > 0 {
		t.Fatal("NoGrad recorded a node")
	}
	if err := e.BackwardWith(y, e.Full(1, 2)); err == nil {
		t.Fatal("Backward through a NoGrad result did not fail")
	}
	y = e.Mul(w, frozen)
	if err := e.BackwardWith(y, e.Full(1, 2)); err != nil {
		t.Fatal(err)
	}
	if frozen.Grad != nil {
		t.Error("frozen parameter received a gradient")
	}
	compare(t, "dw", w.Grad.MustRead(), []float64{5, 5}, 0, 1e-6)
}

// TestScope_freesIntermediates: a NoGrad scope frees everything but what
// is kept; the pool's live bytes return to where they were.
func TestScope_freesIntermediates(t *testing.T) {
	e := engine(t)
	x := e.FromSlice(make([]float32, 5000), 5000)
	defer x.Release()
	live := e.MemStats().LiveTotal
	var out *Tensor
	e.NoGrad(func() {
		s := e.Scope()
		h := x
		for i := 0; i < 5; i++ {
			h = e.Scale(h, 2)
		}
		out = h
		s.Close(out)
	})
	if got := e.MemStats().LiveTotal - live; got != sizeClass(20000) {
		t.Errorf("after scope: %d bytes live beyond the input, want one tensor (%d)", got, sizeClass(20000))
	}
	out.Release()
	if e.MemStats().LiveTotal != live {
		t.Error("releasing the kept tensor did not return its bytes")
	}
}

// TestCheckpoint_sameGradients: a checkpointed block gives the gradients of
// the plain block, for its input and for a parameter used inside it.
func TestCheckpoint_sameGradients(t *testing.T) {
	e := engine(t)
	r, seed := seeded(t)
	xd, wd := randData(r, 300), randData(r, 300)
	block := func(w *Tensor) func(in []*Tensor) *Tensor {
		return func(in []*Tensor) *Tensor {
			h := e.Mul(in[0], w)
			h = e.Add(h, e.Mul(h, in[0]))
			return e.Scale(h, 0.5)
		}
	}
	run := func(ckpt bool) (dx, dw []float32) {
		x := e.FromSlice(f32s(xd), 300).SetRequiresGrad(true)
		w := e.Param("w", f32s(wd), 300)
		var y *Tensor
		if ckpt {
			y = e.Checkpoint(block(w), x)
		} else {
			y = block(w)([]*Tensor{x})
		}
		y = e.Mul(y, y)
		if err := e.BackwardWith(y, e.Full(1, 300)); err != nil {
			t.Fatal(err)
		}
		return x.Grad.MustRead(), w.Grad.MustRead()
	}
	dx0, dw0 := run(false)
	dx1, dw1 := run(true)
	compare(t, "checkpoint dx (seed)", dx1, f64s(dx0), 1e-6, 1e-5)
	compare(t, "checkpoint dw", dw1, f64s(dw0), 1e-6, 1e-5)
	_ = seed
	// A frozen input with a trainable parameter inside still gets dw.
	x := e.FromSlice(f32s(xd), 300)
	w := e.Param("w", f32s(wd), 300)
	y := e.Checkpoint(block(w), x)
	if err := e.BackwardWith(y, e.Full(1, 300)); err != nil {
		t.Fatal(err)
	}
	if w.Grad == nil {
		t.Fatal("parameter inside a checkpoint with a frozen input got no gradient")
	}
}

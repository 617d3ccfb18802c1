package nn

import (
	"errors"
	"math"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
)

// TestAttachAll: a linear and a conv layer with two attached adapter sets
// give the base output plus each set's low-rank term; Attach(nil) removes
// both.
func TestAttachAll(t *testing.T) {
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
	val := func(n int, k float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Sin(k * float64(i+1)))
		}
		return v
	}
	up := func(name string, v []float32, shape ...int) *gpu.Tensor {
		x, err := e.Upload(gpu.Weights, v, shape...)
		if err != nil {
			t.Fatal(err)
		}
		x.Name = name
		return x
	}
	w.Set("lin.weight", up("lw", val(15, 0.3), 5, 3))
	w.Set("lin.bias", up("lb", val(5, 0.7), 5))
	w.Set("conv.weight", up("cw", val(4*2*9, 0.2), 4, 2, 3, 3))
	s1 := Adapters{
		"lin":  {Down: up("d1", val(2*3, 1.1), 2, 3), Up: up("u1", val(5*2, 1.3), 5, 2), Scale: 0.5},
		"conv": {Down: up("cd1", val(2*2*9, 0.9), 2, 2, 3, 3), Up: up("cu1", val(4*2, 1.7), 4, 2, 1, 1), Scale: 0.25},
	}
	s2 := Adapters{
		"lin": {Down: up("d2", val(1*3, 2.1), 1, 3), Up: up("u2", val(5*1, 2.3), 5, 1), Scale: -1.5},
	}
	x := e.FromSlice(val(2*3, 0.4), 2, 3)
	xc := e.FromSlice(val(1*2*5*5, 0.45), 1, 2, 5, 5)
	run := func() ([]float32, []float32) {
		return Linear(w.Sub("lin"), x).MustRead(), Conv2d(w.Sub("conv"), xc, 1, 1).MustRead()
	}
	base, baseC := run()
	w.Attach(s1)
	l1, c1 := run()
	w.Attach(s2)
	l2, _ := run()
	w.AttachAll(s1, nil, s2)
	both, bothC := run()
	if got := len(w.Sub("lin").Attached()); got != 2 {
		t.Fatalf("%d sets attached, want 2", got)
	}
	for i := range base {
		want := base[i] + (l1[i] - base[i]) + (l2[i] - base[i])
		if math.Abs(float64(both[i]-want)) > 1e-5 || l1[i] == base[i] {
			t.Errorf("linear[%d]: both %v, base %v + terms %v, %v", i, both[i], base[i], l1[i]-base[i], l2[i]-base[i])
		}
	}
	for i := range baseC {
		if math.Abs(float64(bothC[i]-c1[i])) > 1e-6 {
			t.Errorf("conv[%d]: %v with both sets, %v with the one that adapts it", i, bothC[i], c1[i])
		}
	}
	w.Attach(nil)
	if again, _ := run(); again[0] != base[0] || len(w.Attached()) != 0 {
		t.Error("Attach(nil) left adapters")
	}
}

package gpu

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func reduceCase(shape, axes []int, mean bool) opCase {
	name := "sum"
	f := (*Engine).Sum
	if mean {
		name, f = "mean", (*Engine).Mean
	}
	return opCase{
		name:    fmt.Sprintf("%s%v over %v", name, shape, axes),
		shapes:  [][]int{shape},
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return f(e, in[0], axes...) },
		ref:     func(in []*ref.T) *ref.T { return ref.Reduce(in[0], axes, mean) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.ReduceBackward(shape, axes, g, mean)} },
		atol:    2e-4, rtol: 1e-4,
	}
}

var reduceShapes = []struct {
	shape []int
	axes  []int
}{
	{[]int{3, 37, 11}, []int{0}},
	{[]int{3, 37, 11}, []int{1, 2}},
	{[]int{3, 37, 11}, []int{-1}},
	{[]int{3, 37, 11}, nil},
	{[]int{3, 37, 11}, []int{0, 2}},
	{[]int{1001}, nil},
	{[]int{1001}, []int{0}},
	{[]int{2, 1, 5, 1, 3, 7}, []int{1, 3, 5}},          // size-1 axes
	{[]int{2, 3, 4, 5, 6, 2, 3, 2}, []int{0, 2, 4, 6}}, // 4 kept and 4 reduced groups
	{[]int{5, 9000}, []int{1}},                         // two-pass (segmented)
	{[]int{9001, 3}, []int{0}},                         // two-pass, strided
	{[]int{20000}, nil},                                // two-pass
	{[]int{7, 1}, []int{1}},                            // reducing only size 1
}

func TestReduce(t *testing.T) {
	for _, c := range reduceShapes {
		for _, mean := range []bool{false, true} {
			oc := reduceCase(c.shape, c.axes, mean)
			t.Run(oc.name, func(t *testing.T) { checkOp(t, oc) })
		}
	}
}

func TestReduceShapes(t *testing.T) {
	e := engine(t)
	x := e.Full(2, 3, 4).SetRequiresGrad(true)
	defer x.Release()
	s := e.SumAll(x)
	if len(s.Shape()) != 0 || s.Len() != 1 {
		t.Fatalf("SumAll shape %v", s.Shape())
	}
	if v, _ := s.Item(); v != 24 {
		t.Fatalf("SumAll = %g, want 24", v)
	}
	if err := e.Backward(s); err != nil {
		t.Fatal(err)
	}
	for _, g := range x.Grad.MustRead() {
		if g != 1 {
			t.Fatalf("grad %g, want 1", g)
		}
	}
	s.Release()
	m := e.Mean(x, 0, 1)
	if v, _ := m.Item(); len(m.Shape()) != 0 || v != 2 {
		t.Fatalf("Mean over all axes: %v %g", m.Shape(), v)
	}
	m.Release()
	e.ResetTape()
	z := e.Zeros(4, 0)
	if v := e.Sum(z, 1).MustRead(); len(v) != 4 || v[0] != 0 {
		t.Fatalf("sum over an empty axis: %v", v)
	}
	if v := e.Mean(z, 1).MustRead(); !math.IsNaN(float64(v[0])) {
		t.Fatalf("mean over an empty axis: %v, want NaN", v)
	}
	z.Release()
}

// TestReduceLarge sums 4M elements (two passes) and checks the value and
// the time.
func TestReduceLarge(t *testing.T) {
	e := engine(t)
	n := 1 << 22
	d := make([]float32, n)
	want := 0.0
	for i := range d {
		d[i] = float32(i%1000) * 1e-3
		want += float64(d[i])
	}
	x := e.FromSlice(d, n)
	defer x.Release()
	s := e.SumAll(x) // warm up (pipeline compile)
	s.MustRead()
	s.Release()
	t0 := time.Now()
	s = e.SumAll(x)
	got, _ := s.Item()
	t.Logf("SumAll of %d elements: %v (with one readback)", n, time.Since(t0))
	s.Release()
	if math.Abs(float64(got)-want) > 1e-5*want {
		t.Fatalf("sum %g, want %g", got, want)
	}
}

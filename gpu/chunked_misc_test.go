package gpu

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/x448/float16"
)

// TestChunkedMisc runs the ops of this file set on an engine whose storage
// bindings cover only 4 KiB (1024 floats), so every tensor below spans
// several windows; checkOp compares every element, so the windows must
// cover the whole tensor.
func TestChunkedMisc(t *testing.T) {
	if testEngErr != nil {
		engine(t) // skips without an adapter, fails on other errors
	}
	small, err := Open(Options{MaxBinding: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if small.MaxBinding() != 4096 {
		t.Fatalf("MaxBinding %d", small.MaxBinding())
	}
	shared := testEng
	testEng = small // checkOp runs on engine(t)
	defer func() { testEng = shared }()

	t.Run("unary", func(t *testing.T) {
		for _, op := range unaryOps {
			d0, _ := small.Counters()
			checkOp(t, unaryCase(op.name, op.f, []int{5, 1001})) // 5005 elements: 5 windows
			if d1, _ := small.Counters(); d1-d0 < 10 {
				t.Errorf("%s: %d dispatches for a 5-window forward and backward", op.name, d1-d0)
			}
		}
	})
	t.Run("geglu", func(t *testing.T) { checkOp(t, gegluCase([]int{7, 300})) })
	t.Run("reduce", func(t *testing.T) {
		for _, c := range []struct{ shape, axes []int }{
			{[]int{5, 700}, []int{1}},        // slabs along a kept dimension
			{[]int{700, 5}, []int{0}},        // slabs along a reduced dimension: partial rows
			{[]int{3000}, nil},               // everything, in slabs
			{[]int{13, 37, 11}, []int{1, 2}}, // kept slabs, out windows
			{[]int{13, 37, 11}, []int{0, 2}}, // reduced slabs, mixed groups
			{[]int{3, 900}, []int{-1}},       // one row per slab
		} {
			for _, mean := range []bool{false, true} {
				oc := reduceCase(c.shape, c.axes, mean)
				t.Run(oc.name, func(t *testing.T) { checkOp(t, oc) })
			}
		}
	})
	t.Run("reduce-limit", func(t *testing.T) {
		// One slice along the outermost dimension must fit a binding.
		x := small.Zeros(2, 9000)
		defer x.Release()
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "binding limit") {
				t.Fatalf("want a panic naming the binding limit, got %v", r)
			}
		}()
		small.Sum(x, 1)
	})
	t.Run("mse", func(t *testing.T) { checkOp(t, mseCase([]int{3, 700})) })
	t.Run("gather", func(t *testing.T) {
		gatherCase(t, []int{300, 7}, 0, []int{2, 9}, true, false)   // table of 3 windows
		gatherCase(t, []int{3, 37, 11}, 1, []int{20}, false, false) // x and dx of 2 windows
		gatherCase(t, []int{3, 37, 11}, 1, []int{50}, false, true)  // output of 2 windows (the backward needs g in one binding)
	})
	t.Run("permute", func(t *testing.T) {
		for _, c := range []struct{ shape, perm []int }{
			{[]int{7, 13, 31}, []int{0, 2, 1}},
			{[]int{3, 37, 5, 11}, []int{0, 2, 1, 3}},
			{[]int{2, 13, 7, 9}, []int{0, 2, 3, 1}},
		} {
			oc := permuteCase(c.shape, c.perm)
			t.Run(oc.name, func(t *testing.T) { checkOp(t, oc) })
		}
	})
	t.Run("f16", func(t *testing.T) {
		r := rand.New(rand.NewSource(7))
		n := 5001
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(r.NormFloat64() * 100)
		}
		x := small.FromSlice(vals, n)
		defer x.Release()
		h := small.PackF16(x)
		defer h.Release()
		bits, err := h.Bits()
		if err != nil {
			t.Fatal(err)
		}
		y := small.UnpackF16(h)
		defer y.Release()
		back := y.MustRead()
		for i, v := range vals {
			want := float16.Fromfloat32(v)
			if bits[i] != want.Bits() || back[i] != want.Float32() {
				t.Fatalf("value %d (%g): packed %#04x unpacked %g, want %#04x %g", i, v, bits[i], back[i], want.Bits(), want.Float32())
			}
		}
	})
	if err := small.Err(); err != nil {
		t.Fatal(err)
	}
}

package gpu

import (
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// convCase is one Conv2d test shape.
type convCase struct {
	x, w        []int // [N, Cin, H, W], [Cout, Cin, KH, KW]
	stride, pad int
	bias        bool
}

func (c convCase) String() string {
	return fmt.Sprintf("x%v_w%v_s%d_p%d_bias%v", c.x, c.w, c.stride, c.pad, c.bias)
}

// opCase returns the checkOp case for c: inputs x, w and (with bias) b.
func (c convCase) opCase() opCase {
	shapes := [][]int{c.x, c.w}
	if c.bias {
		shapes = append(shapes, []int{c.w[0]})
	}
	return opCase{
		name:   "conv2d " + c.String(),
		shapes: shapes,
		gpu: func(e *Engine, in []*Tensor) *Tensor {
			var b *Tensor
			if c.bias {
				b = in[2]
			}
			return e.Conv2d(in[0], in[1], b, c.stride, c.pad)
		},
		ref: func(in []*ref.T) *ref.T {
			var b *ref.T
			if c.bias {
				b = in[2]
			}
			return ref.Conv2d(in[0], in[1], b, c.stride, c.pad)
		},
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			dx, dw, db := ref.Conv2dBackward(in[0], in[1], g, c.stride, c.pad, c.bias)
			if c.bias {
				return []*ref.T{dx, dw, db}
			}
			return []*ref.T{dx, dw}
		},
	}
}

var convCases = []convCase{
	{x: []int{2, 5, 9, 7}, w: []int{7, 5, 3, 3}, stride: 1, pad: 1, bias: true},
	{x: []int{2, 5, 9, 7}, w: []int{7, 5, 3, 3}, stride: 1, pad: 1},
	{x: []int{2, 13, 9, 7}, w: []int{11, 13, 3, 3}, stride: 2, pad: 1, bias: true},
	{x: []int{1, 6, 8, 8}, w: []int{5, 6, 3, 3}, stride: 2, pad: 1},
	{x: []int{2, 13, 6, 5}, w: []int{11, 13, 1, 1}, stride: 1, pad: 0, bias: true},
	{x: []int{2, 13, 6, 5}, w: []int{11, 13, 1, 1}, stride: 1, pad: 0},
	{x: []int{1, 3, 7, 9}, w: []int{4, 3, 3, 3}, stride: 1, pad: 0, bias: true},
	{x: []int{1, 2, 8, 9}, w: []int{3, 2, 2, 4}, stride: 2, pad: 1, bias: true}, // rectangular kernel
	// Vec4 weight rows (Cin*KH*KW a multiple of 4), vec4 output planes.
	{x: []int{1, 4, 7, 6}, w: []int{9, 4, 3, 3}, stride: 1, pad: 1, bias: true},
	{x: []int{2, 12, 4, 4}, w: []int{5, 12, 1, 1}, stride: 1, pad: 0},
	// More than one tile of rows, columns and K: Cout 70 > 64, N*Ho*Wo = 2*81 > 64.
	{x: []int{2, 9, 9, 9}, w: []int{70, 9, 3, 3}, stride: 1, pad: 1, bias: true},
}

func TestConv2d(t *testing.T) {
	for _, c := range convCases {
		c := c
		t.Run(c.String(), func(t *testing.T) { checkOp(t, c.opCase()) })
	}
}

// smallBindingEngine opens a second engine whose bindings cover at most
// maxBinding bytes, so small tensors take the split-dispatch paths.
func smallBindingEngine(t *testing.T, maxBinding uint64) *Engine {
	t.Helper()
	engine(t) // skips when there is no adapter at all
	e, err := Open(Options{MaxBinding: maxBinding})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// TestConv2d_splitBindings runs Conv2d forward and backward on tensors
// larger than one binding (1 KiB: 192 usable elements per window) and
// compares with the reference: first whole images per dispatch, then images
// too large for one binding, split by channels.
func TestConv2d_splitBindings(t *testing.T) {
	e := smallBindingEngine(t, 1024)
	for _, c := range []convCase{
		{x: []int{3, 3, 9, 7}, w: []int{2, 3, 3, 3}, stride: 1, pad: 1, bias: true},  // 189 elements per image
		{x: []int{2, 5, 8, 6}, w: []int{4, 5, 3, 3}, stride: 2, pad: 1, bias: true},  // 240 per image: channel groups
		{x: []int{2, 7, 7, 6}, w: []int{9, 7, 1, 1}, stride: 1, pad: 0, bias: false}, // groups on both sides
		{x: []int{2, 8, 6, 6}, w: []int{3, 8, 3, 3}, stride: 1, pad: 1, bias: true},  // groups of 4 channels keep vec4 weights
	} {
		t.Run(c.String(), func(t *testing.T) {
			oc := c.opCase()
			r, seed := seeded(t)
			ins := make([]*ref.T, len(oc.shapes))
			gins := make([]*Tensor, len(oc.shapes))
			for i, s := range oc.shapes {
				ins[i] = ref.From(randData(r, ref.Numel(s)), s...)
				gins[i] = e.FromSlice(f32s(ins[i].Data), s...)
				gins[i].SetRequiresGrad(true)
			}
			if gins[0].Bytes() <= e.MaxBinding() {
				t.Fatalf("x %v fits one binding; the test needs it not to", c.x)
			}
			want := oc.ref(ins)
			out := oc.gpu(e, gins)
			compare(t, fmt.Sprintf("forward (seed %d)", seed), out.MustRead(), want.Data, 1e-4, 1e-3)
			g := ref.From(randData(r, len(want.Data)), want.Shape...)
			if err := e.BackwardWith(out, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
				t.Fatal(err)
			}
			for i, wg := range oc.refBack(ins, g) {
				compare(t, fmt.Sprintf("backward input %d (seed %d)", i, seed), gins[i].Grad.MustRead(), wg.Data, 1e-4, 1e-3)
				gins[i].Release()
			}
			out.Release()
		})
	}
}

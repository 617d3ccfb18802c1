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
	// 3x3, stride 1, pad 1 (the direct kernel on CPU adapters; its input
	// gradient too). Vec4 rows (W % 4 == 0): W = 20 and 36 leave a last
	// block of 4 of 16 pixels, W = 32 two whole blocks, W = 4 one vec4;
	// Cout 19 and 33 leave a last tile of 3 and 1 of 16 channels (and Cin
	// 19, 33 the same for the input gradient).
	{x: []int{2, 5, 6, 20}, w: []int{19, 5, 3, 3}, stride: 1, pad: 1, bias: true},
	{x: []int{2, 5, 6, 20}, w: []int{19, 5, 3, 3}, stride: 1, pad: 1},
	{x: []int{1, 19, 3, 36}, w: []int{6, 19, 3, 3}, stride: 1, pad: 1, bias: true},
	{x: []int{1, 3, 5, 32}, w: []int{33, 3, 3, 3}, stride: 1, pad: 1},
	{x: []int{2, 7, 5, 4}, w: []int{16, 7, 3, 3}, stride: 1, pad: 1, bias: true},
	// Scalar rows: W = 17 (a second block of 1 pixel), W = 1, H = 1.
	{x: []int{1, 3, 4, 17}, w: []int{17, 3, 3, 3}, stride: 1, pad: 1, bias: true},
	{x: []int{2, 3, 5, 1}, w: []int{4, 3, 3, 3}, stride: 1, pad: 1},
	{x: []int{1, 5, 1, 12}, w: []int{3, 5, 3, 3}, stride: 1, pad: 1, bias: true},
}

// geom returns c's geometry (3x3 stride-1 pad-1 cases only: Ho = H).
func (c convCase) geom() convGeom {
	return convGeom{n: c.x[0], cin: c.x[1], h: c.x[2], w: c.x[3], cout: c.w[0], kh: 3, kw: 3, stride: 1, pad: 1}
}

// direct reports whether c is a convolution the direct kernel serves.
func (c convCase) direct() bool {
	return c.w[2] == 3 && c.w[3] == 3 && c.stride == 1 && c.pad == 1
}

// TestConv2d runs every case; 3x3 stride-1 pad-1 cases run under both
// kernels for them (ConvKernelEnv): "direct" (the default on CPU adapters)
// and "gemm" (the default on GPUs, and the kernel for every other case).
func TestConv2d(t *testing.T) {
	for _, kernel := range []string{"direct", "gemm"} {
		t.Run(kernel, func(t *testing.T) {
			t.Setenv(ConvKernelEnv, kernel)
			for _, c := range convCases {
				if kernel == "direct" && !c.direct() {
					continue
				}
				t.Run(c.String(), func(t *testing.T) { checkOp(t, c.opCase()) })
			}
		})
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
//
// 3x3 stride-1 pad-1 cases run under both kernels (see TestConv2d). The
// direct kernel follows the same splits, except where its packed weights
// (output channels padded to 16) exceed a binding or output-channel blocks
// are narrower than its 16-channel tile; there it hands over to the GEMM
// kernels. The cases for it use 4 KiB bindings (960 usable elements per
// window) and say which directions it must serve.
func TestConv2d_splitBindings(t *testing.T) {
	type splitCase struct {
		convCase
		binding  uint64
		fwd, bwd bool // the direct kernel serves the forward, the input gradient
	}
	cases := []splitCase{
		{convCase{x: []int{3, 3, 9, 7}, w: []int{2, 3, 3, 3}, stride: 1, pad: 1, bias: true}, 1024, false, false},  // 189 elements per image
		{convCase{x: []int{2, 5, 8, 6}, w: []int{4, 5, 3, 3}, stride: 2, pad: 1, bias: true}, 1024, false, false},  // 240 per image: channel groups
		{convCase{x: []int{2, 7, 7, 6}, w: []int{9, 7, 1, 1}, stride: 1, pad: 0, bias: false}, 1024, false, false}, // groups on both sides
		{convCase{x: []int{2, 8, 6, 6}, w: []int{3, 8, 3, 3}, stride: 1, pad: 1, bias: true}, 1024, false, false},  // groups of 4 channels keep vec4 weights
		// Input-channel groups of 6 and 1 on vec4 rows (windows starting
		// mid-buffer), accumulated into out.
		{convCase{x: []int{2, 7, 12, 12}, w: []int{5, 7, 3, 3}, stride: 1, pad: 1, bias: true}, 4096, true, false},
		// Output-channel groups of 16 and 4 (out 1120 per image), the
		// second starting at channel 16.
		{convCase{x: []int{1, 3, 7, 8}, w: []int{20, 3, 3, 3}, stride: 1, pad: 1, bias: true}, 4096, true, false},
		// The forward's output-channel groups of 6 are narrower than a tile
		// (the GEMM kernel runs it); the input gradient reads g in channel
		// groups of 6 and 1 and accumulates.
		{convCase{x: []int{2, 3, 12, 12}, w: []int{7, 3, 3, 3}, stride: 1, pad: 1}, 4096, false, true},
	}
	engines := map[uint64]*Engine{1024: smallBindingEngine(t, 1024), 4096: smallBindingEngine(t, 4096)}
	for _, kernel := range []string{"direct", "gemm"} {
		t.Run(kernel, func(t *testing.T) {
			t.Setenv(ConvKernelEnv, kernel)
			for _, c := range cases {
				if kernel == "direct" && !c.direct() {
					continue
				}
				t.Run(c.String(), func(t *testing.T) {
					e := engines[c.binding]
					if kernel == "direct" {
						g := c.geom()
						x, y := e.Zeros(c.x...), e.Zeros(g.n, g.cout, g.h, g.w)
						_, fwd := e.planDirect(g.n, g.cin, g.cout, g.h, g.w, x, y)
						_, bwd := e.planDirect(g.n, g.cout, g.cin, g.h, g.w, y, x)
						x.Release()
						y.Release()
						if fwd != c.fwd || bwd != c.bwd {
							t.Fatalf("direct kernel serves forward %v, input gradient %v; the case expects %v, %v", fwd, bwd, c.fwd, c.bwd)
						}
					}
					checkSplit(t, e, c.convCase)
				})
			}
		})
	}
}

// checkSplit runs c forward and backward on e, whose bindings are smaller
// than x, and compares with the reference.
func checkSplit(t *testing.T, e *Engine, c convCase) {
	oc := c.opCase()
	r, seed := seeded(t)
	ins := make([]*ref.T, len(oc.shapes))
	gins := make([]*Tensor, len(oc.shapes))
	for i, s := range oc.shapes {
		ins[i] = ref.From(randData(r, ref.Numel(s)), s...)
		gins[i] = e.FromSlice(f32s(ins[i].Data), s...)
		gins[i].SetRequiresGrad(true)
	}
	want := oc.ref(ins)
	if gins[0].Bytes() <= e.MaxBinding() && uint64(len(want.Data))*4 <= e.MaxBinding() {
		t.Fatalf("x %v and its output fit one binding; the test needs one not to", c.x)
	}
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
}

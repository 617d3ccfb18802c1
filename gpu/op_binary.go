package gpu

import "fmt"

// Elementwise binary ops with NumPy broadcasting: Add, Sub, Mul.
// Forward: shaders/binary_fwd.wgsl; backward: shaders/binary_bwd.wgsl,
// which also sums the gradient over broadcast dimensions.
// Reference: ref.Binary / ref.BinaryBackward.

const maxRank = 8

type binOp int

const (
	opAdd binOp = iota
	opSub
	opMul
)

// Add returns a + b (broadcasting).
func (e *Engine) Add(a, b *Tensor) *Tensor { return e.binary(opAdd, a, b) }

// Sub returns a - b (broadcasting).
func (e *Engine) Sub(a, b *Tensor) *Tensor { return e.binary(opSub, a, b) }

// Mul returns a * b elementwise (broadcasting).
func (e *Engine) Mul(a, b *Tensor) *Tensor { return e.binary(opMul, a, b) }

// BroadcastShape returns the NumPy broadcast of two shapes.
func BroadcastShape(a, b []int) ([]int, error) {
	n := len(a)
	if len(b) > n {
		n = len(b)
	}
	out := make([]int, n)
	for i := 0; i < n; i++ {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("gpu: shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// bstrides returns x's element strides in the index space of out (0 where x
// is broadcast), right-aligned, plus x's dims aligned to out's rank.
func bstrides(x, out []int) (strides, dims []int) {
	strides = make([]int, len(out))
	dims = make([]int, len(out))
	s := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := len(x) - len(out) + i
		d := 1
		if j >= 0 {
			d = x[j]
		}
		dims[i] = d
		if d != 1 {
			strides[i] = s
		}
		s *= d
	}
	return
}

func packDims(p Params, v []int) Params {
	var a [maxRank]int
	copy(a[:], v)
	for _, x := range a {
		p = append(p, uint32(x))
	}
	return p
}

func (e *Engine) binary(op binOp, a, b *Tensor) *Tensor {
	shape, err := BroadcastShape(a.shape, b.shape)
	if err != nil {
		panic(err)
	}
	if len(shape) > maxRank {
		panic(fmt.Sprintf("gpu: rank %d over %d", len(shape), maxRank))
	}
	out := e.alloc(shape...)
	e.binaryInto(op, a, b, out)
	e.record(out, []*Tensor{a, b}, func(g *Tensor) {
		if a.requiresGrad {
			a.accumulate(e.binaryGrad(op, g, a, b, 0))
		}
		if b.requiresGrad {
			b.accumulate(e.binaryGrad(op, g, b, a, 1))
		}
	})
	return out
}

func (e *Engine) binaryInto(op binOp, a, b, out *Tensor) {
	as, _ := bstrides(a.shape, out.shape)
	bs, _ := bstrides(b.shape, out.shape)
	// Right-align everything to rank R (dims beyond rank are ignored).
	e.chunks(out.n, func(from, count int) {
		aw, abase := e.operandWindow(a, out, from, count)
		bw, bbase := e.operandWindow(b, out, from, count)
		p := Params{count, len(out.shape), int(op), from, abase, bbase, 0, 0}
		p = packDims(p, out.shape)
		p = packDims(p, as)
		p = packDims(p, bs)
		e.Dispatch(Kernel{File: "binary_fwd.wgsl", Entry: "main"}, p, e.Grid1D(count, 256), aw, bw, out.window(from, count))
	})
}

// operandWindow binds the part of x that output elements [from, from+count)
// read: all of x when it fits one binding, else the same window (x must then
// have out's shape).
func (e *Engine) operandWindow(x, out *Tensor, from, count int) (Binding, int) {
	if x.Bytes() <= e.maxBinding {
		return x.bind(), 0
	}
	if !sameShape(x.shape, out.shape) {
		panic(fmt.Sprintf("gpu: broadcasting a %s operand %v larger than one binding is not supported", fmtBytes(x.Bytes()), x.shape))
	}
	return x.window(from, count), from
}

// binaryGrad returns d(out)/d(x) * g summed to x's shape; which is 0 for a,
// 1 for b; other is the other operand.
func (e *Engine) binaryGrad(op binOp, g, x, other *Tensor, which int) *Tensor {
	dx := e.alloc(x.shape...)
	_, xdims := bstrides(x.shape, g.shape)
	os, _ := bstrides(other.shape, g.shape)
	sign := float32(1)
	if op == opSub && which == 1 {
		sign = -1
	}
	src := other
	if op != opMul {
		src = g // unread
	}
	k := 1
	if x.n > 0 {
		k = g.n / x.n
	}
	e.chunks(x.n, func(from, count int) {
		gw, ow, xbase := g.bind(), src.bind(), from
		if g.Bytes() > e.maxBinding {
			// Only same-shape operands get here (k == 1): window g and the
			// other operand exactly like dx, with window-relative indices.
			if k > 1 || (op == opMul && !sameShape(src.shape, g.shape)) {
				panic(fmt.Sprintf("gpu: gradient of a broadcast operand from a %s output is not supported", fmtBytes(g.Bytes())))
			}
			gw, ow, xbase = g.window(from, count), src.window(from, count), 0
		}
		p := Params{count, len(g.shape), int(op), xbase, k, sign, 0, 0}
		p = packDims(p, g.shape)
		p = packDims(p, xdims)
		p = packDims(p, os)
		e.Dispatch(Kernel{File: "binary_bwd.wgsl", Entry: "main"}, p, e.Grid1D(count, 256), gw, ow, dx.window(from, count))
	})
	return dx
}

// chunks calls f over [0, n) in windows that fit one storage binding; window
// starts are multiples of 64 elements (256 bytes, the offset alignment).
func (e *Engine) chunks(n int, f func(from, count int)) {
	max := int(e.maxBinding / 4)
	max -= max % 64
	if n <= max {
		f(0, n)
		return
	}
	for from := 0; from < n; from += max {
		c := n - from
		if c > max {
			c = max
		}
		f(from, c)
	}
}

// addSame returns a + b for equal shapes without recording.
func (e *Engine) addSame(a, b *Tensor) *Tensor {
	out := e.alloc(a.shape...)
	e.binaryInto(opAdd, a, b, out)
	return out
}

// addInPlace does y += x (same shape), not recorded.
func (e *Engine) addInPlace(y, x *Tensor) { e.axpy(1, x, 1, y) }

// axpy does y = alpha*x + beta*y in place, not recorded.
func (e *Engine) axpy(alpha float32, x *Tensor, beta float32, y *Tensor) {
	if x.n != y.n {
		panic(fmt.Sprintf("gpu: axpy of %v into %v", x.shape, y.shape))
	}
	e.chunks(y.n, func(from, count int) {
		e.Dispatch(Kernel{File: "axpy.wgsl", Entry: "main"}, Params{count, alpha, beta}, e.Grid1D(count, 256), x.window(from, count), y.window(from, count))
	})
}

func (e *Engine) fill(t *Tensor, v float32) {
	e.chunks(t.n, func(from, count int) {
		e.Dispatch(Kernel{File: "fill.wgsl", Entry: "main"}, Params{count, v}, e.Grid1D(count, 256), t.window(from, count))
	})
}

// Scale returns s * x.
func (e *Engine) Scale(x *Tensor, s float32) *Tensor {
	out := e.alloc(x.shape...)
	e.axpy(s, x, 0, out)
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.axpy(s, g, 0, dx)
		x.accumulate(dx)
	})
	return out
}

// Copy returns a new tensor with x's contents (recorded: the gradient passes
// through).
func (e *Engine) Copy(x *Tensor) *Tensor {
	out := e.alloc(x.shape...)
	e.axpy(1, x, 0, out)
	e.record(out, []*Tensor{x}, func(g *Tensor) { x.accumulate(g.share()) })
	return out
}

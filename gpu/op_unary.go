package gpu

// The activation family: SiLU, GELU (exact, erf), GELUTanh, QuickGELU and
// Erf, elementwise on tensors of any shape and size.
// Forward: shaders/unary_fwd.wgsl; backward: shaders/unary_bwd.wgsl; both
// select the function with an op code and get erf/sigmoid/tanh from
// shaders/erf_lib.wgsl. Work is split with Engine.chunks, so tensors larger
// than one storage binding work.
// Reference: ref.Unary / ref.UnaryBackward.

type unaryOp int

const (
	opSiLU unaryOp = iota
	opGELU
	opGELUTanh
	opQuickGELU
	opErf
	opExp
)

// SiLU returns x * sigmoid(x) (also called swish).
func (e *Engine) SiLU(x *Tensor) *Tensor { return e.unary(opSiLU, x) }

// GELU returns the exact GELU x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
// (PyTorch's approximate="none"). erf is a float32 approximation with
// absolute error below 1e-6 (see shaders/erf_lib.wgsl).
func (e *Engine) GELU(x *Tensor) *Tensor { return e.unary(opGELU, x) }

// GELUTanh returns the tanh approximation of GELU,
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate="tanh").
func (e *Engine) GELUTanh(x *Tensor) *Tensor { return e.unary(opGELUTanh, x) }

// Exp returns e^x (the VAE posterior's std = exp(logvar / 2)).
func (e *Engine) Exp(x *Tensor) *Tensor { return e.unary(opExp, x) }

// QuickGELU returns x * sigmoid(1.702 x) (CLIP's activation).
func (e *Engine) QuickGELU(x *Tensor) *Tensor { return e.unary(opQuickGELU, x) }

// Erf returns erf(x) elementwise (absolute error below 1e-6).
func (e *Engine) Erf(x *Tensor) *Tensor { return e.unary(opErf, x) }

func unaryKernel(file string) Kernel {
	return Kernel{File: file, Entry: "main"}
}

func (e *Engine) unary(op unaryOp, x *Tensor) *Tensor {
	out := e.alloc(x.shape...)
	e.chunks(x.n, func(from, count int) {
		e.Dispatch(unaryKernel("unary_fwd.wgsl"), Params{count, int(op)}, e.Grid1D(count, 256),
			x.window(from, count), out.window(from, count))
	})
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.chunks(x.n, func(from, count int) {
			e.Dispatch(unaryKernel("unary_bwd.wgsl"), Params{count, int(op)}, e.Grid1D(count, 256),
				g.window(from, count), x.window(from, count), dx.window(from, count))
		})
		x.accumulate(dx)
	})
	return out
}

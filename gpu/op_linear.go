package gpu

import "fmt"

// Linear layer with PyTorch's nn.Linear conventions. The forward pass and
// the input and weight gradients are GEMMs (shaders/matmul_fwd.wgsl, see
// op_matmul.go); the bias gradient is a column sum, shaders/matmul_bwd.wgsl.
// Reference: ref.Linear / ref.LinearBackward.

// colsumBlock is how many rows one colsum invocation adds up.
const colsumBlock = 256

// Linear returns x @ w^T + bias: x is [..., in], w is [out, in] (PyTorch
// layout), bias is [out] or nil; the result is [..., out]. Gradients flow to
// x, w and bias (the bias gradient sums over all leading dimensions).
func (e *Engine) Linear(x, w, bias *Tensor) *Tensor {
	if len(w.shape) != 2 || len(x.shape) < 1 || x.shape[len(x.shape)-1] != w.shape[1] {
		panic(fmt.Sprintf("gpu: Linear of %v with weight %v (want x [..., in], w [out, in])", x.shape, w.shape))
	}
	in, outF := w.shape[1], w.shape[0]
	if bias != nil && (len(bias.shape) != 1 || bias.shape[0] != outF) {
		panic(fmt.Sprintf("gpu: Linear bias %v for weight %v (want [%d])", bias.shape, w.shape, outF))
	}
	rows := 1
	if in > 0 {
		rows = x.n / in
	} else {
		rows = numel(x.shape[:len(x.shape)-1])
	}
	shape := append(append([]int(nil), x.shape[:len(x.shape)-1]...), outF)
	y := e.alloc(shape...) // [..., out]
	e.gemm(gemmOp{a: x, b: w, c: y, bias: bias, transB: true, m: rows, n: outF, k: in, batch: 1})
	inputs := []*Tensor{x, w}
	if bias != nil {
		inputs = append(inputs, bias)
	}
	e.record(y, inputs, func(g *Tensor) {
		if x.requiresGrad { // dx [rows, in] = g [rows, out] @ w [out, in]
			dx := e.alloc(x.shape...)
			e.gemm(gemmOp{a: g, b: w, c: dx, m: rows, n: in, k: outF, batch: 1})
			x.accumulate(dx)
		}
		if w.requiresGrad { // dw [out, in] = g^T [out, rows] @ x [rows, in]
			dw := e.alloc(w.shape...)
			e.gemm(gemmOp{a: g, b: x, c: dw, transA: true, m: outF, n: in, k: rows, batch: 1})
			w.accumulate(dw)
		}
		if bias != nil && bias.requiresGrad {
			bias.accumulate(e.colsum(g, rows, outF))
		}
	})
	return y
}

// colsum returns the column sums [n] of g viewed as [rows, n].
func (e *Engine) colsum(g *Tensor, rows, n int) *Tensor {
	cur, owned := g, false
	for {
		nb := max(1, ceilDiv(rows, colsumBlock))
		var out *Tensor
		if nb == 1 {
			out = e.alloc(n)
		} else {
			var err error
			if out, err = e.NewTensor(Scratch, nb, n); err != nil { // [nb, n] partial sums
				panic(err)
			}
		}
		// Row chunks (whole blocks) whose windows fit one binding.
		maxF := int(e.maxBinding/4) - 64
		rc := rows
		if cur.Bytes() > e.maxBinding {
			rc = maxF / n / colsumBlock * colsumBlock
			if rc < colsumBlock {
				panic(fmt.Sprintf("gpu: column sum over rows of %d floats exceeds the binding limit", n))
			}
		}
		for r0 := 0; r0 < rows || r0 == 0; r0 += rc {
			r1 := min(rows, r0+rc)
			gw, g0 := e.span(cur, r0*n, (r1-r0)*n)
			b0 := r0 / colsumBlock
			ow, o0 := e.span(out, b0*n, ceilDiv(r1-r0, colsumBlock)*n)
			p := Params{r1 - r0, n, colsumBlock, g0, o0, 0, 0, 0}
			grid := [3]uint32{uint32(ceilDiv(n, 64)), uint32(max(1, ceilDiv(r1-r0, colsumBlock))), 1}
			e.Dispatch(Kernel{File: "matmul_bwd.wgsl", Entry: "colsum"}, p, grid, gw, ow)
			if r1 >= rows {
				break
			}
		}
		if owned {
			cur.Release()
		}
		if nb == 1 {
			return out
		}
		cur, owned, rows = out, true, nb
	}
}

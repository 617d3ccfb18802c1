package gpu

import "fmt"

// Layer normalisation over the last dimension.
// Forward: shaders/layernorm_fwd.wgsl (saves mean and rstd per row);
// backward: shaders/layernorm_bwd.wgsl (dx), layernorm_bwd_params.wgsl and
// layernorm_bwd_sum.wgsl (dweight, dbias as partial column sums, then
// their total). Reference: ref.LayerNorm / ref.LayerNormBackward.

// LayerNorm normalises x over its last dimension C as PyTorch's
// nn.LayerNorm does: y = (x - mean) / sqrt(var + eps) * weight + bias with
// the biased variance. weight and bias are [C] or nil (no affine part).
// The forward saves mean and rstd per row (freed with the tape); the
// backward gives dx, dweight and dbias.
func (e *Engine) LayerNorm(x, weight, bias *Tensor, eps float32) *Tensor {
	if len(x.shape) == 0 {
		panic("gpu: LayerNorm of a scalar (needs at least one dimension)")
	}
	cols := x.Dim(-1)
	for _, t := range []*Tensor{weight, bias} {
		if t != nil && (len(t.shape) != 1 || t.shape[0] != cols) {
			panic(fmt.Sprintf("gpu: LayerNorm of %v needs weight and bias of shape [%d], got %v", x.shape, cols, t.shape))
		}
	}
	y := e.alloc(x.shape...) // same shape as x
	if x.n == 0 {
		return y
	}
	rows := x.n / cols
	mean := e.alloc(rows) // [rows]
	rstd := e.alloc(rows) // [rows]
	flags := 0
	if weight != nil {
		flags |= 1
	}
	if bias != nil {
		flags |= 2
	}
	k := Kernel{File: "layernorm_fwd.wgsl", Entry: rowEntry(cols)}
	e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) {
		e.Dispatch(k, Params{nr, cols, eps, flags, r0}, e.rowGrid(nr),
			x.window(r0*cols, nr*cols), orDummy(weight, x), orDummy(bias, x),
			y.window(r0*cols, nr*cols), mean.bind(), rstd.bind())
	})
	e.record(y, []*Tensor{x, weight, bias, mean, rstd}, func(g *Tensor) {
		if x.requiresGrad {
			x.accumulate(e.layerNormDx(g, x, weight, mean, rstd))
		}
		wantW := weight != nil && weight.requiresGrad
		wantB := bias != nil && bias.requiresGrad
		if wantW || wantB {
			dw, db := e.layerNormDParams(g, x, mean, rstd)
			if wantW {
				weight.accumulate(dw)
			} else {
				dw.Release()
			}
			if wantB {
				bias.accumulate(db)
			} else {
				db.Release()
			}
		}
	})
	e.keepForBackward(y, mean, rstd)
	return y
}

// layerNormDx returns the input gradient of LayerNorm.
func (e *Engine) layerNormDx(g, x, weight, mean, rstd *Tensor) *Tensor {
	cols := x.Dim(-1)
	rows := x.n / cols
	dx := e.alloc(x.shape...)
	flags := 0
	if weight != nil {
		flags = 1
	}
	k := Kernel{File: "layernorm_bwd.wgsl", Entry: rowEntry(cols)}
	e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) {
		w := func(t *Tensor) Binding { return t.window(r0*cols, nr*cols) }
		e.Dispatch(k, Params{nr, cols, flags, r0}, e.rowGrid(nr),
			w(g), w(x), orDummy(weight, x), mean.bind(), rstd.bind(), w(dx))
	})
	return dx
}

// layerNormDParams returns dweight = sum over rows of g*xhat and
// dbias = sum over rows of g, both [C]: partial sums over parts of up to
// rpp rows, then one pass adding the parts.
func (e *Engine) layerNormDParams(g, x, mean, rstd *Tensor) (dw, db *Tensor) {
	cols := x.Dim(-1)
	rows := x.n / cols
	// About 64 parts, at least 32 rows each, and the parts must fit one binding.
	rpp := max(32, (rows+63)/64)
	maxParts := int(e.maxBinding/4) / (2 * cols)
	if maxParts < 1 {
		panic(fmt.Sprintf("gpu: LayerNorm over %d columns exceeds the binding limit", cols))
	}
	var parts int
	countParts := func() int {
		n := 0
		e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) { n += (nr + rpp - 1) / rpp })
		return n
	}
	for parts = countParts(); parts > maxParts; parts = countParts() {
		rpp *= 2
	}
	part := e.alloc(parts, 2, cols) // [parts, 2, C]
	kp := Kernel{File: "layernorm_bwd_params.wgsl", Entry: "main"}
	base := 0
	e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) {
		np := (nr + rpp - 1) / rpp
		w := func(t *Tensor) Binding { return t.window(r0*cols, nr*cols) }
		e.Dispatch(kp, Params{nr, cols, rpp, base, r0}, [3]uint32{uint32((cols + 63) / 64), uint32(np), 1},
			w(g), w(x), mean.bind(), rstd.bind(), part.bind())
		base += np
	})
	dw, db = e.alloc(cols), e.alloc(cols) // [C], [C]
	e.Dispatch(Kernel{File: "layernorm_bwd_sum.wgsl", Entry: "main"}, Params{cols, parts}, e.Grid1D(cols, 64),
		part.bind(), dw.bind(), db.bind())
	part.Release()
	return dw, db
}

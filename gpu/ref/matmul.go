package ref

import "fmt"

// mmDims returns the batch size, M, K, N of op(a) @ op(b) and whether b is
// shared across a's batch (b 2-D, a with batch dimensions).
func mmDims(a, b *T, transA, transB bool) (batch, m, k, n int, shared bool) {
	ra, rb := len(a.Shape), len(b.Shape)
	if ra < 2 || rb < 2 {
		panic(fmt.Sprintf("ref: MatMul of %v and %v", a.Shape, b.Shape))
	}
	m, k = a.Shape[ra-2], a.Shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.Shape[rb-2], b.Shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	if k != kb {
		panic(fmt.Sprintf("ref: MatMul inner dimensions differ: %v, %v", a.Shape, b.Shape))
	}
	batch = Numel(a.Shape[:ra-2])
	shared = rb == 2 && ra > 2
	if !shared && Numel(b.Shape[:rb-2]) != batch {
		panic(fmt.Sprintf("ref: MatMul batch dimensions differ: %v, %v", a.Shape, b.Shape))
	}
	return
}

// at returns element (i, j) of op(x) for batch item z, where x's stored
// matrices are r x c and op transposes when t.
func at(x *T, z, i, j, r, c int, t, shared bool) float64 {
	if shared {
		z = 0
	}
	if t {
		i, j = j, i
	}
	return x.Data[z*r*c+i*c+j]
}

// MatMul returns op(a) @ op(b) with op(x) = x^T when the flag is set,
// batched over a's leading dimensions. b has the same leading dimensions or
// none (one matrix shared by every batch item).
func MatMul(a, b *T, transA, transB bool) *T {
	batch, m, k, n, shared := mmDims(a, b, transA, transB)
	ra, ca := a.Shape[len(a.Shape)-2], a.Shape[len(a.Shape)-1]
	rb, cb := b.Shape[len(b.Shape)-2], b.Shape[len(b.Shape)-1]
	shape := append(append([]int(nil), a.Shape[:len(a.Shape)-2]...), m, n)
	out := New(shape...)
	for z := 0; z < batch; z++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				s := 0.0
				for q := 0; q < k; q++ {
					s += at(a, z, i, q, ra, ca, transA, false) * at(b, z, q, j, rb, cb, transB, shared)
				}
				out.Data[(z*m+i)*n+j] = s
			}
		}
	}
	return out
}

// MatMulBackward returns the gradients of a and b given g = dL/d(MatMul(a,
// b)). A shared b receives the sum over the batch.
func MatMulBackward(a, b, g *T, transA, transB bool) (da, db *T) {
	batch, m, k, n, shared := mmDims(a, b, transA, transB)
	ra, ca := a.Shape[len(a.Shape)-2], a.Shape[len(a.Shape)-1]
	rb, cb := b.Shape[len(b.Shape)-2], b.Shape[len(b.Shape)-1]
	da, db = New(a.Shape...), New(b.Shape...)
	// C[z,i,j] = sum_q opA[z,i,q] * opB[z,q,j], so each product term sends
	// g[z,i,j] * other to the stored element behind opA[z,i,q] / opB[z,q,j].
	idx := func(z, i, j, r, c int, t, sh bool) int {
		if sh {
			z = 0
		}
		if t {
			i, j = j, i
		}
		return z*r*c + i*c + j
	}
	for z := 0; z < batch; z++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				gv := g.Data[(z*m+i)*n+j]
				for q := 0; q < k; q++ {
					ai := idx(z, i, q, ra, ca, transA, false)
					bi := idx(z, q, j, rb, cb, transB, shared)
					da.Data[ai] += gv * b.Data[bi]
					db.Data[bi] += gv * a.Data[ai]
				}
			}
		}
	}
	return
}

// Linear is PyTorch's nn.Linear: x [..., in], w [out, in], bias [out] or
// nil; y = x @ w^T + bias, shape [..., out].
func Linear(x, w, bias *T) *T {
	in, outF := w.Shape[1], w.Shape[0]
	if x.Shape[len(x.Shape)-1] != in {
		panic(fmt.Sprintf("ref: Linear of %v with weight %v", x.Shape, w.Shape))
	}
	rows := Numel(x.Shape) / in
	shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), outF)
	y := New(shape...)
	for r := 0; r < rows; r++ {
		for o := 0; o < outF; o++ {
			s := 0.0
			if bias != nil {
				s = bias.Data[o]
			}
			for i := 0; i < in; i++ {
				s += x.Data[r*in+i] * w.Data[o*in+i]
			}
			y.Data[r*outF+o] = s
		}
	}
	return y
}

// LinearBackward returns the gradients of x, w and bias (nil when bias is
// nil) given g = dL/dy.
func LinearBackward(x, w, bias, g *T) (dx, dw, db *T) {
	in, outF := w.Shape[1], w.Shape[0]
	rows := Numel(x.Shape) / in
	dx, dw = New(x.Shape...), New(w.Shape...)
	if bias != nil {
		db = New(bias.Shape...)
	}
	for r := 0; r < rows; r++ {
		for o := 0; o < outF; o++ {
			gv := g.Data[r*outF+o]
			if db != nil {
				db.Data[o] += gv
			}
			for i := 0; i < in; i++ {
				dx.Data[r*in+i] += gv * w.Data[o*in+i]
				dw.Data[o*in+i] += gv * x.Data[r*in+i]
			}
		}
	}
	return
}

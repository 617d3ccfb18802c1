package ref

import "fmt"

// BroadcastShape is NumPy's broadcast of two shapes.
func BroadcastShape(a, b []int) []int {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := range n {
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
			panic(fmt.Sprintf("ref: %v and %v do not broadcast", a, b))
		}
	}
	return out
}

// bindex maps a flat index of out to the flat index of x broadcast to out.
func bindex(i int, out, x []int) int {
	xi, stride := 0, 1
	for d := len(out) - 1; d >= 0; d-- {
		c := i % out[d]
		i /= out[d]
		j := len(x) - len(out) + d
		if j >= 0 {
			if x[j] != 1 {
				xi += c * stride
			}
			stride *= x[j]
		}
	}
	return xi
}

// Binary applies op ("add", "sub", "mul") with broadcasting.
func Binary(op string, a, b *T) *T {
	out := New(BroadcastShape(a.Shape, b.Shape)...)
	for i := range out.Data {
		x, y := a.Data[bindex(i, out.Shape, a.Shape)], b.Data[bindex(i, out.Shape, b.Shape)]
		switch op {
		case "add":
			out.Data[i] = x + y
		case "sub":
			out.Data[i] = x - y
		case "mul":
			out.Data[i] = x * y
		default:
			panic("ref: unknown op " + op)
		}
	}
	return out
}

// BinaryBackward returns the gradients of a and b given g = dL/dout.
func BinaryBackward(op string, a, b, g *T) (da, db *T) {
	da, db = New(a.Shape...), New(b.Shape...)
	for i := range g.Data {
		ai, bi := bindex(i, g.Shape, a.Shape), bindex(i, g.Shape, b.Shape)
		switch op {
		case "add":
			da.Data[ai] += g.Data[i]
			db.Data[bi] += g.Data[i]
		case "sub":
			da.Data[ai] += g.Data[i]
			db.Data[bi] -= g.Data[i]
		case "mul":
			da.Data[ai] += g.Data[i] * b.Data[bi]
			db.Data[bi] += g.Data[i] * a.Data[ai]
		}
	}
	return
}

// Scale returns s*x.
func Scale(x *T, s float64) *T {
	out := x.Clone()
	for i := range out.Data {
		out.Data[i] *= s
	}
	return out
}

package ref

import "math"

// Softmax is softmax over the last dimension.
func Softmax(x *T) *T {
	c := x.Shape[len(x.Shape)-1]
	out := New(x.Shape...)
	for r := 0; r*c < len(x.Data); r++ {
		row, o := x.Data[r*c:(r+1)*c], out.Data[r*c:(r+1)*c]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		s := 0.0
		for i, v := range row {
			o[i] = math.Exp(v - m)
			s += o[i]
		}
		for i := range o {
			o[i] /= s
		}
	}
	return out
}

// SoftmaxBackward returns dL/dx given g = dL/dy: dx = y * (g - sum(g*y)).
func SoftmaxBackward(x, g *T) *T {
	y := Softmax(x)
	c := x.Shape[len(x.Shape)-1]
	dx := New(x.Shape...)
	for r := 0; r*c < len(x.Data); r++ {
		yr, gr := y.Data[r*c:(r+1)*c], g.Data[r*c:(r+1)*c]
		dot := 0.0
		for i := range yr {
			dot += yr[i] * gr[i]
		}
		for i := range yr {
			dx.Data[r*c+i] = yr[i] * (gr[i] - dot)
		}
	}
	return dx
}

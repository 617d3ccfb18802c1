package ref

// GEGLU splits x [..., 2F] into h (first half of the last dimension) and
// gate (second half) and returns h * gelu(gate) [..., F] (exact GELU).
func GEGLU(x *T) *T {
	w := x.Shape[len(x.Shape)-1]
	f := w / 2
	shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), f)
	out := New(shape...)
	for r := 0; r < len(x.Data)/w; r++ {
		for c := 0; c < f; c++ {
			out.Data[r*f+c] = x.Data[r*w+c] * GELU(x.Data[r*w+f+c])
		}
	}
	return out
}

// GEGLUBackward returns dL/dx given g = dL/dout.
func GEGLUBackward(x, g *T) *T {
	w := x.Shape[len(x.Shape)-1]
	f := w / 2
	dx := New(x.Shape...)
	for r := 0; r < len(x.Data)/w; r++ {
		for c := 0; c < f; c++ {
			h, gate, gv := x.Data[r*w+c], x.Data[r*w+f+c], g.Data[r*f+c]
			dx.Data[r*w+c] = gv * GELU(gate)
			dx.Data[r*w+f+c] = gv * h * GELUGrad(gate)
		}
	}
	return dx
}

package ref

import "math"

// LayerNorm normalises over the last dimension (biased variance), then
// applies weight and bias [C] when they are not nil.
func LayerNorm(x, w, b *T, eps float64) *T {
	c := x.Shape[len(x.Shape)-1]
	out := New(x.Shape...)
	for r := 0; r*c < len(x.Data); r++ {
		row := x.Data[r*c : (r+1)*c]
		mean, rstd := meanRstd(row, eps)
		for i, v := range row {
			y := (v - mean) * rstd
			if w != nil {
				y *= w.Data[i]
			}
			if b != nil {
				y += b.Data[i]
			}
			out.Data[r*c+i] = y
		}
	}
	return out
}

// meanRstd returns the mean of v and 1/sqrt(biased variance + eps).
func meanRstd(v []float64, eps float64) (mean, rstd float64) {
	for _, a := range v {
		mean += a
	}
	mean /= float64(len(v))
	vr := 0.0
	for _, a := range v {
		vr += (a - mean) * (a - mean)
	}
	vr /= float64(len(v))
	return mean, 1 / math.Sqrt(vr+eps)
}

// LayerNormBackward returns dx, dw, db given g = dL/dy (dw, db nil when w,
// b are nil).
func LayerNormBackward(x, w, b, g *T, eps float64) (dx, dw, db *T) {
	c := x.Shape[len(x.Shape)-1]
	dx = New(x.Shape...)
	if w != nil {
		dw = New(c)
	}
	if b != nil {
		db = New(c)
	}
	xhat := make([]float64, c)
	gw := make([]float64, c)
	for r := 0; r*c < len(x.Data); r++ {
		row, gr := x.Data[r*c:(r+1)*c], g.Data[r*c:(r+1)*c]
		mean, rstd := meanRstd(row, eps)
		m1, m2 := 0.0, 0.0
		for i := range row {
			xhat[i] = (row[i] - mean) * rstd
			gw[i] = gr[i]
			if w != nil {
				gw[i] *= w.Data[i]
				dw.Data[i] += gr[i] * xhat[i]
			}
			if b != nil {
				db.Data[i] += gr[i]
			}
			m1 += gw[i]
			m2 += gw[i] * xhat[i]
		}
		m1 /= float64(c)
		m2 /= float64(c)
		for i := range row {
			dx.Data[r*c+i] = rstd * (gw[i] - m1 - xhat[i]*m2)
		}
	}
	return
}

package ref

// GroupNorm normalises x [N, C, ...spatial] over groups of C/groups channels
// and all spatial positions (biased variance), then applies weight and bias
// [C] per channel when they are not nil.
func GroupNorm(x, w, b *T, groups int, eps float64) *T {
	n, c := x.Shape[0], x.Shape[1]
	s := len(x.Data) / (n * c)
	l := c / groups * s // elements per group, contiguous
	out := New(x.Shape...)
	for gi := 0; gi < n*groups; gi++ {
		seg := x.Data[gi*l : (gi+1)*l]
		mean, rstd := meanRstd(seg, eps)
		for j, v := range seg {
			ch := (gi*l + j) / s % c
			y := (v - mean) * rstd
			if w != nil {
				y *= w.Data[ch]
			}
			if b != nil {
				y += b.Data[ch]
			}
			out.Data[gi*l+j] = y
		}
	}
	return out
}

// GroupNormBackward returns dx, dw, db given g = dL/dy (dw, db nil when w,
// b are nil).
func GroupNormBackward(x, w, b, g *T, groups int, eps float64) (dx, dw, db *T) {
	n, c := x.Shape[0], x.Shape[1]
	s := len(x.Data) / (n * c)
	l := c / groups * s
	dx = New(x.Shape...)
	if w != nil {
		dw = New(c)
	}
	if b != nil {
		db = New(c)
	}
	xhat := make([]float64, l)
	gw := make([]float64, l)
	for gi := 0; gi < n*groups; gi++ {
		seg, gs := x.Data[gi*l:(gi+1)*l], g.Data[gi*l:(gi+1)*l]
		mean, rstd := meanRstd(seg, eps)
		m1, m2 := 0.0, 0.0
		for j := range seg {
			ch := (gi*l + j) / s % c
			xhat[j] = (seg[j] - mean) * rstd
			gw[j] = gs[j]
			if w != nil {
				gw[j] *= w.Data[ch]
				dw.Data[ch] += gs[j] * xhat[j]
			}
			if b != nil {
				db.Data[ch] += gs[j]
			}
			m1 += gw[j]
			m2 += gw[j] * xhat[j]
		}
		m1 /= float64(l)
		m2 /= float64(l)
		for j := range seg {
			dx.Data[gi*l+j] = rstd * (gw[j] - m1 - xhat[j]*m2)
		}
	}
	return
}

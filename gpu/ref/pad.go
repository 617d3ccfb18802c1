package ref

// Pad2d zero-pads the last two dimensions.
func Pad2d(x *T, top, bottom, left, right int) *T {
	r := len(x.Shape)
	h, w := x.Shape[r-2], x.Shape[r-1]
	ho, wo := h+top+bottom, w+left+right
	shape := append(append([]int(nil), x.Shape[:r-2]...), ho, wo)
	out := New(shape...)
	planes := Numel(x.Shape[:r-2])
	for p := 0; p < planes; p++ {
		for y := 0; y < h; y++ {
			for xx := 0; xx < w; xx++ {
				out.Data[p*ho*wo+(y+top)*wo+xx+left] = x.Data[p*h*w+y*w+xx]
			}
		}
	}
	return out
}

// Pad2dBackward crops g back to x's shape.
func Pad2dBackward(x, g *T, top, left int) *T {
	r := len(x.Shape)
	h, w := x.Shape[r-2], x.Shape[r-1]
	ho, wo := g.Shape[r-2], g.Shape[r-1]
	dx := New(x.Shape...)
	for p := 0; p < Numel(x.Shape[:r-2]); p++ {
		for y := 0; y < h; y++ {
			for xx := 0; xx < w; xx++ {
				dx.Data[p*h*w+y*w+xx] = g.Data[p*ho*wo+(y+top)*wo+xx+left]
			}
		}
	}
	return dx
}

// Clamp limits x to [lo, hi].
func Clamp(x *T, lo, hi float64) *T {
	out := x.Clone()
	for i, v := range out.Data {
		out.Data[i] = min(max(v, lo), hi)
	}
	return out
}

// ClampBackward passes g where lo <= x <= hi.
func ClampBackward(x, g *T, lo, hi float64) *T {
	dx := New(x.Shape...)
	for i, v := range x.Data {
		if v >= lo && v <= hi {
			dx.Data[i] = g.Data[i]
		}
	}
	return dx
}

package ref

// Upsample2x is nearest-neighbour upsampling by 2 of x [N, C, H, W]:
// out[n, c, i, j] = x[n, c, i/2, j/2]; out [N, C, 2H, 2W].
func Upsample2x(x *T) *T {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	out := New(n, c, 2*h, 2*w)
	for p := 0; p < n*c; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				out.Data[(p*2*h+i)*2*w+j] = x.Data[(p*h+i/2)*w+j/2]
			}
		}
	}
	return out
}

// Upsample2xBackward sums each 2x2 block of g [N, C, 2H, 2W] into dx
// [N, C, H, W].
func Upsample2xBackward(g *T) *T {
	n, c, h, w := g.Shape[0], g.Shape[1], g.Shape[2]/2, g.Shape[3]/2
	dx := New(n, c, h, w)
	for p := 0; p < n*c; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				dx.Data[(p*h+i/2)*w+j/2] += g.Data[(p*2*h+i)*2*w+j]
			}
		}
	}
	return dx
}

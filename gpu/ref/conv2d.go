package ref

import "fmt"

// ConvOut is PyTorch's output size of a convolution along one axis:
// floor((in + 2*pad - k) / stride) + 1.
func ConvOut(in, k, stride, pad int) int { return (in+2*pad-k)/stride + 1 }

// Conv2d is PyTorch's conv2d (no dilation, no groups):
//
//	out[n, co, oh, ow] = b[co] + sum_{ci, kh, kw} w[co, ci, kh, kw] * x[n, ci, oh*s-p+kh, ow*s-p+kw]
//
// with x read as zero outside the image. x [N, Cin, H, W], w [Cout, Cin, KH,
// KW], b [Cout] or nil; out [N, Cout, Ho, Wo].
func Conv2d(x, w, b *T, stride, pad int) *T {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	if w.Shape[1] != cin {
		panic(fmt.Sprintf("ref: conv2d of %v with %v", x.Shape, w.Shape))
	}
	ho, wo := ConvOut(h, kh, stride, pad), ConvOut(wd, kw, stride, pad)
	out := New(n, cout, ho, wo)
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			for oh := 0; oh < ho; oh++ {
				for ow := 0; ow < wo; ow++ {
					s := 0.0
					if b != nil {
						s = b.Data[co]
					}
					for ci := 0; ci < cin; ci++ {
						for i := 0; i < kh; i++ {
							ih := oh*stride - pad + i
							if ih < 0 || ih >= h {
								continue
							}
							for j := 0; j < kw; j++ {
								iw := ow*stride - pad + j
								if iw < 0 || iw >= wd {
									continue
								}
								s += w.Data[((co*cin+ci)*kh+i)*kw+j] * x.Data[((in*cin+ci)*h+ih)*wd+iw]
							}
						}
					}
					out.Data[((in*cout+co)*ho+oh)*wo+ow] = s
				}
			}
		}
	}
	return out
}

// Conv2dBackward returns the gradients of Conv2d's x, w and b (db only when
// withBias) given g = dL/dout [N, Cout, Ho, Wo]: each product in the forward
// sum sends g times its other factor back to both factors.
func Conv2dBackward(x, w, g *T, stride, pad int, withBias bool) (dx, dw, db *T) {
	n, cin, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	ho, wo := g.Shape[2], g.Shape[3]
	dx, dw = New(x.Shape...), New(w.Shape...)
	if withBias {
		db = New(cout)
	}
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			for oh := 0; oh < ho; oh++ {
				for ow := 0; ow < wo; ow++ {
					gv := g.Data[((in*cout+co)*ho+oh)*wo+ow]
					if db != nil {
						db.Data[co] += gv
					}
					for ci := 0; ci < cin; ci++ {
						for i := 0; i < kh; i++ {
							ih := oh*stride - pad + i
							if ih < 0 || ih >= h {
								continue
							}
							for j := 0; j < kw; j++ {
								iw := ow*stride - pad + j
								if iw < 0 || iw >= wd {
									continue
								}
								xi := ((in*cin+ci)*h+ih)*wd + iw
								wi := ((co*cin+ci)*kh+i)*kw + j
								dx.Data[xi] += gv * w.Data[wi]
								dw.Data[wi] += gv * x.Data[xi]
							}
						}
					}
				}
			}
		}
	}
	return
}

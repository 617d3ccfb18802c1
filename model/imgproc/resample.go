package imgproc

import (
	"math"
)

// This file holds the resampling filters: Pillow's BICUBIC resize of 8-bit
// images reproduced bit for bit (Pillow 9.4 libImaging/Resample.c), and
// float versions of torch's bicubic interpolation (with and without
// antialiasing) as dense weight matrices.

// pilPrecisionBits is Resample.c's PRECISION_BITS (32 - 8 - 2).
const pilPrecisionBits = 22

// pilBicubic is Resample.c's bicubic_filter (a = -0.5, support 2).
func pilBicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		// ((a + 2) x - (a + 3)) x x + 1; the float64() conversions keep Go
		// from fusing multiply-adds, so every rounding matches C's.
		return float64(float64(float64(float64((a+2.0)*x)-(a+3.0))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(float64(x-5)*x)+8)*x)-4) * a
	}
	return 0
}

// filterCoeffs is Resample.c's precompute_coeffs for the whole input
// [0, in): for each output index o, the first input index bounds[o][0],
// the tap count bounds[o][1] and the normalised weights kk[o][:taps].
// kernel has support 2 at scale 1 (both bicubic kernels used here).
func filterCoeffs(in, out int, kernel func(float64) float64) (bounds [][2]int, kk [][]float64) {
	scale := float64(in) / float64(out)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := 2 * filterscale
	ss := 1 / filterscale
	bounds = make([][2]int, out)
	kk = make([][]float64, out)
	for o := 0; o < out; o++ {
		center := float64(float64(o)+0.5) * scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > in {
			xmax = in
		}
		xmax -= xmin
		k := make([]float64, xmax)
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := kernel(float64(float64(float64(x+xmin)-center)+0.5) * ss)
			k[x] = w
			ww += w
		}
		if ww != 0 {
			for x := range k {
				k[x] /= ww
			}
		}
		bounds[o] = [2]int{xmin, xmax}
		kk[o] = k
	}
	return bounds, kk
}

// fixedCoeffs is normalize_coeffs_8bpc: weights in 2^22 fixed point,
// rounded half away from zero.
func fixedCoeffs(kk [][]float64) [][]int32 {
	out := make([][]int32, len(kk))
	for o, k := range kk {
		q := make([]int32, len(k))
		for i, v := range k {
			if v < 0 {
				q[i] = int32(-0.5 + v*(1<<pilPrecisionBits))
			} else {
				q[i] = int32(0.5 + v*(1<<pilPrecisionBits))
			}
		}
		out[o] = q
	}
	return out
}

// clip8 is Resample.c's clip8: the accumulator shifted down, clamped to a
// byte.
func clip8(v int32) uint8 {
	v >>= pilPrecisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// ResizeBicubic resizes m to w x h exactly as Pillow 9.4's
// Image.resize((w, h), Image.BICUBIC) does for an "RGB" image: separable
// convolution with the a = -0.5 cubic kernel stretched by the downscale
// factor (antialiasing), fixed-point weights, a horizontal pass rounded to
// an 8-bit intermediate image, then a vertical pass. The same size returns
// a copy.
func (m *RGB8) ResizeBicubic(w, h int) *RGB8 {
	src := m
	if w != src.W {
		bounds, kk := filterCoeffs(src.W, w, pilBicubic)
		k := fixedCoeffs(kk)
		dst := NewRGB8(w, src.H)
		for y := 0; y < src.H; y++ {
			row := src.Pix[y*src.W*3 : (y+1)*src.W*3]
			out := dst.Pix[y*w*3 : (y+1)*w*3]
			for o := 0; o < w; o++ {
				xmin, n := bounds[o][0], bounds[o][1]
				var s0, s1, s2 int32 = 1 << (pilPrecisionBits - 1), 1 << (pilPrecisionBits - 1), 1 << (pilPrecisionBits - 1)
				for i := 0; i < n; i++ {
					p := row[(xmin+i)*3:]
					c := k[o][i]
					s0 += int32(p[0]) * c
					s1 += int32(p[1]) * c
					s2 += int32(p[2]) * c
				}
				out[o*3], out[o*3+1], out[o*3+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
		src = dst
	}
	if h != src.H {
		bounds, kk := filterCoeffs(src.H, h, pilBicubic)
		k := fixedCoeffs(kk)
		dst := NewRGB8(src.W, h)
		for o := 0; o < h; o++ {
			ymin, n := bounds[o][0], bounds[o][1]
			out := dst.Pix[o*src.W*3 : (o+1)*src.W*3]
			for x := 0; x < src.W; x++ {
				var s0, s1, s2 int32 = 1 << (pilPrecisionBits - 1), 1 << (pilPrecisionBits - 1), 1 << (pilPrecisionBits - 1)
				for i := 0; i < n; i++ {
					p := src.Pix[((ymin+i)*src.W+x)*3:]
					c := k[o][i]
					s0 += int32(p[0]) * c
					s1 += int32(p[1]) * c
					s2 += int32(p[2]) * c
				}
				out[x*3], out[x*3+1], out[x*3+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
		src = dst
	}
	if src == m {
		src = &RGB8{W: m.W, H: m.H, Pix: append([]uint8(nil), m.Pix...)}
	}
	return src
}

// Interp selects a float resampling filter for ResizeMatrix.
type Interp int

const (
	// BicubicAA is the antialiased bicubic of torch
	// (F.interpolate(mode="bicubic", antialias=True), torchvision >= 0.17's
	// tensor Resize default) and, in float, of Pillow's BICUBIC: a = -0.5,
	// support 2 stretched by the downscale factor, weights normalised.
	BicubicAA Interp = iota
	// Bicubic is torch's plain bicubic (antialias=False, align_corners=False,
	// torchvision 0.14's tensor default): a = -0.75, four taps clamped to
	// the edge, no stretching when downscaling.
	Bicubic
)

// ResizeMatrix returns the [out, in] weight matrix (row-major) of a 1-D
// resize from in to out samples: y[o] = sum_i M[o, i] x[i]. scale, when
// > 0, is the scale factor passed to torch (out/in, as in
// interpolate(scale_factor=...)), which torch's plain bicubic uses instead
// of out/in for the source coordinates; 0 means out/in. A 2-D resize of a
// [H, W] plane is Mh · X · Mwᵀ, which makes it a pair of matmuls on the GPU
// and differentiable there.
func ResizeMatrix(in, out int, interp Interp, scale float64) []float64 {
	m := make([]float64, out*in)
	switch interp {
	case BicubicAA:
		bounds, kk := filterCoeffs(in, out, pilBicubic)
		for o := 0; o < out; o++ {
			for i, w := range kk[o] {
				m[o*in+bounds[o][0]+i] = w
			}
		}
	case Bicubic:
		s := float64(in) / float64(out)
		if scale > 0 {
			s = 1 / scale
		}
		const a = -0.75
		c1 := func(x float64) float64 { return ((a+2)*x-(a+3))*x*x + 1 }
		c2 := func(x float64) float64 { return ((a*x-5*a)*x+8*a)*x - 4*a }
		for o := 0; o < out; o++ {
			src := (float64(o)+0.5)*s - 0.5
			i0 := int(math.Floor(src))
			t := src - float64(i0)
			ws := [4]float64{c2(t + 1), c1(t), c1(1 - t), c2(2 - t)}
			for j, w := range ws {
				i := min(max(i0-1+j, 0), in-1)
				m[o*in+i] += w
			}
		}
	}
	return m
}

// ResizeFloat resizes a float image x [C, H, W] to [C, oh, ow] with the
// separable filter interp (see ResizeMatrix), computed in float64.
func ResizeFloat(x []float32, c, h, w, oh, ow int, interp Interp) []float32 {
	mh := ResizeMatrix(h, oh, interp, 0)
	mw := ResizeMatrix(w, ow, interp, 0)
	out := make([]float32, c*oh*ow)
	tmp := make([]float64, h*ow) // one channel after the horizontal pass
	for ch := 0; ch < c; ch++ {
		plane := x[ch*h*w : (ch+1)*h*w]
		for y := 0; y < h; y++ {
			for o := 0; o < ow; o++ {
				s := 0.0
				row := mw[o*w : (o+1)*w]
				for i, v := range plane[y*w : (y+1)*w] {
					s += row[i] * float64(v)
				}
				tmp[y*ow+o] = s
			}
		}
		for o := 0; o < oh; o++ {
			col := mh[o*h : (o+1)*h]
			for xx := 0; xx < ow; xx++ {
				s := 0.0
				for i := 0; i < h; i++ {
					s += col[i] * tmp[i*ow+xx]
				}
				out[(ch*oh+o)*ow+xx] = float32(s)
			}
		}
	}
	return out
}

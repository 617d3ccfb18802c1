package vit

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
)

// Position-embedding interpolation for other input sizes, as DINO's
// VisionTransformer.interpolate_pos_encoding and transformers'
// ViTEmbeddings do it: the class row is kept; the Grid x Grid table is
// resized by F.interpolate(mode="bicubic", align_corners=False,
// scale_factor=((H/p + 0.1)/Grid, (W/p + 0.1)/Grid)) to (H/p) x (W/p).
// Because a scale factor is passed, source coordinates use it:
// src = (dst + 0.5) / sf - 0.5, taps floor(src)-1 .. floor(src)+2 clamped
// to the grid, cubic convolution weights with A = -0.75.
//
// The resize is linear, so it runs on the GPU as one matrix product
// M [gh*gw, Grid*Grid] @ grid [Grid*Grid, D] with M = kron(Rh, Rw) built
// in float64 from the separable 1-D weights (cached per output grid), and
// the position table keeps its gradient.

// cubicWeights returns the resampling matrix [out, in] of torch's bicubic
// upsampling along one axis with the given scale factor.
func cubicWeights(in, out int, scale float64) []float64 {
	const a = -0.75
	c1 := func(x float64) float64 { return ((a+2)*x-(a+3))*x*x + 1 }
	c2 := func(x float64) float64 { return ((a*x-5*a)*x+8*a)*x - 4*a }
	m := make([]float64, out*in)
	for o := 0; o < out; o++ {
		src := (float64(o)+0.5)/scale - 0.5
		i0 := math.Floor(src)
		t := src - i0
		ws := [4]float64{c2(t + 1), c1(t), c1(1 - t), c2(2 - t)}
		for k, wk := range ws {
			i := min(max(int(i0)-1+k, 0), in-1)
			m[o*in+i] += wk
		}
	}
	return m
}

// interpolatePos returns the position table [1, 1+gh*gw, D] for an h x w
// input.
func (m *Model) interpolatePos(h, w int) (*gpu.Tensor, error) {
	c := m.Cfg
	e := m.W.E
	gh, gw := h/c.Patch, w/c.Patch
	g := c.Grid
	sh, sw := (float64(gh)+0.1)/float64(g), (float64(gw)+0.1)/float64(g)
	if int(math.Floor(float64(g)*sh)) != gh || int(math.Floor(float64(g)*sw)) != gw {
		return nil, fmt.Errorf("vit: interpolating the %dx%d position grid to %dx%d: size mismatch", g, g, gh, gw)
	}
	mat := m.interp[[2]int{gh, gw}]
	if mat == nil {
		rh, rw := cubicWeights(g, gh, sh), cubicWeights(g, gw, sw)
		kron := make([]float32, gh*gw*g*g)
		for oy := 0; oy < gh; oy++ {
			for ox := 0; ox < gw; ox++ {
				row := kron[(oy*gw+ox)*g*g:]
				for iy := 0; iy < g; iy++ {
					for ix := 0; ix < g; ix++ {
						row[iy*g+ix] = float32(rh[oy*g+iy] * rw[ox*g+ix])
					}
				}
			}
		}
		var err error
		e.Outside(func() { mat, err = e.Upload(gpu.Weights, kron, gh*gw, g*g) })
		if err != nil {
			return nil, err
		}
		m.interp[[2]int{gh, gw}] = mat
	}
	d := c.Width
	parts := e.Split(m.W.Get("pos_embed").Reshape(1+g*g, d), 0, 1, g*g) // [1, D], [G*G, D]
	grid := e.MatMul(mat, parts[1], false, false)                       // [gh*gw, D]
	return e.Concat(0, parts[0], grid).Reshape(1, 1+gh*gw, d), nil
}

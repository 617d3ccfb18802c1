package toyworld

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Palette of everything but the object colours (linear [0, 1] RGB).
var (
	outlineRGB = RGB{0.10, 0.10, 0.10}
	hatRGB     = RGB{0.55, 0.95, 0.45}
	popcornRGB = RGB{1.00, 0.96, 0.80}
	toyRGB     = RGB{0.00, 0.85, 0.85}
	plainRGB   = RGB{0.62, 0.62, 0.62}
	skyRGB     = RGB{0.60, 0.80, 0.96}
	grassRGB   = RGB{0.25, 0.58, 0.20}
	waterRGB   = RGB{0.10, 0.35, 0.62}
	waveRGB    = RGB{0.35, 0.60, 0.85}
	nightRGB   = RGB{0.10, 0.12, 0.38}
	nightGnd   = RGB{0.22, 0.20, 0.30}
	dSkyRGB    = RGB{0.98, 0.78, 0.50}
	sandRGB    = RGB{0.86, 0.70, 0.40}
)

// shadowFactor darkens the background under a jumping object.
const shadowFactor = 0.45

// superSample is the canvas resolution per grid pixel.
const superSample = 4

// canvas is the supersampled drawing surface: Grid*superSample squared.
type canvas struct {
	n  int
	px []RGB
}

func newCanvas() *canvas {
	n := Grid * superSample
	return &canvas{n: n, px: make([]RGB, n*n)}
}

// grid returns the grid coordinates of canvas pixel (i, j)'s centre.
func (c *canvas) grid(i int) float64 { return (float64(i) + 0.5) / superSample }

// box returns the canvas index range covering grid interval [a, b].
func (c *canvas) box(a, b float64) (int, int) {
	lo := max(0, int(math.Floor(a*superSample)))
	hi := min(c.n, int(math.Ceil(b*superSample))+1)
	return lo, hi
}

// mask is a set of canvas pixels over a bounding box.
type mask struct {
	x0, y0, w, h int
	on           []bool
}

func (m *mask) get(i, j int) bool {
	i, j = i-m.x0, j-m.y0
	return i >= 0 && j >= 0 && i < m.w && j < m.h && m.on[j*m.w+i]
}

// shape rasterises inside over the grid box [x0, x1] x [y0, y1].
func (c *canvas) shape(x0, x1, y0, y1 float64, inside func(x, y float64) bool) *mask {
	i0, i1 := c.box(x0, x1)
	j0, j1 := c.box(y0, y1)
	m := &mask{x0: i0, y0: j0, w: max(0, i1-i0), h: max(0, j1-j0)}
	m.on = make([]bool, m.w*m.h)
	for j := j0; j < j1; j++ {
		for i := i0; i < i1; i++ {
			m.on[(j-j0)*m.w+i-i0] = inside(c.grid(i), c.grid(j))
		}
	}
	return m
}

// dilate grows m by r canvas pixels (a disc).
func (m *mask) dilate(r int) *mask {
	d := &mask{x0: m.x0 - r, y0: m.y0 - r, w: m.w + 2*r, h: m.h + 2*r}
	d.on = make([]bool, d.w*d.h)
	for j := 0; j < m.h; j++ {
		for i := 0; i < m.w; i++ {
			if !m.on[j*m.w+i] {
				continue
			}
			for dy := -r; dy <= r; dy++ {
				for dx := -r; dx <= r; dx++ {
					if dx*dx+dy*dy <= r*r+r {
						d.on[(j+r+dy)*d.w+i+r+dx] = true
					}
				}
			}
		}
	}
	return d
}

// fill paints colour col (or colour(x, y) when col is nil) where m is on.
func (c *canvas) fill(m *mask, col func(x, y float64) RGB) {
	for j := 0; j < m.h; j++ {
		y := m.y0 + j
		if y < 0 || y >= c.n {
			continue
		}
		for i := 0; i < m.w; i++ {
			x := m.x0 + i
			if x < 0 || x >= c.n || !m.on[j*m.w+i] {
				continue
			}
			c.px[y*c.n+x] = col(c.grid(x), c.grid(y))
		}
	}
}

func solid(c RGB) func(x, y float64) RGB { return func(float64, float64) RGB { return c } }

// outlined paints m with col over a dark outline 0.75 grid pixels wide.
func (c *canvas) outlined(m *mask, col func(x, y float64) RGB) {
	c.fill(m.dilate(3), solid(outlineRGB))
	c.fill(m, col)
}

func (c RGB) scale(k float64) RGB { return RGB{c[0] * k, c[1] * k, c[2] * k} }

func (c RGB) shade(d float64) RGB {
	return RGB{clamp01(c[0] + d), clamp01(c[1] + d), clamp01(c[2] + d)}
}

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }

// background returns the background's colour at grid row y (every
// background is uniform along rows).
func (s Scene) background(y float64) RGB {
	var c RGB
	switch s.Background {
	case Plain:
		c = plainRGB
	case Grass:
		c = skyRGB
		if y >= s.Horizon {
			c = grassRGB
		}
	case Water:
		c = skyRGB
		if y >= waterSurface {
			c = waterRGB
			for _, w := range []float64{waterSurface, 24.5, 28} {
				if y >= w && y < w+0.8 {
					c = waveRGB
				}
			}
		}
	case Night:
		c = nightRGB
		if y >= s.Horizon {
			c = nightGnd
		}
	case Desert:
		c = dSkyRGB
		if y >= s.Horizon {
			c = sandRGB
		}
	}
	return c.shade(s.Shade)
}

// insideObject reports whether the normalised point (u, v) (the object's
// box is [-1, 1]^2, v down) is inside the class's silhouette.
func insideObject(class Class, look *Look, u, v float64) bool {
	switch class {
	case Ball:
		return u*u+v*v <= 1
	case Box:
		return math.Abs(u) <= 0.92 && math.Abs(v) <= 0.92
	case Star:
		if look != nil && look.Notch {
			// The upper-right arm (pointing at -18 degrees) is cut short.
			a := math.Atan2(v-0.1, u) * 180 / math.Pi
			if math.Abs(a+18) < 22 && math.Hypot(u, v-0.1) > 0.55 {
				return false
			}
		}
		return insideStar(u, v-0.1, 1.05, 0.45)
	case Cup:
		if v >= -0.8 && v <= 1 {
			half := 0.58 - 0.12*(v+0.8)/1.8
			if math.Abs(u+0.2) <= half {
				return true
			}
		}
		du, dv := u-0.42, v-0.05
		r := math.Hypot(du, dv)
		return du > 0 && r <= 0.5 && r >= 0.24
	case Cat:
		if u*u+(v-0.18)*(v-0.18) <= 0.82*0.82 {
			return true
		}
		au := math.Abs(u)
		return inTriangle(au, v, 0.78, -0.1, 0.62, -1.0, 0.12, -0.5)
	}
	return false
}

// detail reports interior marks drawn in the outline colour: the cat's
// eyes, the box's lid line, the cup's rim.
func detail(class Class, u, v float64) bool {
	switch class {
	case Cat:
		au := math.Abs(u)
		return (au-0.32)*(au-0.32)+(v-0.12)*(v-0.12) <= 0.17*0.17
	case Box:
		return math.Abs(v+0.45) < 0.09
	case Cup:
		return math.Abs(v+0.62) < 0.08
	}
	return false
}

// insideStar tests a five-pointed star (point up) of outer radius ro and
// inner radius ri centred at the origin.
func insideStar(u, v, ro, ri float64) bool {
	r := math.Hypot(u, v)
	if r > ro {
		return false
	}
	if r < ri {
		return true
	}
	a := math.Atan2(v, u) + math.Pi/2 // 0 at the top point
	seg := 2 * math.Pi / 10
	k := math.Floor(a / seg)
	a0 := k * seg
	r0, r1 := ro, ri
	if int(math.Mod(k+20, 2)) == 1 {
		r0, r1 = ri, ro
	}
	// The edge between (a0, r0) and (a0+seg, r1) in Cartesian coordinates.
	p0x, p0y := r0*math.Sin(a0), -r0*math.Cos(a0)
	p1x, p1y := r1*math.Sin(a0+seg), -r1*math.Cos(a0+seg)
	// Inside when on the origin's side of the edge.
	cross := func(ax, ay, bx, by, px, py float64) float64 { return (bx-ax)*(py-ay) - (by-ay)*(px-ax) }
	return cross(p0x, p0y, p1x, p1y, u, v)*cross(p0x, p0y, p1x, p1y, 0, 0) >= 0
}

func inTriangle(px, py, ax, ay, bx, by, cx, cy float64) bool {
	d1 := (px-bx)*(ay-by) - (ax-bx)*(py-by)
	d2 := (px-cx)*(by-cy) - (bx-cx)*(py-cy)
	d3 := (px-ax)*(cy-ay) - (cx-ax)*(py-ay)
	neg := d1 < 0 || d2 < 0 || d3 < 0
	pos := d1 > 0 || d2 > 0 || d3 > 0
	return !(neg && pos)
}

// objectFill returns the object's colour at grid point (x, y).
func (s Scene) objectFill() func(x, y float64) RGB {
	if s.Look == nil {
		return solid(s.Color.RGB())
	}
	l := *s.Look
	_, sy := s.halfExtents()
	top := s.bottom() - 2*sy
	return func(x, y float64) RGB {
		if l.StripeWidth > 0 {
			if p := math.Mod(y-top, l.StripePeriod); p >= l.StripePeriod-l.StripeWidth {
				return l.Stripe
			}
		}
		return l.Fill
	}
}

// paint draws the scene onto a fresh canvas.
func (s Scene) paint() *canvas {
	c := newCanvas()
	rows := make([]RGB, c.n)
	for j := range rows {
		rows[j] = s.background(c.grid(j))
		for i := 0; i < c.n; i++ {
			c.px[j*c.n+i] = rows[j]
		}
	}
	// bgAt is the background at a grid point (canvas row lookup).
	bgAt := func(y float64) RGB { return rows[min(c.n-1, max(0, int(y*superSample)))] }
	sx, sy := s.halfExtents()
	bottom := s.bottom()
	cx, cy := s.X, bottom-sy
	top := bottom - 2*sy

	shadow := func() {
		y := groundY + 0.8
		if s.Background == Water {
			y = waterSurface + 1.6
		}
		m := c.shape(cx-sx, cx+sx, y-1.5, y+1.5, func(x, yy float64) bool {
			u, v := (x-cx)/(0.85*sx), (yy-y)/1.1
			return u*u+v*v <= 1
		})
		c.fill(m, func(x, yy float64) RGB { return bgAt(yy).scale(shadowFactor) })
	}
	if s.Action == Jumping && s.Background != Water {
		shadow()
	}
	if s.Action == PlayingBall {
		tx, ty := s.toyCenter()
		// Accessories and the toy have no outline, so that they never join
		// the object's outlined silhouette.
		c.fill(c.shape(tx-toyRadius, tx+toyRadius, ty-toyRadius, ty+toyRadius, func(x, y float64) bool {
			return (x-tx)*(x-tx)+(y-ty)*(y-ty) <= toyRadius*toyRadius
		}), solid(toyRGB))
	}

	obj := c.shape(cx-sx, cx+sx, top, bottom, func(x, y float64) bool {
		return insideObject(s.Class, s.Look, (x-cx)/sx, (y-cy)/sy)
	})
	c.outlined(obj, s.objectFill())
	det := c.shape(cx-sx, cx+sx, top, bottom, func(x, y float64) bool {
		u, v := (x-cx)/sx, (y-cy)/sy
		return insideObject(s.Class, s.Look, u, v) && detail(s.Class, u, v)
	})
	c.fill(det, solid(outlineRGB))

	switch s.Accessory {
	case Hat:
		w := 0.72 * s.Size
		brim := c.shape(cx-w, cx+w, top-1.3, top+0.3, func(x, y float64) bool { return true })
		crown := c.shape(cx-0.42*s.Size, cx+0.42*s.Size, top-hatHeight, top-1.3, func(x, y float64) bool { return true })
		c.fill(brim, solid(hatRGB))
		c.fill(crown, solid(hatRGB))
	case Popcorn:
		type puff struct{ x, y, r float64 }
		w := 0.5 * math.Min(sx, s.Size*1.1)
		puffs := []puff{{cx - w, top - 0.2, 1.6}, {cx, top - 0.4, 1.7}, {cx + w, top - 0.2, 1.6}, {cx - w/2, top - 1.9, 1.5}, {cx + w/2, top - 1.9, 1.5}}
		m := c.shape(cx-w-1.7, cx+w+1.7, top-3.5, top+1.5, func(x, y float64) bool {
			for _, p := range puffs {
				if (x-p.x)*(x-p.x)+(y-p.y)*(y-p.y) <= p.r*p.r {
					return true
				}
			}
			return false
		})
		c.fill(m, solid(popcornRGB))
	}

	if s.Background == Water {
		// The water covers whatever is under its surface.
		for j := 0; j < c.n; j++ {
			if c.grid(j) < waterSurface {
				continue
			}
			for i := 0; i < c.n; i++ {
				c.px[j*c.n+i] = rows[j]
			}
		}
		if s.Action == Jumping {
			shadow()
		}
	}
	return c
}

// Render draws the scene at size x size pixels (size a divisor of 128 and
// a multiple of 32: 32, 64 or 128), averaging the supersampled canvas.
func Render(s Scene, size int) (*image.NRGBA, error) {
	vals, err := RenderFloat(s, size)
	if err != nil {
		return nil, err
	}
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	plane := size * size
	for j := 0; j < size; j++ {
		for i := 0; i < size; i++ {
			k := j*size + i
			img.SetNRGBA(i, j, color.NRGBA{R: to8(vals[k]), G: to8(vals[plane+k]), B: to8(vals[2*plane+k]), A: 255})
		}
	}
	return img, nil
}

func to8(v float32) uint8 { return uint8(math.Round(clamp01(float64(v)) * 255)) }

// RenderFloat draws the scene as planar RGB [3, size, size] in [0, 1].
func RenderFloat(s Scene, size int) ([]float32, error) {
	n := Grid * superSample
	if size <= 0 || size%Grid != 0 || n%size != 0 {
		return nil, fmt.Errorf("toyworld: render size %d: must be 32, 64 or 128", size)
	}
	c := s.paint()
	f := n / size
	out := make([]float32, 3*size*size)
	norm := 1 / float64(f*f)
	for j := 0; j < size; j++ {
		for i := 0; i < size; i++ {
			var acc RGB
			for dy := 0; dy < f; dy++ {
				for dx := 0; dx < f; dx++ {
					p := c.px[(j*f+dy)*n+i*f+dx]
					acc[0] += p[0]
					acc[1] += p[1]
					acc[2] += p[2]
				}
			}
			for ch := 0; ch < 3; ch++ {
				out[ch*size*size+j*size+i] = float32(acc[ch] * norm)
			}
		}
	}
	return out, nil
}

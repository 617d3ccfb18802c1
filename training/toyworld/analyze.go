package toyworld

import (
	"fmt"
	"image"
	"math"
	"sort"
	"sync"
)

// Pixels is an image read at the scores' resolution: planar RGB
// [3, 32, 32] in [0, 1].
type Pixels [3 * Grid * Grid]float64

func (p *Pixels) at(x, y int) RGB {
	k := y*Grid + x
	return RGB{p[k], p[Grid*Grid+k], p[2*Grid*Grid+k]}
}

// PixelsFromImage box-averages img (square, a multiple of 32 pixels a side)
// down to 32x32.
func PixelsFromImage(img image.Image) (*Pixels, error) {
	b := img.Bounds()
	n := b.Dx()
	if n != b.Dy() || n%Grid != 0 || n == 0 {
		return nil, fmt.Errorf("toyworld: image %dx%d: scores need a square image, a multiple of 32 pixels a side", b.Dx(), b.Dy())
	}
	f := n / Grid
	p := &Pixels{}
	norm := 1 / (65535 * float64(f*f))
	for y := 0; y < Grid; y++ {
		for x := 0; x < Grid; x++ {
			var acc [3]float64
			for dy := 0; dy < f; dy++ {
				for dx := 0; dx < f; dx++ {
					r, g, bb, _ := img.At(b.Min.X+x*f+dx, b.Min.Y+y*f+dy).RGBA()
					acc[0] += float64(r)
					acc[1] += float64(g)
					acc[2] += float64(bb)
				}
			}
			for c := 0; c < 3; c++ {
				p[c*Grid*Grid+y*Grid+x] = acc[c] * norm
			}
		}
	}
	return p, nil
}

// PixelsFromFloat box-averages planar RGB [3, n, n] in [0, 1] (n a
// multiple of 32) down to 32x32.
func PixelsFromFloat(v []float32, n int) (*Pixels, error) {
	if n <= 0 || n%Grid != 0 || len(v) != 3*n*n {
		return nil, fmt.Errorf("toyworld: %d values are not a [3, %d, %d] image with a side a multiple of 32", len(v), n, n)
	}
	f := n / Grid
	p := &Pixels{}
	norm := 1 / float64(f*f)
	for c := 0; c < 3; c++ {
		for y := 0; y < Grid; y++ {
			for x := 0; x < Grid; x++ {
				acc := 0.0
				for dy := 0; dy < f; dy++ {
					for dx := 0; dx < f; dx++ {
						acc += float64(v[c*n*n+(y*f+dy)*n+x*f+dx])
					}
				}
				p[c*Grid*Grid+y*Grid+x] = clamp01(acc * norm)
			}
		}
	}
	return p, nil
}

// label is what a pixel looks like.
type label uint8

const (
	lBackground label = iota
	lUnknown          // far from the background, near no palette colour (edges, blur)
	lOutline
	lHat
	lPopcorn
	lToy
	lMagenta
	lColor0 // lColor0 + Color for the object colours
)

func (l label) objectish() bool {
	return l == lUnknown || l == lOutline || l == lMagenta || l >= lColor0
}

func (l label) fill() bool { return l == lMagenta || l >= lColor0 }

// Thresholds of the pixel classifier (Euclidean RGB distances in [0, 1]
// units).
const (
	fgDistance      = 0.15 // nearer than this to the row's background: background
	paletteDistance = 0.30 // farther than this from every palette colour: unknown
)

// Analysis is what the scores read off one image: the background, the
// pixel labels, and the object (the largest connected set of object-like
// pixels) with its bounding box.
type Analysis struct {
	// BG holds the probability of each background.
	BG     [5]float64
	rowBG  [Grid]RGB
	labels [Grid * Grid]label
	// body marks the object's pixels.
	body [Grid * Grid]bool
	// Area is the object's pixel count (0: no object found).
	Area                   int
	top, bottom, left, rgt int // inclusive bounding box of the body
}

// minArea is the smallest pixel count that counts as an object.
const minArea = 10

// Analyze labels the pixels of p and finds the object.
func Analyze(p *Pixels) *Analysis {
	a := &Analysis{}
	// The background of each row is the median of its three outermost
	// pixels on either side: objects stay 2.5 grid pixels from the border.
	for y := 0; y < Grid; y++ {
		for c := 0; c < 3; c++ {
			var v []float64
			for _, x := range []int{0, 1, 2, Grid - 3, Grid - 2, Grid - 1} {
				v = append(v, p[c*Grid*Grid+y*Grid+x])
			}
			sort.Float64s(v)
			a.rowBG[y][c] = (v[2] + v[3]) / 2
		}
	}
	a.BG = a.classifyBackground()
	for y := 0; y < Grid; y++ {
		for x := 0; x < Grid; x++ {
			a.labels[y*Grid+x] = classifyPixel(p.at(x, y), a.rowBG[y])
		}
	}
	a.findBody()
	return a
}

// classifyPixel labels one pixel given its row's background: the palette
// colour C (object colours, outline, hat, popcorn, toy) for which the
// pixel is nearest to the segment from mix(bg, C, minMix) to C — a pure
// colour or its anti-aliased blend with the background — if within
// paletteDistance, else unknown. Blends of an object colour with the
// outline (the dark inner edge of every object) count as outline, and so
// does a darkened background (the jumping shadow, blurred outlines).
func classifyPixel(px, bg RGB) label {
	if dist(px, bg) < fgDistance {
		return lBackground
	}
	best, bd := lUnknown, paletteDistance
	try := func(l label, c RGB) {
		if d := segmentDist(px, bg, c); d < bd {
			best, bd = l, d
		}
	}
	try(lOutline, outlineRGB)
	try(lHat, hatRGB)
	try(lPopcorn, popcornRGB)
	try(lToy, toyRGB)
	try(lMagenta, magentaRGB)
	for _, c := range Colors {
		try(lColor0+label(c), c.RGB())
	}
	if best != lOutline {
		// Dark blends of a fill with the outline.
		for _, c := range append([]RGB{magentaRGB}, fillRGBs()...) {
			if d := segmentDist(px, outlineRGB, c); d < bd && dist(px, c) > d+0.05 {
				best, bd = lOutline, d
			}
		}
	}
	return best
}

func fillRGBs() []RGB {
	out := make([]RGB, len(Colors))
	for i, c := range Colors {
		out[i] = c.RGB()
	}
	return out
}

// minMix is the smallest share of a colour in a blend with the background
// that still labels a pixel with that colour.
const minMix = 0.4

// segmentDist is the distance from p to the segment of blends
// a*c + (1-a)*bg, a in [minMix, 1].
func segmentDist(p, bg, c RGB) float64 {
	var d, q RGB
	dd := 0.0
	for i := range d {
		d[i] = c[i] - bg[i]
		q[i] = p[i] - bg[i]
		dd += d[i] * d[i]
	}
	a := 1.0
	if dd > 1e-12 {
		a = (q[0]*d[0] + q[1]*d[1] + q[2]*d[2]) / dd
	}
	a = math.Max(minMix, math.Min(1, a))
	return dist(p, RGB{bg[0] + a*d[0], bg[1] + a*d[1], bg[2] + a*d[2]})
}

func dist(a, b RGB) float64 {
	d0, d1, d2 := a[0]-b[0], a[1]-b[1], a[2]-b[2]
	return math.Sqrt(d0*d0 + d1*d1 + d2*d2)
}

// bgBands are the rows whose backgrounds classify the setting: well above
// and well below every horizon.
var bgBands = [2][2]int{{1, 10}, {28, 32}}

var bgPrototypes = sync.OnceValue(func() [5][2]RGB {
	var out [5][2]RGB
	for _, b := range Backgrounds {
		s := Scene{Background: b, Horizon: 16.5}
		for k, band := range bgBands {
			var acc RGB
			n := 0
			for y := band[0]; y < band[1]; y++ {
				for sub := 0; sub < superSample; sub++ {
					c := s.background(float64(y) + (float64(sub)+0.5)/superSample)
					for i := range acc {
						acc[i] += c[i]
					}
					n++
				}
			}
			out[b][k] = acc.scale(1 / float64(n))
		}
	}
	return out
})

// bgTemperature sets how sharply background distances turn into
// probabilities (squared distance units).
const bgTemperature = 0.01

func (a *Analysis) classifyBackground() [5]float64 {
	var obs [2]RGB
	for k, band := range bgBands {
		for y := band[0]; y < band[1]; y++ {
			for i := range obs[k] {
				obs[k][i] += a.rowBG[y][i] / float64(band[1]-band[0])
			}
		}
	}
	protos := bgPrototypes()
	var logits [5]float64
	for b := range protos {
		d := dist(obs[0], protos[b][0])
		e := dist(obs[1], protos[b][1])
		logits[b] = -(d*d + e*e) / bgTemperature
	}
	return softmax5(logits)
}

func softmax5(l [5]float64) [5]float64 {
	m := l[0]
	for _, v := range l {
		m = math.Max(m, v)
	}
	var out [5]float64
	s := 0.0
	for i, v := range l {
		out[i] = math.Exp(v - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// Background returns the most likely background.
func (a *Analysis) Background() Background {
	best := 0
	for i, p := range a.BG {
		if p > a.BG[best] {
			best = i
		}
	}
	return Background(best)
}

// findBody keeps the largest 4-connected set of object-like pixels.
func (a *Analysis) findBody() {
	seen := [Grid * Grid]bool{}
	var best []int
	for start := range a.labels {
		if seen[start] || !a.labels[start].objectish() {
			continue
		}
		comp := []int{start}
		seen[start] = true
		for i := 0; i < len(comp); i++ {
			k := comp[i]
			x, y := k%Grid, k/Grid
			for _, d := range [4][2]int{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
				nx, ny := x+d[0], y+d[1]
				if nx < 0 || ny < 0 || nx >= Grid || ny >= Grid {
					continue
				}
				n := ny*Grid + nx
				if !seen[n] && a.labels[n].objectish() {
					seen[n] = true
					comp = append(comp, n)
				}
			}
		}
		if len(comp) > len(best) {
			best = comp
		}
	}
	if len(best) < minArea {
		return
	}
	a.Area = len(best)
	a.top, a.left, a.bottom, a.rgt = Grid, Grid, -1, -1
	for _, k := range best {
		a.body[k] = true
		x, y := k%Grid, k/Grid
		a.top, a.bottom = min(a.top, y), max(a.bottom, y)
		a.left, a.rgt = min(a.left, x), max(a.rgt, x)
	}
}

// core reports whether body pixel k has all four neighbours in the body
// (away from the blurred outline).
func (a *Analysis) core(k int) bool {
	x, y := k%Grid, k/Grid
	if !a.body[k] || x == 0 || y == 0 || x == Grid-1 || y == Grid-1 {
		return false
	}
	return a.body[k-1] && a.body[k+1] && a.body[k-Grid] && a.body[k+Grid]
}

// fillCounts counts the body's core fill pixels by label.
func (a *Analysis) fillCounts() (counts map[label]int, total int) {
	counts = map[label]int{}
	for k := range a.body {
		if a.core(k) && a.labels[k].fill() {
			counts[a.labels[k]]++
			total++
		}
	}
	return counts, total
}

// count counts pixels of label l within rows [y0, y1] (clamped).
func (a *Analysis) count(l label, y0, y1 int) int {
	n := 0
	for y := max(0, y0); y <= min(Grid-1, y1); y++ {
		for x := 0; x < Grid; x++ {
			if a.labels[y*Grid+x] == l {
				n++
			}
		}
	}
	return n
}

// floating reports whether the body looks cut by the water's surface: the
// background is water and the body reaches the surface.
func (a *Analysis) floating() bool {
	return a.Background() == Water && a.bottom >= int(waterSurface)-2
}

// shapeCells is the side of the normalised silhouette grid.
const shapeCells = 8

// silhouette describes the body's shape on a shapeCells^2 grid spanning
// its bounding box, which undoes size, position and the lying-down squash:
// the share of each cell covered by the body, then the share covered by
// dark marks inside it (the cat's eyes, the box's lid, the cup's rim).
func (a *Analysis) silhouette() []float64 {
	cells := shapeCells * shapeCells
	out := make([]float64, 2*cells)
	if a.Area == 0 {
		return out
	}
	w, h := float64(a.rgt-a.left+1), float64(a.bottom-a.top+1)
	const sub = 4
	for cy := 0; cy < shapeCells; cy++ {
		for cx := 0; cx < shapeCells; cx++ {
			on, dark := 0, 0
			for sy := 0; sy < sub; sy++ {
				for sx := 0; sx < sub; sx++ {
					x := float64(a.left) + w*(float64(cx)+(float64(sx)+0.5)/sub)/shapeCells
					y := float64(a.top) + h*(float64(cy)+(float64(sy)+0.5)/sub)/shapeCells
					k := int(y)*Grid + int(x)
					if a.body[k] {
						on++
						if a.core(k) && !a.labels[k].fill() {
							dark++
						}
					}
				}
			}
			out[cy*shapeCells+cx] = float64(on) / (sub * sub)
			out[cells+cy*shapeCells+cx] = float64(dark) / (sub * sub)
		}
	}
	return out
}

// Blur applies a separable Gaussian blur of sigma pixels to planar RGB
// [3, n, n] (edges clamped).
func Blur(v []float32, n int, sigma float64) []float32 {
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	sum := 0.0
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	pass := func(src []float32, dx, dy int) []float32 {
		out := make([]float32, len(src))
		for c := 0; c < 3; c++ {
			for y := 0; y < n; y++ {
				for x := 0; x < n; x++ {
					acc := 0.0
					for i, w := range k {
						xx := min(n-1, max(0, x+(i-r)*dx))
						yy := min(n-1, max(0, y+(i-r)*dy))
						acc += w * float64(src[c*n*n+yy*n+xx])
					}
					out[c*n*n+y*n+x] = float32(acc)
				}
			}
		}
		return out
	}
	return pass(pass(v, 1, 0), 0, 1)
}

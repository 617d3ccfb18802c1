package app

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// curveColors are the series colours, in series name order.
var curveColors = []color.NRGBA{
	{0x4f, 0x8c, 0xff, 0xff}, {0xff, 0x8a, 0x3d, 0xff}, {0x3c, 0xc4, 0x7c, 0xff},
	{0xd9, 0x4f, 0xd0, 0xff}, {0xe0, 0xc0, 0x30, 0xff},
}

// Curve is a small line chart of a run's metric series (loss, reward, …),
// drawn into a raster. Each series is scaled to its own ranges; the legend
// gives each series' last value and range. Points may be added while it is
// shown.
type Curve struct {
	widget.BaseWidget
	mu     sync.Mutex
	series map[string][]store.Point
	legend *widget.Label
	raster *canvas.Raster
}

// NewCurve returns an empty curve.
func NewCurve() *Curve {
	c := &Curve{series: map[string][]store.Point{}}
	c.legend = widget.NewLabel("")
	c.legend.TextStyle = fyne.TextStyle{Monospace: true}
	c.legend.Truncation = fyne.TextTruncateEllipsis
	c.raster = canvas.NewRaster(c.draw)
	c.ExtendBaseWidget(c)
	return c
}

// Set replaces every series.
func (c *Curve) Set(series map[string][]store.Point) {
	c.mu.Lock()
	c.series = map[string][]store.Point{}
	for k, v := range series {
		c.series[k] = slices.Clone(v)
	}
	c.mu.Unlock()
	c.changed()
}

// Add appends one value per named series at step (a step a series already
// has replaces its value, as the store does).
func (c *Curve) Add(step int, values map[string]float64) {
	if len(values) == 0 {
		return
	}
	c.mu.Lock()
	for k, v := range values {
		pts := c.series[k]
		i, found := slices.BinarySearchFunc(pts, step, func(p store.Point, s int) int { return p.Step - s })
		if found {
			pts[i].Value = v
		} else {
			pts = slices.Insert(pts, i, store.Point{Step: step, Value: v})
		}
		c.series[k] = pts
	}
	c.mu.Unlock()
	c.changed()
}

// Series returns a copy of one series.
func (c *Curve) Series(name string) []store.Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.series[name])
}

// Empty reports whether the curve has no point.
func (c *Curve) Empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.series) == 0
}

func (c *Curve) names() []string {
	names := make([]string, 0, len(c.series))
	for k := range c.series {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func (c *Curve) changed() {
	c.mu.Lock()
	var parts []string
	for i, name := range c.names() {
		pts := c.series[name]
		if len(pts) == 0 {
			continue
		}
		lo, hi := finiteRange(pts)
		mark := []string{"■", "●", "▲", "◆", "★"}[i%5]
		parts = append(parts, fmt.Sprintf("%s %s %.4g (%.3g…%.3g)", mark, name, pts[len(pts)-1].Value, lo, hi))
	}
	c.mu.Unlock()
	c.legend.SetText(strings.Join(parts, "   "))
	c.raster.Refresh()
}

// finiteRange is the range of the finite values (0, 0 when none).
func finiteRange(pts []store.Point) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		if !math.IsNaN(p.Value) && !math.IsInf(p.Value, 0) {
			lo, hi = min(lo, p.Value), max(hi, p.Value)
		}
	}
	if lo > hi {
		return 0, 0
	}
	return lo, hi
}

// draw renders the series into a w x h image: a light frame, then each
// series as a 2-pixel polyline over its own value range and its own step
// range (a demo run's DreamBooth loss per step and DDPO reward per epoch
// both span the width). Non-finite values break the line.
func (c *Curve) draw(w, h int) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	if w < 4 || h < 4 {
		return img
	}
	frame := color.NRGBA{0x80, 0x80, 0x80, 0x60}
	for x := 0; x < w; x++ {
		img.SetNRGBA(x, h-1, frame)
		img.SetNRGBA(x, 0, frame)
	}
	for y := 0; y < h; y++ {
		img.SetNRGBA(0, y, frame)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pad := 4.0
	for i, name := range c.names() {
		pts := c.series[name]
		if len(pts) == 0 {
			continue
		}
		s0, s1 := pts[0].Step, pts[len(pts)-1].Step
		sx := func(step int) float64 {
			if s1 == s0 {
				return float64(w) / 2
			}
			return pad + float64(step-s0)/float64(s1-s0)*(float64(w)-2*pad)
		}
		lo, hi := finiteRange(pts)
		sy := func(v float64) float64 {
			if hi == lo {
				return float64(h) / 2
			}
			return float64(h) - pad - (v-lo)/(hi-lo)*(float64(h)-2*pad)
		}
		col := curveColors[i%len(curveColors)]
		var px, py float64
		have := false
		for _, p := range pts {
			if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				have = false
				continue
			}
			x, y := sx(p.Step), sy(p.Value)
			if have {
				drawLine(img, px, py, x, y, col)
			} else {
				dot(img, x, y, col)
			}
			px, py, have = x, y, true
		}
	}
	return img
}

// drawLine draws a 2-pixel line by stepping along its longer axis.
func drawLine(img *image.NRGBA, x0, y0, x1, y1 float64, col color.NRGBA) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		dot(img, x0+(x1-x0)*t, y0+(y1-y0)*t, col)
	}
}

func dot(img *image.NRGBA, x, y float64, col color.NRGBA) {
	xi, yi := int(x), int(y)
	for dy := 0; dy < 2; dy++ {
		for dx := 0; dx < 2; dx++ {
			if image.Pt(xi+dx, yi+dy).In(img.Rect) {
				img.SetNRGBA(xi+dx, yi+dy, col)
			}
		}
	}
}

func (c *Curve) CreateRenderer() fyne.WidgetRenderer {
	bg := canvas.NewRectangle(color.NRGBA{0x80, 0x80, 0x80, 0x18})
	return widget.NewSimpleRenderer(container.NewBorder(nil, c.legend, nil, nil, container.NewStack(bg, c.raster)))
}

// MinSize keeps room for a readable curve.
func (c *Curve) MinSize() fyne.Size {
	return fyne.NewSize(260, 120)
}

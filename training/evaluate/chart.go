package evaluate

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/instructbooth/instructbooth/model/imgproc"
)

// Figures drawn with image/draw and basicfont's 7x13 bitmap face.

var (
	white = color.NRGBA{255, 255, 255, 255}
	black = color.NRGBA{0, 0, 0, 255}
	grey  = color.NRGBA{160, 160, 160, 255}
	// runColors cycle over runs (colour-blind-safe Okabe-Ito order).
	runColors = []color.NRGBA{
		{0, 114, 178, 255}, {230, 159, 0, 255}, {0, 158, 115, 255}, {204, 121, 167, 255},
		{86, 180, 233, 255}, {213, 94, 0, 255}, {240, 228, 66, 255}, {0, 0, 0, 255},
	}
)

const (
	glyphW = 7  // basicfont.Face7x13 advance
	lineH  = 13 // its height
)

// text draws s with its baseline at y, starting at x.
func text(dst draw.Image, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return len([]rune(s)) * glyphW }

func fillRect(dst draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(dst, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func hline(dst draw.Image, x0, x1, y int, c color.Color) {
	fillRect(dst, image.Rect(min(x0, x1), y, max(x0, x1)+1, y+1), c)
}

func vline(dst draw.Image, x, y0, y1 int, c color.Color) {
	fillRect(dst, image.Rect(x, min(y0, y1), x+1, max(y0, y1)+1), c)
}

// Chart geometry.
const (
	chartPanelH = 260
	chartTop    = 34 // title band
	chartBottom = 16
	chartLeft   = 58 // y-axis labels
	chartRight  = 12
)

// ChartSize is the bar chart's size for nMetrics panels and nRuns runs.
func ChartSize(nMetrics, nRuns int) (w, h int) {
	return nMetrics * chartPanelW(nRuns), chartPanelH + 10 + nRuns*(lineH+4) + 6
}

func chartPanelW(nRuns int) int { return max(190, chartLeft+chartRight+nRuns*56) }

// Chart draws one panel per metric with a bar per run (mean), an error
// bar (± standard error), the value over the bar and a y axis with the
// range's ends and zero; the legend below names the runs' colours.
func (r *Report) Chart() *image.NRGBA {
	nm, nr := max(1, len(r.Metrics)), max(1, len(r.Runs))
	w, h := ChartSize(nm, nr)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	fillRect(img, img.Bounds(), white)
	pw := chartPanelW(nr)
	for mi, m := range r.Metrics {
		px := mi * pw
		x0, x1 := px+chartLeft, px+pw-chartRight
		y0, y1 := chartTop, chartPanelH-chartBottom
		text(img, px+(pw-textWidth(m))/2, 18, m, black)
		lo, hi := 0.0, 0.0
		sums := make([]struct{ mean, se float64 }, len(r.Runs))
		for i, run := range r.Runs {
			s := r.Summary(run, m)
			sums[i].mean, sums[i].se = s.Mean, s.StdErr
			if !math.IsNaN(s.Mean) {
				lo, hi = math.Min(lo, s.Mean-s.StdErr), math.Max(hi, s.Mean+s.StdErr)
			}
		}
		if hi == lo {
			hi = lo + 1
		}
		span := hi - lo
		hi += 0.12 * span
		if lo < 0 {
			lo -= 0.12 * span
		}
		yOf := func(v float64) int { return y1 - int(math.Round((v-lo)/(hi-lo)*float64(y1-y0))) }
		vline(img, x0, y0, y1, black)
		for _, v := range []float64{lo, 0, hi} {
			y := yOf(v)
			hline(img, x0-4, x0, y, black)
			if v == 0 {
				hline(img, x0, x1, y, grey)
			}
			l := fmt.Sprintf("%.3g", v)
			text(img, x0-6-textWidth(l), y+4, l, black)
		}
		slot := float64(x1-x0) / float64(len(r.Runs))
		bw := max(4, int(slot*0.6))
		for i, s := range sums {
			if math.IsNaN(s.mean) {
				continue
			}
			cx := x0 + int(slot*(float64(i)+0.5))
			c := runColors[i%len(runColors)]
			ya, yb := yOf(0), yOf(s.mean)
			fillRect(img, image.Rect(cx-bw/2, min(ya, yb), cx-bw/2+bw, max(ya, yb)+1), c)
			if s.se > 0 {
				yl, yh := yOf(s.mean-s.se), yOf(s.mean+s.se)
				vline(img, cx, yl, yh, black)
				hline(img, cx-4, cx+4, yl, black)
				hline(img, cx-4, cx+4, yh, black)
			}
			l := fmt.Sprintf("%.3g", s.mean)
			top := min(yb, yOf(s.mean+s.se))
			if s.mean < 0 {
				top = yOf(0)
			}
			text(img, cx-textWidth(l)/2, max(lineH, top-3), l, black)
		}
	}
	ly := chartPanelH + 10
	for i, run := range r.Runs {
		y := ly + i*(lineH+4)
		fillRect(img, image.Rect(chartLeft, y, chartLeft+12, y+12), runColors[i%len(runColors)])
		text(img, chartLeft+18, y+11, run, black)
	}
	return img
}

// WriteChart encodes Chart as PNG.
func (r *Report) WriteChart(w io.Writer) error { return png.Encode(w, r.Chart()) }

// Grid geometry.
const (
	gridThumb  = 128 // longest side of a thumbnail
	gridGap    = 4
	gridRunGap = 12
	gridLabelW = 34 // prompt numbers
	gridHeadH  = 20 // run names
)

// GridSize is the image grid's size for the report's samples.
func (r *Report) GridSize() (w, h, tw, th int) {
	tw, th = gridThumb, gridThumb
	if len(r.Samples) > 0 {
		b := r.Samples[0].Image.Bounds()
		if b.Dx() >= b.Dy() {
			tw, th = min(gridThumb, b.Dx()), max(1, min(gridThumb, b.Dx())*b.Dy()/b.Dx())
		} else {
			th, tw = min(gridThumb, b.Dy()), max(1, min(gridThumb, b.Dy())*b.Dx()/b.Dy())
		}
	}
	per := r.perPrompt()
	w = gridLabelW + len(r.Runs)*(per*(tw+gridGap)) + max(0, len(r.Runs)-1)*gridRunGap
	h = gridHeadH + len(r.Prompts)*(th+gridGap)
	return w, h, tw, th
}

func (r *Report) perPrompt() int {
	n := 0
	for _, s := range r.Samples {
		n = max(n, s.Index+1)
	}
	return n
}

// Grid lays the images out with a row per prompt (numbered as in the
// Markdown tables) and, per run, a column per image, under the run's
// name; thumbnails are Pillow-bicubic downscales to 128 px.
func (r *Report) Grid() *image.NRGBA {
	w, h, tw, th := r.GridSize()
	img := image.NewNRGBA(image.Rect(0, 0, max(1, w), max(1, h)))
	fillRect(img, img.Bounds(), white)
	per := r.perPrompt()
	runX := func(ri int) int { return gridLabelW + ri*(per*(tw+gridGap)+gridRunGap) }
	runIdx := map[string]int{}
	for i, run := range r.Runs {
		runIdx[run] = i
		x := runX(i)
		span := per*(tw+gridGap) - gridGap
		l := run
		if maxc := span / glyphW; len([]rune(l)) > maxc && maxc > 0 {
			l = string([]rune(l)[:maxc])
		}
		text(img, x+(span-textWidth(l))/2, 14, l, runColors[i%len(runColors)])
	}
	for p := range r.Prompts {
		l := fmt.Sprint(p + 1)
		text(img, gridLabelW-6-textWidth(l), gridHeadH+p*(th+gridGap)+th/2+4, l, black)
	}
	for _, s := range r.Samples {
		t := imgproc.ToRGB8(s.Image)
		if t.W != tw || t.H != th {
			t = t.ResizeBicubic(tw, th)
		}
		x := runX(runIdx[s.Run]) + s.Index*(tw+gridGap)
		y := gridHeadH + s.Prompt*(th+gridGap)
		draw.Draw(img, image.Rect(x, y, x+tw, y+th), t.NRGBA(), image.Point{}, draw.Src)
	}
	return img
}

// WriteGrid encodes Grid as PNG.
func (r *Report) WriteGrid(w io.Writer) error { return png.Encode(w, r.Grid()) }

package app

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"github.com/instructbooth/instructbooth/store"
)

// SeedDemo fills a database that has no subjects with three demo subjects
// whose photos are drawn here (a plush dog, a mug, a cat; simple shapes on
// coloured backgrounds, five poses each), so that a first look or a
// screenshot shows a populated library, and, when this build carries the
// toy world's model, with the toy subject and its base model
// (SeedToyWorld), which the app can train for real. It does nothing when
// the database already has subjects.
func SeedDemo(db *store.DB) error { return SeedDemoWith(db, defaultToyModel()) }

// SeedDemoWith is SeedDemo with the toy model's folder from toyModel (nil:
// no toy world).
func SeedDemoWith(db *store.DB, toyModel func() (string, error)) error {
	subs, err := db.Subjects()
	if err != nil || len(subs) > 0 {
		return err
	}
	if toyModel != nil {
		dir, err := toyModel()
		if err != nil {
			return fmt.Errorf("toy world demo: %w", err)
		}
		if _, _, err := SeedToyWorld(db, dir); err != nil {
			return err
		}
	}
	demos := []struct {
		name, class, desc string
		draw              func(img *image.NRGBA, pose int)
	}{
		{"Biscuit", "dog", "Corgi plushie with a red scarf (demo drawing)", drawPlush},
		{"Blue mug", "mug", "Enamel mug with a white rim (demo drawing)", drawMug},
		{"Pixel", "cat", "Grey cat with green eyes (demo drawing)", drawCat},
	}
	for _, d := range demos {
		s := store.Subject{Name: d.name, Class: d.class, Identifier: DefaultIdentifier, Description: d.desc}
		if err := db.PutSubject(&s); err != nil {
			return err
		}
		var imgs []store.Image
		for pose := 0; pose < 5; pose++ {
			img := image.NewNRGBA(image.Rect(0, 0, 256, 256))
			background(img, pose)
			d.draw(img, pose)
			var buf bytes.Buffer
			if err := png.Encode(&buf, img); err != nil {
				return err
			}
			imgs = append(imgs, store.Image{Name: fmt.Sprintf("%s-%d.png", d.class, pose+1), Data: buf.Bytes()})
		}
		if _, _, err := db.AddSubjectImages(s.ID, imgs); err != nil {
			return err
		}
	}
	return nil
}

// background paints a vertical gradient whose hue depends on the pose.
func background(img *image.NRGBA, pose int) {
	top := []color.NRGBA{{200, 225, 245, 255}, {245, 225, 200, 255}, {210, 240, 210, 255}, {235, 215, 240, 255}, {240, 240, 220, 255}}[pose%5]
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		t := float64(y) / float64(b.Dy())
		c := color.NRGBA{uint8(float64(top.R) * (1 - 0.3*t)), uint8(float64(top.G) * (1 - 0.3*t)), uint8(float64(top.B) * (1 - 0.3*t)), 255}
		for x := b.Min.X; x < b.Max.X; x++ {
			img.SetNRGBA(x, y, c)
		}
	}
}

// fill paints every pixel for which in(x, y) holds.
func fill(img *image.NRGBA, c color.NRGBA, in func(x, y float64) bool) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if in(float64(x)+0.5, float64(y)+0.5) {
				img.SetNRGBA(x, y, c)
			}
		}
	}
}

func disc(cx, cy, r float64) func(x, y float64) bool {
	return func(x, y float64) bool { return math.Hypot(x-cx, y-cy) <= r }
}

func ellipse(cx, cy, rx, ry float64) func(x, y float64) bool {
	return func(x, y float64) bool { dx, dy := (x-cx)/rx, (y-cy)/ry; return dx*dx+dy*dy <= 1 }
}

func rect(x0, y0, x1, y1 float64) func(x, y float64) bool {
	return func(x, y float64) bool { return x >= x0 && x < x1 && y >= y0 && y < y1 }
}

// triangle is the set inside the triangle abc.
func triangle(ax, ay, bx, by, cx, cy float64) func(x, y float64) bool {
	side := func(px, py, qx, qy, x, y float64) float64 { return (qx-px)*(y-py) - (qy-py)*(x-px) }
	return func(x, y float64) bool {
		d1, d2, d3 := side(ax, ay, bx, by, x, y), side(bx, by, cx, cy, x, y), side(cx, cy, ax, ay, x, y)
		neg, pos := d1 < 0 || d2 < 0 || d3 < 0, d1 > 0 || d2 > 0 || d3 > 0
		return !(neg && pos)
	}
}

func drawPlush(img *image.NRGBA, pose int) {
	dx := float64(pose-2) * 18
	tan := color.NRGBA{222, 160, 90, 255}
	fill(img, tan, ellipse(128+dx, 170, 62, 48))
	fill(img, tan, disc(128+dx, 100, 46))
	fill(img, tan, triangle(92+dx, 80, 100+dx, 30, 122+dx, 66))
	fill(img, tan, triangle(134+dx, 66, 156+dx, 30, 164+dx, 80))
	fill(img, color.NRGBA{250, 240, 225, 255}, ellipse(128+dx, 118, 22, 16))
	fill(img, color.NRGBA{200, 40, 40, 255}, rect(86+dx, 136, 170+dx, 150))
	fill(img, color.NRGBA{40, 30, 30, 255}, disc(112+dx, 96, 5))
	fill(img, color.NRGBA{40, 30, 30, 255}, disc(144+dx, 96, 5))
	fill(img, color.NRGBA{40, 30, 30, 255}, disc(128+dx, 112, 6))
}

func drawMug(img *image.NRGBA, pose int) {
	dx := float64(pose-2) * 14
	blue := color.NRGBA{40, 90, 190, 255}
	fill(img, blue, func(x, y float64) bool {
		return disc(172+dx, 135, 34)(x, y) && !disc(172+dx, 135, 20)(x, y)
	})
	fill(img, blue, rect(70+dx, 80, 176+dx, 200))
	fill(img, color.NRGBA{245, 245, 245, 255}, rect(70+dx, 80, 176+dx, 90))
	fill(img, color.NRGBA{30, 60, 140, 255}, ellipse(123+dx, 200, 53, 8))
	if pose%2 == 1 {
		fill(img, color.NRGBA{255, 255, 255, 200}, disc(100+dx, 140, 8))
	}
}

func drawCat(img *image.NRGBA, pose int) {
	dx := float64(pose-2) * 16
	grey := color.NRGBA{130, 130, 140, 255}
	fill(img, grey, ellipse(128+dx, 180, 58, 44))
	fill(img, grey, disc(128+dx, 108, 44))
	fill(img, grey, triangle(90+dx, 90, 96+dx, 40, 122+dx, 70))
	fill(img, grey, triangle(134+dx, 70, 160+dx, 40, 166+dx, 90))
	fill(img, color.NRGBA{90, 190, 90, 255}, ellipse(112+dx, 102, 8, 10))
	fill(img, color.NRGBA{90, 190, 90, 255}, ellipse(144+dx, 102, 8, 10))
	fill(img, color.NRGBA{20, 20, 20, 255}, ellipse(112+dx, 102, 3, 8))
	fill(img, color.NRGBA{20, 20, 20, 255}, ellipse(144+dx, 102, 3, 8))
	fill(img, color.NRGBA{230, 140, 150, 255}, triangle(122+dx, 118, 134+dx, 118, 128+dx, 126))
}

//go:build ignore

// gen draws the app icon: a camera-lens ring around a spark, on a rounded
// violet square. Run: go run icons/gen.go (writes icons/icon.png).
package main

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
)

func main() {
	const n = 256
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	c := float64(n) / 2
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			dx, dy := float64(x)+0.5-c, float64(y)+0.5-c
			// Rounded square mask.
			qx, qy := math.Max(math.Abs(dx)-80, 0), math.Max(math.Abs(dy)-80, 0)
			if math.Hypot(qx, qy) > 40 {
				continue
			}
			t := (float64(y) / n)
			col := color.NRGBA{uint8(90 + 60*t), uint8(60 + 20*t), uint8(200 - 40*t), 255}
			r := math.Hypot(dx, dy)
			if r > 70 && r < 86 {
				col = color.NRGBA{240, 240, 255, 255}
			}
			// Four-pointed spark.
			a := math.Abs(dx) + math.Abs(dy)*3
			b := math.Abs(dy) + math.Abs(dx)*3
			if a < 50 || b < 50 {
				col = color.NRGBA{255, 214, 90, 255}
			}
			img.SetNRGBA(x, y, col)
		}
	}
	f, err := os.Create("icons/icon.png")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		panic(err)
	}
}

package toyworld

import (
	"image"
	"image/draw"
	"math/rand/v2"
)

// Subject is a DreamBooth subject of the world: a particular instance of
// one of its classes with a look no base training image has.
type Subject struct {
	Class Class
	Look  *Look
}

// magenta is the subject's fill; no base-world object has it.
var magentaRGB = RGB{0.90, 0.10, 0.65}

// TheSubject is the built-in novel subject: a magenta star with yellow
// horizontal stripes (1.6 grid pixels every 4) and its upper-right arm cut
// short, named "sks star". Base-world stars are single-coloured and whole.
func TheSubject() Subject {
	return Subject{Class: Star, Look: &Look{
		Name: "striped notched star", Token: "sks",
		Fill: magentaRGB, Stripe: colorRGB[Yellow], StripeWidth: 1.6, StripePeriod: 4, Notch: true,
	}}
}

// Token is the identifier word of the subject.
func (s Subject) Token() string { return s.Look.Token }

// ClassPrompt is DreamBooth's class prompt ("a photo of a star"), used for
// the prior-preservation images.
func (s Subject) ClassPrompt() string {
	return Scene{Class: s.Class}.CaptionWith(CaptionStyle{Photo: true, OmitColor: true})
}

// InstancePrompt is DreamBooth's instance prompt ("a photo of a sks star").
func (s Subject) InstancePrompt() string {
	return Scene{Class: s.Class, Look: s.Look}.CaptionWith(CaptionStyle{Photo: true})
}

// Scene returns a scene of the subject with the given context, its size
// and position drawn from r.
func (s Subject) Scene(r *rand.Rand, bg Background, acc Accessory, act Action) Scene {
	sc := Scene{
		Class: s.Class, Look: s.Look, Background: bg, Accessory: acc, Action: act,
		Size:    minSize + (maxSize-minSize)*r.Float64(),
		Horizon: 15 + 3*r.Float64(),
		Shade:   0.08 * (r.Float64() - 0.5),
		ToyLeft: r.IntN(2) == 0,
	}
	sc.X = sc.randomX(r)
	return sc
}

// Photos returns the n DreamBooth input "photos" of the subject under
// seed: plain backgrounds, no accessory, no action, varied size, position
// and background shade.
func (s Subject) Photos(seed uint64, n int) []Scene {
	out := make([]Scene, n)
	for i := range out {
		out[i] = s.Scene(NewRand(seed, 1<<32+uint64(i)), Plain, NoAccessory, NoAction)
	}
	return out
}

// Sheet lays images out in a grid of cols columns with a 2-pixel gap.
func Sheet(imgs []image.Image, cols int) *image.NRGBA {
	if len(imgs) == 0 {
		return image.NewNRGBA(image.Rect(0, 0, 1, 1))
	}
	w, h := imgs[0].Bounds().Dx(), imgs[0].Bounds().Dy()
	rows := (len(imgs) + cols - 1) / cols
	const gap = 2
	out := image.NewNRGBA(image.Rect(0, 0, cols*(w+gap)-gap, rows*(h+gap)-gap))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	for i, im := range imgs {
		x, y := (i%cols)*(w+gap), (i/cols)*(h+gap)
		draw.Draw(out, image.Rect(x, y, x+w, y+h), im, im.Bounds().Min, draw.Src)
	}
	return out
}

package reward

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand"
	"strings"
	"testing"
)

func solid(w, h int, c color.NRGBA) *image.NRGBA {
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.SetNRGBA(x, y, c)
		}
	}
	return im
}

func TestBrightness(t *testing.T) {
	// A horizontal ramp: pixel x has R = G = B = 4x (x < 64), mean 4*31.5.
	ramp := image.NewNRGBA(image.Rect(0, 0, 64, 3))
	for y := 0; y < 3; y++ {
		for x := 0; x < 64; x++ {
			v := uint8(4 * x)
			ramp.SetNRGBA(x, y, color.NRGBA{v, v, v, 255})
		}
	}
	// The right half of the ramp as a sub-image (offset rectangle and
	// stride): x in 32..63, mean 4*47.5.
	half := ramp.SubImage(image.Rect(32, 0, 64, 3)).(*image.NRGBA)
	imgs := []*image.NRGBA{
		solid(5, 7, color.NRGBA{255, 0, 0, 255}), // 1/3
		solid(4, 4, color.NRGBA{0, 0, 0, 0}),     // 0, alpha ignored
		solid(2, 2, color.NRGBA{255, 255, 255, 10}),
		ramp, half,
	}
	want := []float64{1.0 / 3, 0, 1, 4 * 31.5 / 255, 4 * 47.5 / 255}
	got, err := Brightness{}.Score(context.Background(), imgs, make([]string, len(imgs)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Errorf("image %d: brightness %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := (Brightness{}).Score(context.Background(), imgs, []string{"a"}); err == nil || !strings.Contains(err.Error(), "5 images and 1 prompts") {
		t.Fatalf("mismatched prompts gave %v", err)
	}
}

func TestJPEG(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	noise := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	rng.Read(noise.Pix)
	for i := 3; i < len(noise.Pix); i += 4 {
		noise.Pix[i] = 255
	}
	flat := solid(64, 64, color.NRGBA{90, 120, 200, 255})
	imgs := []*image.NRGBA{flat, noise}
	inc, err := JPEG{Incompressible: true}.Score(context.Background(), imgs, []string{"", ""})
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := JPEG{}.Score(context.Background(), imgs, []string{"", ""})
	if err != nil {
		t.Fatal(err)
	}
	for i, im := range imgs {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, im, &jpeg.Options{Quality: 95}); err != nil {
			t.Fatal(err)
		}
		if want := float64(b.Len()) / 1000; inc[i] != want || cmp[i] != -want {
			t.Errorf("image %d: incompressibility %v, compressibility %v, want ±%v kB", i, inc[i], cmp[i], want)
		}
	}
	// A flat image is little more than the headers (~0.6 kB); uniform
	// noise keeps kilobytes of coefficients even at 4:2:0 (about 5 kB).
	if !(inc[1] > 5*inc[0] && inc[1] > 3 && inc[0] < 1) {
		t.Fatalf("noise %v kB vs flat %v kB", inc[1], inc[0])
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (JPEG{}).Score(ctx, imgs, []string{"", ""}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context gave %v", err)
	}
}

type argScorer struct{ arg string }

func (a argScorer) Name() string { return "custom" }
func (a argScorer) Score(context.Context, []*image.NRGBA, []string) ([]float64, error) {
	return nil, nil
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	for spec, name := range map[string]string{"jpeg": "jpeg", " Brightness ": "brightness", "jpeg-incompressibility": "jpeg-incompressibility"} {
		s, err := r.New(spec)
		if err != nil || s.Name() != name {
			t.Fatalf("New(%q) = %v, %v", spec, s, err)
		}
	}
	_, err := r.New("imagereward:/models/ir.safetensors")
	if err == nil || !strings.Contains(err.Error(), `"imagereward" is not available`) || !strings.Contains(err.Error(), "brightness, jpeg, jpeg-incompressibility") {
		t.Fatalf("unregistered reward gave %v", err)
	}
	if _, err := r.New("brightness:x"); err == nil || !strings.Contains(err.Error(), "takes no argument") {
		t.Fatalf("argument to brightness gave %v", err)
	}
	if _, err := r.New(""); err == nil || !strings.Contains(err.Error(), "available") {
		t.Fatalf("empty spec gave %v", err)
	}
	r.Register("imagereward", func(arg string) (Scorer, error) {
		if arg == "" {
			return nil, errors.New("needs a model path")
		}
		return argScorer{arg}, nil
	})
	s, err := r.New("imagereward:C:/models/a:b.safetensors")
	if err != nil || s.(argScorer).arg != "C:/models/a:b.safetensors" {
		t.Fatalf("registered reward: %v, %v", s, err)
	}
	if _, err := r.New("imagereward"); err == nil || !strings.Contains(err.Error(), "reward imagereward: needs a model path") {
		t.Fatalf("constructor error gave %v", err)
	}
	if got := strings.Join(r.Names(), ","); got != "brightness,imagereward,jpeg,jpeg-incompressibility" {
		t.Fatalf("names %s", got)
	}
	if !strings.Contains(r.Help(), "quality 95") {
		t.Fatalf("help:\n%s", r.Help())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name with ':' did not panic")
		}
	}()
	r.Register("a:b", func(string) (Scorer, error) { return nil, nil })
}

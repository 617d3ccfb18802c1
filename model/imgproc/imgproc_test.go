package imgproc

import (
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func openRef(t *testing.T, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "ref", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fixtureImage builds an image.NRGBA from images.safetensors' uint8 CHW
// tensor key.
func fixtureImage(t *testing.T, key string) *image.NRGBA {
	t.Helper()
	v, info, err := openRef(t, "images.safetensors").Int64(key)
	if err != nil {
		t.Fatal(err)
	}
	h, w := info.Shape[1], info.Shape[2]
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(v[y*w+x]), uint8(v[h*w+y*w+x]), uint8(v[2*h*w+y*w+x]), 255})
		}
	}
	return img
}

// compare checks got against want with tolerance tol and, for
// 8-bit-derived pixels, that every pixel is the same 8-bit level.
func compare(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if worst > tol {
		t.Errorf("%s: max abs error %g > %g", name, worst, tol)
	} else {
		t.Logf("%s: max abs error %g", name, worst)
	}
}

func TestPreprocess_matchesFixtures(t *testing.T) {
	img0, img1 := fixtureImage(t, "image0_u8"), fixtureImage(t, "image1_u8")
	clipCfg, err := ReadPreprocessorConfig(filepath.Join(testenv.Fixtures(t), "rewards-tiny", "clip", "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if clipCfg != CLIP(32) {
		t.Errorf("preprocessor_config.json read as %+v, want CLIP(32) %+v", clipCfg, CLIP(32))
	}
	dino8x112 := ImageNet(80, 0)
	dino8x112.CropW, dino8x112.CropH = 112, 80
	cases := []struct {
		file, key string
		cfg       Config
		imgs      []image.Image
	}{
		{"imagereward.safetensors", "in/pixel_values", ImageReward(64), []image.Image{img0, img1}},
		{"clip.safetensors", "in/pixel_values", clipCfg, []image.Image{img0, img1}},
		{"dino.safetensors", "in/pixel_values", DINO(64), []image.Image{img0, img1}},
		{"dino.safetensors", "in/pixel_values_80x112", dino8x112, []image.Image{img0}},
		{"dino.safetensors", "in/pixel_values_48x48", ImageNet(48, 48), []image.Image{img1}},
	}
	for _, c := range cases {
		want, info, err := openRef(t, c.file).Float32(c.key)
		if err != nil {
			t.Fatal(err)
		}
		got, h, w, err := c.cfg.Batch(c.imgs)
		if err != nil {
			t.Fatal(err)
		}
		if h != info.Shape[2] || w != info.Shape[3] {
			t.Fatalf("%s %s: %dx%d, want %v", c.file, c.key, w, h, info.Shape)
		}
		// Bit-exact resampling gives identical float32 results; one 8-bit
		// level would be ~0.015 after normalisation.
		compare(t, c.file+" "+c.key, got, want, 1e-6)
	}
}

func TestResizeFloat_matchesTorch(t *testing.T) {
	f := openRef(t, "imagereward_grad.safetensors")
	x, _, err := f.Float32("in/refl_image")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key    string
		interp Interp
	}{{"refl/pixel_values", Bicubic}, {"refl_aa/pixel_values", BicubicAA}} {
		want, _, err := f.Float32(c.key)
		if err != nil {
			t.Fatal(err)
		}
		y := ResizeFloat(x, 3, 96, 96, 64, 64, c.interp)
		for ch := 0; ch < 3; ch++ {
			for i := 0; i < 64*64; i++ {
				y[ch*4096+i] = (y[ch*4096+i] - CLIPMean[ch]) / CLIPStd[ch]
			}
		}
		compare(t, c.key, y, want, 1e-5)
	}
}

// TestResizeMatrix checks properties every row must have: weights sum to
// one, identity at equal sizes.
func TestResizeMatrix(t *testing.T) {
	for _, interp := range []Interp{Bicubic, BicubicAA} {
		for _, sz := range [][2]int{{7, 3}, {3, 7}, {96, 64}, {5, 5}} {
			m := ResizeMatrix(sz[0], sz[1], interp, 0)
			for o := 0; o < sz[1]; o++ {
				s := 0.0
				for i := 0; i < sz[0]; i++ {
					s += m[o*sz[0]+i]
					if sz[0] == sz[1] && math.Abs(m[o*sz[0]+i]-b2f(i == o)) > 1e-12 {
						t.Fatalf("interp %d size %v: not the identity at (%d,%d): %g", interp, sz, o, i, m[o*sz[0]+i])
					}
				}
				if math.Abs(s-1) > 1e-12 {
					t.Errorf("interp %d %v row %d sums to %g", interp, sz, o, s)
				}
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestShortSideAndCrop(t *testing.T) {
	// The fixture README's worked examples.
	for _, c := range []struct{ w, h, n, ow, oh int }{
		{112, 80, 64, 89, 64}, {40, 48, 64, 64, 76}, {112, 80, 73, 102, 73}, {40, 48, 73, 73, 87}, {40, 48, 48, 48, 57},
	} {
		if ow, oh := ShortSide(c.w, c.h, c.n); ow != c.ow || oh != c.oh {
			t.Errorf("ShortSide(%d, %d, %d) = %d, %d, want %d, %d", c.w, c.h, c.n, ow, oh, c.ow, c.oh)
		}
	}
	for _, c := range []struct {
		in, out int
		r       CropRounding
		want    int
	}{
		{73, 64, CropTorchvision, 4}, {87, 64, CropTorchvision, 12}, {102, 64, CropTorchvision, 19}, {89, 64, CropTorchvision, 12},
		{73, 64, CropHF, 4}, {87, 64, CropHF, 11}, {30, 32, CropTorchvision, -1}, {29, 32, CropTorchvision, -1}, {29, 32, CropHF, -2},
	} {
		if got := cropOffset(c.in, c.out, c.r); got != c.want {
			t.Errorf("cropOffset(%d, %d, %d) = %d, want %d", c.in, c.out, c.r, got, c.want)
		}
	}
}

// TestPixels_padsSmallImages: a crop larger than the image pads with
// black (both conventions), and the original pixels land at the offset.
func TestPixels_padsSmallImages(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	c := Config{CropW: 6, CropH: 5, Crop: CropTorchvision, Std: [3]float32{1, 1, 1}}
	m, err := c.Pixels(img)
	if err != nil {
		t.Fatal(err)
	}
	// left pad (6-3)//2 = 1, top pad (5-2)//2 = 1
	for y := 0; y < 5; y++ {
		for x := 0; x < 6; x++ {
			want := uint8(0)
			if x >= 1 && x < 4 && y >= 1 && y < 3 {
				want = 200
			}
			if got := m.Pix[(y*6+x)*3]; got != want {
				t.Fatalf("pixel (%d,%d) = %d, want %d", x, y, got, want)
			}
		}
	}
}

// TestToRGB8 converts other image types as PIL's convert("RGB") does.
func TestToRGB8(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 2, 1))
	g.Pix[0], g.Pix[1] = 10, 250
	if m := ToRGB8(g); string(m.Pix) != string([]uint8{10, 10, 10, 250, 250, 250}) {
		t.Errorf("gray: %v", m.Pix)
	}
	// Premultiplied RGBA: the straight colour is recovered, alpha dropped.
	r := image.NewRGBA(image.Rect(0, 0, 1, 1))
	r.SetRGBA(0, 0, color.RGBA{50, 100, 0, 128})
	m := ToRGB8(r)
	want := color.NRGBAModel.Convert(color.RGBA{50, 100, 0, 128}).(color.NRGBA)
	if m.Pix[0] != want.R || m.Pix[1] != want.G || m.Pix[2] != 0 {
		t.Errorf("rgba: %v, want %v", m.Pix, want)
	}
	// A sub-image keeps its own origin.
	big := fixtureImage(t, "image0_u8")
	sub := big.SubImage(image.Rect(10, 5, 20, 9))
	ms := ToRGB8(sub)
	c := big.NRGBAAt(10, 5)
	if ms.W != 10 || ms.H != 4 || ms.Pix[0] != c.R || ms.Pix[1] != c.G || ms.Pix[2] != c.B {
		t.Errorf("sub-image: %dx%d first pixel %v, want %v", ms.W, ms.H, ms.Pix[:3], c)
	}
}

func TestReadPreprocessorConfig_errors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{`{"resample": 2}`, "resample 2"},
		{`{"size": {"height": 3, "width": 4}}`, "size"},
		{`{"image_mean": [1, 2]}`, "image_mean"},
		{`{`, "preprocessor_config.json"},
	} {
		p := filepath.Join(dir, "preprocessor_config.json")
		if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadPreprocessorConfig(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) && c.want != "preprocessor_config.json" {
			t.Errorf("%s: error %v, want one naming %q and the file", c.body, err, c.want)
		}
	}
	// A plain number size (older configs).
	p := filepath.Join(dir, "preprocessor_config.json")
	os.WriteFile(p, []byte(`{"size": 224, "crop_size": 224}`), 0o644)
	c, err := ReadPreprocessorConfig(p)
	if err != nil || c != CLIP(224) {
		t.Errorf("size 224: %+v, %v", c, err)
	}
}
